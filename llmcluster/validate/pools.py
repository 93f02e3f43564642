"""Pool rules: names, VLAN membership, GPUs, NICs, BMCs."""

from __future__ import annotations

from collections.abc import Iterator

from llmcluster.errors import Problem
from llmcluster.plan.catalog import GPUS
from llmcluster.plan.ipam import hostname
from llmcluster.plan.switches import leaf_names, spine_names
from llmcluster.spec.loader import did_you_mean
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import rule


@rule("pools.hostname-prefixes-unique")
def hostname_prefixes_unique(spec: Spec) -> Iterator[Problem]:
    """No two pools share a host name prefix (host names would clash)."""
    prefixes: dict[str, str] = {}
    for name in spec.pools:
        prefix = spec.hostname_prefix(name)
        if prefix in prefixes:
            yield Problem(f"pools.{name}.hostname_prefix",
                          f"'{prefix}' is also the prefix of pool {prefixes[prefix]}: host names would clash")
        prefixes[prefix] = name


@rule("pools.on-mgmt")
def on_mgmt(spec: Spec) -> Iterator[Problem]:
    """Every pool is on the mgmt VLAN."""
    for name, pool in spec.pools.items():
        if "mgmt" not in pool.vlans:
            yield Problem(f"pools.{name}.vlans", "must include 'mgmt' (every host is managed over it)")


@rule("pools.vlans-declared")
def vlans_declared(spec: Spec) -> Iterator[Problem]:
    """A pool's VLANs are declared in fabric.vlans, each listed once."""
    declared = {r for r, _ in spec.fabric.vlans.items()}
    for name, pool in spec.pools.items():
        for i, role in enumerate(pool.vlans):
            if role not in declared:
                yield Problem(f"pools.{name}.vlans.{i}", f"VLAN '{role}' is not declared in fabric.vlans")
        if len(set(pool.vlans)) != len(pool.vlans):
            yield Problem(f"pools.{name}.vlans", "lists a VLAN twice")


@rule("pools.gpu-section")
def gpu_section(spec: Spec) -> Iterator[Problem]:
    """Pools with role 'gpu', and only those, have a gpu section; at least one such pool exists."""
    for name, pool in spec.pools.items():
        if pool.role == "gpu" and pool.gpu is None:
            yield Problem(f"pools.{name}.gpu", "missing: a pool with role 'gpu' needs gpu.model and gpu.count")
        if pool.role != "gpu" and pool.gpu is not None:
            yield Problem(f"pools.{name}.gpu", f"only pools with role 'gpu' have GPUs (this one is '{pool.role}')")
    if not any(p.role == "gpu" for p in spec.pools.values()):
        yield Problem("pools", "no pool with role 'gpu': a serving cluster needs GPU nodes")


@rule("pools.gpu-model-known")
def gpu_model_known(spec: Spec) -> Iterator[Problem]:
    """gpu.model is in the GPU catalog."""
    for name, pool in spec.pools.items():
        if pool.gpu is not None and pool.gpu.model not in GPUS:
            yield Problem(f"pools.{name}.gpu.model",
                          f"unknown GPU '{pool.gpu.model}'"
                          f"{did_you_mean(pool.gpu.model, GPUS)} (known: {', '.join(sorted(GPUS))})")


#: GPUs on an HGX baseboard with NVSwitch (HGX H100/H200/H20/A100/B200 4-GPU and 8-GPU).
HGX_BOARD_GPUS = (4, 8)


def nvswitch_board_sizes(model: str) -> tuple[int, ...]:
    """GPU counts of the NVSwitch systems a GPU comes in: HGX boards (4 or 8); a rack-scale NVLink
    system (GB200 NVL72, IMEX) per its compute tray (the catalog's GPUs per node)."""
    g = GPUS[model]
    return (g.default_gpus_per_node,) if g.nvlink_fabric == "imex" else HGX_BOARD_GPUS


