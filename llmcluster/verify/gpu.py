"""GPU node checks of the verification suite: what the plan expects, and how observations are judged.

One program (:data:`GATHER`) runs on every GPU node in one SSH round trip and prints one JSON
document: ``nvidia-smi`` (per-GPU query, ``-q`` for the fabric state, ``nvlink -s``), the
installed and held NVIDIA packages, the fabric manager / IMEX unit, ``nvidia-container-cli
info``, ``nvidia-ctk cdi list``, ``dcgmi diag -r <level> -j``, the TensorRT-LLM venv's versions,
the engine cache entry in use and the serving head's ``/health`` and ``/v1/models`` (trtllm-serve
on 127.0.0.1 at the backend port) and what its inference address answers. The judges
below are pure functions of that document; each returns a list of problems naming what was
observed and what the plan expects. The tools' output is read by the parsers of the
``llmcluster.hosts`` collection (``llmcluster/collections/``), the code the roles use as filters.

Checks (``gpu[<name>]`` in the results table):

* ``driver`` — every GPU reports the spec's driver version; the driver packages are installed at
  that version and held;
* ``inventory`` — GPU count and model (``nvidia-smi`` name) per node;
* ``persistence``, ``ecc`` — persistence mode and ECC on, on every GPU;
* ``fabric`` — NVSwitch nodes: fabric manager active, its package exactly the driver's version,
  every GPU's fabric ``Completed``/``Success``; GB200/GB300: the IMEX unit active at the
  driver's version;
* ``nvlink`` — every GPU has its NVLinks (18 on Hopper/Blackwell SXM, 12 on A100) and all are up;
* ``container`` — the container toolkit sees every GPU (``nvidia-container-cli info``) and the
  CDI spec names ``nvidia.com/gpu=0..N-1``;
* ``dcgm`` — ``dcgmi diag -r <level>`` passes: a result of every test for every GPU, none failed
  (the role's judge, ``llmcluster.hosts.dcgm_diag_report``; an empty or partial document fails);
* ``engine-cache`` — engine backend: the entry in use was built for exactly the installed
  driver, CUDA, TensorRT-LLM and GPU SM, and the plan's model/precision/parallelism;
* ``serving`` — the replica head's trtllm-serve answers ``/health`` 200 and lists the model on
  ``/v1/models`` on loopback (127.0.0.1 at ``serving.backend_port``); on the inference address the
  serving port accepts connections but answers no plain HTTP (the ``serving_tls`` terminator
  requires TLS) and the backend port accepts none;
* ``hbm-bandwidth`` — real GPUs only (skipped on the lab's simulated ones): a device-to-device
  copy reaches >= 90 % of the catalog HBM bandwidth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.dcgm import dcgm_diag_report
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.debian import (
    apt_mark_holds,
    deb_upstream_version,
    dpkg_installed,
)
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.nvidia_container import (
    nvidia_container_cli_info,
    nvidia_ctk_cdi_devices,
)
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.nvidia_smi import (
    nvidia_smi_fabric,
    nvidia_smi_nvlink,
    nvidia_smi_query,
)
from llmcluster.plan.build import Plan
from llmcluster.plan.nvidia import gpu_vars
from llmcluster.plan.serving import engine_key

#: NVLinks per GPU by architecture (SXM boards; PCIe GPUs have none).
NVLINKS_PER_GPU = {"hopper": 18, "blackwell": 18, "ampere": 12}
#: Share of the catalog HBM bandwidth a device-to-device copy must reach.
HBM_MIN_FRACTION = 0.90
#: The tensorrt_llm role's defaults (roles/tensorrt_llm/defaults/main.yml).
TRTLLM_VENV_PYTHON = "/opt/llmcluster/tensorrt-llm/venv/bin/python"

QUERY_FIELDS = ("index", "name", "uuid", "driver_version", "persistence_mode", "ecc.mode.current",
                "compute_cap", "memory.total")


@dataclass(frozen=True)
class GpuCheck:
    host: str
    name: str
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        return f"{self.host}:gpu[{self.name}]"


def gpu_checks(plan: Plan, hostvars: Mapping[str, Mapping[str, Any]]) -> list[GpuCheck]:
    """Every GPU check of every GPU host the inventory has (deterministic order)."""
    out: list[GpuCheck] = []
    spec = plan.spec
    layout = {name: s.to_dict() for name, s in plan.serving.layout.items()}
    sp = plan.serving.to_vars()
    for h in plan.ip.hosts:
        pool = spec.pools[h.pool]
        if pool.gpu is None or h.name not in hostvars:
            continue
        g = gpu_vars(spec, h.pool)
        base = {"gpu": g}
        names = ["driver", "inventory", "persistence", "ecc"]
        if g["fabric"] != "none":
            names.append("fabric")
        if NVLINKS_PER_GPU.get(g["arch"]) and g["fabric"] != "none":
            names.append("nvlink")
        names += ["container", "dcgm"]
        serving = layout.get(h.name)
        if serving is not None and sp["backend"] == "engine":
            names.append("engine-cache")
        if serving is not None and serving["node_rank"] == 0:
            names.append("serving")
        names.append("hbm-bandwidth")
        for n in names:
            out.append(GpuCheck(h.name, n, {**base, "serving_plan": sp, "serving": serving,
                                            "diag_level": spec.nvidia.dcgm_diag_level,
                                            "engine_cache_dir": spec.nvidia.trtllm.engine_cache_dir}))
    return out


def gather_args(check: GpuCheck) -> list[str]:
    """The arguments of :data:`GATHER` for the host of ``check`` (same for all checks of a host)."""
    p = check.params
    serving = p.get("serving") or {}
    sp = p["serving_plan"]
    return [json.dumps({
        "query": ",".join(QUERY_FIELDS), "diag_level": p["diag_level"],
        "cache": f"{p['engine_cache_dir'].rstrip('/')}/{sp['model']}/current/cache-key.json",
        "venv_python": TRTLLM_VENV_PYTHON,
        "fabric_service": (p["gpu"].get("packages") or {}).get("fabric_service", ""),
        # trtllm-serve, on loopback only (role tensorrt_llm); the terminator on the inference address.
        "health": (f"http://127.0.0.1:{sp['backend_port']}" if serving and serving.get("node_rank") == 0 else ""),
        "inference": ([serving["head_address"], sp["port"], sp["backend_port"]]
                      if serving and serving.get("node_rank") == 0 else []),
    })]


GATHER = r'''
import json, os, socket, subprocess, sys, urllib.request
a = json.loads(sys.argv[1])
def run(cmd, timeout=60):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"rc": 127, "out": "", "err": str(e)}
    return {"rc": p.returncode, "out": p.stdout, "err": p.stderr}
def http(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return {"status": r.status, "body": r.read(65536).decode("utf-8", "replace")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": ""}
    except Exception as e:
        return {"status": 0, "body": str(e)}
def plain(host, port):
    """A plain HTTP request: whether it connected and whether an HTTP response came back."""
    out = {"connected": False, "http": False, "response": "", "error": ""}
    data = b""
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            out["connected"] = True
            s.settimeout(5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: llmcluster-verify\r\nConnection: close\r\n\r\n")
            while len(data) < 256:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        out["error"] = str(e)
    out["response"], out["http"] = data[:64].decode("latin-1"), data.startswith(b"HTTP/")
    return out
out = {
    "simulated": os.path.exists("/etc/llmcluster-sim/hardware.json"),
    "query": run(["nvidia-smi", "--query-gpu=" + a["query"], "--format=csv,noheader,nounits"]),
    "q": run(["nvidia-smi", "-q"]),
    "nvlink": run(["nvidia-smi", "nvlink", "-s"]),
    "dpkg": run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Status}\n"]),
    "holds": run(["apt-mark", "showhold"]),
    "container": run(["nvidia-container-cli", "info"]),
    "cdi": run(["nvidia-ctk", "cdi", "list"]),
    "diag": run(["dcgmi", "diag", "-r", str(a["diag_level"]), "-j"], timeout=900),
    "venv": run([a["venv_python"], "-c",
                 "import json, tensorrt_llm, torch; print(json.dumps({'trtllm': tensorrt_llm.__version__, "
                 "'cuda': torch.version.cuda}))"]),
}
if a["fabric_service"]:
    out["fabric_unit"] = run(["systemctl", "is-active", a["fabric_service"]])
try:
    with open(a["cache"]) as f:
        out["cache_key"] = {"data": json.load(f), "path": os.path.realpath(a["cache"])}
except (OSError, ValueError) as e:
    out["cache_key"] = {"error": str(e)}
if a["health"]:
    out["health"] = http(a["health"] + "/health")
    out["models"] = http(a["health"] + "/v1/models")
if a["inference"]:
    address, port, backend = a["inference"]
    out["terminator"] = plain(address, port)
    out["backend_exposed"] = plain(address, backend)
print(json.dumps(out))
'''


# --------------------------------------------------------------------------- facts
# The tools' output is parsed by the llmcluster.hosts collection's parsers (module_utils), the
# same code the roles use as filters: this module parses nothing itself.


def _ok(facts: Mapping[str, Any], key: str, what: str) -> str:
    r = facts.get(key) or {}
    if r.get("rc") != 0:
        detail = (r.get("err") or r.get("out") or "").strip().splitlines()
        raise GpuFactsError(f"{what} failed (exit {r.get('rc')}): {(detail[-1] if detail else 'no output')[-200:]}")
    return r.get("out", "")


class GpuFactsError(Exception):
    pass


# --------------------------------------------------------------------------- judges


def judge(check: GpuCheck, facts: Mapping[str, Any]) -> list[str]:
    try:
        return _JUDGES[check.name](check, facts)
    except GpuFactsError as exc:
        return [str(exc)]


def _gpus(facts: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = nvidia_smi_query(_ok(facts, "query", "nvidia-smi --query-gpu"), QUERY_FIELDS)
    if not rows:
        raise GpuFactsError("nvidia-smi lists no GPU")
    return rows


def _driver(check: GpuCheck, facts: Mapping[str, Any]) -> list[str]:
    g = check.params["gpu"]
    want = g["driver_version"]
    problems = [f"GPU {r['index']} runs driver {r['driver_version']}, spec says {want}"
                for r in _gpus(facts) if r["driver_version"] != want]
    installed = dpkg_installed(_ok(facts, "dpkg", "dpkg-query"))
    holds = set(apt_mark_holds(_ok(facts, "holds", "apt-mark showhold")))
    for pkg in (g.get("packages") or {}).get("driver", []):
        if pkg not in installed:
            problems.append(f"package {pkg} is not installed")
            continue
        if deb_upstream_version(installed[pkg]) != want:
            problems.append(f"package {pkg} is {installed[pkg]}, spec says {want}")
        if pkg not in holds:
            problems.append(f"package {pkg} is not held (apt-mark hold): an upgrade could move it")
    return problems


def _inventory(check: GpuCheck, facts: Mapping[str, Any]) -> list[str]:
    g = check.params["gpu"]
    rows = _gpus(facts)
    problems = []
    if len(rows) != g["count"]:
        problems.append(f"{len(rows)} GPUs visible, spec says {g['count']}")
    names = sorted({r["name"] for r in rows})
    if names != [g["smi_name"]]:
        problems.append(f"GPU models {names}, spec says {g['smi_name']} ({g['model']})")
    sm = f"{g['sm'] // 10}.{g['sm'] % 10}"
    bad = sorted({r["compute_cap"] for r in rows} - {sm})
    if bad:
        problems.append(f"compute capability {bad}, {g['model']} is {sm}")
    return problems


def _flag(field_name: str, label: str):
    def judge_flag(check: GpuCheck, facts: Mapping[str, Any]) -> list[str]:
        off = [f"GPU {r['index']}: {r[field_name]}" for r in _gpus(facts) if r[field_name] != "Enabled"]
        return [f"{label} is not enabled on {len(off)} GPU(s): {', '.join(off)}"] if off else []
    return judge_flag


def _fabric(check: GpuCheck, facts: Mapping[str, Any]) -> list[str]:
    g = check.params["gpu"]
    pk = g.get("packages") or {}
    problems = []
    unit = facts.get("fabric_unit") or {}
    state = (unit.get("out") or unit.get("err") or "").strip()
    if state != "active":
        problems.append(f"{pk.get('fabric_service')} is {state or 'unknown'}, expected active")
    installed = dpkg_installed(_ok(facts, "dpkg", "dpkg-query"))
    for pkg in pk.get("fabric", []):
        if pkg not in installed:
            problems.append(f"package {pkg} is not installed")
        elif deb_upstream_version(installed[pkg]) != g["driver_version"]:
            problems.append(f"{pkg} {installed[pkg]} differs from the driver {g['driver_version']}: "
                            "CUDA fails (error 802) while the node looks healthy")
    if g["fabric"] == "nvswitch":
        states = nvidia_smi_fabric(_ok(facts, "q", "nvidia-smi -q"))
        bad = [f"GPU {i}: {s.get('State', '?')}/{s.get('Status', '?')}" for i, s in enumerate(states)
               if (s.get("State"), s.get("Status")) != ("Completed", "Success")]
        if not states:
            problems.append("nvidia-smi -q shows no GPU")
        if bad:
            problems.append(f"fabric not initialised on {len(bad)} GPU(s): {', '.join(bad)}")
    return problems


def _nvlink(check: GpuCheck, facts: Mapping[str, Any]) -> list[str]:
    g = check.params["gpu"]
    want = NVLINKS_PER_GPU[g["arch"]]
    links = nvidia_smi_nvlink(_ok(facts, "nvlink", "nvidia-smi nvlink -s"))
    problems = []
    if len(links) != g["count"]:
        problems.append(f"nvlink status for {len(links)} GPUs, expected {g['count']}")
    for gpu, ls in sorted(links.items()):
        down = [n for n, s in sorted(ls.items()) if "inactive" in s.lower() or not re.search(r"\d", s)]
        if len(ls) != want:
            problems.append(f"GPU {gpu}: {len(ls)} NVLinks, {g['arch']} has {want}")
        if down:
            problems.append(f"GPU {gpu}: NVLink(s) {down} down")
    return problems


def _container(check: GpuCheck, facts: Mapping[str, Any]) -> list[str]:
    n = check.params["gpu"]["count"]
    problems = []
    info = nvidia_container_cli_info(_ok(facts, "container", "nvidia-container-cli info"))
    seen = len(info["devices"])
    if seen != n:
        problems.append(f"nvidia-container-cli sees {seen} GPUs, expected {n}")
    cdi = set(nvidia_ctk_cdi_devices(_ok(facts, "cdi", "nvidia-ctk cdi list")))
    missing = [f"nvidia.com/gpu={i}" for i in range(n) if f"nvidia.com/gpu={i}" not in cdi]
    if missing:
        problems.append(f"CDI spec lacks {', '.join(missing)}")
    return problems


def _dcgm(check: GpuCheck, facts: Mapping[str, Any]) -> list[str]:
    """The role's judge (``llmcluster.hosts.dcgm_diag_report``): it passes only a document with a
    result of every test for every planned GPU, none failed."""
    r = facts.get("diag") or {}
    level = check.params["diag_level"]
    report = dcgm_diag_report(r.get("out") or "", gpus=check.params["gpu"]["count"])
    if report["failures"]:
        failed = [f"{f['test'] or 'category ' + (f['category'] or '?')}: "
                  f"{'; '.join(f['messages']) or 'no detail given'}" for f in report["failures"]]
        return [f"dcgmi diag -r {level} failed: {'; '.join(failed)}"]
    if not report["ok"]:
        reason = report["error"] or "; ".join(report["messages"])
        err = (r.get("err") or "").strip()[-200:]
        return [f"dcgmi diag -r {level} gave no passing result (exit {r.get('rc')}): {reason}"
                + (f"; {err}" if err else "")]
    if r.get("rc") != 0:
        return [f"dcgmi diag -r {level} exit {r.get('rc')}: {(r.get('err') or '').strip()[-200:]}"]
    return []


def _engine_cache(check: GpuCheck, facts: Mapping[str, Any]) -> list[str]:
    ck = facts.get("cache_key") or {}
    if "error" in ck:
        return [f"no engine cache entry in use: {ck['error']}"]
    # TensorRT-LLM prints a banner on import: the probe's JSON is its last line.
    lines = _ok(facts, "venv", "TensorRT-LLM venv probe").strip().splitlines()
    try:
        venv = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return [f"TensorRT-LLM venv probe printed no JSON: {lines[-1][:200]}"]
    rows = _gpus(facts)
    want = engine_key(check.params["serving_plan"], gpu_sm=rows[0]["compute_cap"], trtllm_version=venv.get("trtllm"),
                      cuda_version=venv.get("cuda"), driver_version=rows[0]["driver_version"]).fields
    have = ck["data"]
    diff = [f"{k}: entry {have.get(k)!r}, installed/planned {v!r}" for k, v in want.items() if have.get(k) != v]
    return [f"engine {ck.get('path')} was built for another stack: " + "; ".join(diff)] if diff else []


def _serving(check: GpuCheck, facts: Mapping[str, Any]) -> list[str]:
    problems = []
    h = facts.get("health") or {}
    if h.get("status") != 200:
        problems.append(f"/health answered {h.get('status')} {h.get('body', '')[:120]}, expected 200")
    m = facts.get("models") or {}
    try:
        ids = [d.get("id") for d in json.loads(m.get("body") or "{}").get("data", [])]
    except ValueError:
        ids = []
    if m.get("status") != 200 or not ids:
        problems.append(f"/v1/models answered {m.get('status')} with models {ids}")
    sp, serving = check.params["serving_plan"], check.params.get("serving") or {}
    where = f"{serving.get('head_address')}:{sp['port']}"
    t = facts.get("terminator")
    if not t or "connected" not in t:
        problems.append(f"no probe of {where} (the TLS terminator) in the gathered facts")
    elif t.get("http"):
        problems.append(f"{where} answers plain HTTP ({t.get('response', '')[:40]!r}): the gateway hop must be mTLS "
                        "(role serving_tls), trtllm-serve must listen on 127.0.0.1 only")
    elif not t.get("connected"):
        problems.append(f"nothing accepts connections on {where} ({t.get('error') or 'refused'}): the TLS terminator "
                        "(serving-tls.service, role serving_tls) is not running")
    b = facts.get("backend_exposed")
    if not b or "connected" not in b:
        problems.append(f"no probe of the backend port {sp['backend_port']} on the inference address")
    elif b.get("connected"):
        problems.append(f"the backend port {sp['backend_port']} accepts connections on the inference address "
                        f"{serving.get('head_address')}: trtllm-serve must listen on 127.0.0.1 only")
    return problems


_JUDGES = {
    "driver": _driver, "inventory": _inventory, "persistence": _flag("persistence_mode", "persistence mode"),
    "ecc": _flag("ecc.mode.current", "ECC"), "fabric": _fabric, "nvlink": _nvlink, "container": _container,
    "dcgm": _dcgm, "engine-cache": _engine_cache, "serving": _serving,
}  # hbm-bandwidth is measured, not judged from the gathered facts: HBM_PROBE and judge_hbm

#: Device-to-device copy bandwidth with PyTorch (the TensorRT-LLM venv has it on real nodes):
#: prints {"gbps": ...}; a copy reads and writes every byte, so bytes moved = 2 x size.
HBM_PROBE = r'''
import json, sys
import torch
n = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 30
a = torch.empty(n, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
torch.cuda.synchronize()
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
reps = 20
s.record()
for _ in range(reps): b.copy_(a)
e.record(); torch.cuda.synchronize()
sec = s.elapsed_time(e) / 1000.0
print(json.dumps({"gbps": 2 * n * reps / sec / 1e9, "device": torch.cuda.get_device_name(0)}))
'''


def judge_hbm(gbps: float, catalog_bytes_per_s: float) -> list[str]:
    need = HBM_MIN_FRACTION * catalog_bytes_per_s / 1e9
    if gbps < need:
        return [f"device-to-device copy {gbps:.0f} GB/s, below {HBM_MIN_FRACTION:.0%} of the catalog "
                f"{catalog_bytes_per_s / 1e9:.0f} GB/s ({need:.0f} GB/s)"]
    return []
