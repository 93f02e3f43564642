"""The lab's network: one bridge per VLAN, a veth per host and VLAN, and the forward guard.

Layout (names are deterministic, at most 15 characters, and all carry a lab prefix):

* ``llb-<vlan id>`` — one Linux bridge per VLAN of the plan, MTU from the plan's VLAN. This
  kernel has no 802.1Q subinterfaces and no bridge ``vlan_filtering``, so each VLAN is its
  own bridge and hosts get an untagged interface per VLAN, as on a switch access port.
* ``llv-<6 hex>-<vlan id>`` — the root-namespace end of a host's veth, a port of the VLAN's
  bridge (the hex is a hash of the host name, so names never change when hosts are added).
* In the host's namespace the other end is named after the VLAN role (``mgmt``,
  ``inference``, ``stor-pub``, ``stor-clu``, ``rdma``, ``oob``) and carries the planned
  address, prefix and MTU. Hosts get no default route: they need none, and without one they
  cannot reach anything outside the lab.
* The controller (this machine, root namespace) gets the mgmt VLAN's router address (``.1``,
  reserved by the plan) on the mgmt bridge, so that it can SSH to every host. No other
  bridge has an address in the root namespace, and IP forwarding is never turned on.
* The guard: ``table inet llmcluster_lab_guard`` drops forwarded traffic between a lab bridge
  and any non-lab interface (both directions). It is loaded before any host exists.

IPv6 is disabled on every lab interface (the plan is IPv4), so a host shows exactly its
planned addresses and sends no router solicitations.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import netaddr

from llmcluster.lab._sys import LabError, run
from llmcluster.plan.ipam import VlanPlan
from llmcluster.plan.hostnet import ACCESS_IFNAMES

BRIDGE_PREFIX = "llb-"
VETH_PREFIX = "llv-"
TAP_PREFIX = "llt-"  # tap devices of VM hosts (llmcluster.lab.vm), ports of lab bridges
NETNS_PREFIX = "llh-"
GUARD_TABLE = "llmcluster_lab_guard"
IFNAMSIZ = 15  # usable characters of a Linux interface name

#: Interface name inside a host for each VLAN role: the access-mode names the roles expect.
HOST_IFNAMES = ACCESS_IFNAMES


# --------------------------------------------------------------------------- names


def bridge_name(vlan: VlanPlan) -> str:
    return f"{BRIDGE_PREFIX}{vlan.id}"


def host_ifname(role: str) -> str:
    try:
        return HOST_IFNAMES[role]
    except KeyError:  # a future VLAN role: still deterministic and short
        return role.replace("_", "-")[:IFNAMSIZ]


def veth_name(host: str, vlan: VlanPlan) -> str:
    digest = hashlib.sha256(host.encode()).hexdigest()[:6]
    return f"{VETH_PREFIX}{digest}-{vlan.id}"


def netns_name(host: str) -> str:
    return f"{NETNS_PREFIX}{host}"


# --------------------------------------------------------------------------- queries


def links(netns: str | None = None) -> dict[str, dict]:
    """Interfaces of a namespace (``None``: the root namespace) as ``ip -j link`` reports them."""
    argv = ["ip", "-j"] + (["-n", netns] if netns else []) + ["link", "show"]
    proc = run(argv, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return {}
    return {link["ifname"]: link for link in json.loads(proc.stdout)}


def ipv4_addresses(netns: str | None = None) -> dict[str, list[str]]:
    """``{ifname: ["a.b.c.d/len", ...]}`` of a namespace."""
    argv = ["ip", "-j", "-4"] + (["-n", netns] if netns else []) + ["addr", "show"]
    proc = run(argv, check=False)
    out: dict[str, list[str]] = {}
    if proc.returncode != 0 or not proc.stdout.strip():
        return out
    for link in json.loads(proc.stdout):
        out[link["ifname"]] = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])]
    return out


def netns_list() -> list[str]:
    proc = run(["ip", "-j", "netns", "list"], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return [entry["name"] for entry in json.loads(proc.stdout)]


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists() or name in netns_list()


def lab_links() -> list[str]:
    """Root-namespace interfaces that carry a lab prefix (bridges, veth ends, VM taps)."""
    return sorted(n for n in links() if n.startswith((BRIDGE_PREFIX, VETH_PREFIX, TAP_PREFIX)))


# --------------------------------------------------------------------------- guard


def guard_ruleset() -> str:
    """The guard table, as an atomic replace (create, flush by delete, create with rules)."""
    body = f"""\
