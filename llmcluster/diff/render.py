"""Rendering a diff report: markdown (the pull-request comment), rich (the terminal), JSON.

:func:`markdown_blocks` gives the markdown as blocks: the header and the count summary first
(:func:`llmcluster.diff.comment.fit` always keeps them), then each section's blocks in a fixed
order, each block whole (a ``<details>`` section is opened and closed inside one block), so a
comment can be cut between blocks deterministically.
"""

from __future__ import annotations

import json
from typing import Any

OPS = ("create", "delete", "replace", "update")
_SIGN = {"create": "+", "delete": "-", "replace": "+-", "update": "~"}


def _v(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str, lang: str = "diff") -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{lang}\n{text}\n{fence}"


def _change_line(c: dict[str, Any]) -> str:
    if c.get("absent") == "before":
        return f"  + {c['path']}: {_v(c['after'])}"
    if c.get("absent") == "after":
        return f"  - {c['path']}: {_v(c['before'])}"
    return f"  ~ {c['path']}: {_v(c['before'])} -> {_v(c['after'])}"


def _changes_text(changes: list[dict[str, Any]]) -> str:
    lines = []
    for c in changes:
        lines.append(_change_line(c))
        if c.get("diff"):
            lines += ["    " + line for line in c["diff"].splitlines()]
    return "\n".join(lines)


def title(report: dict[str, Any]) -> str:
    layer = report.get("layer", "infra")
    what = "host configuration (ansible --check --diff)" if layer == "hosts" else "infrastructure and artifacts"
    return f"llmcluster diff: stack `{report.get('stack')}`, {what}"


