"""Switch plan: leaf/spine switches, host port map, uplinks, SVIs, fabric ACL and QoS (pure).

Topology (``baremetal.leaf_switches`` / ``spine_switches``), an L2 leaf-spine fabric:

* **Leaves** ``leaf-01`` ... carry the hosts. Every host NIC port (``pools.*.nics``: ``count``
  ports each; a pool without NICs has one ``data`` port per host carrying all the pool's
  VLANs) gets one leaf port. Automatic layout: port ``j`` of NIC ``n`` of the ``i``-th host
  of a pool goes to leaf ``(i * count + j) mod leaves``. Multi-port NICs are therefore
  *rail aligned* (port ``j`` of every GPU node lands on the same leaf, as NCCL rings
  expect) and single-port NICs are spread host by host. On its leaf a port takes the next
  free front-panel number, in pool, host, NIC order. ``baremetal.port_map`` pins host NIC
  ports to explicit leaf ports; the rest fill the free ports around them. Growing a pool
  moves the automatic ports of later pools: pin a production fabric with a port map.
* **Access or trunk**: a port carrying one VLAN is an access port (untagged). A port
  carrying several is an 802.1Q trunk with **every VLAN tagged and no native VLAN**
  (untagged frames are dropped), matching the hosts' tagged mode (one ``vlan<id>``
  subinterface per VLAN, mgmt included).
* **Uplinks** are L2 802.1Q trunks, bundled with LACP: each leaf has
  :data:`UPLINKS_PER_SPINE` ports to every spine (the top front-panel ports), all in one
  bond that carries exactly the VLANs of the leaf's host ports. Two spines form an MLAG
  pair (peer link on their top two ports, VLAN :data:`PEER_VLAN` for the peer session), so
  each leaf's bond is one logical link and the L2 fabric has no loop for STP to block;
  one spine is a plain LAG; no spine means a single leaf. More than two spines need a
  routed (EVPN) fabric, which this plan does not build: validation rejects it.
* **Gateways** (the IP plan's ``.1`` of every switched VLAN) live on the switches that
  route: the spines (an anycast/virtual gateway on an MLAG pair, each spine also holding
  its own address ``.3`` / ``.4`` from the VLAN's reserved range), or the single leaf when
  there is no spine. VLANs no host port carries (``oob`` with BMCs only: BMCs sit on the
  out-of-band management switches, outside this fabric) are not on the fabric.
* **MTU**: every fabric port (host ports, uplinks, bond members, peer link) runs
  ``fabric.mtu`` (9216); SVIs run their VLAN's MTU.
* **ACL** (:class:`Acl`, ``LLMC_FABRIC_IN``), from the firewall plan, applied **inbound on
  every leaf host port and on every leaf uplink**: every packet either enters the fabric
  at a host port or reaches a host's leaf through its uplink, so the leaves see it. Its
  entries are exactly the hosts' normalised INPUT rules (source CIDRs -> destination host
  addresses, protocol and destination ports; destinations of rules with the same sources
  and ports merged into minimal CIDRs), each followed by its stateless return entry
  (TCP from the service ports back to the sources with ACK set, i.e. ``established``; UDP
  from the service ports), the ICMP types every host accepts from anywhere (echo
  request/reply, fragmentation-needed, time-exceeded, parameter-problem) towards the
  fabric's VLAN subnets, and a final deny. The egress flows of the firewall plan (host zone
  -> external zone, e.g. the gateway's audit log to its collector) are permitted the same
  way, from the source hosts' addresses to the external CIDRs, with their return entries.
  Nothing is wider than the policy: no entry has a wider source, destination or port range
  than a firewall rule or egress flow. Consequences, stated rather than hidden:
  host-initiated traffic to services outside the zone policy (DNS, NTP, package mirrors)
  is dropped at the leaf unless an egress flow declares it (the hosts' nftables accept all
  output); traffic that enters through a port
  this plan does not model (the site border of a single-leaf fabric) meets only the hosts'
  nftables.
* **QoS** (:class:`SwitchQos`) is read from the QoS plan: trust DSCP, DSCP -> switch
  priority (the class PCP; unlisted DSCPs -> the default class), priority -> egress queue,
  PFC on the lossless priorities only (RoCE, 3), ECN (WRED marking) on the plan's ECN
  queues, CNP strict priority, DWRR weights from the classes' bandwidth shares.

Port and bond names per switch OS come from the switch OS registry (:mod:`llmcluster.nos`:
``swp5``, SONiC ``Ethernet32`` on an 8-lane-per-port 64-port platform, EOS ``Ethernet5/1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import netaddr

from llmcluster.errors import PlanError, Problem
from llmcluster.nos import get as get_nos
from llmcluster.nos.base import ANY
from llmcluster.plan.firewall import FirewallPlan, format_range, minimal_cidrs
from llmcluster.plan.ipam import IpPlan, hostname
from llmcluster.plan.qos import QosClassPlan, QosPlan
from llmcluster.spec.models import VLAN_ROLES, Pool, Spec

#: Nominal front-panel ports of a leaf or spine (64 x 400G class: SN5600, 7060X5, TH4/TH5 boxes).
SWITCH_PORTS = 64
UPLINKS_PER_SPINE = 2
UPLINK_SPEED_GBPS = 400
#: Port speed for hosts of pools without ``nics`` (one ``data`` port each).
DATA_PORT_SPEED_GBPS = 100
DATA_NIC = "data"
#: At most this many spines: one (a LAG) or two (an MLAG pair) on an L2 fabric.
MAX_SPINES = 2
UPLINK_BOND_ID = 1
PEER_BOND_ID = 1000
PEER_VLAN = 4094
#: MLAG peer-session addresses on PEER_VLAN (link-local /31).
PEER_ADDRESSES = ("169.254.0.0", "169.254.0.1")
PEER_PREFIXLEN = 31
#: STP bridge priorities: spines are the root; leaves keep the default.
SPINE_STP_PRIORITY = 4096
LEAF_STP_PRIORITY = 32768
ACL_NAME = "LLMC_FABRIC_IN"
#: ICMP every host firewall accepts from anywhere (type, code or None, name), see plan.firewall.
ICMP_ESSENTIALS: tuple[tuple[int, int | None, str], ...] = (
    (0, None, "echo-reply"),
    (3, 4, "fragmentation-needed"),
    (8, None, "echo-request"),
    (11, None, "time-exceeded"),
    (12, None, "parameter-problem"),
)
#: PFC cable length used for lossless headroom (metres; DAC/AOC inside a pod).
CABLE_LENGTH_M = 5
ACL_SEQ_STEP = 10


# --------------------------------------------------------------------------- plan objects


@dataclass(frozen=True)
class SwitchVlan:
    role: str
    id: int
    cidr: str
    mtu: int

    def to_dict(self) -> dict:
        return {"role": self.role, "id": self.id, "cidr": self.cidr, "mtu": self.mtu}


@dataclass(frozen=True)
class SwitchPort:
    """One front-panel port: a host NIC port, an uplink member, a spine downlink or a peer-link member."""

    number: int
    kind: str  # "host" | "uplink" | "downlink" | "peerlink"
    vlans: tuple[int, ...]  # VLAN ids, sorted; for bond members: the bond's
    speed_gbps: int
    description: str
    host: str | None = None
    nic: str | None = None
    nic_port: int | None = None
    bond: int | None = None  # bond id when the port is a LAG member
    peer: str | None = None  # "switch:port" at the other end of a fabric link
    pinned: bool = False  # from baremetal.port_map

    @property
    def mode(self) -> str:
        return "access" if len(self.vlans) == 1 else "trunk"

    def to_dict(self) -> dict:
        d: dict = {"port": self.number, "kind": self.kind, "mode": self.mode, "vlans": list(self.vlans),
                   "speed_gbps": self.speed_gbps, "description": self.description}
        for k in ("host", "nic", "nic_port", "bond", "peer"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.pinned:
            d["pinned"] = True
        return d


@dataclass(frozen=True)
class Bond:
    """An LACP bond: a leaf's uplink, a spine's downlink to one leaf, or the MLAG peer link."""

    id: int
    name: str
    kind: str  # "uplink" | "downlink" | "peerlink"
    members: tuple[int, ...]
    vlans: tuple[int, ...]
    description: str
    mlag_id: int | None = None

    @property
    def mode(self) -> str:
        return "access" if len(self.vlans) == 1 else "trunk"

    def to_dict(self) -> dict:
        d: dict = {"id": self.id, "name": self.name, "kind": self.kind, "members": list(self.members),
                   "vlans": list(self.vlans), "description": self.description}
        if self.mlag_id is not None:
            d["mlag_id"] = self.mlag_id
        return d


@dataclass(frozen=True)
class Svi:
    """A routed VLAN interface: ``gateway`` is the hosts' default router (``.1``)."""

    vlan: int
    role: str
    prefixlen: int
    mtu: int
    gateway: str
    address: str | None  # this switch's own address (MLAG pair), None: the gateway is the address

    def to_dict(self) -> dict:
        return {"vlan": self.vlan, "role": self.role, "prefixlen": self.prefixlen, "mtu": self.mtu,
                "gateway": self.gateway, "address": self.address}


