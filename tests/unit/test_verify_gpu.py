"""Judges of the GPU checks (llmcluster/verify/gpu.py) fed the output formats of the real tools,
healthy and broken on purpose."""

from __future__ import annotations

import json

import pytest

from llmcluster.verify import gpu as G
from tests.conftest import load_plan

DRIVER = "570.172.08"


def _query(n=8, name="NVIDIA H200", driver=DRIVER, pm="Enabled", ecc="Enabled", cap="9.0", off=()):
    rows = []
    for i in range(n):
        rows.append(", ".join([str(i), name, f"GPU-{i:08x}-0000-0000-0000-000000000000", driver,
                               "Disabled" if i in off else pm, ecc, cap, "143771"]))
    return "\n".join(rows) + "\n"


def _q(states):
    pad = " " * 20
    out = [f"Driver Version{pad}: {DRIVER}", f"CUDA Version{pad}: 12.8", ""]
    for i, (state, status) in enumerate(states):
        out += [f"GPU 00000000:{0x18 + i:02X}:00.0", f"    Product Name{pad}: NVIDIA H200",
                "    Fabric", f"        State{pad}: {state}", f"        Status{pad}: {status}",
                f"        CliqueId{pad}: 1", "    ECC Mode", f"        Current{pad}: Enabled"]
    return "\n".join(out) + "\n"


def _nvlink(n=8, links=18, down=()):
    out = []
    for g in range(n):
        out.append(f"GPU {g}: NVIDIA H200 (UUID: GPU-{g:08x})")
        out += [f"\t Link {k}: {'<inactive>' if (g, k) in down else '26.562 GB/s'}" for k in range(links)]
    return "\n".join(out) + "\n"


def _ok(out):
    return {"rc": 0, "out": out, "err": ""}


def healthy(n=8):
    pk = ["nvidia-driver-570-open", "nvidia-utils-570", "nvidia-compute-utils-570", "libnvidia-nscq-570"]
    dpkg = "".join(f"{p}\t{DRIVER}-1\tinstall ok installed\n" for p in pk)
    dpkg += f"nvidia-fabricmanager-570\t{DRIVER}-1\tinstall ok installed\n"
    info = "NVRM version:   570.172.08\nCUDA version:   12.8\n\n" + "".join(
        f"Device Index:   {i}\nModel:          NVIDIA H200\n\n" for i in range(n))
    diag = {"DCGM GPU Diagnostic": {"test_categories": [{"category": "Deployment", "tests": [
        {"name": "Denylist", "results": [{"status": "Pass"}]},
        {"name": "NVML Library", "results": [{"status": "Pass"}]}]}]}}
    return {
        "simulated": True, "query": _ok(_query(n)), "q": _ok(_q([("Completed", "Success")] * n)),
        "nvlink": _ok(_nvlink(n)), "dpkg": _ok(dpkg), "holds": _ok("\n".join([*pk, "nvidia-fabricmanager-570"])),
        "container": _ok(info), "cdi": _ok("".join(f"nvidia.com/gpu={i}\n" for i in range(n)) + "nvidia.com/gpu=all\n"),
        "diag": _ok(json.dumps(diag)), "fabric_unit": _ok("active\n"),
        "venv": _ok(json.dumps({"trtllm": "1.0.0", "cuda": "12.9"})),
        "health": {"status": 200, "body": ""}, "models": {"status": 200, "body": json.dumps({"data": [{"id": "x"}]})},
        # The TLS terminator accepts and answers no plain HTTP; nothing listens on the backend port there.
        "terminator": {"connected": True, "http": False, "response": "\x15\x03\x03\x00\x02\x02\x46", "error": ""},
        "backend_exposed": {"connected": False, "http": False, "response": "", "error": "[Errno 111] refused"},
    }


@pytest.fixture(scope="module")
def checks():
    plan = load_plan("lab", ("serving.model=deepseek-r1-distill-qwen-7b",))
    hv = {h.name: {} for h in plan.ip.hosts}
    return {c.name: c for c in G.gpu_checks(plan, hv) if c.host == "gpu-01"}


def test_the_lab_plans_every_gpu_check(checks):
    assert sorted(checks) == sorted(["driver", "inventory", "persistence", "ecc", "fabric", "nvlink", "container",
                                     "dcgm", "engine-cache", "serving", "hbm-bandwidth"])