@rule("pools.nvswitch")
def nvswitch(spec: Spec) -> Iterator[Problem]:
    """gpu.nvswitch only on NVLink GPUs."""
    for name, pool in spec.pools.items():
        if pool.gpu is None or pool.gpu.model not in GPUS or not pool.gpu.nvswitch:
            continue
        if GPUS[pool.gpu.model].nvlink_domain < 2:
            yield Problem(f"pools.{name}.gpu.nvswitch", f"{pool.gpu.model} has no NVLink/NVSwitch")


@rule("pools.nvswitch-board", requires=("pools.nvswitch",))
def nvswitch_board(spec: Spec) -> Iterator[Problem]:
    """An NVSwitch system (gpu.nvswitch) has the GPU count of a real board: 4 or 8 on HGX, a compute tray's
    4 on GB200 NVL72."""
    for name, pool in spec.pools.items():
        if pool.gpu is None or pool.gpu.model not in GPUS or not pool.gpu.nvswitch:
            continue
        sizes = nvswitch_board_sizes(pool.gpu.model)
        if pool.gpu.count not in sizes:
            kind = "HGX boards" if sizes == HGX_BOARD_GPUS else f"{pool.gpu.model} compute trays"
            yield Problem(f"pools.{name}.gpu.count",
                          f"{pool.gpu.count} GPUs with nvswitch: {pool.gpu.model} NVSwitch systems ({kind}) carry "
                          f"{' or '.join(map(str, sizes))} GPUs per node: set count to "
                          f"{' or '.join(map(str, sizes))}, or nvswitch: false for a PCIe server")


@rule("pools.host-names-unique")
def host_names_unique(spec: Spec) -> Iterator[Problem]:
    """No host is named like a switch of the fabric (leaf-01, spine-01, ...) or like a host of another pool."""
    owner: dict[str, str] = {}
    if spec.platform == "baremetal" and spec.baremetal is not None:
        bm = spec.baremetal
        for sw in leaf_names(bm.leaf_switches):
            owner[sw] = "baremetal.leaf_switches"
        for sw in spine_names(bm.spine_switches):
            owner[sw] = "baremetal.spine_switches"
    prefixes: dict[str, str] = {}
    for name, pool in spec.pools.items():
        prefix = spec.hostname_prefix(name)
        if prefix in prefixes:
            continue  # pools.hostname-prefixes-unique reports it
        prefixes[prefix] = name
        clashes = []
        for i in range(1, pool.count + 1):
            host = hostname(prefix, i, pool.count)
            if host in owner:
                clashes.append((host, owner[host]))
            else:
                owner[host] = f"pools.{name}"
        if clashes:
            host, other = clashes[0]
            what = "switch" if other.startswith("baremetal.") else "host"
            more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
            yield Problem(f"pools.{name}.hostname_prefix",
                          f"host {host}{more} has the name of a {what} ({other}): inventory, DNS and certificates "
                          f"would confuse them; set another hostname_prefix")


@rule("pools.nic-vlans")
def nic_vlans(spec: Spec) -> Iterator[Problem]:
    """A NIC carries only VLANs of its pool."""
    for name, pool in spec.pools.items():
        for i, nic in enumerate(pool.nics):
            for j, role in enumerate(nic.vlans):
                if role not in pool.vlans:
                    yield Problem(f"pools.{name}.nics.{i}.vlans.{j}",
                                  f"VLAN '{role}' is not one of the pool's vlans ({', '.join(pool.vlans)})")


@rule("pools.bmc-needs-oob")
def bmc_needs_oob(spec: Spec) -> Iterator[Problem]:
    """Pools with BMCs need the oob VLAN (on bare metal; see aws.no-bmc for EC2)."""
    if spec.fabric.vlans.oob is not None or spec.platform == "aws":
        return
    for name, pool in spec.pools.items():
        if pool.bmc:
            yield Problem(f"pools.{name}.bmc", "BMCs live on the oob VLAN: declare fabric.vlans.oob")
