"""What the host roles deploy, rendered per host: the nftables ruleset, the tc script, interface names.

The ``firewall`` and ``network`` roles never re-derive policy: they copy these renderings
to the host. Interface names depend on how the host meets the fabric:

* ``tagged`` (production): one 802.1Q subinterface per VLAN, ``vlan<id>``, on the host's
  uplink (``llmcluster_uplink``, default :data:`DEFAULT_UPLINK`); the ``network`` role
  creates them (netplan).
* ``access`` (the lab, whose kernel has no 802.1Q): one untagged interface per VLAN, as on
  a switch access port, named by :data:`ACCESS_IFNAMES`; the lab runtime creates and
  addresses them, the ``network`` role checks them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from llmcluster.render.nftables import render_host_nftables
from llmcluster.render.tc import render_host_tc

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.plan.build import Plan
    from llmcluster.spec.models import Spec

NetworkMode = Literal["tagged", "access"]
NETWORK_MODES: tuple[str, ...] = ("tagged", "access")

#: Parent interface of the VLAN subinterfaces in tagged mode when the inventory names none.
DEFAULT_UPLINK = "bond0"

#: Interface name per VLAN role in access mode (at most 15 characters, the kernel's limit).
ACCESS_IFNAMES: dict[str, str] = {
    "mgmt": "mgmt",
    "oob": "oob",
    "inference": "inference",
    "storage_public": "stor-pub",
    "storage_cluster": "stor-clu",
    "rdma": "rdma",
}

#: The only stack whose hosts attach in access mode (see :func:`network_mode`).
LAB_STACK = "lab"


def network_mode(spec: Spec) -> NetworkMode:
    """How the stack's hosts attach by default: ``access`` in a lab (the ``lab`` stack, or any
    stack with a ``lab`` section), ``tagged`` otherwise."""
    return "access" if spec.stack == LAB_STACK or spec.lab is not None else "tagged"


def host_network_mode(plan: Plan, host_name: str) -> NetworkMode:
    """One host's mode: the stack default, or what ``lab.hosts`` / ``lab.pools`` ask for."""
    mode = network_mode(plan.spec)
    if mode == "access" and plan.spec.lab is not None:
        return plan.spec.lab.host(host_name, plan.ip.host(host_name).pool).network
    return mode


def host_interfaces(plan: Plan, host_name: str, mode: str) -> dict[str, str]:
    """VLAN role -> interface name of ``host_name``, for the VLANs the host is on."""
    if mode not in NETWORK_MODES:
        raise ValueError(f"network mode {mode!r}: use one of {', '.join(NETWORK_MODES)}")
    host = plan.ip.host(host_name)
    if mode == "tagged":
        return {role: f"vlan{plan.ip.vlans[role].id}" for role in host.addresses}
    return {role: ACCESS_IFNAMES[role] for role in host.addresses}


def host_artifacts(plan: Plan, host_name: str, mode: str) -> dict[str, Any]:
    """The rendered files of one host: ``nftables`` (``nft -f`` text), ``tc`` (sh script), ``interfaces``."""
    interfaces = host_interfaces(plan, host_name, mode)
    return {
        "nftables": render_host_nftables(host_name, plan.firewall, plan.qos),
        "tc": render_host_tc(host_name, plan.ip, plan.qos, interfaces),
        "interfaces": interfaces,
    }


def artifact_hostvars(plan: Plan, host_name: str, mode: str | None = None) -> dict[str, Any]:
    """The host variables the ``network`` and ``firewall`` roles read (merged into the inventory).

    Bare metal: the network mode (default :func:`host_network_mode`), the interface names, the
    ruleset and the tc script. Elsewhere (AWS) the platform owns interfaces, MTU and queues:
    only the ruleset (it matches addresses, not interface names).
    """
    if plan.spec.platform != "baremetal":
        return {"llmcluster_nftables_ruleset": render_host_nftables(host_name, plan.firewall, plan.qos)}
    mode = mode or host_network_mode(plan, host_name)
    a = host_artifacts(plan, host_name, mode)
    return {
        "llmcluster_network_mode": mode,
        "llmcluster_interface_names": a["interfaces"],
        "llmcluster_nftables_ruleset": a["nftables"],
        "llmcluster_tc_script": a["tc"],
    }
