"""The tensorrt_llm role's trtllm-serve unit and engine cache key, rendered by Ansible from the role's
own defaults, variables and templates (no hosts needed).

One ``ansible-playbook`` run renders every case: (a) a single-node PyTorch-backend plan (the lab
stack's), (b) a 2-node plan (``mpirun -H`` over both hosts, ``trtllm-llmapi-launch``), (c) the
engine backend in container mode with containerd and (d) with docker. ExecStart's argv must be
``llmcluster.plan.capacity.trtllm_serve_command``'s (the planner's), behind the launcher of each
mode, listening on 127.0.0.1 at the plan's backend port (behind the serving_tls terminator); the
engine cache key must be ``llmcluster.plan.serving.engine_key``'s (what the verification suite
recomputes).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llmcluster.plan.capacity import trtllm_serve_command
from llmcluster.plan.serving import engine_key, engine_key_plan_fields, model_manifest_path
from tests.conftest import ROOT, load_plan
from tests.helpers import role_local as R

ROLE = ROOT / "roles" / "tensorrt_llm"
VENV_BIN = "/opt/llmcluster/tensorrt-llm/venv/bin"
OPTIONS = "/etc/llmcluster/trtllm/extra-llm-api-options.yml"
ENV_FILE = "/etc/llmcluster/trtllm/trtllm-serve.env"
SMI_ROWS = [f"{i}, 570.172.08, 9.0" for i in range(8)]
PROBE_LINES = ["[TensorRT-LLM] TensorRT-LLM version: 1.0.0", '{"trtllm": "1.0.0", "cuda": "12.9"}']

PLAYBOOK = R.local_play("Render the tensorrt_llm role's files", role=ROLE, tasks=[
    {"name": "Render the unit and the environment file, dump the derived values", "ansible.builtin.copy": {
        "content": (f"{{{{ {{'unit': lookup('ansible.builtin.template', '{ROLE}/templates/trtllm-serve.service.j2'), "
                    f"'env': lookup('ansible.builtin.template', '{ROLE}/templates/trtllm-serve.env.j2'), "
                    "'key': _tensorrt_llm_engine_key, 'key_json': _tensorrt_llm_engine_key_json, "
                    "'entry': _tensorrt_llm_engine_entry, 'convert': _tensorrt_llm_convert_argv, "
                    "'build': _tensorrt_llm_build_argv, 'health': _tensorrt_llm_health_url, "
                    "'head': _tensorrt_llm_head | bool, 'enabled': _tensorrt_llm_enabled | bool, "
                    "'verify': _tensorrt_llm_verify | bool, "
                    "'packages': _tensorrt_llm_system_packages, 'options': tensorrt_llm_plan.extra_llm_api_options "
                    "| ansible.builtin.to_nice_yaml(indent=2, sort_keys=true)} | to_json }}"),
        "dest": "{{ out }}/{{ item }}.json", "mode": "0644"},
     "loop": "{{ cases.keys() | list }}",
     "vars": {**{f"llmcluster_{k}": f"{{{{ cases[item].{v} }}}}" for k, v in (
         ("serving_plan", "plan"), ("serving", "serving"), ("nvidia", "nvidia"), ("gpu", "gpu"),
         ("addresses", "addresses"))},
              "tensorrt_llm_require_manifest": "{{ cases[item].require | default(true) }}",
              "__tensorrt_llm_manifest_stat": {"stat": {
                  "exists": "{{ cases[item].installed | default(true) }}",
                  "checksum": "{{ cases[item].digest | default('') }}"}},
              "__tensorrt_llm_verifier_stat": {"stat": {"executable": "{{ cases[item].installed | default(true) }}"}},
              "__tensorrt_llm_smi": {"rc": 0, "stdout_lines": SMI_ROWS},
              "__tensorrt_llm_probe": {"rc": 0, "stdout_lines": PROBE_LINES}}}])


def _nvidia(**trtllm) -> dict:
    return {"container_runtime": trtllm.pop("runtime", "containerd"),
            "trtllm": {"version": "1.0.0", "cuda_version": "12.9", "install": "venv",
                       "pip_index_url": "https://pypi.nvidia.com", "pip_find_links": "",
                       "image": "nvcr.io/nvidia/tensorrt-llm/release:1.0.0", "registry_mirror": "",
                       "engine_cache_dir": "/var/lib/llmcluster/engines", **trtllm}}


GPU = {"model": "h200", "count": 8, "fabric": "nvswitch", "sm": 90,
       "packages": {"fabric_service": "nvidia-fabricmanager"}}


def _replan(sp: dict, **changes) -> dict:
    """A serving plan with ``changes``, its engine-key half and manifest path re-derived as the planner does."""
    out = {**sp, "model_manifest": model_manifest_path(changes.get("model", sp["model"])), **changes}
    out["engine_key"] = engine_key_plan_fields(out)
    return out


def _cases(out: Path) -> tuple[dict, dict]:
    plan = load_plan("lab")
    cap = plan.capacity
    sp = plan.serving.to_vars()
    one = {"replica": 0, "node_rank": 0, "nodes": 1, "head": "gpu-01", "head_address": "10.42.1.11",
           "hosts": [{"name": "gpu-01", "address": "10.42.1.11", "slots": 8}]}
    # (b) a 16-GPU replica over two 8-GPU hosts: tp 16, ep 16.
    cap2 = dataclasses.replace(cap, tp=16, ep=16, nodes=2)
    sp2 = _replan(sp, tp=16, ep=16, nodes=2)
    two_hosts = [{"name": "gpu-01", "address": "10.42.1.11", "slots": 8},
                 {"name": "gpu-02", "address": "10.42.1.12", "slots": 8}]
    two = {"replica": 0, "node_rank": 0, "nodes": 2, "head": "gpu-01", "head_address": "10.42.1.11",
           "hosts": two_hosts}
    # (c, d) a dense distill on a TensorRT engine, container mode, a registry mirror.
    cap3 = dataclasses.replace(cap, backend="engine", tp=2, pp=1, ep=1)
    sp3 = _replan(sp, model="deepseek-r1-distill-qwen-7b", model_type="qwen2", backend="engine",
                  model_path="/srv/models/deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", tp=2, pp=1, ep=1, kv_dtype="bf16")
    addr = {"inference": "10.42.1.11", "mgmt": "10.42.0.11"}
    cases = {
        "single": {"plan": sp, "serving": one, "nvidia": _nvidia(), "gpu": GPU, "addresses": addr},
        "single_new_manifest": {"plan": sp, "serving": one, "nvidia": _nvidia(), "gpu": GPU, "addresses": addr,
                                "digest": "ab" * 32},
        "multi": {"plan": sp2, "serving": two, "nvidia": _nvidia(), "gpu": GPU, "addresses": addr},
        "multi_rank1": {"plan": sp2, "serving": {**two, "node_rank": 1}, "nvidia": _nvidia(), "gpu": GPU,
                        "addresses": {"inference": "10.42.1.12"}},
        "engine_ctr": {"plan": sp3, "serving": one, "gpu": GPU, "addresses": addr,
                       "nvidia": _nvidia(install="container", registry_mirror="registry.internal:5000")},
        "engine_docker": {"plan": sp3, "serving": one, "gpu": {**GPU, "fabric": "none", "packages": {}},
                          "addresses": addr, "nvidia": _nvidia(install="container", runtime="docker")},
        "no_serving": {"plan": sp, "serving": {}, "nvidia": _nvidia(), "gpu": GPU, "addresses": addr},
        # The model gate: engine-only setups (no manifest required: verified only where the model store
        # installed one), and a plan whose model, manifest and verifier lie in this test's folder.
        "engine_only": {"plan": sp3, "serving": one, "gpu": GPU, "addresses": addr, "require": False,
                        "installed": False, "nvidia": _nvidia(install="container", runtime="docker")},
        "no_manifest": {"plan": _replan(sp, model_manifest=""), "serving": one, "nvidia": _nvidia(), "gpu": GPU,
                        "addresses": addr, "require": False},
        "local_gate": {"plan": _replan(sp, model_path=str(out / "models" / "org" / "Model"),
                                       model_manifest=str(out / "etc" / "models" / "lab-model.json"),
                                       model_verifier=str(out / "libexec" / "model-verify")),
                       "serving": one, "nvidia": _nvidia(), "gpu": GPU, "addresses": addr},
    }
    caps = {"single": cap, "multi": cap2, "multi_rank1": cap2, "engine_ctr": cap3, "engine_docker": cap3,
            "no_serving": cap, "single_new_manifest": cap, "engine_only": cap3, "no_manifest": cap, "local_gate": cap}
    return cases, caps


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, dict, dict]:
    out = tmp_path_factory.mktemp("trtllm-render")
    cases, caps = _cases(out)
    r = R.run_playbook(out, PLAYBOOK, {"cases": cases, "out": str(out)}, name="render", timeout=None)
    assert r.returncode == 0, r.stdout + r.stderr
    return out, cases, caps


def unit(out: Path, case: str) -> dict[str, list[str]]:
    """The unit's settings: key -> values (in order)."""
    settings: dict[str, list[str]] = {}
    for line in derived(out, case)["unit"].splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def exec_start(out: Path, case: str) -> list[str]:
    (line,) = unit(out, case)["ExecStart"]
    return shlex.split(line)


