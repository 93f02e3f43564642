"""Host networking and host platform facts (pure, no I/O).

How each host meets the fabric, derived once from the spec:

* **who owns the links** — on bare metal the host roles create the VLAN interfaces, set MTUs
  and queues (``network`` role, tc script); on a cloud platform (``aws``) the platform does and
  the hosts only get the firewall ruleset (it matches addresses, not interface names);
* **network mode** (bare metal) — ``tagged`` (production): one 802.1Q subinterface per VLAN,
  ``vlan<id>``, on the host's uplink (``llmcluster_uplink``, default :data:`DEFAULT_UPLINK`), made
  by the ``network`` role (netplan); ``access``: one untagged interface per VLAN, as on a switch
  access port, named by :data:`ACCESS_IFNAMES` (the lab's kernel has no 802.1Q; its runtime
  creates and addresses them and the ``network`` role checks them). The stack chooses with
  ``baremetal.network_mode``; unset, it is ``access`` for a stack with a ``lab`` section and
  ``tagged`` otherwise; ``lab.pools``/``lab.hosts`` may switch single lab hosts to ``tagged``;
* **interface names** per host and VLAN role, in the host's mode;
* **OS and login user** the inventory and the package plan use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmcluster.plan.ipam import IpPlan
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

#: The host OS and login user where the spec has no ``baremetal`` section (cloud images).
DEFAULT_OS = "ubuntu-24.04"
DEFAULT_SSH_USER = "ubuntu"


@dataclass(frozen=True)
class HostNet:
    """One host: its mode (``None`` where the platform owns the links) and interface names."""

    name: str
    mode: NetworkMode | None
    interfaces: dict[str, str]


@dataclass(frozen=True)
class HostNetPlan:
    #: True on bare metal: the roles create interfaces, MTUs and queues on the hosts.
    hosts_own_links: bool
    #: The stack's mode (bare metal); hosts may differ in a lab (see :class:`HostNet`).
    default_mode: NetworkMode
    os: str
    ssh_user: str
    hosts: dict[str, HostNet]

    def host(self, name: str) -> HostNet:
        return self.hosts[name]

    def mode(self, name: str) -> NetworkMode:
        """The host's network mode (the stack's default on platforms that own the links)."""
        return self.hosts[name].mode or self.default_mode

    def to_dict(self) -> dict:
        return {"hosts_own_links": self.hosts_own_links, "default_mode": self.default_mode, "os": self.os,
                "ssh_user": self.ssh_user,
                "hosts": {n: {"mode": h.mode, "interfaces": dict(h.interfaces)} for n, h in self.hosts.items()}}


def host_os(spec: Spec) -> str:
    """The hosts' OS (``baremetal.os``; cloud images run :data:`DEFAULT_OS`)."""
    return spec.baremetal.os if spec.baremetal is not None else DEFAULT_OS


def stack_network_mode(spec: Spec) -> NetworkMode:
    """The stack's mode: ``baremetal.network_mode``, else ``access`` with a ``lab`` section, else ``tagged``."""
    if spec.baremetal is not None and spec.baremetal.network_mode is not None:
        return spec.baremetal.network_mode
    return "access" if spec.lab is not None else "tagged"


def interface_names(ip: IpPlan, host_name: str, mode: str) -> dict[str, str]:
    """VLAN role -> interface name of ``host_name`` in ``mode``, for the VLANs the host is on."""
    if mode not in NETWORK_MODES:
        raise ValueError(f"network mode {mode!r}: use one of {', '.join(NETWORK_MODES)}")
    host = ip.host(host_name)
    if mode == "tagged":
        return {role: f"vlan{ip.vlans[role].id}" for role in host.addresses}
    return {role: ACCESS_IFNAMES[role] for role in host.addresses}


def build_hostnet_plan(spec: Spec, ip: IpPlan, *, in_lab: bool = False) -> HostNetPlan:
    """The hosts as the stack deploys them; ``in_lab``: as ``llmcluster lab`` realises them (access
    mode, whatever the stack's production mode, unless ``lab.pools``/``lab.hosts`` ask for tagged)."""
    own = spec.platform == "baremetal"
    default: NetworkMode = "access" if in_lab else stack_network_mode(spec)
    hosts: dict[str, HostNet] = {}
    for h in ip.hosts:
        if not own:
            hosts[h.name] = HostNet(h.name, None, {})
            continue
        mode: NetworkMode = default
        if default == "access" and spec.lab is not None:
            # lab hosts may attach tagged (VM hosts with their own kernel)
            mode = spec.lab.host(h.name, h.pool).network
        hosts[h.name] = HostNet(h.name, mode, interface_names(ip, h.name, mode))
    bm = spec.baremetal
    return HostNetPlan(hosts_own_links=own, default_mode=default, os=host_os(spec),
                       ssh_user=bm.ssh_user if bm else DEFAULT_SSH_USER, hosts=hosts)
