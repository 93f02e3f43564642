"""The bare-metal SSH preflight against the lab hosts, over real SSH (paramiko).

The lab hosts have no GPUs and no NVMe drives and run Debian 12: the preflight must say so,
precisely, against the lab spec (8x H100 and 4 NVMe drives per GPU node, 3 on the storage
node). GPUs the machine does not have are stood in for by an injected GPU probe, which still
runs over the real SSH session; the NVMe and OS facts are always real.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

import pytest

from llmcluster.validate import hostfacts as F
from llmcluster.validate.preflight import preflight
from tests.conftest import STACKS, load_spec

pytestmark = pytest.mark.lab


def _has_nvidia_smi(lab, host: str) -> bool:
    return lab.exec(host, ["sh", "-c", "command -v nvidia-smi"]).returncode == 0


def _nvme(lab, host: str, want: int) -> list[str]:
    """The NVMe finding expected for ``host``, from an independent look at its /sys/block."""
    names = lab.exec(host, ["sh", "-c", "ls /sys/block"], check=True).stdout.split()
    found = sorted(n for n in names if n.startswith("nvme"))
    if len(found) == want:
        return []
    pool = {"gpu": "gpu", "storage": "storage", "gw": "gateway"}[host.split("-")[0]]
    listed = f" ({', '.join(found)})" if found else ""
    return [f"pools.{pool}: {host} has {len(found)} NVMe drives{listed}, spec says {want}"]


def _messages(problems) -> list[str]:
    return sorted(str(p) for p in problems)


def test_lab_hosts_differ_from_the_spec_exactly_where_they_should(lab):
    spec = load_spec("lab")
    problems = F.check_host_facts(spec, hosts=["storage-01", "gw-01"], key_filename=str(lab.private_key),
                                  insecure_accept_host_key=True)
    # storage-01: no NVMe drives in the lab (spec: 2; OSDs are files); gw-01: no GPUs, no NVMe, Debian 12 — its spec.
    assert _messages(problems) == _nvme(lab, "storage-01", 2)


def test_gpu_node_without_gpus(lab):
    if _has_nvidia_smi(lab, "gpu-01"):
        pytest.skip("gpu-01 has a (simulated) nvidia-smi installed by an earlier converge")
    problems = F.check_host_facts(load_spec("lab"), hosts=["gpu-01"], key_filename=str(lab.private_key),
                                  insecure_accept_host_key=True)
    assert _messages(problems) == sorted([
        "pools.gpu: gpu-01 has 0 GPUs (no nvidia-smi and no NVIDIA GPU on the PCI bus), spec says 8 h200",
        *_nvme(lab, "gpu-01", 4),
    ])


def _gpus(*names: str):
    def probe(host: str, run):
        rc, out, _ = run("cat /etc/hostname")  # over the real session: the probe sees the real host
        assert rc == 0 and out.strip() == host
        return F.GpuReport(tuple(names), "injected")

    return probe


@pytest.mark.parametrize(("names", "expected"), [
    (("NVIDIA H200",) * 8, None),
    (("NVIDIA H200",) * 7, "pools.gpu: gpu-02 has 7 GPUs (NVIDIA H200), spec says 8 h200"),
    (("NVIDIA A100-SXM4-80GB",) * 8, "pools.gpu: gpu-02 has 8 GPUs (NVIDIA A100-SXM4-80GB), spec says 8 h200"),
    (("NVIDIA H200",) * 7 + ("NVIDIA H100 80GB HBM3",),
     "pools.gpu: gpu-02 has 8 GPUs (7x NVIDIA H200, 1x NVIDIA H100 80GB HBM3), spec says 8 h200"),
])
def test_gpu_count_and_model_against_the_spec(lab, names, expected):
    problems = F.check_host_facts(load_spec("lab"), hosts=["gpu-02"], key_filename=str(lab.private_key),
                                  insecure_accept_host_key=True, gpu_probe=_gpus(*names))
    nvme = _nvme(lab, "gpu-02", 4)  # real, whatever the injected GPUs say
    assert _messages(problems) == sorted(nvme + ([expected] if expected else []))


def test_os_release_against_the_spec(lab):
    spec = load_spec("lab", ("baremetal.os=ubuntu-24.04",))
    problems = F.check_host_facts(spec, hosts=["gw-01"], key_filename=str(lab.private_key),
                                  insecure_accept_host_key=True)
    assert _messages(problems) == [
        "baremetal.os: gw-01 runs Debian GNU/Linux 12 (bookworm) (debian 12), spec says ubuntu-24.04"]


def test_unknown_host_key_is_refused_without_the_insecure_setting(lab, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    problems = F.check_host_facts(load_spec("lab"), hosts=["gw-01"], key_filename=str(lab.private_key))
    assert len(problems) == 1 and problems[0].path == "pools.gateway"
    assert problems[0].message.startswith("gw-01 (10.42.0.16): cannot gather facts over SSH as root: SSHException")
    assert "not found in known_hosts" in problems[0].message


def test_validate_preflight_runs_the_ssh_checks(lab, monkeypatch):
    """`llmcluster validate --preflight` on the lab stack: reachability, then the facts over SSH."""
    from llmcluster.cli import main

    monkeypatch.setenv("LLMCLUSTER_SSH_KEY", str(lab.private_key))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["validate", str(STACKS / "Pulumi.lab.yaml"), "--preflight", "--timeout", "5",
                   "--set", "baremetal.ssh_insecure_accept_host_key=true"])
    lines = sorted(line.split(": ", 1)[1] for line in err.getvalue().splitlines() if line.strip())
    assert rc == 2, err.getvalue()
    for host, want in (("storage-01", 2), ("gpu-01", 4)):
        assert set(_nvme(lab, host, want)) <= set(lines)
    assert [x for x in lines if "NVMe" in x], "the lab has no NVMe drives: the preflight says so"
    assert not [x for x in lines if "gw-01" in x], "gw-01 matches its spec"
    assert not [x for x in lines if "cannot gather" in x or "does not answer" in x]


def test_preflight_api_takes_the_key_and_policy(lab):
    problems = preflight(load_spec("lab"), timeout=5, key_filename=str(lab.private_key),
                         insecure_accept_host_key=True)
    assert set(_nvme(lab, "storage-01", 2)) <= set(_messages(problems))
    assert not [p for p in problems if "does not answer" in p.message or "cannot gather" in p.message]