@dataclass(frozen=True)
class Mlag:
    domain: str
    peer: str
    local_address: str
    peer_address: str
    prefixlen: int
    peer_bond: int
    peer_vlan: int
    priority: int
    system_mac: str

    def to_dict(self) -> dict:
        return {"domain": self.domain, "peer": self.peer, "local_address": self.local_address,
                "peer_address": self.peer_address, "peer_bond": self.peer_bond, "peer_vlan": self.peer_vlan,
                "priority": self.priority}


@dataclass(frozen=True)
class AclEntry:
    """One ACL line. ``src``/``dst`` are CIDRs (``0.0.0.0/0`` is any); ports are inclusive ranges."""

    seq: int
    action: str  # "permit" | "deny"
    proto: str  # "tcp" | "udp" | "icmp" | "ip"
    src: str
    dst: str
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    established: bool = False
    icmp_type: int | None = None
    icmp_code: int | None = None
    kind: str = "flow"  # "flow" | "reply" | "icmp" | "deny"
    flows: tuple[str, ...] = ()
    vlan: str | None = None

    @property
    def remark(self) -> str:
        if self.kind == "flow":
            return f"flow {', '.join(self.flows)} ({self.vlan})"
        if self.kind == "reply":
            return f"return of {', '.join(self.flows)} ({self.vlan})"
        if self.kind == "icmp":
            return "icmp the host firewalls accept from anywhere"
        return "everything else"

    @property
    def src_is_any(self) -> bool:
        return self.src == ANY

    @property
    def dst_is_any(self) -> bool:
        return self.dst == ANY

    def to_dict(self) -> dict:
        d: dict = {"seq": self.seq, "action": self.action, "proto": self.proto, "src": self.src, "dst": self.dst,
                   "kind": self.kind}
        if self.sport:
            d["sport"] = format_range(*self.sport)
        if self.dport:
            d["dport"] = format_range(*self.dport)
        if self.established:
            d["established"] = True
        if self.icmp_type is not None:
            d["icmp_type"] = self.icmp_type
        if self.icmp_code is not None:
            d["icmp_code"] = self.icmp_code
        if self.flows:
            d["flows"] = list(self.flows)
        return d


