"""``pulumi preview --diff --json`` through the same renderer.

Where the Pulumi CLI and the stack's credentials exist (a CI job with them), the provider's own
plan replaces the forecast of the offline evaluation for the resources section: each step of
the preview (``create``, ``update``, ``delete``, ``replace`` and its ``create-replacement`` /
``delete-replaced`` halves) becomes a resource entry with its changed property paths (from
``detailedDiff``, else ``diffReasons``) and, for a replacement, ``replaceReasons``. The values
come from the steps' ``oldState``/``newState`` inputs; Pulumi already shows secrets as
``[secret]`` there, and the redactor runs over them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcluster.diff.core import _changes, summarise
from llmcluster.diff.redact import Redactor

_OP = {"create": "create", "update": "update", "delete": "delete", "replace": "replace",
       "create-replacement": "replace", "delete-replaced": "replace", "import": "create",
       "import-replacement": "replace"}


def _inputs(state: Any) -> dict[str, Any]:
    return dict((state or {}).get("inputs") or {}) if isinstance(state, Mapping) else {}


def resources_from_preview(doc: Mapping[str, Any], red: Redactor | None = None) -> list[dict[str, Any]]:
    red = red or Redactor()
    if not isinstance(doc, Mapping) or not isinstance(doc.get("steps", []), list):
        raise ValueError("not the output of 'pulumi preview --json' (no 'steps' list)")
    by_urn: dict[str, dict[str, Any]] = {}
    for step in doc.get("steps") or []:
        if not isinstance(step, Mapping):
            continue
        op = _OP.get(str(step.get("op")))
        urn = str(step.get("urn", ""))
        if op is None or not urn or urn.endswith("::pulumi:pulumi:Stack") or urn in by_urn:
            continue
        old, new = step.get("oldState"), step.get("newState")
        typ = (new or old or {}).get("type") or urn.split("::")[-2].rsplit("$", 1)[-1]
        changes = _changes(None if op == "create" else _inputs(old), None if op == "delete" else _inputs(new), red)
        keys = list(step.get("detailedDiff") or {}) or list(step.get("diffReasons") or [])
        if keys and op in ("update", "replace"):
            wanted = set(keys)
            changes = [c for c in changes if c["path"] in wanted or any(c["path"].startswith(k + ".")
                                                                        or c["path"].startswith(k + "[")
                                                                        for k in wanted)] or \
                [{"path": k, "before": None, "after": None} for k in keys]
        entry: dict[str, Any] = {"urn": urn, "type": typ, "op": op, "changes": changes if op != "delete" else []}
        if op == "replace":
            entry["replace_reasons"] = list(step.get("replaceReasons") or [])
        by_urn[urn] = entry
    return [by_urn[u] for u in sorted(by_urn)]


def apply_preview(report: dict[str, Any], doc: Mapping[str, Any], red: Redactor | None = None) -> dict[str, Any]:
    """``report`` with its resources section taken from a Pulumi preview."""
    red = red or Redactor()
    report = dict(report)
    report["resources"] = resources_from_preview(doc, red)
    report["resources_source"] = "pulumi preview"
    report["summary"] = summarise(report)
    return red.walk(report)
