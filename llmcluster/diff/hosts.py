"""The host-configuration diff: ``ansible-playbook --check --diff`` events summarised per host and role.

:func:`summarise_events` reads ansible-runner's events (``runner_on_ok`` and friends, as
:func:`llmcluster.converge.run_playbook` hands them on, or the ``job_events/*.json`` of a recorded
run) and keeps, per host, per role, the tasks that would change with their diffs. It respects
what the playbook asks for: a ``no_log`` task's result is censored by Ansible and shows only as
"changed (output hidden: no_log)"; (ansible-runner's event drops even
``changed``; the recap's count of changed tasks, from ``playbook_on_stats``, still includes it); a
task with ``diff: false`` carries no diff and shows as
"changed (no diff: diff disabled)". Every diff text goes through the redactor (a template that
renders a password still never shows it).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from llmcluster.diff.redact import Redactor

MAX_TASK_DIFF_LINES = 200
PLAY = "(play tasks)"


def _diff_text(d: Mapping[str, Any], red: Redactor) -> str:
    if "prepared" in d:
        return red.text(str(d["prepared"]).rstrip("\n"))
    before, after = d.get("before", ""), d.get("after", "")
    if isinstance(before, (dict, list)) or isinstance(after, (dict, list)):
        import json

        before = json.dumps(before, indent=2, sort_keys=True, default=str) + "\n"
        after = json.dumps(after, indent=2, sort_keys=True, default=str) + "\n"
    before, after = red.text(str(before or "")), red.text(str(after or ""))
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(),
                                      str(d.get("before_header", "before")), str(d.get("after_header", "after")),
                                      lineterm="", n=2))
    return "\n".join(lines)


def task_diff(res: Mapping[str, Any], red: Redactor) -> tuple[str, str]:
    """(diff text, note) of one task's result."""
    if res.get("censored") or res.get("_ansible_no_log"):
        return "", "output hidden: no_log"
    diffs = res.get("diff")
    if isinstance(diffs, Mapping):
        diffs = [diffs]
    texts = [t for t in (_diff_text(d, red) for d in diffs or [] if isinstance(d, Mapping)) if t.strip()]
    if not texts:
        return "", "no diff: diff disabled or not supported by the module"
    lines = "\n".join(texts).splitlines()
    if len(lines) > MAX_TASK_DIFF_LINES:
        lines = [*lines[:MAX_TASK_DIFF_LINES], f"... ({len(lines) - MAX_TASK_DIFF_LINES} more lines cut)"]
    return "\n".join(lines), ""


def summarise_events(events: Iterable[Mapping[str, Any]], *, label: str = "", stack: str | None = None,
                     redactor: Redactor | None = None) -> dict[str, Any]:
    """The ``hosts`` layer report of a ``--check --diff`` run."""
    red = redactor or Redactor()
    hosts: dict[str, dict[str, Any]] = {}

    def host(name: str) -> dict[str, Any]:
        return hosts.setdefault(name, {"host": name, "changed": 0, "ok": 0, "failed": 0, "unreachable": 0,
                                       "skipped": 0, "error": "", "roles": {}})

    stats: dict[str, int] | None = None
    for ev in events:
        data = ev.get("event_data") or {}
        name = data.get("host")
        kind = ev.get("event", "")
        if kind == "playbook_on_stats":
            stats = {h: int(n) for h, n in (data.get("changed") or {}).items()}
            for h in data.get("processed") or {}:
                host(h)
            continue
        if not name or not kind.startswith("runner_on_"):
            continue
        h = host(name)
        res = data.get("res") or {}
        if kind == "runner_on_ok":
            h["ok"] += 1
            if res.get("censored"):  # no_log: Ansible hides the result, whether it changed included
                h["roles"].setdefault(data.get("role") or PLAY, []).append({
                    "task": red.text(str(data.get("task", "")).split(" : ", 1)[-1]),
                    "action": str(data.get("task_action", "")), "diff": "",
                    "note": "output hidden: no_log (whether it changes is hidden too)"})
            elif res.get("changed"):
                h["changed"] += 1
                diff, note = task_diff(res, red)
                role = data.get("role") or PLAY
                h["roles"].setdefault(role, []).append({
                    "task": red.text(str(data.get("task", "")).split(" : ", 1)[-1]),
                    "action": str(data.get("task_action", "")), "diff": diff, "note": note})
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            h["failed"] += 1
            msg = "output hidden: no_log" if res.get("censored") else str(res.get("msg", "failed"))
            h["error"] = red.text(f"{data.get('task', '')}: {msg}")[:300]
        elif kind == "runner_on_unreachable":
            h["unreachable"] += 1
            h["error"] = red.text(str(res.get("msg", "unreachable")))[:300]
        elif kind == "runner_on_skipped":
            h["skipped"] += 1
    rows = []
    for name in sorted(hosts):
        h = hosts[name]
        if stats is not None:  # the recap counts the no_log tasks that changed too
            h["changed"] = stats.get(name, 0)
        ordered = sorted(h["roles"].items(), key=lambda x: (x[0] == PLAY, x[0]))
        h["roles"] = [{"role": r, "tasks": t} for r, t in ordered]
        rows.append(h)
    summary = {"hosts_total": len(rows), "hosts_changed": sum(1 for h in rows if h["changed"]),
               "tasks_changed": sum(h["changed"] for h in rows), "failed": sum(1 for h in rows if h["failed"]),
               "unreachable": sum(1 for h in rows if h["unreachable"])}
    report: dict[str, Any] = {"version": 1, "stack": stack, "layer": "hosts",
                              "base": {"label": label, "exists": True}, "head": {"label": label, "exists": True},
                              "hosts": {"summary": summary, "hosts": rows}}
    report["summary"] = {"hosts": summary, "changed": bool(summary["tasks_changed"])}
    return red.walk(report)