def derived(out: Path, case: str) -> dict:
    return json.loads((out / f"{case}.json").read_text(encoding="utf-8"))


def test_single_node_pytorch_unit(rendered):
    out, cases, caps = rendered
    sp = cases["single"]["plan"]
    argv = exec_start(out, "single")
    want = trtllm_serve_command(caps["single"], sp["model_path"], "127.0.0.1", sp["backend_port"], OPTIONS,
                                serve_args=sp["args"])
    assert argv == [f"{VENV_BIN}/trtllm-serve", *want[1:]]
    assert argv[argv.index("--backend") + 1] == "pytorch" and "--ep_size" in argv
    # Loopback only, at the backend port: the head's TLS terminator (serving_tls) owns serving.port.
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == str(sp["backend_port"]) != str(sp["port"])
    u = unit(out, "single")
    assert u["User"] == ["trtllm"] and u["Group"] == ["trtllm"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("Restart", "on-failure"), ("LimitMEMLOCK", "infinity"),
                       ("ReadWritePaths", "/var/lib/llmcluster/trtllm"), ("EnvironmentFile", ENV_FILE)):
        assert u[key] == [value], key
    for key in ("After", "Wants"):
        deps = u[key][0].split()
        assert "nvidia-persistenced.service" in deps and "nvidia-fabricmanager.service" in deps, key
    d = derived(out, "single")
    assert d["health"] == "http://127.0.0.1:8001/health" and d["head"] and d["enabled"]
    assert yaml.safe_load(d["options"]) == sp["extra_llm_api_options"]
    assert d["packages"] == ["python3-venv", "libopenmpi3"]
    env = d["env"]
    assert "HF_HUB_OFFLINE=1" in env and "HOME=/var/lib/llmcluster/trtllm" in env


