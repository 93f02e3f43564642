"""Filters of the dcgm role (pure functions, unit-tested offline).

* ``dcgm_diag_report``: the judge of ``dcgmi diag -r N -j``: ``{ok, tests, failures, messages, error}``.
* ``dcgm_health_systems``: ``dcgmi health -f`` as ``{system: "On"|"Off"}``.
* ``dcgm_health_overall``: the overall health ``dcgmi health -c`` reports (``Healthy``, ``Warning``,
  ``Failure``; "" when the output says nothing).
* ``dcgmi_gpu_count``: the GPU count of ``dcgmi discovery -l`` ("8 GPUs found.").
* ``dcgm_apt_madison``, ``dcgm_apt_pick_version``, ``dcgm_dpkg_installed``: as in the nvidia_container_toolkit role.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Test statuses that fail the gate (DCGM 3 and 4 spell them differently).
FAILING = {"fail", "failed", "failure", "error"}


def _find_categories(doc: Any) -> list | None:
    if isinstance(doc, dict):
        if isinstance(doc.get("test_categories"), list):
            return doc["test_categories"]
        for value in doc.values():
            found = _find_categories(value)
            if found is not None:
                return found
    return None


def _texts(value: Any) -> list[str]:
    """Messages from DCGM's warnings/errors/info fields (strings, dicts or lists of them)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, dict):
        for key in ("warning", "message", "msg", "error", "info"):
            if value.get(key):
                return _texts(value[key])
        return [json.dumps(value, sort_keys=True)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return [str(value)]


def _entity(result: dict) -> str:
    group = result.get("entity_group") or "GPU"
    for key in ("entity_id", "gpu_id", "gpu_ids"):
        if key in result:
            return f"{group} {result[key]}"
    return ""


def dcgm_diag_report(document: Any) -> dict[str, Any]:
    """Judge a ``dcgmi diag -j`` document (text or parsed). ``ok`` only when results exist and no
    test failed; each failure names the test, its category, the failing entities and DCGM's
    messages (warnings, errors, info)."""
    report: dict[str, Any] = {"ok": False, "tests": 0, "failures": [], "messages": [], "error": ""}
    if isinstance(document, str):
        text = document.strip()
        start = text.find("{")
        try:
            doc = json.loads(text[start:] if start >= 0 else text)
        except ValueError as e:
            report["error"] = f"dcgmi diag did not print JSON ({e}): {text[:300]!r}"
            return report
    else:
        doc = document
    categories = _find_categories(doc)
    if not categories:
        detail = _texts(doc.get("runtime_error") or doc.get("error") or doc.get("errors")) if isinstance(doc, dict) else []
        report["error"] = "dcgmi diag reported no test results" + (f": {'; '.join(detail)}" if detail else "")
        return report
    for category in categories:
        cname = category.get("category", "") if isinstance(category, dict) else ""
        for test in (category.get("tests") or []) if isinstance(category, dict) else []:
            if not isinstance(test, dict):
                continue
            report["tests"] += 1
            results = test.get("results") or []
            results = [r for r in (results if isinstance(results, list) else [results]) if isinstance(r, dict)]
            failing = [r for r in results if str(r.get("status", "")).lower() in FAILING]
            summary = str((test.get("test_summary") or {}).get("status", "")).lower()
            if not failing and summary not in FAILING:
                continue
            messages: list[str] = []
            for r in failing or results:
                for key in ("warnings", "errors", "error", "info"):
                    for t in _texts(r.get(key)):
                        if t not in messages:
                            messages.append(t)
            for key in ("errors", "warnings"):
                for t in _texts((test.get("test_summary") or {}).get(key)):
                    if t not in messages:
                        messages.append(t)
            entities = [e for e in (_entity(r) for r in failing) if e]
            name = test.get("name", "?")
            report["failures"].append({"test": name, "category": cname, "entities": entities, "messages": messages})
            where = f" on {', '.join(entities)}" if entities else ""
            report["messages"].append(f"{name} ({cname}) failed{where}: {'; '.join(messages) or 'no detail given'}")
    errors = _texts(doc.get("errors")) if isinstance(doc, dict) else []
    if errors:
        report["messages"].append(f"dcgmi diag errors: {'; '.join(errors)}")
    if report["tests"] == 0:
        report["error"] = "dcgmi diag ran no test"
    report["ok"] = report["tests"] > 0 and not report["failures"] and not errors
    return report


def dcgm_health_systems(stdout: str) -> dict[str, str]:
    """``dcgmi health -f``: the table rows ``| PCIe | On |``."""
    out: dict[str, str] = {}
    for line in str(stdout).splitlines():
        m = re.match(r"^\|\s*([^|]*?)\s*\|\s*(On|Off|Enabled|Disabled)\s*\|?\s*$", line.strip(), re.I)
        if m and m.group(1):
            out[m.group(1)] = "On" if m.group(2).lower() in ("on", "enabled") else "Off"
    return out


def dcgm_health_overall(stdout: str) -> str:
    m = re.search(r"Overall Health\s*\|?\s*:?\s*([A-Za-z]+)", str(stdout))
    return m.group(1).capitalize() if m else ""


def dcgmi_gpu_count(stdout: str) -> int:
    m = re.search(r"^\s*(\d+)\s+GPUs?\s+found", str(stdout), re.M)
    return int(m.group(1)) if m else -1


# --------------------------------------------------------------------------- apt / dpkg


def apt_madison(stdout: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in str(stdout).splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[0] and parts[1]:
            versions = out.setdefault(parts[0], [])
            if parts[1] not in versions:
                versions.append(parts[1])
    return out


def apt_pick_version(versions: list[str], upstream: str, epoch: str | None = None) -> str:
    """The first version (madison lists the preferred first) ``[epoch:]upstream-revision``.
    ``epoch`` None accepts any epoch (or none); "" requires none; "1" requires ``1:``."""
    up = re.escape(str(upstream))
    if epoch is None:
        pattern = rf"^(\d+:)?{up}-[^-\s]+$"
    elif str(epoch) == "":
        pattern = rf"^{up}-[^-\s]+$"
    else:
        pattern = rf"^{re.escape(str(epoch))}:{up}-[^-\s]+$"
    for v in versions or []:
        if re.match(pattern, v):
            return v
    return ""


def dpkg_installed(stdout: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in str(stdout).splitlines():
        parts = line.split()
        if len(parts) >= 3 and len(parts[0]) >= 2 and parts[0][1] == "i":
            out[parts[1].split(":")[0]] = parts[2]
    return out


class FilterModule:
    def filters(self):
        return {
            "dcgm_diag_report": dcgm_diag_report,
            "dcgm_health_systems": dcgm_health_systems,
            "dcgm_health_overall": dcgm_health_overall,
            "dcgmi_gpu_count": dcgmi_gpu_count,
            "dcgm_apt_madison": apt_madison,
            "dcgm_apt_pick_version": apt_pick_version,
            "dcgm_dpkg_installed": dpkg_installed,
        }
