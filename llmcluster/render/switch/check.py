"""Checkers of rendered switch configurations: the OS's real parse, then shared semantic checks.

Parsing belongs to each switch OS (``Nos.parse`` in :mod:`llmcluster.nos`: NVUE YAML structure,
the SONiC config_db JSON schema, EOS through hier_config); every parser returns the same
:class:`~llmcluster.nos.base.ConfigView`, so the checks here know no OS.

:func:`semantic_problems` compares the view with the switch plan, identically for every OS:
every planned port exists and carries exactly its planned VLANs (access with one untagged VLAN,
trunk with every VLAN tagged), no other port carries a VLAN, fabric ports run the fabric MTU,
bond members sit in their bond, trust DSCP and the DSCP map match the QoS plan, PFC is on the
plan's lossless priorities only (RoCE, 3), ECN on the plan's ECN queues, CNP strict, SVIs
carry the gateways, and the ACL is bound inbound where the plan says and permits nothing the
firewall plan does not (each entry parsed back into source, destination, protocol and ports
and tested against the hosts' rules and the egress flows), with every planned flow present and a final deny.
Messages name the switch, the interface and the VLAN or entry.
"""

from __future__ import annotations

import netaddr

from llmcluster.nos import get as get_nos
from llmcluster.nos.base import ANY, AclRule, ConfigParseError, ConfigView
from llmcluster.plan.firewall import FirewallPlan, format_range
from llmcluster.plan.switches import ICMP_ESSENTIALS, PEER_VLAN, Switch


# --------------------------------------------------------------------------- ACL against the policy


class _Policy:
    """The firewall plan indexed by destination address."""

    def __init__(self, fw: FirewallPlan):
        self.fw = fw
        self.owners: dict[str, list] = {}
        for h in fw.hosts:
            for vlan in h.addresses:
                for a in h.local_addresses(vlan):
                    self.owners.setdefault(a, []).append(h)

    def admitted(self, addr: str, proto: str, lo: int | None, hi: int | None) -> netaddr.IPSet:
        out = netaddr.IPSet()
        for h in self.owners.get(addr, []):
            for r in h.rules:
                if r.proto == proto and addr in r.destinations and r.covers(lo, hi):
                    out |= netaddr.IPSet(r.sources)
        return out

    def uncovered(self, src: str, dst: str, proto: str, lo: int | None, hi: int | None) -> str | None:
        """Why ``src -> dst proto lo-hi`` is wider than the policy, or None when every packet is allowed."""
        if any(e.admits(src, dst, proto, lo, hi) for e in self.fw.egress):
            return None  # an egress flow: cluster hosts to an external network
        dnet = netaddr.IPNetwork(dst)
        if dnet.size > 4096:
            return f"destination {dst} is wider than any host rule"
        snet = netaddr.IPSet([src])
        for ip in dnet:
            a = str(ip)
            if a not in self.owners:
                return f"{a} is no host address of the plan"
            admitted = self.admitted(a, proto, lo, hi)
            if not snet.issubset(admitted):
                what = f"{proto}" + (f"/{format_range(lo, hi or lo)}" if lo is not None else "")
                allowed = ", ".join(str(c) for c in admitted.iter_cidrs()) or "nobody"
                return f"the policy admits {what} to {a} only from {allowed}"
        return None