@dataclass(frozen=True)
class Acl:
    name: str
    entries: tuple[AclEntry, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "entries": [e.to_dict() for e in self.entries]}


@dataclass(frozen=True)
class SwitchQueue:
    queue: int
    classes: tuple[str, ...]
    strict: bool
    weight: int  # DWRR weight (bandwidth percent); 0 for strict queues
    lossless: bool
    ecn_min_bytes: int | None = None
    ecn_max_bytes: int | None = None
    ecn_probability: int | None = None

    @property
    def ecn(self) -> bool:
        return self.ecn_min_bytes is not None

    def to_dict(self) -> dict:
        d: dict = {"queue": self.queue, "classes": list(self.classes), "strict": self.strict, "weight": self.weight,
                   "lossless": self.lossless}
        if self.ecn:
            d["ecn"] = {"min_bytes": self.ecn_min_bytes, "max_bytes": self.ecn_max_bytes,
                        "probability_percent": self.ecn_probability}
        return d


@dataclass(frozen=True)
class SwitchQos:
    """The QoS plan as a switch applies it (nothing re-derived: see :func:`switch_qos`)."""

    trust: str
    classes: tuple[QosClassPlan, ...]
    dscp_to_priority: tuple[tuple[int, int], ...]  # all 64 DSCP values
    priority_to_queue: tuple[tuple[int, int], ...]  # priorities 0..7
    pfc_priorities: tuple[int, ...]
    queues: tuple[SwitchQueue, ...]
    default_priority: int
    cable_length_m: int = CABLE_LENGTH_M

    @property
    def classified(self) -> tuple[tuple[int, int, str], ...]:
        """(dscp, priority, class) of the declared classes, by DSCP."""
        return tuple((c.dscp, c.pcp, c.name) for c in sorted(self.classes, key=lambda c: c.dscp))

    @property
    def lossy_priorities(self) -> tuple[int, ...]:
        return tuple(p for p in range(8) if p not in self.pfc_priorities)

    def queue(self, number: int) -> SwitchQueue | None:
        return next((q for q in self.queues if q.queue == number), None)

    def to_dict(self) -> dict:
        return {
            "trust": self.trust,
            "dscp_to_priority": {str(d): p for d, p in self.classified_map()},
            "default_priority": self.default_priority,
            "priority_to_queue": {str(p): q for p, q in self.priority_to_queue},
            "pfc_priorities": list(self.pfc_priorities),
            "queues": [q.to_dict() for q in self.queues],
            "cable_length_m": self.cable_length_m,
        }

    def classified_map(self) -> tuple[tuple[int, int], ...]:
        return tuple((d, p) for d, p, _ in self.classified)


@dataclass(frozen=True)
class Switch:
    """One switch, self-contained for its renderer: ports, bonds, VLANs, SVIs, ACL and QoS."""

    name: str
    role: str  # "leaf" | "spine"
    index: int
    fabric_mtu: int
    ports: tuple[SwitchPort, ...]
    bonds: tuple[Bond, ...]
    vlans: tuple[SwitchVlan, ...]
    svis: tuple[Svi, ...]
    qos: SwitchQos
    acl: Acl | None
    acl_ports: tuple[int, ...]  # front-panel ports with the ACL inbound (not bond members)
    acl_bonds: tuple[int, ...]  # bond ids with the ACL inbound
    stp_priority: int
    mlag: Mlag | None = None

    def port(self, number: int) -> SwitchPort:
        for p in self.ports:
            if p.number == number:
                return p
        raise KeyError(number)

    def bond(self, bond_id: int) -> Bond:
        for b in self.bonds:
            if b.id == bond_id:
                return b
        raise KeyError(bond_id)

    @property
    def host_ports(self) -> tuple[SwitchPort, ...]:
        return tuple(p for p in self.ports if p.kind == "host")

    @property
    def routes(self) -> bool:
        return bool(self.svis)

    def vlan(self, vid: int) -> SwitchVlan:
        return next(v for v in self.vlans if v.id == vid)

    def to_dict(self) -> dict:
        d: dict = {
            "role": self.role, "fabric_mtu": self.fabric_mtu, "stp_priority": self.stp_priority,
            "vlans": [v.id for v in self.vlans],
            "ports": [p.to_dict() for p in self.ports],
            "bonds": [b.to_dict() for b in self.bonds],
            "svis": [s.to_dict() for s in self.svis],
            "acl": {"name": self.acl.name, "ports": list(self.acl_ports), "bonds": list(self.acl_bonds)}
            if self.acl else None,
        }
        if self.mlag:
            d["mlag"] = self.mlag.to_dict()
        return d