def test_a_healthy_node_passes_every_check(checks):
    facts = healthy()
    sp = checks["engine-cache"].params["serving_plan"]
    key = G.engine_key(sp, gpu_sm="9.0", trtllm_version="1.0.0", cuda_version="12.9", driver_version=DRIVER)
    facts["cache_key"] = {"data": key.fields, "path": "/var/lib/llmcluster/engines/x/" + key.digest}
    for name, check in checks.items():
        if name != "hbm-bandwidth":
            assert G.judge(check, facts) == [], name


@pytest.mark.parametrize(("check", "breakage", "needle"), [
    ("driver", {"query": _ok(_query(driver="570.195.03"))}, "runs driver 570.195.03, spec says 570.172.08"),
    ("driver", {"holds": _ok("")}, "is not held"),
    ("inventory", {"query": _ok(_query(7))}, "7 GPUs visible, spec says 8"),
    ("inventory", {"query": _ok(_query(name="NVIDIA H100 80GB HBM3"))}, "spec says NVIDIA H200"),
    ("persistence", {"query": _ok(_query(off=(3,)))}, "GPU 3: Disabled"),
    ("ecc", {"query": _ok(_query(ecc="Disabled"))}, "ECC is not enabled on 8 GPU(s)"),
    ("fabric", {"fabric_unit": {"rc": 3, "out": "failed\n", "err": ""}}, "nvidia-fabricmanager is failed"),
    ("fabric", {"q": _ok(_q([("Completed", "Success")] * 7 + [("In Progress", "N/A")]))},
     "fabric not initialised on 1 GPU(s): GPU 7: In Progress/N/A"),
    ("fabric", {"dpkg": _ok("nvidia-fabricmanager-570\t570.195.03-1\tinstall ok installed\n")},
     "differs from the driver 570.172.08"),
    ("nvlink", {"nvlink": _ok(_nvlink(down={(2, 5)}))}, "GPU 2: NVLink(s) [5] down"),
    ("nvlink", {"nvlink": _ok(_nvlink(links=12))}, "12 NVLinks, hopper has 18"),
    ("container", {"cdi": _ok("nvidia.com/gpu=0\n")}, "CDI spec lacks nvidia.com/gpu=1"),
    ("container", {"container": {"rc": 1, "out": "", "err": "nvidia-container-cli: initialization error"}},
     "nvidia-container-cli info failed (exit 1): nvidia-container-cli: initialization error"),
    ("dcgm", {"diag": {"rc": 226, "out": json.dumps({"DCGM GPU Diagnostic": {"test_categories": [{"tests": [
        {"name": "Persistence Mode", "results": [{"status": "Fail", "info": "persistence mode disabled"}]}]}]}}),
        "err": ""}}, "Persistence Mode: persistence mode disabled"),
    ("dcgm", {"diag": {"rc": 255, "out": "", "err": "Error: unable to establish a connection"}}, "did not print JSON"),
    ("serving", {"health": {"status": 503, "body": ""}}, "/health answered 503"),
    ("serving", {"terminator": {"connected": True, "http": True, "response": "HTTP/1.1 200 OK"}},
     "10.42.1.11:8000 answers plain HTTP"),
    ("serving", {"terminator": {"connected": False, "http": False, "error": "[Errno 111] Connection refused"}},
     "the TLS terminator (serving-tls.service, role serving_tls) is not running"),
    ("serving", {"terminator": {}}, "no probe of 10.42.1.11:8000"),
    ("serving", {"backend_exposed": {"connected": True, "http": True, "response": "HTTP/1.1 200 OK"}},
     "the backend port 8001 accepts connections on the inference address"),
    ("serving", {"backend_exposed": None}, "no probe of the backend port 8001"),
    ("engine-cache", {"cache_key": {"error": "No such file or directory"}}, "no engine cache entry in use"),
    ("nvlink", {"nvlink": {"rc": 9, "out": "", "err": "NVIDIA-SMI has failed because it couldn't communicate"}},
     "nvidia-smi nvlink -s failed (exit 9)"),
])
def test_each_breakage_fails_its_check(checks, check, breakage, needle):
    facts = {**healthy(), **breakage}
    problems = G.judge(checks[check], facts)
    assert problems and any(needle in p for p in problems), problems


def test_engine_cache_built_for_another_driver_fails(checks):
    sp = checks["engine-cache"].params["serving_plan"]
    old = G.engine_key(sp, gpu_sm="9.0", trtllm_version="1.0.0", cuda_version="12.9", driver_version="570.195.03")
    facts = {**healthy(), "cache_key": {"data": old.fields, "path": "/e/" + old.digest}}
    (problem,) = G.judge(checks["engine-cache"], facts)
    assert "driver_version: entry '570.195.03', installed/planned '570.172.08'" in problem