def acl_problems(rules: list[AclRule], fw: FirewallPlan, fabric_cidrs: tuple[str, ...]) -> list[str]:
    """Every way ``rules`` is wider than the firewall plan, or misses one of its flows."""
    policy = _Policy(fw)
    fabric = netaddr.IPSet(fabric_cidrs)
    essentials = {(t, c) for t, c, _ in ICMP_ESSENTIALS}
    out: list[str] = []
    if not rules:
        return ["the ACL is empty"]
    last = rules[-1]
    if not (last.action == "deny" and last.proto == "ip" and last.src == ANY and last.dst == ANY):
        out.append(f"the last entry ({last.text()}) is not 'deny ip any any'")
    for r in rules[:-1]:
        if r.action == "deny":
            out.append(f"entry {r.text()}: a deny before the end would shadow planned flows")
    permits = [r for r in rules if r.action == "permit"]
    for r in permits:
        why = None
        if r.proto == "icmp" and r.icmp_type is not None:
            if (r.icmp_type, r.icmp_code) not in essentials:
                why = f"ICMP type {r.icmp_type}/{r.icmp_code} is not one the host firewalls accept"
            elif not netaddr.IPSet([r.dst]).issubset(fabric):
                why = f"ICMP towards {r.dst}, beyond the fabric's VLAN subnets"
        elif r.proto == "icmp":
            why = policy.uncovered(r.src, r.dst, "icmp", None, None)
        elif r.proto in ("tcp", "udp"):
            if r.dport and not r.sport and not r.established:
                why = policy.uncovered(r.src, r.dst, r.proto, *r.dport)
            elif r.sport and not r.dport:
                if r.proto == "tcp" and not r.established:
                    why = "a TCP return entry without 'established' admits new connections"
                else:
                    why = policy.uncovered(r.dst, r.src, r.proto, *r.sport)
                    why = why and f"not the return of a planned flow: {why}"
            else:
                why = "a TCP/UDP entry must match exactly one of source or destination ports"
        else:
            why = f"permits all of protocol {r.proto}"
        if why:
            out.append(f"entry {r.text()} is wider than the policy: {why}")
    # Completeness: every rule of every host (and its return traffic) is permitted.
    nets = {r: (netaddr.IPNetwork(r.src), netaddr.IPNetwork(r.dst)) for r in permits}
    for h in fw.hosts:
        for fr in h.rules:
            ranges = fr.ports if fr.proto != "icmp" else ((None, None),)
            need = netaddr.IPSet(fr.sources)
            for d in fr.destinations:
                for lo, hi in ranges:
                    got = netaddr.IPSet()
                    back = netaddr.IPSet()
                    for r in permits:
                        if r.proto != fr.proto or r.icmp_type is not None:
                            continue
                        if fr.proto == "icmp" or (r.dport and r.dport[0] <= lo and hi <= r.dport[1]):
                            if d in nets[r][1] and not r.sport:
                                got.add(nets[r][0])
                        if fr.proto != "icmp" and r.sport and r.sport[0] <= lo and hi <= r.sport[1] \
                                and d in nets[r][0]:
                            back.add(nets[r][1])
                    what = f"{fr.proto}" + (f"/{format_range(lo, hi)}" if lo is not None else "")
                    if not need.issubset(got):
                        out.append(f"flow {', '.join(fr.flows)}: {what} to {d} from "
                                   f"{', '.join(str(c) for c in (need - got).iter_cidrs())} is not permitted")
                    elif fr.proto != "icmp" and not need.issubset(back):
                        out.append(f"flow {', '.join(fr.flows)}: return traffic of {what} from {d} is not permitted")
    # ... and every egress flow (and its return traffic).
    for e in fw.egress:
        for lo, hi in (e.ports if e.proto != "icmp" else ((None, None),)):
            what = f"{e.proto}" + (f"/{format_range(lo, hi)}" if lo is not None else "")
            for src in e.sources:
                for dst in e.destinations:
                    s_net, d_net = netaddr.IPNetwork(src), netaddr.IPNetwork(dst)
                    out_ok = any(r.proto == e.proto and r.icmp_type is None and not r.sport
                                 and (e.proto == "icmp" or (r.dport and r.dport[0] <= lo and hi <= r.dport[1]))
                                 and s_net in nets[r][0] and d_net in nets[r][1] for r in permits)
                    back_ok = e.proto == "icmp" or any(
                        r.proto == e.proto and r.sport and r.sport[0] <= lo and hi <= r.sport[1]
                        and d_net in nets[r][0] and s_net in nets[r][1] for r in permits)
                    if not out_ok:
                        out.append(f"egress flow {', '.join(e.flows)}: {what} from {src} to {dst} is not permitted")
                    elif not back_ok:
                        out.append(f"egress flow {', '.join(e.flows)}: return traffic of {what} from {dst} to {src} "
                                   "is not permitted")
    return out


