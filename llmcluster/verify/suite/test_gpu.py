"""GPU nodes, per host and check: driver, GPUs, persistence, ECC, fabric, NVLinks, container
toolkit, DCGM diagnostics, the engine cache entry in use and the serving head
(llmcluster/verify/gpu.py). Facts are gathered once per host in one SSH round trip.

In the lab the GPUs are SIMULATED (llmcluster/lab/nvidia_sim: stand-in packages and tools
reading a hardware description); the checks and their judges are the production ones. The
``hbm-bandwidth`` check needs a real GPU: it is skipped, with the reason, on simulated ones.
"""

from __future__ import annotations

import json

import pytest

from llmcluster.verify import gpu as G

pytestmark = pytest.mark.xdist_group("lab")

_FACTS: dict[str, dict] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from llmcluster.verify.suite.plugin import _collect

    if "gpu_check" in metafunc.fixturenames:
        c = _collect(metafunc.config)
        cases = G.gpu_checks(c.plan, c.hostvars)
        metafunc.parametrize("gpu_check", cases or [None], ids=[x.id for x in cases] or ["no-gpu-host"])


def gpu_facts(target, check: G.GpuCheck) -> dict:
    if check.host not in _FACTS:
        res = target.host(check.host).python(G.GATHER, *G.gather_args(check), timeout=960)
        _FACTS[check.host] = res.json(f"{check.host}: gathering GPU facts")
    return _FACTS[check.host]


def _hbm(check: G.GpuCheck, target) -> list[str]:
    facts = gpu_facts(target, check)
    if facts.get("simulated"):
        pytest.skip("simulated GPUs (llmcluster lab): no HBM to measure; runs on real GPU nodes")
    venv = G.TRTLLM_VENV_PYTHON
    res = target.host(check.host).run([venv, "-c", G.HBM_PROBE], timeout=300)
    if res.rc != 0:
        return [f"HBM probe with {venv} (PyTorch) failed, exit {res.rc}: {res.stderr.strip()[-200:]}"]
    gbps = json.loads(res.stdout)["gbps"]
    return G.judge_hbm(gbps, check.params["gpu"]["hbm_bandwidth_bytes_per_s"])


def test_gpu(gpu_check, verify_target, record_property) -> None:
    if gpu_check is None:
        pytest.skip("the inventory has no GPU host")
    record_property("host", gpu_check.host)
    record_property("check", f"gpu[{gpu_check.name}]")
    if gpu_check.name == "hbm-bandwidth":
        problems = _hbm(gpu_check, verify_target)
    else:
        problems = G.judge(gpu_check, gpu_facts(verify_target, gpu_check))
    assert not problems, f"{gpu_check.host} gpu[{gpu_check.name}]: " + "; ".join(problems)