def test_hbm_judge():
    assert G.judge_hbm(4400.0, 4.8e12) == []
    (p,) = G.judge_hbm(3000.0, 4.8e12)
    assert "below 90% of the catalog 4800 GB/s (4320 GB/s)" in p


def test_parsers_tolerate_other_sections():
    assert G.deb_upstream_version("1:4.2.3-1") == "4.2.3"
    assert G.deb_upstream_version("570.172.08-0ubuntu1") == "570.172.08"
    assert G.nvidia_smi_fabric(_q([("Completed", "Success")]))[0] == {"State": "Completed", "Status": "Success",
                                                                      "CliqueId": "1"}


def _diag(tests, gpus=None):
    """A dcgmi diag -j document of ``tests`` ({name: [status per GPU]} or {name: None} for a test
    printed without results)."""
    out = []
    for name, statuses in tests.items():
        test = {"name": name, "test_summary": {"status": "Pass"}}
        if statuses is not None:
            test["results"] = [{"entity_group": "GPU", "entity_group_id": 1, "entity_id": i, "status": st}
                               for i, st in enumerate(statuses)]
        out.append(test)
    return json.dumps({"DCGM GPU Diagnostic": {"test_categories": [{"category": "Deployment", "tests": out}]}})


#: Documents that show nothing failed because they show nothing (dcgmi exits 0 on each): the
#: verification must not pass them (the old judge, which only looked for failed tests, did).
EMPTY_DIAGS = {
    "empty object": "{}",
    "empty list": "[]",
    "no test categories": json.dumps({"DCGM GPU Diagnostic": {"test_categories": []}, "version": "4.2.3"}),
    "a category without tests": json.dumps({"DCGM GPU Diagnostic": {"test_categories": [
        {"category": "Deployment", "tests": []}]}}),
    "tests without results": _diag({"Denylist": None, "NVML Library": None}),
    "one test without results": _diag({"Denylist": ["Pass"] * 8, "NVML Library": None}),
    "empty results": _diag({"Denylist": []}),
    "a GPU without result": _diag({"Denylist": ["Pass"] * 8, "NVML Library": ["Pass"] * 7}),
    "fewer GPUs than planned": _diag({"Denylist": ["Pass"] * 4, "NVML Library": ["Pass"] * 4}),
}


@pytest.mark.parametrize("doc", list(EMPTY_DIAGS.values()), ids=list(EMPTY_DIAGS))
def test_dcgm_fails_a_document_without_results(checks, doc):
    facts = {**healthy(), "diag": _ok(doc)}
    problems = G.judge(checks["dcgm"], facts)
    assert problems and problems[0].startswith("dcgmi diag -r 1 "), problems


def test_dcgm_passes_a_full_per_gpu_document(checks):
    facts = {**healthy(), "diag": _ok(_diag({"Denylist": ["Pass"] * 8, "NVML Library": ["Pass"] * 7 + ["Skip"]}))}
    assert G.judge(checks["dcgm"], facts) == []


def test_verify_and_the_role_use_one_dcgm_judge():
    """verify/gpu.py imports the collection's judge: the role's filter is the same function."""
    from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import dcgm

    assert G.dcgm_diag_report is dcgm.dcgm_diag_report


def test_results_table_keeps_bracketed_check_names():
    """rich reads ``[driver]`` as markup: the table must show check names as they are."""
    from rich.console import Console

    from llmcluster.verify.run import VerifyReport, results_table

    report = VerifyReport(stack="lab", rc=5, results=[
        {"host": "gpu-01", "check": "gpu[driver]", "outcome": "failed", "message": "GPU 0 runs [x] 1"},
        {"host": "gpu-01", "check": "link[mgmt]", "outcome": "passed", "message": ""}])
    console = Console(width=200, record=True)
    console.print(results_table(report))
    text = console.export_text()
    assert "gpu[driver]" in text and "link[mgmt]" in text and "GPU 0 runs [x] 1" in text


def test_the_serving_probes_go_to_loopback_and_the_inference_address(checks):
    """trtllm-serve is probed on 127.0.0.1 at the backend port; the inference address at the serving
    port (the TLS terminator) and at the backend port (must be closed)."""
    (arg,) = G.gather_args(checks["serving"])
    a = json.loads(arg)
    assert a["health"] == "http://127.0.0.1:8001"
    assert a["inference"] == ["10.42.1.11", 8000, 8001]
    compile(G.GATHER, "GATHER", "exec")
