"""The model store check of the verification suite (``model[manifest]``, one per serving host).

On each host with ``llmcluster_serving`` the model verifier (the llmcluster.hosts collection's
``model_manifest`` module, installed by role ``model_store`` at the plan's ``model_verifier``) is
installed and executable, the model's manifest is at the plan's ``model_manifest``, and
``model-verify verify --manifest <manifest> <model_path>`` passes on the host: every file of the
manifest present with its size and sha256, sound safetensors headers, no other file, no symlink. On
the replica head the trtllm-serve unit runs that same command before every start (its
``ExecStartPre``, role tensorrt_llm). The verifier's throughput line (``verified N files, B bytes in
S s (X GB/s)``) is the check's detail.

:data:`GATHER` runs on the host in one round trip and prints one JSON document; :func:`judge` is a
pure function of it.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmcluster.plan.build import Plan

#: The tensorrt_llm role's unit (roles/tensorrt_llm/vars/main.yml, _tensorrt_llm_unit_path).
TRTLLM_UNIT = "/etc/systemd/system/trtllm-serve.service"
#: How long the verification may take on a host (DeepSeek-R1 FP8: ~700 GB at NVMe speed).
VERIFY_TIMEOUT_S = 3600
_THROUGHPUT = re.compile(r"^verified \d+ files, \d+ bytes in [\d.]+ s \([\d.]+ GB/s\)$")


@dataclass(frozen=True)
class ModelCheck:
    host: str
    name: str
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        return f"{self.host}:model[{self.name}]"


def model_checks(plan: Plan, hostvars: Mapping[str, Mapping[str, Any]]) -> list[ModelCheck]:
    """``model[manifest]`` on every serving host the inventory has (replica order)."""
    sp = plan.serving.to_vars()
    out = []
    for name, serving in plan.serving.layout.items():
        if name not in hostvars:
            continue
        out.append(ModelCheck(name, "manifest", {
            "verifier": sp["model_verifier"], "manifest": sp["model_manifest"], "model_path": sp["model_path"],
            "head": serving.is_head, "unit": TRTLLM_UNIT}))
    return out


def gather_args(check: ModelCheck) -> list[str]:
    p = check.params
    return [json.dumps({"verifier": p["verifier"], "manifest": p["manifest"], "model_path": p["model_path"],
                        "unit": p["unit"] if p["head"] else "", "timeout": VERIFY_TIMEOUT_S})]


GATHER = r'''
import json, os, subprocess, sys
a = json.loads(sys.argv[1])
out = {"verifier": {"exists": os.path.isfile(a["verifier"]), "executable": os.access(a["verifier"], os.X_OK)},
       "manifest": {"exists": os.path.isfile(a["manifest"])}}
if out["verifier"]["executable"] and out["manifest"]["exists"]:
    try:
        p = subprocess.run([a["verifier"], "verify", "--manifest", a["manifest"], a["model_path"]],
                           capture_output=True, text=True, timeout=a["timeout"])
        out["verify"] = {"rc": p.returncode, "out": p.stdout[-4000:], "err": p.stderr[-8000:]}
    except (OSError, subprocess.TimeoutExpired) as e:
        out["verify"] = {"rc": 127, "out": "", "err": str(e)}
if a["unit"]:
    try:
        with open(a["unit"]) as f:
            out["unit"] = {"text": f.read()}
    except OSError as e:
        out["unit"] = {"error": str(e)}
print(json.dumps(out))
'''


def exec_start_pre(unit_text: str) -> list[list[str]]:
    """The unit's ExecStartPre commands as argv lists (systemd's prefixes ``-@:+!`` dropped)."""
    out = []
    for line in unit_text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ExecStartPre":
            argv = shlex.split(value.strip())
            if argv:
                argv[0] = argv[0].lstrip("-@:+!")
            out.append(argv)
    return out


def throughput(facts: Mapping[str, Any]) -> str:
    """The verifier's ``verified N files, B bytes in S s (X GB/s)`` line, or ""."""
    lines = ((facts.get("verify") or {}).get("out") or "").strip().splitlines()
    return lines[-1] if lines and _THROUGHPUT.match(lines[-1]) else ""


def judge(check: ModelCheck, facts: Mapping[str, Any]) -> list[str]:
    p = check.params
    problems = []
    v = facts.get("verifier") or {}
    if not v.get("executable"):
        problems.append(f"the model verifier {p['verifier']} is {'not executable' if v.get('exists') else 'missing'} "
                        "(role model_store)")
    if not (facts.get("manifest") or {}).get("exists"):
        problems.append(f"the manifest {p['manifest']} is missing (role model_store)")
    r = facts.get("verify")
    if r is not None and r.get("rc") != 0:
        lines = [ln for ln in (r.get("err") or "").splitlines() if ln.strip()]
        shown = "; ".join(lines[:10]) + (f"; ... ({len(lines)} problems)" if len(lines) > 10 else "")
        problems.append(f"{p['model_path']} does not match its manifest (exit {r.get('rc')}): {shown or 'no output'}")
    elif r is not None and not throughput(facts):
        out = (r.get("out") or "")[-200:]
        problems.append(f"the verifier passed but printed no 'verified N files, ...' line: {out!r}")
    if p["head"]:
        u = facts.get("unit") or {}
        want = [p["verifier"], "verify", "--manifest", p["manifest"], p["model_path"]]
        if "text" not in u:
            problems.append(f"no trtllm-serve unit at {p['unit']}: {u.get('error', 'not gathered')}")
        elif want not in exec_start_pre(u["text"]):
            problems.append(f"{p['unit']} does not verify the model before it starts: "
                            f"no ExecStartPre={shlex.join(want)}")
    return problems
