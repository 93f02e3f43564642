"""``llmcluster diagram``: the topology of a stack as a Graphviz picture.

Drawn from the plan document alone (what ``plan --json`` prints, so a diff can draw both
revisions): one cluster per zone holding its pools (hosts, GPUs) or its external networks, the
VLANs (id, subnet, MTU) and which pools sit on them, the switches and the pools cabled to them,
and the allowed flows as arrows from zone to zone labelled with their ports. ``dot`` (Debian
``graphviz``) lays it out; :func:`dot_source` is the text it reads.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

from llmcluster.errors import LLMClusterError

FORMATS = ("svg", "png", "dot")
_FLOW_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _q(text: Any) -> str:
    # names are validated spec names (no backslash): a backslash here is a DOT escape such as \n
    return '"' + str(text).replace('"', '\\"') + '"'


def _id(kind: str, name: str) -> str:
    return _q(f"{kind}:{name}")


def dot_source(doc: dict[str, Any]) -> str:
    """The DOT text of a plan document's topology (deterministic)."""
    from llmcluster.diff.core import flows

    plan = doc.get("plan") or {}
    stack = doc.get("stack") or plan.get("stack") or "?"
    zones = (plan.get("firewall") or {}).get("zones") or {}
    hosts = (plan.get("ip") or {}).get("hosts") or []
    vlans = (plan.get("ip") or {}).get("vlans") or {}
    cap = plan.get("capacity") or {}
    pool_hosts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for h in hosts:
        pool_hosts[h.get("pool", "?")].append(h)
    title = f"stack {stack} ({plan.get('platform', '?')})"
    lines = ["digraph llmcluster {", f"  label={_q(title)};",
             "  labelloc=t; fontname=Helvetica; compound=true; rankdir=LR; newrank=true;",
             "  node [fontname=Helvetica fontsize=10]; edge [fontname=Helvetica fontsize=9];"]
    anchor: dict[str, str] = {}
    for zname in sorted(zones):
        z = zones[zname]
        lines.append(f"  subgraph {_q('cluster_zone_' + zname)} {{")
        lines.append(f"    label={_q('zone ' + zname)}; style=rounded; color=grey50;")
        members = []
        for pool in sorted(z.get("pools") or []):
            hs = pool_hosts.get(pool, [])
            role = hs[0].get("role", "") if hs else ""
            gpu = f"\\n{cap.get('gpus_per_node', '?')} x {cap.get('gpu', '?')} per node" if role == "gpu" else ""
            label = f"pool {pool}\\n{len(hs)} host(s){gpu}"
            lines.append(f"    {_id('pool', pool)} [shape=box style=filled fillcolor=\"#e8f0fe\" label={_q(label)}];")
            members.append(_id("pool", pool))
        for cidr in sorted(z.get("cidrs") or []):
            lines.append(f"    {_id('net', zname + ':' + cidr)} [shape=note label={_q(cidr)}];")
            members.append(_id("net", zname + ":" + cidr))
        if not members:
            lines.append(f"    {_id('empty', zname)} [shape=point label=\"\"];")
            members.append(_id("empty", zname))
        anchor[zname] = members[0]
        lines.append("  }")
    for role in sorted(vlans):
        v = vlans[role]
        label = f"VLAN {v.get('id')} {role}\\n{v.get('cidr')}\\nMTU {v.get('mtu')}"
        lines.append(f"  {_id('vlan', role)} [shape=ellipse style=filled fillcolor=\"#fff4d6\" label={_q(label)}];")
    pool_vlans: dict[str, set[str]] = defaultdict(set)
    for h in hosts:
        pool_vlans[h.get("pool", "?")].update((h.get("addresses") or {}).keys())
    for pool in sorted(pool_vlans):
        for role in sorted(pool_vlans[pool]):
            lines.append(f"  {_id('pool', pool)} -> {_id('vlan', role)} [dir=none color=grey60];")
    switches = ((plan.get("switches") or {}).get("switches")) or {}
    host_pool = {h.get("name"): h.get("pool") for h in hosts}
    for sw in sorted(switches):
        ports = switches[sw].get("ports") or []
        lines.append(f"  {_id('switch', sw)} [shape=box3d label={_q(f'switch {sw}')}];")
        cabled: dict[str, int] = defaultdict(int)
        for p in ports:
            if p.get("host"):
                cabled[host_pool.get(p["host"], "?")] += 1
            elif p.get("peer"):
                lines.append(f"  {_id('switch', sw)} -> {_id('switch', str(p['peer']).split(':')[0])} "
                             "[dir=none style=bold];")
        for pool, n in sorted(cabled.items()):
            lines.append(f"  {_id('switch', sw)} -> {_id('pool', pool)} [dir=none style=dotted "
                         f"label={_q(f'{n} port(s)')}];")
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f, t, port, vlan in sorted(flows(doc)):
        grouped[(f, t)].append(f"{port} ({vlan})")
    for i, ((f, t), ports) in enumerate(sorted(grouped.items())):
        if f not in anchor or t not in anchor:
            continue
        colour = _FLOW_COLOURS[i % len(_FLOW_COLOURS)]
        label = "\\n".join(ports)
        attrs = [f"color={_q(colour)}", f"fontcolor={_q(colour)}", f"label={_q(label)}"]
        if f != t:
            attrs += [f"ltail={_q('cluster_zone_' + f)}", f"lhead={_q('cluster_zone_' + t)}"]
        lines.append(f"  {anchor[f]} -> {anchor[t]} [{' '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(doc: dict[str, Any], out: Path, *, replace: bool = False) -> Path:
    """Write the picture of ``doc`` to ``out`` (its suffix picks svg, png or dot), atomically."""
    from llmcluster.diff.files import write_atomic

    fmt = out.suffix.lstrip(".").lower()
    src = dot_source(doc)
    if fmt == "dot":
        write_atomic(out, src.encode(), replace=replace, option="-o")
        return out
    dot = shutil.which("dot")
    if dot is None:
        raise LLMClusterError("Graphviz is not installed (apt-get install graphviz): or write -o FILE.dot")
    p = subprocess.run([dot, f"-T{fmt}"], input=src.encode(), capture_output=True, timeout=120, check=False)
    if p.returncode != 0:
        raise LLMClusterError(f"dot failed: {p.stderr.decode(errors='replace').strip()[:300]}")
    write_atomic(out, p.stdout, replace=replace, option="-o")
    return out