@dataclass(frozen=True)
class SwitchPlan:
    nos: str
    design: str
    fabric_mtu: int
    switches: tuple[Switch, ...]
    vlans: tuple[SwitchVlan, ...]
    unswitched: dict[str, str]  # VLAN role -> why it is not on the fabric
    acl: Acl
    qos: SwitchQos
    cable_plan: tuple[tuple[str, str], ...] = field(default=())  # ("leaf-01:61", "spine-01:1")
    stack: str = ""

    def switch(self, name: str) -> Switch:
        for s in self.switches:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def leaves(self) -> tuple[Switch, ...]:
        return tuple(s for s in self.switches if s.role == "leaf")

    @property
    def spines(self) -> tuple[Switch, ...]:
        return tuple(s for s in self.switches if s.role == "spine")

    def host_port(self, host: str, nic: str, nic_port: int) -> tuple[str, int]:
        for s in self.leaves:
            for p in s.host_ports:
                if (p.host, p.nic, p.nic_port) == (host, nic, nic_port):
                    return s.name, p.number
        raise KeyError((host, nic, nic_port))

    def to_dict(self) -> dict:
        return {
            "nos": self.nos,
            "design": self.design,
            "fabric_mtu": self.fabric_mtu,
            "vlans": [v.to_dict() for v in self.vlans],
            "unswitched": dict(self.unswitched),
            "qos": self.qos.to_dict(),
            "acl": self.acl.to_dict(),
            "switches": {s.name: s.to_dict() for s in self.switches},
            "cables": [list(c) for c in self.cable_plan],
        }


# --------------------------------------------------------------------------- names, NIC ports


def leaf_names(count: int) -> list[str]:
    return [hostname("leaf", i, count) for i in range(1, count + 1)]


def spine_names(count: int) -> list[str]:
    return [hostname("spine", i, count) for i in range(1, count + 1)]


@dataclass(frozen=True)
class NicPort:
    host: str
    pool: str
    host_index: int  # 0-based within the pool
    nic: str
    nic_index: int  # 0-based port of the NIC
    nic_count: int
    vlans: tuple[str, ...]  # VLAN roles
    speed_gbps: int


def nic_ports(spec: Spec) -> list[NicPort]:
    """Every host NIC port of the spec, in pool, host, NIC, port order."""
    out: list[NicPort] = []
    for pool_name, pool in spec.pools.items():
        prefix = spec.hostname_prefix(pool_name)
        for i in range(pool.count):
            host = hostname(prefix, i + 1, pool.count)
            if not pool.nics:
                out.append(NicPort(host, pool_name, i, DATA_NIC, 0, 1, tuple(pool.vlans), DATA_PORT_SPEED_GBPS))
                continue
            for nic in pool.nics:
                for j in range(nic.count):
                    out.append(NicPort(host, pool_name, i, nic.name, j, nic.count, tuple(nic.vlans), nic.speed_gbps))
    return out


def leaf_uplink_ports(spines: int) -> dict[int, tuple[int, ...]]:
    """Spine index (1-based) -> the leaf's front-panel ports towards it (the top ports)."""
    base = SWITCH_PORTS - UPLINKS_PER_SPINE * spines
    return {k: tuple(base + UPLINKS_PER_SPINE * (k - 1) + m for m in range(1, UPLINKS_PER_SPINE + 1))
            for k in range(1, spines + 1)}


def spine_peer_ports(spines: int) -> tuple[int, ...]:
    return (SWITCH_PORTS - 1, SWITCH_PORTS) if spines == 2 else ()


def _free_ports(reserved: set[int]):
    n = 0
    while True:
        n += 1
        if n not in reserved:
            yield n


def _vlan_roles_sorted(roles, spec: Spec) -> tuple[int, ...]:
    ids = []
    for r in roles:
        v = spec.fabric.vlans.get(r)
        if v is not None:
            ids.append(v.id)
    return tuple(sorted(set(ids)))


# --------------------------------------------------------------------------- validation (layer 2)


def _known_hosts_text(spec: Spec) -> str:
    parts = []
    for pool_name, pool in spec.pools.items():
        if pool.count == 0:
            continue
        prefix = spec.hostname_prefix(pool_name)
        first, last = hostname(prefix, 1, pool.count), hostname(prefix, pool.count, pool.count)
        parts.append(first if pool.count == 1 else f"{first}..{last}")
    return ", ".join(parts) or "none (every pool has count 0)"


def switch_problems(spec: Spec) -> list[Problem]:
    """Whole-spec rules of the switch plan (topology, ``baremetal.port_map``, port capacity)."""
    problems = topology_problems(spec) + port_map_problems(spec)
    return problems or capacity_problems(spec)


def max_leaves(spines: int) -> int:
    """The most leaves ``spines`` spines can join (each leaf takes UPLINKS_PER_SPINE ports of every spine)."""
    if spines == 0:
        return 1
    return (SWITCH_PORTS - len(spine_peer_ports(spines))) // UPLINKS_PER_SPINE


def leaf_host_capacity(spines: int) -> int:
    """Front-panel ports of a leaf left for hosts after its uplinks."""
    return SWITCH_PORTS - UPLINKS_PER_SPINE * spines


