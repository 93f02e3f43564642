"""DCGM's ``dcgmi`` output (pure functions, standard library only).

* :func:`dcgm_diag_report`: the judge of ``dcgmi diag -r N -j``. It passes only a document that
  shows every test run with a result for every GPU and none failed: an empty document (``{}``,
  ``[]``), one without test results, a test without results, a GPU missing from a test's results
  fail it. A check that passes on nothing is no check.
* :func:`dcgm_health_systems`, :func:`dcgm_health_overall`: ``dcgmi health -f`` / ``-c``.
* :func:`dcgmi_gpu_count`: the GPU count of ``dcgmi discovery -l``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._text import text as _text

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


def _gpu_ids(result: dict) -> list[str] | None:
    """The GPUs a result is for (DCGM 4: ``entity_group``/``entity_id``; DCGM 3: ``gpu_id`` or
    ``gpu_ids`` "0,1,2"); ``None`` when it names no entity (a result for the whole system), ``[]``
    when it is for another kind of entity (an NVSwitch, a CPU)."""
    group = str(result.get("entity_group") or "GPU")
    for key in ("entity_id", "gpu_id", "gpu_ids"):
        if key in result:
            if group.upper() != "GPU":
                return []
            value = result[key]
            items = value if isinstance(value, list) else str(value).split(",")
            return [str(i).strip() for i in items if str(i).strip()]
    return None


def _entity(result: dict) -> str:
    group = result.get("entity_group") or "GPU"
    for key in ("entity_id", "gpu_id", "gpu_ids"):
        if key in result:
            return f"{group} {result[key]}"
    return ""


def _document(document: Any) -> tuple[Any, str]:
    """(the parsed document, error): JSON text (after any banner line), its lines (a list of
    strings: ``stdout_lines``) or an already parsed document."""
    if isinstance(document, dict) or (isinstance(document, list) and not all(isinstance(x, str) for x in document)):
        return document, ""
    raw = _text(document).strip()
    start = raw.find("{")
    try:
        return json.loads(raw[start:] if start >= 0 else raw), ""
    except ValueError as e:
        return None, f"dcgmi diag did not print JSON ({e}): {raw[:300]!r}"


def dcgm_diag_report(document: Any, gpus: Any = 0) -> dict[str, Any]:
    """Judge a ``dcgmi diag -j`` document (its text, ``stdout_lines``, or the parsed document):
    ``{ok, tests, failures, messages, error}``.

    ``ok`` only when the document has test results, every test has a result (for every GPU of
    the run) and none failed, and DCGM reported no error. The GPUs of the run: ``0 .. gpus-1``
    when ``gpus`` (the count the plan expects) is given, and every GPU any result names. A result
    that names no entity counts for every GPU (DCGM 3's system-wide results). Each failure names
    the test, its category, the entities and DCGM's messages (warnings, errors, info); a test or
    GPU without result is a failure too."""
    report: dict[str, Any] = {"ok": False, "tests": 0, "failures": [], "messages": [], "error": ""}
    doc, error = _document(document)
    if error:
        report["error"] = error
        return report
    categories = _find_categories(doc)
    if not categories:
        detail = []
        if isinstance(doc, dict):
            detail = _texts(doc.get("runtime_error") or doc.get("error") or doc.get("errors"))
        report["error"] = "dcgmi diag reported no test results" + (f": {'; '.join(detail)}" if detail else "")
        return report

    tests: list[tuple[str, dict]] = []
    for category in categories:
        if not isinstance(category, dict):
            report["error"] = f"dcgmi diag printed a test category that is not an object: {category!r:.120}"
            return report
        cname = str(category.get("category", ""))
        entries = category.get("tests")
        if not isinstance(entries, list) or not entries:
            report["failures"].append({"test": "", "category": cname, "entities": [],
                                       "messages": ["the category lists no test"]})
            report["messages"].append(f"category {cname or '?'} lists no test")
            continue
        for test in entries:
            if not isinstance(test, dict):
                report["failures"].append({"test": "?", "category": cname, "entities": [],
                                           "messages": [f"not a test: {test!r:.120}"]})
                report["messages"].append(f"category {cname or '?'} lists something that is not a test: {test!r:.120}")
                continue
            tests.append((cname, test))

    expected: set[str] = {str(i) for i in range(int(gpus or 0))}
    for _, test in tests:
        raw = test.get("results")
        for r in raw if isinstance(raw, list) else [raw]:
            if isinstance(r, dict):
                expected.update(_gpu_ids(r) or [])

    for cname, test in tests:
        report["tests"] += 1
        name = str(test.get("name") or "?")
        raw = test.get("results")
        results = [r for r in (raw if isinstance(raw, list) else [raw]) if isinstance(r, dict)]
        failing = [r for r in results if str(r.get("status", "")).lower() in FAILING]
        summary = test.get("test_summary") if isinstance(test.get("test_summary"), dict) else {}
        if failing or str(summary.get("status", "")).lower() in FAILING:
            messages: list[str] = []
            for r in failing or results:
                for key in ("warnings", "errors", "error", "info"):
                    for t in _texts(r.get(key)):
                        if t not in messages:
                            messages.append(t)
            for key in ("errors", "warnings"):
                for t in _texts(summary.get(key)):
                    if t not in messages:
                        messages.append(t)
            entities = [e for e in (_entity(r) for r in failing) if e]
            report["failures"].append({"test": name, "category": cname, "entities": entities, "messages": messages})
            where = f" on {', '.join(entities)}" if entities else ""
            report["messages"].append(f"{name} ({cname}) failed{where}: {'; '.join(messages) or 'no detail given'}")
            continue
        if not results:
            report["failures"].append({"test": name, "category": cname, "entities": [],
                                       "messages": ["no result"]})
            report["messages"].append(f"{name} ({cname}) has no result: DCGM did not run it or did not report it")
            continue
        ids = [_gpu_ids(r) for r in results]
        if any(i is None for i in ids) or not any(ids):
            continue  # a result for the whole system, or a test of other entities (NVSwitches)
        missing = sorted(expected - {g for i in ids for g in i}, key=lambda g: (len(g), g))
        if missing:
            entities = [f"GPU {g}" for g in missing]
            report["failures"].append({"test": name, "category": cname, "entities": entities,
                                       "messages": [f"no result for {', '.join(entities)}"]})
            report["messages"].append(f"{name} ({cname}) has no result for {', '.join(entities)}")

    errors = _texts(doc.get("errors")) if isinstance(doc, dict) else []
    if errors:
        report["messages"].append(f"dcgmi diag errors: {'; '.join(errors)}")
    if report["tests"] == 0:
        report["error"] = "dcgmi diag ran no test"
    report["ok"] = report["tests"] > 0 and not report["failures"] and not errors and not report["error"]
    return report


def dcgm_health_systems(output: Any) -> dict[str, str]:
    """``dcgmi health -f``: the watched systems, ``{system: "On"|"Off"}`` (table rows ``| PCIe | On |``)."""
    out: dict[str, str] = {}
    for line in _text(output).splitlines():
        m = re.match(r"^\|\s*([^|]*?)\s*\|\s*(On|Off|Enabled|Disabled)\s*\|?\s*$", line.strip(), re.I)
        if m and m.group(1):
            out[m.group(1)] = "On" if m.group(2).lower() in ("on", "enabled") else "Off"
    return out


def dcgm_health_overall(output: Any) -> str:
    """``dcgmi health -c``: the overall health (``Healthy``, ``Warning``, ``Failure``; "" when the
    output says nothing)."""
    m = re.search(r"Overall Health\s*\|?\s*:?\s*([A-Za-z]+)", _text(output))
    return m.group(1).capitalize() if m else ""


def dcgmi_gpu_count(output: Any) -> int:
    """``dcgmi discovery -l``: the GPU count of "8 GPUs found." (-1 when it says none)."""
    m = re.search(r"^\s*(\d+)\s+GPUs?\s+found", _text(output), re.M)
    return int(m.group(1)) if m else -1
