"""AWS EC2 GPU instance types llmcluster knows how to place (pure data, versioned).

:data:`FACTS_VERSION` names this table's revision: bump it whenever a number changes, so a plan
document shows which facts it was made from.

Sources (AWS documentation, as read for this revision):

* GPUs, GPU memory, instance-store NVMe, bandwidth: "Amazon EC2 accelerated computing instance
  specifications" (docs.aws.amazon.com/ec2/latest/instancetypes/ac.html) and the P5/P5e/P5en,
  P6-B200, P4d and G6e product pages;
* EFA interfaces and network cards: "Maximize network bandwidth on Amazon EC2 instances with
  multiple network cards" (docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa-acc-inst-types.html):
  the primary interface (network card 0, device 0) is an ENA interface (an EFA-only interface can
  never be the primary); where card 0 supports EFA an EFA-only interface takes card 0 device 1;
  every further card gets an EFA-only interface at device 0, and an ENA interface (when more IP
  interfaces are needed) at device 1. P5/P5e: 32 cards -> 32 EFA + 1 ENA; P5en: 16 EFA (EFAv3).
* NVLink domain: GPUs that share one NVLink/NVSwitch domain (8 on HGX boards, none on PCIe L40S).

Where a number below was not confirmed against those pages for this revision, its comment says so.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Revision of this table (bump on any change of a number).
FACTS_VERSION = "2025.1"


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: str  # llmcluster GPU catalog name
    gpus: int
    nvme_drives: int
    nvme_size_gb: int
    efa_interfaces: int
    network_gbps: int
    #: GPU memory per GPU (GB, as AWS lists it)
    gpu_memory_gb: int = 0
    #: physical network cards (network card indexes 0 .. n-1)
    network_cards: int = 1
    #: whether network card 0 carries an EFA (an EFA-only interface at card 0, device 1)
    efa_on_card0: bool = True
    #: GPUs in one NVLink domain (0: PCIe only, no NVLink)
    nvlink_domain: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "gpu": self.gpu, "gpus": self.gpus, "gpu_memory_gb": self.gpu_memory_gb,
                "nvme_drives": self.nvme_drives, "nvme_size_gb": self.nvme_size_gb,
                "efa_interfaces": self.efa_interfaces, "network_cards": self.network_cards,
                "efa_on_card0": self.efa_on_card0, "network_gbps": self.network_gbps,
                "nvlink_domain": self.nvlink_domain}


INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in (
        # P5: 8x H100 SXM 80GB, 8x 3.84 TB NVMe, 32 network cards with EFA (32 EFA), 3200 Gbps.
        InstanceType("p5.48xlarge", "h100", 8, 8, 3840, 32, 3200, gpu_memory_gb=80, network_cards=32,
                     nvlink_domain=8),
        # P5e: 8x H200 141GB, same network layout as P5 (32 EFA on 32 cards).
        InstanceType("p5e.48xlarge", "h200", 8, 8, 3840, 32, 3200, gpu_memory_gb=141, network_cards=32,
                     nvlink_domain=8),
        # P5en: 8x H200 141GB, EFAv3: 16 EFA interfaces (200 Gbps each) on 16 network cards.
        InstanceType("p5en.48xlarge", "h200", 8, 8, 3840, 16, 3200, gpu_memory_gb=141, network_cards=16,
                     nvlink_domain=8),
        # P6-B200: 8x B200 (179 GB per GPU as AWS lists it), 8x 3.84 TB NVMe, 3200 Gbps over 8 EFAv4
        # interfaces; 8 network cards is our reading of the 8x 400 Gbps layout: not confirmed for this
        # revision against the network-cards table.
        InstanceType("p6-b200.48xlarge", "b200", 8, 8, 3840, 8, 3200, gpu_memory_gb=179, network_cards=8,
                     nvlink_domain=8),
        # P4d / P4de: 8x A100 40GB / 80GB, 8x 1 TB NVMe, 400 Gbps, 4 network cards with EFA.
        InstanceType("p4d.24xlarge", "a100-40gb", 8, 8, 1000, 4, 400, gpu_memory_gb=40, network_cards=4,
                     nvlink_domain=8),
        InstanceType("p4de.24xlarge", "a100-80gb", 8, 8, 1000, 4, 400, gpu_memory_gb=80, network_cards=4,
                     nvlink_domain=8),
        # G6e: L40S 48GB (PCIe, no NVLink). The small sizes have no EFA. The card counts of the
        # 24xlarge (2 EFA) and 48xlarge (4 EFA) are taken as one card per EFA: not confirmed.
        InstanceType("g6e.xlarge", "l40s", 1, 1, 250, 0, 20, gpu_memory_gb=48),
        InstanceType("g6e.2xlarge", "l40s", 1, 1, 450, 0, 20, gpu_memory_gb=48),
        InstanceType("g6e.4xlarge", "l40s", 1, 1, 600, 0, 20, gpu_memory_gb=48),
        InstanceType("g6e.12xlarge", "l40s", 4, 2, 1900, 1, 100, gpu_memory_gb=48),
        InstanceType("g6e.24xlarge", "l40s", 4, 2, 1900, 2, 200, gpu_memory_gb=48, network_cards=2),
        InstanceType("g6e.48xlarge", "l40s", 8, 4, 1900, 4, 400, gpu_memory_gb=48, network_cards=4),
    )
}


@dataclass(frozen=True)
class Interface:
    """One network interface of an instance, as a launch template lists it."""

    card: int
    device: int
    #: ``interface`` (ENA, carries IP) or ``efa-only`` (no IP address: SRD over MAC addresses)
    kind: str
    #: the VLAN role whose subnet the interface sits in
    vlan: str

    @property
    def primary(self) -> bool:
        return self.card == 0 and self.device == 0

    def to_dict(self) -> dict:
        return {"card": self.card, "device": self.device, "kind": self.kind, "vlan": self.vlan}


def interface_layout(it: InstanceType | None, ip_vlans: tuple[str, ...], *, efa: bool,
                     efa_vlan: str | None) -> tuple[Interface, ...]:
    """The exact interface list (AWS's EFA guide, see the module docstring).

    ``ip_vlans``: the VLAN roles that need an ENA interface with an address, the first one (mgmt)
    being the primary (card 0, device 0). With ``efa`` (and an instance type that has EFA):
    one EFA-only interface at card 0 device 1 (when card 0 carries EFA) and at device 0 of every
    further card, all in ``efa_vlan``'s subnet; further ENA interfaces take device 1 of cards 1, 2,
    ... (device 2, 3, ... of card 0 on single-card types). Without EFA every ENA interface sits on
    card 0 at the next device index."""
    out = [Interface(0, 0, "interface", ip_vlans[0])]
    rest = list(ip_vlans[1:])
    if not (efa and it is not None and it.efa_interfaces > 0 and efa_vlan is not None):
        out += [Interface(0, i + 1, "interface", v) for i, v in enumerate(rest)]
        return tuple(out)
    efa_ifaces: list[Interface] = []
    if it.efa_on_card0:
        efa_ifaces.append(Interface(0, 1, "efa-only", efa_vlan))
    card = 1
    while len(efa_ifaces) < it.efa_interfaces:
        efa_ifaces.append(Interface(card, 0, "efa-only", efa_vlan))
        card += 1
    out += efa_ifaces
    if it.network_cards > 1:
        out += [Interface(1 + i, 1, "interface", v) for i, v in enumerate(rest)]
    else:
        out += [Interface(0, 2 + i, "interface", v) for i, v in enumerate(rest)]
    return tuple(out)