def host_ports_per_leaf(spec: Spec, leaves: int) -> list[int]:
    """Host NIC ports the layout puts on each of ``leaves`` leaves (as :func:`build_switch_plan` does:
    pinned ports on their leaf, the others on leaf ``(i * count + j) mod leaves``)."""
    bm = spec.baremetal
    loads = [0] * leaves
    for pool in spec.pools.values():
        # Port j of NIC n of host i sits at position i * count + j: over the pool the positions are
        # exactly 0 .. count*hosts - 1, so each leaf takes an equal share and the first ones one more.
        for count in [nic.count for nic in pool.nics] or [1]:
            n = count * pool.count
            for k in range(min(leaves, n)):
                loads[k] += n // leaves + (1 if k < n % leaves else 0)
    if bm is not None and bm.port_map:
        where: dict[str, tuple[Pool, int]] = {}
        wanted = {a.host for ports in bm.port_map.values() for a in ports.values()}
        for pool_name, pool in spec.pools.items():
            prefix = spec.hostname_prefix(pool_name)
            for i in range(pool.count):
                name = hostname(prefix, i + 1, pool.count)
                if name in wanted:
                    where[name] = (pool, i)
        names = leaf_names(leaves)
        for leaf, ports in bm.port_map.items():
            for a in ports.values():
                if a.host not in where or leaf not in names:
                    continue  # port_map_problems reports it
                pool, i = where[a.host]
                nics = {nic.name: nic.count for nic in pool.nics} or {DATA_NIC: 1}
                count = nics.get(a.nic or DATA_NIC)
                if count is None or a.port > count:
                    continue
                loads[(i * count + a.port - 1) % leaves] -= 1
                loads[names.index(leaf)] += 1
    return loads