def summary_block(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [f"### {title(report)}", ""]
    if report.get("layer") == "hosts":
        h = s.get("hosts", {})
        lines += [f"`{report.get('base', {}).get('label', '')}`: {h.get('hosts_total', 0)} host(s), "
                  f"{h.get('hosts_changed', 0)} would change, {h.get('tasks_changed', 0)} task(s) would change, "
                  f"{h.get('failed', 0)} failed, {h.get('unreachable', 0)} unreachable", ""]
        return "\n".join(lines)
    lines += [f"`{report['base']['label']}` -> `{report['head']['label']}`"
              + ("" if report["base"].get("exists", True) else " (stack new)")
              + ("" if report["head"].get("exists", True) else " (stack removed)"), ""]
    if not s.get("changed"):
        lines += ["**No changes.**", ""]
        return "\n".join(lines)
    r, a, f = s["resources"], s["artifacts"], s["flows"]
    lines += ["| what | count |", "|---|---:|",
              f"| resources to create / delete / replace / update | {r['create']} / {r['delete']} / "
              f"{r['replace']} / {r['update']} |",
              f"| address plan changes | {s['addresses']} |",
              f"| firewall flows opened / closed | {f['opened']} / {f['closed']} |",
              f"| capacity changes | {s['capacity']} |",
              f"| other plan changes | {s['plan']} |",
              f"| artifacts added / removed / changed | {a['added']} / {a['removed']} / {a['changed']} |",
              f"| hosts with changed hostvars | {s['hostvars']} |",
              f"| stack config keys changed | {s['config']} |", ""]
    return "\n".join(lines)


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>\n"


def markdown_blocks(report: dict[str, Any]) -> list[str]:
    """The markdown report as blocks (see the module's docstring)."""
    blocks = [summary_block(report)]
    if report.get("layer") == "hosts":
        return blocks + _host_blocks(report)
    if report["resources"]:
        per_op: dict[str, list[dict[str, Any]]] = {}
        for r in report["resources"]:
            per_op.setdefault(r["op"], []).append(r)
        for op in OPS:
            items = per_op.get(op, [])
            if not items:
                continue
            blocks.append(f"#### Resources: {op} ({len(items)})\n")
            for r in items:
                head = f"{_SIGN[op]} {r['type']} {r['urn'].rsplit('::', 1)[-1]}"
                extra = f" (replace: {', '.join(r['replace_reasons'])})" if r.get("replace_reasons") else ""
                body = _changes_text(r["changes"]) if op != "create" else f"  {len(r['changes'])} input(s)"
                blocks.append(_details(_cell(head + extra), _code(f"{r['urn']}\n{body}" if body else r["urn"])))
    if report["addresses"]:
        blocks.append(_details(f"Address plan ({len(report['addresses'])})", _code(_changes_text(report["addresses"]))))
    fw = report["firewall"]
    if fw.get("opened") or fw.get("closed"):
        lines = [f"#### Firewall: {len(fw['opened'])} flow(s) opened, {len(fw['closed'])} closed", ""]
        for kind, sign in (("opened", "+"), ("closed", "-")):
            for x in fw[kind]:
                lines.append(f"- {sign} `{x['from']}` -> `{x['to']}` {x['port']} (vlan {x['vlan']}) {kind}")
        to_zones = sorted({t for row in fw["matrix"].values() for t in row})
        lines += ["", "| from \\ to | " + " | ".join(to_zones) + " |", "|---" * (len(to_zones) + 1) + "|"]
        for f, row in fw["matrix"].items():
            lines.append(f"| **{f}** | " + " | ".join(_cell(" ".join(row.get(t, []))) or "" for t in to_zones) + " |")
        lines.append("\n(+ opened, - closed)\n")
        blocks.append("\n".join(lines))
    if report["capacity"]:
        blocks.append(_details(f"Capacity ({len(report['capacity'])})", _code(_changes_text(report["capacity"]))))
    if report["plan"]:
        blocks.append(_details(f"Plan ({len(report['plan'])})", _code(_changes_text(report["plan"]))))
    if report["artifacts"]:
        blocks.append(f"#### Rendered artifacts ({len(report['artifacts'])})\n")
        for x in report["artifacts"]:
            head = f"{x['status']} <code>{x['path']}</code> (+{x['added_lines']} -{x['removed_lines']})"
            blocks.append(_details(head, _code(x["diff"])))
    if report["hostvars"]:
        blocks.append(f"#### Inventory hostvars ({len(report['hostvars'])} host(s))\n")
        for h in report["hostvars"]:
            if not h["changes"]:
                blocks.append(f"- {h['status']} host `{h['host']}` ({h.get('keys', 0)} hostvars)\n")
                continue
            blocks.append(_details(f"{h['status']} <code>{h['host']}</code> ({len(h['changes'])})",
                                   _code(_changes_text(h["changes"]))))
    if report["config"]:
        blocks.append(_details(f"Stack config ({len(report['config'])})", _code(_changes_text(report["config"]))))
    return blocks


def _host_blocks(report: dict[str, Any]) -> list[str]:
    blocks = []
    for host in report["hosts"]["hosts"]:
        if not host["roles"] and not host.get("error"):
            continue
        lines = [f"#### `{host['host']}`: {host['changed']} change(s)"
                 + (f", failed: {host['error']}" if host.get("error") else ""), ""]
        blocks.append("\n".join(lines))
        for role in host["roles"]:
            body = []
            for t in role["tasks"]:
                body.append(f"~ {t['task']} ({t['action']})" + (f": {t['note']}" if t.get("note") else ""))
                if t.get("diff"):
                    body += ["    " + line for line in t["diff"].splitlines()]
            blocks.append(_details(f"role <code>{role['role']}</code>: {len(role['tasks'])} task(s)",
                                   _code("\n".join(body))))
    return blocks


def markdown(report: dict[str, Any]) -> str:
    return "\n".join(markdown_blocks(report))


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def print_rich(report: dict[str, Any], console) -> None:
    from rich.markup import escape
    from rich.table import Table

    s = report["summary"]
    console.print(f"[bold]{escape(title(report).replace('`', ''))}[/]")
    if report.get("layer") == "hosts":
        for host in report["hosts"]["hosts"]:
            console.print(f"[bold]{escape(host['host'])}[/]: {host['changed']} change(s)")
            for role in host["roles"]:
                for t in role["tasks"]:
                    console.print(f"  [yellow]~[/] {escape(role['role'])}: {escape(t['task'])} ({escape(t['action'])})"
                                  + (f" {escape(t['note'])}" if t.get("note") else ""))
                    for line in (t.get("diff") or "").splitlines():
                        console.print("      " + _colour(line))
        return
    if not s["changed"]:
        console.print("no changes")
        return
    t = Table(title="summary")
    t.add_column("what")
    t.add_column("count", justify="right")
    r = s["resources"]
    for k in OPS:
        t.add_row(f"resources to {k}", str(r[k]))
    t.add_row("address plan changes", str(s["addresses"]))
    t.add_row("flows opened / closed", f"{s['flows']['opened']} / {s['flows']['closed']}")
    t.add_row("capacity changes", str(s["capacity"]))
    t.add_row("other plan changes", str(s["plan"]))
    t.add_row("artifacts added / removed / changed",
              f"{s['artifacts']['added']} / {s['artifacts']['removed']} / {s['artifacts']['changed']}")
    t.add_row("hosts with changed hostvars", str(s["hostvars"]))
    t.add_row("stack config keys changed", str(s["config"]))
    console.print(t)
    for res in report["resources"]:
        colour = {"create": "green", "delete": "red", "replace": "red"}.get(res["op"], "yellow")
        name = escape(res["urn"].rsplit("::", 1)[-1])
        console.print(f"[{colour}]{_SIGN[res['op']]}[/] {escape(res['type'])} {name} {res['op']}")
        if res["op"] != "create":
            for line in _changes_text(res["changes"]).splitlines():
                console.print(escape(line))
    for title_, key in (("address plan", "addresses"), ("capacity", "capacity"), ("plan", "plan"),
                        ("stack config", "config")):
        if report[key]:
            console.print(f"[bold]{title_}[/]")
            for line in _changes_text(report[key]).splitlines():
                console.print(escape(line))
    fw = report["firewall"]
    for kind, sign in (("opened", "[green]+[/]"), ("closed", "[red]-[/]")):
        for x in fw.get(kind, []):
            console.print(f"{sign} flow {escape(x['from'])} -> {escape(x['to'])} {escape(x['port'])} "
                          f"(vlan {escape(x['vlan'])}) {kind}")
    for x in report["artifacts"]:
        console.print(f"[bold]{x['status']} {escape(x['path'])}[/] (+{x['added_lines']} -{x['removed_lines']})")
        for line in x["diff"].splitlines()[2:]:
            console.print(_colour(line))
    for h in report["hostvars"]:
        console.print(f"[bold]hostvars {escape(h['host'])}[/] ({h['status']})")
        for line in _changes_text(h["changes"]).splitlines():
            console.print(escape(line))


def _colour(line: str) -> str:
    from rich.markup import escape

    if line.startswith("+"):
        return f"[green]{escape(line)}[/]"
    if line.startswith("-"):
        return f"[red]{escape(line)}[/]"
    if line.startswith("@@"):
        return f"[cyan]{escape(line)}[/]"
    return escape(line)