table inet {GUARD_TABLE} {{
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "{BRIDGE_PREFIX}*" oifname != "{BRIDGE_PREFIX}*" counter drop comment "lab bridges never forward out"
        oifname "{BRIDGE_PREFIX}*" iifname != "{BRIDGE_PREFIX}*" counter drop comment "nothing forwards into the lab"
    }}
}}
"""
    return f"table inet {GUARD_TABLE}\ndelete table inet {GUARD_TABLE}\n{body}"


def guard_loaded() -> bool:
    return run(["nft", "list", "table", "inet", GUARD_TABLE], check=False).returncode == 0


def load_guard() -> None:
    run(["nft", "-f", "-"], input=guard_ruleset())
    if not guard_loaded():  # pragma: no cover - nft said yes but the table is not there
        raise LabError(f"the nftables guard table inet {GUARD_TABLE} did not load")


def remove_guard() -> None:
    if guard_loaded():
        run(["nft", "delete", "table", "inet", GUARD_TABLE])


# --------------------------------------------------------------------------- links


def _disable_ipv6(ifname: str) -> None:
    path = Path("/proc/sys/net/ipv6/conf", ifname, "disable_ipv6")
    if path.exists():
        path.write_text("1\n")


def ensure_bridge(name: str, mtu: int) -> None:
    """Create the bridge if missing (no STP, ports forward at once), set its MTU, bring it up."""
    if name not in links():
        run(["ip", "link", "add", name, "mtu", str(mtu), "type", "bridge", "stp_state", "0", "forward_delay", "0"])
    _disable_ipv6(name)
    run(["ip", "link", "set", name, "mtu", str(mtu), "up"])


def delete_link(name: str, netns: str | None = None) -> None:
    """Delete a link if it exists. A veth may vanish on its own meanwhile: namespaces are
    dismantled asynchronously after ``ip netns del``, taking their veth pairs with them."""
    if name not in links(netns):
        return
    proc = run(["ip"] + (["-n", netns] if netns else []) + ["link", "del", name], check=False)
    if proc.returncode != 0 and name in links(netns):
        raise LabError(f"could not delete link {name}: {proc.stderr.strip()}")


def check_controller_address(vlan: VlanPlan, bridge: str) -> None:
    """Refuse when the mgmt subnet overlaps a route of this machine that is not the lab's own."""
    net = netaddr.IPNetwork(vlan.cidr)
    proc = run(["ip", "-j", "-4", "route", "show", "table", "all"], check=False)
    routes = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []
    for r in routes:
        dst, dev = r.get("dst", ""), r.get("dev", "")
        if dev == bridge or dst in ("", "default"):
            continue
        try:
            other = netaddr.IPNetwork(dst)
        except (netaddr.AddrFormatError, ValueError):
            continue
        if other.prefixlen == 0:
            continue
        if other.first <= net.last and net.first <= other.last:
            raise LabError(
                f"the lab's mgmt subnet {vlan.cidr} overlaps route {dst} on {dev or '?'} of this machine: "
                "change site.supernet of the lab stack or remove that route"
            )


def controller_cidr(vlan: VlanPlan) -> str:
    return f"{vlan.gateway}/{vlan.prefixlen}"


def ensure_controller_address(vlan: VlanPlan, bridge: str) -> None:
    cidr = controller_cidr(vlan)
    if cidr not in ipv4_addresses().get(bridge, []):
        run(["ip", "addr", "add", cidr, "dev", bridge])


def remove_controller_address(cidr: str, bridge: str) -> None:
    if cidr in ipv4_addresses().get(bridge, []):
        run(["ip", "addr", "del", cidr, "dev", bridge], check=False)


# --------------------------------------------------------------------------- host namespaces


def ensure_netns(name: str) -> None:
    """Create the host's network namespace: IPv6 off, ``lo`` up, nothing else."""
    if not netns_exists(name):
        run(["ip", "netns", "add", name])
    run(["ip", "netns", "exec", name, "/bin/sh", "-c",
         "for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6; "
         'do [ -e "$f" ] && echo 1 > "$f"; done; true'])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def delete_netns(name: str) -> None:
    if netns_exists(name):
        run(["ip", "netns", "del", name])


def ensure_host_port(
    *, netns: str, veth: str, ifname: str, bridge: str, cidr: str, mtu: int, extra_cidrs: tuple[str, ...] = ()
) -> None:
    """Wire one host to one VLAN: veth pair, root end on the bridge, host end addressed (``cidr``, then
    ``extra_cidrs``: e.g. a virtual IP the lab places on this host; any other address is removed)."""
    if veth not in links():
        run(["ip", "link", "add", veth, "mtu", str(mtu), "type", "veth",
             "peer", "name", ifname, "mtu", str(mtu), "netns", netns])
    _disable_ipv6(veth)
    run(["ip", "link", "set", veth, "mtu", str(mtu), "master", bridge, "up"])
    run(["ip", "-n", netns, "link", "set", ifname, "mtu", str(mtu), "up"])
    current = ipv4_addresses(netns).get(ifname, [])
    wanted = (cidr, *extra_cidrs)
    for extra in (a for a in current if a not in wanted):
        run(["ip", "-n", netns, "addr", "del", extra, "dev", ifname])
    for address in wanted:
        if address not in current:
            run(["ip", "-n", netns, "addr", "add", address, "dev", ifname])