def capacity_problems(spec: Spec) -> list[Problem]:
    """Leaves with more host ports than front-panel ports, spines with more leaves than ports."""
    bm = spec.baremetal
    if spec.platform != "baremetal" or bm is None:
        return []
    out: list[Problem] = []
    L, S = bm.leaf_switches, bm.spine_switches
    most = max_leaves(S)
    if L > most and S > 0:
        out.append(Problem("baremetal.leaf_switches",
                           f"{L} leaves need {UPLINKS_PER_SPINE * L} downlink ports on each spine, which has "
                           f"{SWITCH_PORTS - len(spine_peer_ports(S))} ({SWITCH_PORTS} ports"
                           f"{', 2 for the MLAG peer link' if S == 2 else ''}): {S} spine(s) join at most {most} "
                           "leaves"))
    cap = leaf_host_capacity(S)
    loads = host_ports_per_leaf(spec, L)
    if loads and max(loads) > cap:
        total = sum(loads)
        busiest = max(range(L), key=lambda k: loads[k])
        need = next((n for n in range(max(L, -(-total // cap)), most + 1)
                     if max(host_ports_per_leaf(spec, n)) <= cap), None)
        uplinks = f" ({SWITCH_PORTS} less {SWITCH_PORTS - cap} uplinks)" if S else f" ({SWITCH_PORTS} ports)"
        leaves = "1 leaf" if L == 1 else f"{L} leaves"
        head = (f"{leaves} cannot take the {total} host NIC ports: {leaf_names(L)[busiest]} would have "
                f"{loads[busiest]}, a leaf has {cap}{uplinks}")
        if need is not None:
            out.append(Problem("baremetal.leaf_switches", f"{head}; set leaf_switches >= {need}"))
        elif S == 0:
            out.append(Problem("baremetal.leaf_switches", f"{head}; one leaf is all a fabric without spines has: set "
                                                          "spine_switches to 2 and add leaves"))
        else:
            out.append(Problem("baremetal.leaf_switches",
                               f"{head}; even {most} leaves (the most {S} spine(s) join) are not enough: fewer hosts "
                               "or NIC ports (pools.*.nics), or a routed fabric (not built here)"))
    return out


def topology_problems(spec: Spec) -> list[Problem]:
    """Leaf/spine counts the L2 fabric can build, and the MLAG pair's reserved addresses."""
    bm = spec.baremetal
    if spec.platform != "baremetal" or bm is None:
        return []
    out: list[Problem] = []
    if bm.spine_switches > MAX_SPINES:
        out.append(Problem("baremetal.spine_switches",
                           f"{bm.spine_switches} spines: the L2 leaf-spine fabric has at most {MAX_SPINES} "
                           "(one, or an MLAG pair); more spines need a routed EVPN fabric, not built here"))
    if bm.spine_switches == 0 and bm.leaf_switches > 1:
        out.append(Problem("baremetal.spine_switches",
                           f"0 spines cannot join {bm.leaf_switches} leaves: set spine_switches to 1 or 2, "
                           "or leaf_switches to 1"))
    if bm.spine_switches == 2:
        for role, vlan in spec.fabric.vlans.items():
            if vlan.reserved < 4:
                out.append(Problem(f"fabric.vlans.{role}.reserved",
                                   f"{vlan.reserved}: an MLAG spine pair needs at least 4 reserved addresses "
                                   "(.1 gateway, .2 VIP, .3 and .4 the spines' own SVI addresses)"))
    return out


def port_map_problems(spec: Spec) -> list[Problem]:
    """``baremetal.port_map``: known leaves, hosts and NICs, free non-uplink ports, VLANs the NIC carries."""
    bm = spec.baremetal
    out: list[Problem] = []
    if spec.platform != "baremetal" or bm is None or not bm.port_map:
        return out
    switch_os = get_nos(bm.switch_os)
    leaves = leaf_names(bm.leaf_switches)
    spines = spine_names(bm.spine_switches)
    uplinks = {p: k for k, ports in leaf_uplink_ports(bm.spine_switches).items() for p in ports}
    hosts: dict[str, tuple[str, Pool]] = {}
    for pool_name, pool in spec.pools.items():
        prefix = spec.hostname_prefix(pool_name)
        for i in range(1, pool.count + 1):
            hosts[hostname(prefix, i, pool.count)] = (pool_name, pool)
    used: dict[tuple[str, str, int], str] = {}
    for leaf, ports in bm.port_map.items():
        base = f"baremetal.port_map.{leaf}"
        if leaf not in leaves:
            what = "a spine: hosts connect to leaves" if leaf in spines else f"unknown switch '{leaf}'"
            out.append(Problem(base, f"{what}; known leaves: {_range_text(leaves)}"))
            continue
        seen: dict[int, str] = {}
        for key, a in ports.items():
            path = f"{base}.{key}"
            number = switch_os.parse_port(key)
            if number is None:
                out.append(Problem(path, f"'{key}' is not a {switch_os.name} port: use a front-panel number or "
                                         f"{switch_os.port_name_hint}"))
                continue
            label = switch_os.port_name(number)
            if number in seen:
                out.append(Problem(path, f"{label} is mapped twice on {leaf} (also as '{seen[number]}')"))
                continue
            seen[number] = key
            if number in uplinks:
                out.append(Problem(path, f"{label} is an uplink of {leaf} (to {spines[uplinks[number] - 1]}): "
                                         "use another port"))
                continue
            if a.host not in hosts:
                out.append(Problem(f"{path}.host",
                                   f"references unknown host '{a.host}'; known: {_known_hosts_text(spec)}"))
                continue
            pool_name, pool = hosts[a.host]
            nics = {n.name: n for n in pool.nics}
            if nics:
                if a.nic is None:
                    out.append(Problem(f"{path}.nic", f"missing: {a.host} (pool {pool_name}) has NICs "
                                                      f"{', '.join(nics)}: name the one cabled here"))
                    continue
                if a.nic not in nics:
                    out.append(Problem(f"{path}.nic", f"'{a.nic}' is not a NIC of pool {pool_name} "
                                                      f"({', '.join(nics)})"))
                    continue
                nic_vlans, count, nic = tuple(nics[a.nic].vlans), nics[a.nic].count, a.nic
            else:
                if a.nic not in (None, DATA_NIC):
                    out.append(Problem(f"{path}.nic", f"pool {pool_name} declares no nics: omit 'nic' (its hosts "
                                                      f"have one '{DATA_NIC}' port)"))
                    continue
                nic_vlans, count, nic = tuple(pool.vlans), 1, DATA_NIC
            if a.port > count:
                out.append(Problem(f"{path}.port", f"{a.port}: NIC {nic} of pool {pool_name} has {count} port(s)"))
                continue
            ident = (a.host, nic, a.port)
            if ident in used:
                out.append(Problem(path, f"{a.host} {nic} port {a.port} is already mapped at {used[ident]}"))
                continue
            used[ident] = f"{leaf} {label}"
            if a.vlans is not None:
                for i, role in enumerate(a.vlans):
                    if role not in nic_vlans:
                        out.append(Problem(f"{path}.vlans.{i}",
                                           f"VLAN '{role}' is not carried by {a.host}'s NIC {nic} "
                                           f"({', '.join(nic_vlans)}): the host would never send or receive it"))
                missing = [r for r in nic_vlans if r not in a.vlans]
                if missing:
                    kind = "trunk" if len(nic_vlans) > 1 else "access port"
                    out.append(Problem(f"{path}.vlans",
                                       f"VLAN {', '.join(repr(r) for r in missing)} of {a.host}'s NIC {nic} is "
                                       f"missing from the {kind} {leaf} {label} (carries "
                                       f"{', '.join(a.vlans) or 'nothing'}): add it or fix pools.{pool_name}.nics"))
                if len(set(a.vlans)) != len(a.vlans):
                    out.append(Problem(f"{path}.vlans", "lists a VLAN twice"))
    return out


def _range_text(names: list[str]) -> str:
    if not names:
        return "none"
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


# --------------------------------------------------------------------------- QoS and ACL


def switch_qos(qos: QosPlan) -> SwitchQos:
    """The switch view of the QoS plan: maps, PFC, queues; read from the plan, never re-derived."""
    default = qos.default_class
    by_dscp = qos.dscp_to_pcp
    dscp_map = tuple((d, by_dscp.get(d, default.pcp)) for d in range(64))
    by_pcp: dict[int, int] = {}
    for c in qos.classes:
        by_pcp.setdefault(c.pcp, c.queue)
    prio_map = tuple((p, by_pcp.get(p, p)) for p in range(8))
    ecn = {e.queue: e for e in qos.ecn}
    queues = []
    for q in sorted({c.queue for c in qos.classes}):
        members = [c for c in qos.classes if c.queue == q]
        strict = any(c.strict for c in members)
        e = ecn.get(q)
        queues.append(SwitchQueue(
            queue=q, classes=tuple(c.name for c in members), strict=strict,
            weight=0 if strict else sum(c.bandwidth_percent for c in members),
            lossless=any(c.lossless for c in members),
            ecn_min_bytes=e.min_kb * 1024 if e else None, ecn_max_bytes=e.max_kb * 1024 if e else None,
            ecn_probability=e.probability_percent if e else None,
        ))
    return SwitchQos(trust=qos.trust, classes=qos.classes, dscp_to_priority=dscp_map, priority_to_queue=prio_map,
                     pfc_priorities=qos.pfc_priorities, queues=tuple(queues), default_priority=default.pcp)


def build_acl(fw: FirewallPlan, vlan_cidrs: tuple[str, ...]) -> Acl:
    """The fabric ACL: the firewall plan's rules, their return traffic, ICMP essentials, final deny."""
    order = {r: i for i, r in enumerate(VLAN_ROLES)}
    groups: dict[tuple, tuple[set[str], set[str]]] = {}
    for h in fw.hosts:
        for r in h.rules:
            key = (r.vlan, r.proto, r.sources, r.ports)
            dests, flows = groups.setdefault(key, (set(), set()))
            dests.update(r.destinations)
            flows.update(r.flows)
    for e in fw.egress:  # host zone -> external CIDRs: the same entries, destinations being networks
        dests, flows = groups.setdefault((e.vlan, e.proto, e.sources, e.ports), (set(), set()))
        dests.update(e.destinations)
        flows.update(e.flows)

    def key_order(item):
        (vlan, proto, sources, ports), (dests, _) = item
        return (order.get(vlan, 99), proto, tuple(_cidr_key(s) for s in sources), ports,
                tuple(_cidr_key(d) for d in minimal_cidrs(sorted(dests))))

    raw: list[dict] = []
    for (vlan, proto, sources, ports), (dests, flow_set) in sorted(groups.items(), key=key_order):
        flows = tuple(sorted(flow_set))
        dst_cidrs = minimal_cidrs(sorted(dests))
        ranges: tuple = ports if proto != "icmp" else (None,)
        for src in sources:
            for dst in dst_cidrs:
                for rng in ranges:
                    raw.append(dict(action="permit", proto=proto, src=src, dst=dst, dport=rng, kind="flow",
                                    flows=flows, vlan=vlan))
        if proto == "icmp":
            continue  # ICMP replies are covered by the essentials below
        for dst in dst_cidrs:
            for src in sources:
                for rng in ranges:
                    raw.append(dict(action="permit", proto=proto, src=dst, dst=src, sport=rng, kind="reply",
                                    established=proto == "tcp", flows=flows, vlan=vlan))
    for cidr in vlan_cidrs:
        for t, c, _ in ICMP_ESSENTIALS:
            raw.append(dict(action="permit", proto="icmp", src=ANY, dst=cidr, icmp_type=t, icmp_code=c, kind="icmp"))
    raw.append(dict(action="deny", proto="ip", src=ANY, dst=ANY, kind="deny"))
    entries = tuple(AclEntry(seq=(i + 1) * ACL_SEQ_STEP, **e) for i, e in enumerate(raw))
    return Acl(ACL_NAME, entries)


def _cidr_key(cidr: str) -> tuple[int, int]:
    n = netaddr.IPNetwork(cidr)
    return int(n.first), n.prefixlen


# --------------------------------------------------------------------------- the planner


def build_switch_plan(spec: Spec, ip: IpPlan, qos: QosPlan, fw: FirewallPlan) -> SwitchPlan | None:
    """The switch plan of a bare-metal spec (None on other platforms). See the module docstring."""
    bm = spec.baremetal
    if spec.platform != "baremetal" or bm is None:
        return None
    problems = switch_problems(spec)
    if problems:  # whole-spec validation reports these first; never plan around them
        raise PlanError(problems[0].path, problems[0].message)
    nos = bm.switch_os
    L, S = bm.leaf_switches, bm.spine_switches
    leaves, spines = leaf_names(L), spine_names(S)
    mtu = spec.fabric.mtu
    uplinks = leaf_uplink_ports(S)
    uplink_numbers = {p for ports in uplinks.values() for p in ports}

    # 1. Host ports: pinned first, then the automatic layout around them.
    pinned: dict[tuple[str, str, int], tuple[str, int, tuple[str, ...] | None]] = {}
    for leaf, ports in bm.port_map.items():
        for key, a in ports.items():
            number = get_nos(nos).parse_port(key)
            assert number is not None  # validated
            nic = a.nic or DATA_NIC
            pinned[(a.host, nic, a.port)] = (leaf, number, a.vlans)
    taken: dict[str, set[int]] = {leaf: set(uplink_numbers) for leaf in leaves}
    for leaf, number, _ in pinned.values():
        taken[leaf].add(number)
    free = {leaf: _free_ports(taken[leaf]) for leaf in leaves}
    host_ports: dict[str, list[SwitchPort]] = {leaf: [] for leaf in leaves}
    for np_ in nic_ports(spec):
        ident = (np_.host, np_.nic, np_.nic_index + 1)
        if ident in pinned:
            leaf, number, _vl = pinned[ident]
            is_pinned = True
        else:
            leaf = leaves[(np_.host_index * np_.nic_count + np_.nic_index) % L]
            number = next(free[leaf])
            is_pinned = False
        vids = _vlan_roles_sorted(np_.vlans, spec)
        if not vids:
            continue  # a NIC only on undeclared VLANs is rejected by validation
        host_ports[leaf].append(SwitchPort(
            number=number, kind="host", vlans=vids, speed_gbps=np_.speed_gbps,
            description=f"{np_.host} {np_.nic}/{np_.nic_index + 1}", host=np_.host, nic=np_.nic,
            nic_port=np_.nic_index + 1, pinned=is_pinned,
        ))

    # 2. VLANs on the fabric.
    switched_ids = sorted({v for ports in host_ports.values() for p in ports for v in p.vlans})
    vlans = tuple(SwitchVlan(role, vp.id, vp.cidr, vp.mtu) for role, vp in ip.vlans.items() if vp.id in switched_ids)
    unswitched = {role: "carried by no host NIC (BMCs: out-of-band management switches)"
                  if role == "oob" else "carried by no host NIC"
                  for role, vp in ip.vlans.items() if vp.id not in switched_ids}
    by_id = {v.id: v for v in vlans}

    sq = switch_qos(qos)
    acl = build_acl(fw, tuple(v.cidr for v in vlans))
    cables: list[tuple[str, str]] = []

    # 3. Spine downlink port numbers (per leaf), avoiding the peer-link ports.
    peer_ports = spine_peer_ports(S)
    spine_free = _free_ports(set(peer_ports))
    spine_down: dict[int, tuple[int, ...]] = {
        li: tuple(next(spine_free) for _ in range(UPLINKS_PER_SPINE)) for li in range(1, L + 1)
    }

    def svis_for(spine_index: int | None) -> tuple[Svi, ...]:
        out = []
        for v in vlans:
            vp = ip.vlans[v.role]
            if S == 2 and spine_index is not None:
                own = str(netaddr.IPAddress(netaddr.IPNetwork(vp.cidr).first + 2 + spine_index))
            else:
                own = None
            out.append(Svi(vlan=v.id, role=v.role, prefixlen=vp.prefixlen, mtu=v.mtu, gateway=vp.gateway,
                           address=own))
        return tuple(out)

    switches: list[Switch] = []
    leaf_vlans: dict[str, tuple[int, ...]] = {}
    for li, leaf in enumerate(leaves, start=1):
        hp = sorted(host_ports[leaf], key=lambda p: p.number)
        lv = tuple(sorted({v for p in hp for v in p.vlans}))
        leaf_vlans[leaf] = lv
        ports = list(hp)
        bonds: list[Bond] = []
        if S:
            members = []
            for k, sp in enumerate(spines, start=1):
                for m, number in enumerate(uplinks[k]):
                    peer_port = spine_down[li][m]
                    ports.append(SwitchPort(number=number, kind="uplink", vlans=lv, speed_gbps=UPLINK_SPEED_GBPS,
                                            description=f"uplink to {sp} port {peer_port}", bond=UPLINK_BOND_ID,
                                            peer=f"{sp}:{peer_port}"))
                    members.append(number)
                    cables.append((f"{leaf}:{number}", f"{sp}:{peer_port}"))
            bonds.append(Bond(UPLINK_BOND_ID, "uplink", "uplink", tuple(members), lv,
                              description=f"uplink to {', '.join(spines)}"))
        acl_ports = tuple(p.number for p in hp)
        acl_bonds = tuple(b.id for b in bonds if lv)
        switches.append(Switch(
            name=leaf, role="leaf", index=li, fabric_mtu=mtu, ports=tuple(sorted(ports, key=lambda p: p.number)),
            bonds=tuple(bonds), vlans=tuple(by_id[v] for v in lv), svis=svis_for(None) if S == 0 else (),
            qos=sq, acl=acl if (acl_ports or acl_bonds) else None, acl_ports=acl_ports, acl_bonds=acl_bonds,
            stp_priority=LEAF_STP_PRIORITY,
        ))

    all_ids = tuple(v.id for v in vlans)
    for k, sp in enumerate(spines, start=1):
        ports = []
        bonds = []
        for li, leaf in enumerate(leaves, start=1):
            lv = leaf_vlans[leaf]
            for m, number in enumerate(spine_down[li]):
                ports.append(SwitchPort(number=number, kind="downlink", vlans=lv, speed_gbps=UPLINK_SPEED_GBPS,
                                        description=f"downlink to {leaf} port {uplinks[k][m]}", bond=li,
                                        peer=f"{leaf}:{uplinks[k][m]}"))
            bonds.append(Bond(li, leaf, "downlink", spine_down[li], lv, description=f"downlink to {leaf}",
                              mlag_id=li if S == 2 else None))
        mlag = None
        if S == 2:
            other = spines[2 - k]
            peer_vlans = (*all_ids, PEER_VLAN)
            for number in peer_ports:
                ports.append(SwitchPort(number=number, kind="peerlink", vlans=peer_vlans,
                                        speed_gbps=UPLINK_SPEED_GBPS,
                                        description=f"mlag peer link to {other} port {number}", bond=PEER_BOND_ID,
                                        peer=f"{other}:{number}"))
                if k == 1:
                    cables.append((f"{sp}:{number}", f"{other}:{number}"))
            bonds.append(Bond(PEER_BOND_ID, "peerlink", "peerlink", peer_ports, peer_vlans,
                              description=f"mlag peer link to {other}"))
            mlag = Mlag(domain="llmc-spines", peer=other, local_address=PEER_ADDRESSES[k - 1],
                        peer_address=PEER_ADDRESSES[2 - k], prefixlen=PEER_PREFIXLEN, peer_bond=PEER_BOND_ID,
                        peer_vlan=PEER_VLAN, priority=1000 * k, system_mac="44:38:39:be:ef:aa")
        switches.append(Switch(
            name=sp, role="spine", index=k, fabric_mtu=mtu, ports=tuple(sorted(ports, key=lambda p: p.number)),
            bonds=tuple(bonds), vlans=vlans, svis=svis_for(k), qos=sq, acl=None, acl_ports=(), acl_bonds=(),
            stp_priority=SPINE_STP_PRIORITY, mlag=mlag,
        ))

    design = {0: "single-leaf", 1: "l2-leaf-spine-lag", 2: "l2-leaf-spine-mlag"}[S]
    return SwitchPlan(nos=nos, design=design, fabric_mtu=mtu, switches=tuple(switches), vlans=vlans,
                      unswitched=unswitched, acl=acl, qos=sq, cable_plan=tuple(sorted(cables)), stack=spec.stack)