# --------------------------------------------------------------------------- semantic checks


def semantic_problems(sw: Switch, view: ConfigView, fw: FirewallPlan) -> list[str]:
    """Differences between a parsed configuration and the plan of switch ``sw`` (empty: it conforms)."""
    switch_os = get_nos(view.nos)
    port_name, bond_name = switch_os.port_name, switch_os.bond_name
    out: list[str] = []
    name = sw.name

    def err(msg: str) -> None:
        out.append(f"{name} {msg}")

    if view.hostname != name:
        err(f"hostname is {view.hostname!r}")
    planned_vlans = {v.id for v in sw.vlans}
    missing = planned_vlans - view.vlans
    if missing:
        err(f"VLAN {', '.join(map(str, sorted(missing)))} not declared")
    extra = view.vlans - planned_vlans - ({PEER_VLAN} if sw.mlag else set())
    if extra:
        err(f"VLAN {', '.join(map(str, sorted(extra)))} declared but not in the plan")
    roles = {v.id: v.role for v in sw.vlans}

    def vname(v: int) -> str:
        return f"{v} ({roles[v]})" if v in roles else str(v)

    planned: dict[str, tuple[tuple[int, ...], str]] = {}
    for p in sw.ports:
        if p.bond is None:
            planned[port_name(p.number)] = (p.vlans, p.kind)
    for b in sw.bonds:
        planned[bond_name(b)] = (b.vlans, b.kind)
    for ifname, (vids, kind) in planned.items():
        pv = view.ports.get(ifname)
        if pv is None:
            err(f"{ifname}: missing (planned VLANs {', '.join(map(str, vids))})")
            continue
        want = set(vids)
        got = set(pv.vlans)
        if kind == "peerlink":  # the MLAG peer VLAN rides the peer link as the OS wants it
            want.discard(PEER_VLAN)
            got.discard(PEER_VLAN)
        for v in sorted(want - got):
            err(f"{ifname}: VLAN {vname(v)} missing (planned {_ids(want)}, configured {_ids(got)})")
        for v in sorted(got - want):
            err(f"{ifname}: VLAN {vname(v)} is not planned on this port (planned {_ids(want)})")
        if len(want) == 1 and pv.untagged != want:
            err(f"{ifname}: access port must carry VLAN {vname(next(iter(want)))} untagged")
        if len(want) > 1 and pv.untagged:
            err(f"{ifname}: trunk carries VLAN {_ids(pv.untagged)} untagged; every VLAN must be tagged")
    for ifname, pv in view.ports.items():
        if ifname not in planned and pv.vlans and pv.bond is None:
            err(f"{ifname}: carries VLAN {_ids(pv.vlans)} but is not a planned port")
    # Bond membership.
    for p in sw.ports:
        ifname = port_name(p.number)
        pv = view.ports.get(ifname)
        if pv is None:
            if p.bond is not None:
                err(f"{ifname}: missing (member of {bond_name(sw.bond(p.bond))})")
            continue
        want_bond = bond_name(sw.bond(p.bond)) if p.bond is not None else None
        if pv.bond != want_bond:
            err(f"{ifname}: member of {pv.bond or 'no bond'}, planned {want_bond or 'no bond'}")
    # MTU on every fabric port and bond.
    for ifname in sorted(set(planned) | {port_name(p.number) for p in sw.ports}):
        pv = view.ports.get(ifname)
        if pv is not None and pv.mtu != sw.fabric_mtu:
            err(f"{ifname}: MTU {pv.mtu}, the fabric runs {sw.fabric_mtu}")
    # QoS.
    q = sw.qos
    phys = [view.ports[port_name(p.number)] for p in sw.ports if port_name(p.number) in view.ports]
    if switch_os.qos_global:  # DSCP trust and PFC are switch-wide settings
        if not view.trust_dscp:
            err("qos: DSCP is not trusted (mapping trust l3)")
        if view.pfc != set(q.pfc_priorities):
            err(f"qos: PFC on priority {_ids(view.pfc or set())}, planned only {_ids(set(q.pfc_priorities))}")
    else:
        for pv in phys:
            if not pv.trust_dscp:
                err(f"{pv.name}: DSCP is not trusted")
            if pv.pfc != set(q.pfc_priorities):
                err(f"{pv.name}: PFC on priority {_ids(pv.pfc or set())}, planned only {_ids(set(q.pfc_priorities))}")
    want_map = dict(q.dscp_to_priority)
    for d, p in sorted(want_map.items()):
        if view.dscp_map.get(d) != p:
            err(f"qos: DSCP {d} -> priority {view.dscp_map.get(d)}, planned {p}")
    for p, qu in q.priority_to_queue:
        if view.priority_to_queue.get(p, p) != qu:
            err(f"qos: priority {p} -> queue {view.priority_to_queue.get(p)}, planned {qu}")
    for sq in q.queues:
        if sq.strict and sq.queue not in view.strict:
            err(f"qos: queue {sq.queue} ({', '.join(sq.classes)}) is not strict priority")
        if not sq.strict and view.weights.get(sq.queue) != sq.weight:
            err(f"qos: queue {sq.queue} ({', '.join(sq.classes)}) weight {view.weights.get(sq.queue)}, "
                f"planned {sq.weight}")
        if sq.ecn and view.ecn.get(sq.queue) != (sq.ecn_min_bytes, sq.ecn_max_bytes):
            err(f"qos: queue {sq.queue} ({', '.join(sq.classes)}) ECN {view.ecn.get(sq.queue)}, planned "
                f"{(sq.ecn_min_bytes, sq.ecn_max_bytes)}")
    for qn in sorted(set(view.ecn) - {sq.queue for sq in q.queues if sq.ecn}):
        err(f"qos: ECN on queue {qn}, which the plan keeps without")
    # SVIs.
    planned_svis = {s.vlan: s for s in sw.svis}
    for vid, s in planned_svis.items():
        addrs = view.svis.get(vid)
        if addrs is None:
            err(f"Vlan{vid}: SVI missing (gateway {s.gateway})")
        elif s.gateway not in addrs:
            err(f"Vlan{vid}: gateway {s.gateway} missing (configured {', '.join(sorted(addrs))})")
    for vid in sorted(set(view.svis) - set(planned_svis) - ({PEER_VLAN} if sw.mlag else set())):
        err(f"Vlan{vid}: SVI not in the plan")
    # ACL binding and content.
    acl = sw.acl
    bound_where = {port_name(n) for n in sw.acl_ports} | {bond_name(sw.bond(b)) for b in sw.acl_bonds}
    for ifname, pv in sorted(view.ports.items()):
        want = {acl.name} if acl and ifname in bound_where else set()
        if pv.acl_in != want:
            err(f"{ifname}: inbound ACL {sorted(pv.acl_in) or 'none'}, planned {sorted(want) or 'none'}")
    for ifname in sorted(bound_where - set(view.ports)):
        err(f"{ifname}: missing, so its inbound ACL is not applied")
    if acl is not None:
        rules = view.acls.get(acl.name)
        if rules is None:
            err(f"ACL {acl.name} missing")
        else:
            fabric = tuple(v.cidr for v in sw.vlans)
            out.extend(f"{name} ACL {acl.name}: {p}" for p in acl_problems(rules, fw, fabric))
    elif view.acls:
        err(f"ACL {', '.join(sorted(view.acls))} defined but the plan has none on this switch")
    return out


def _ids(vids) -> str:
    return ",".join(str(v) for v in sorted(vids)) or "none"


def check_switch(sw: Switch, text: str, nos: str, fw: FirewallPlan) -> list[str]:
    """Parse ``text`` as ``nos`` and compare it with the plan; a parse failure is one problem."""
    try:
        view = get_nos(nos).parse(text)
    except ConfigParseError as exc:
        return [f"{sw.name}: not a valid {nos} configuration: {exc}"]
    return semantic_problems(sw, view, fw)