def test_two_node_unit_wraps_mpirun_over_both_hosts(rendered):
    out, cases, caps = rendered
    sp = cases["multi"]["plan"]
    argv = exec_start(out, "multi")
    assert argv[:6] == ["/usr/bin/mpirun", "--allow-run-as-root", "-H", "gpu-01:8,gpu-02:8", "-np", "16"]
    launch = argv.index(f"{VENV_BIN}/trtllm-llmapi-launch")
    exported = argv[6:launch]
    assert exported[::2] == ["-x"] * (len(exported) // 2) and "HF_HUB_OFFLINE" in exported[1::2]
    want = trtllm_serve_command(caps["multi"], sp["model_path"], "127.0.0.1", sp["backend_port"], OPTIONS,
                                serve_args=sp["args"])
    assert argv[launch + 1:] == [f"{VENV_BIN}/trtllm-serve", *want[1:]]
    assert argv[argv.index("--tp_size") + 1] == "16"
    assert derived(out, "multi")["packages"] == ["python3-venv", "libopenmpi3", "openmpi-bin"]
    # Rank 1 gets the install only: no unit (tasks/configure.yml writes it on the head).
    assert derived(out, "multi_rank1")["head"] is False


def test_engine_backend_in_containerd(rendered):
    out, cases, caps = rendered
    sp = cases["engine_ctr"]["plan"]
    argv = exec_start(out, "engine_ctr")
    image = "registry.internal:5000/nvidia/tensorrt-llm/release:1.0.0"
    i = argv.index(image)
    assert argv[:5] == ["/usr/bin/ctr", "-n", "k8s.io", "run", "--rm"] and "--net-host" in argv[:i]
    assert [a for a in argv[:i] if a.startswith("--gpus=")] == [f"--gpus={n}" for n in range(8)]
    mounts = [a for a in argv[:i] if a.startswith("--mount=")]
    cache = "/var/lib/llmcluster/engines/deepseek-r1-distill-qwen-7b"
    for path in (sp["model_path"], cache, "/etc/llmcluster/trtllm"):
        assert f"--mount=type=bind,src={path},dst={path},options=rbind:ro" in mounts, path
    assert argv[i + 1:i + 3] == ["trtllm-serve", "trtllm-serve"]
    want = trtllm_serve_command(caps["engine_ctr"], f"{cache}/current/engine", "127.0.0.1", sp["backend_port"], OPTIONS,
                                serve_args=sp["args"])
    assert argv[i + 2:] == [*want, "--tokenizer", sp["model_path"]]
    assert argv[argv.index("--backend") + 1] == "tensorrt" and "--ep_size" not in argv
    u = unit(out, "engine_ctr")
    assert "User" not in u and "containerd.service" in u["After"][0].split()
    assert u["NoNewPrivileges"] == ["yes"]
    d = derived(out, "engine_ctr")
    assert d["packages"] == []
    # Conversion and build run in the same image.
    assert d["convert"][:5] == ["/usr/bin/ctr", "-n", "k8s.io", "run", "--rm"] and image in d["convert"]
    assert "trtllm-build" in d["build"] and d["build"][-2:] == ["--gemm_plugin", "auto"]


def test_engine_backend_in_docker(rendered):
    out, cases, caps = rendered
    sp = cases["engine_docker"]["plan"]
    argv = exec_start(out, "engine_docker")
    image = "nvcr.io/nvidia/tensorrt-llm/release:1.0.0"
    i = argv.index(image)
    assert argv[:2] == ["/usr/bin/docker", "run"]
    for pair in (["--gpus", "all"], ["--ipc", "host"], ["--network", "host"]):
        assert any(argv[j:j + 2] == pair for j in range(i)), pair
    assert f"--volume={sp['model_path']}:{sp['model_path']}:ro" in argv[:i]
    cache = "/var/lib/llmcluster/engines/deepseek-r1-distill-qwen-7b"
    want = trtllm_serve_command(caps["engine_docker"], f"{cache}/current/engine", "127.0.0.1", sp["backend_port"],
                                OPTIONS, serve_args=sp["args"])
    assert argv[i + 1:] == [*want, "--tokenizer", sp["model_path"]]
    u = unit(out, "engine_docker")
    assert "nvidia-fabricmanager.service" not in u["After"][0] and "docker.service" in u["After"][0]
    assert any("rm --force trtllm-serve" in v for v in u["ExecStartPre"])


def test_engine_cache_key_is_the_planners(rendered):
    """The role's key JSON and digest are llmcluster.plan.nvidia.engine_key's (the verification
    suite recomputes it from nvidia-smi and the venv probe)."""
    out, cases, _ = rendered
    for case in ("single", "engine_ctr"):
        d = derived(out, case)
        want = engine_key(cases[case]["plan"], gpu_sm="9.0", trtllm_version="1.0.0", cuda_version="12.9",
                          driver_version="570.172.08")
        assert d["key_json"] == json.dumps(want.fields, sort_keys=True), case
        assert d["key"] == want.digest, case
    d = derived(out, "engine_ctr")
    assert d["entry"] == f"/var/lib/llmcluster/engines/deepseek-r1-distill-qwen-7b/{d['key']}"
    assert f"{d['entry']}.tmp/checkpoint" in d["convert"] and f"{d['entry']}.tmp/engine" in d["build"]


def test_hosts_without_serving_get_nothing(rendered):
    out, _, _ = rendered
    assert derived(out, "no_serving")["enabled"] is False


# --------------------------------------------------------------------------- the model gate


def test_unit_verifies_the_model_before_it_starts(rendered):
    """ExecStartPre runs the model store's verifier on the plan's manifest and model path, first, with a
    start timeout that lets it read the whole model; the container modes verify on the host too."""
    out, cases, _ = rendered
    for case in ("single", "multi", "engine_ctr", "engine_docker"):
        sp = cases[case]["plan"]
        u = unit(out, case)
        assert derived(out, case)["verify"] is True, case
        assert shlex.split(u["ExecStartPre"][0]) == [
            "/usr/local/libexec/llmcluster/model-verify", "verify", "--manifest",
            f"/etc/llmcluster/models/{sp['model']}.json", sp["model_path"]], case
        assert u["TimeoutStartSec"] == ["3600"], case
    assert len(unit(out, "single")["ExecStartPre"]) == 1
    # The manifest's digest is in the unit: a new manifest (model revision) changes it, which restarts
    # the server on the new model (the role's handler); the same manifest leaves the unit as it was.
    assert "ab" * 32 in derived(out, "single_new_manifest")["unit"]
    assert derived(out, "single_new_manifest")["unit"] != derived(out, "single")["unit"]
    assert unit(out, "single_new_manifest") == unit(out, "single")
    # docker mode: the verification, then the stale container's removal
    assert [v.split()[0] for v in unit(out, "engine_docker")["ExecStartPre"]] == [
        "/usr/local/libexec/llmcluster/model-verify", "-/usr/bin/docker"]


def test_unit_renders_without_a_manifest_where_none_is_required(rendered):
    out, _, _ = rendered
    # Engine-only: tensorrt_llm_require_manifest false and no manifest installed -> no verification.
    u = unit(out, "engine_only")
    assert derived(out, "engine_only")["verify"] is False
    assert not any("model-verify" in v for v in u["ExecStartPre"]) and "TimeoutStartSec" not in u
    assert any("rm --force trtllm-serve" in v for v in u["ExecStartPre"])
    # No manifest configured at all.
    u = unit(out, "no_manifest")
    assert derived(out, "no_manifest")["verify"] is False and "ExecStartPre" not in u
    assert exec_start(out, "no_manifest")[0] == f"{VENV_BIN}/trtllm-serve"


def test_exec_start_pre_refuses_each_corruption_naming_the_file(rendered):
    """The rendered ExecStartPre line, run as systemd would run it (its argv), on the model store's
    layout in this test's folder: a good tree passes, each of the six corruption classes fails naming
    the file."""
    from tests.helpers.model_tree import CORRUPTIONS, corrupt, install_verifier, make_tree, write_manifest

    out, cases, _ = rendered
    sp = cases["local_gate"]["plan"]
    (line,) = unit(out, "local_gate")["ExecStartPre"]
    argv = shlex.split(line)
    assert argv == [sp["model_verifier"], "verify", "--manifest", sp["model_manifest"], sp["model_path"]]
    install_verifier(Path(sp["model_verifier"]))
    tree = Path(sp["model_path"])
    shutil.rmtree(tree, ignore_errors=True)
    write_manifest(make_tree(tree), Path(sp["model_manifest"]))
    good = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip().splitlines()[-1].startswith("verified 5 files, ")
    for kind in CORRUPTIONS:
        shutil.rmtree(tree)
        make_tree(tree)
        name = corrupt(tree, kind)
        r = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert r.returncode == 1, f"{kind}: exit {r.returncode}: {r.stdout}{r.stderr}"
        assert any(ln.startswith(f"{name}: ") for ln in r.stderr.splitlines()), f"{kind}: {r.stderr}"
