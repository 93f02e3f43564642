"""Storage rules: the local NVMe RAID and the Ceph cluster (placement, networks, redundancy)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from llmcluster.errors import Problem
from llmcluster.plan.storage import RAID_MIN_DRIVES
from llmcluster.spec.loader import did_you_mean
from llmcluster.spec.models import Pool, Spec
from llmcluster.validate.registry import PLAN, rule
from llmcluster.validate.runner import PlanFacts


def _raid_pool(spec: Spec) -> Pool | None:
    """The RAID's pool when it exists and has NVMe drives (storage.raid-pool reports the rest)."""
    raid = spec.storage.raid
    pool = spec.pools.get(raid.pool) if raid is not None else None
    return pool if pool is not None and pool.nvme is not None and pool.nvme.count else None


def _ceph_pool(spec: Spec) -> Pool | None:
    ceph = spec.storage.ceph
    return spec.pools.get(ceph.pool) if ceph is not None else None


@rule("storage.raid-pool")
def raid_pool(spec: Spec) -> Iterator[Problem]:
    """storage.raid.pool is a declared pool with NVMe drives."""
    raid = spec.storage.raid
    if raid is None:
        return
    pool = spec.pools.get(raid.pool)
    if pool is None:
        yield Problem("storage.raid.pool", f"unknown pool '{raid.pool}'{did_you_mean(raid.pool, spec.pools)}")
    elif pool.nvme is None or pool.nvme.count == 0:
        yield Problem("storage.raid.pool", f"pool '{raid.pool}' has no NVMe drives (pools.{raid.pool}.nvme)")


@rule("storage.raid-drives")
def raid_drives(spec: Spec) -> Iterator[Problem]:
    """The RAID's drives exist in the pool and are enough (and even, for RAID 10) for its level."""
    raid, pool = spec.storage.raid, _raid_pool(spec)
    if raid is None or pool is None or pool.nvme is None:
        return
    drives = raid.drives or pool.nvme.count
    if drives > pool.nvme.count:
        yield Problem("storage.raid.drives", f"{drives} drives but pools.{raid.pool}.nvme.count is {pool.nvme.count}")
    need = RAID_MIN_DRIVES[raid.level]
    if drives < need:
        yield Problem("storage.raid.drives", f"RAID {raid.level} needs at least {need} drives, not {drives}")
    if raid.level == 10 and drives % 2:
        yield Problem("storage.raid.drives", f"RAID 10 needs an even number of drives, not {drives}")


@rule("storage.ceph-pool")
def ceph_pool(spec: Spec) -> Iterator[Problem]:
    """storage.ceph.pool is a declared pool with drives for OSDs."""
    ceph = spec.storage.ceph
    if ceph is None:
        return
    pool = spec.pools.get(ceph.pool)
    if pool is None:
        yield Problem("storage.ceph.pool", f"unknown pool '{ceph.pool}'{did_you_mean(ceph.pool, spec.pools)}")
    elif pool.nvme is None or pool.nvme.count == 0:
        yield Problem("storage.ceph.pool", f"pool '{ceph.pool}' has no drives for OSDs")


@rule("storage.ceph-networks")
def ceph_networks(spec: Spec) -> Iterator[Problem]:
    """Ceph hosts are on declared storage_public and storage_cluster VLANs."""
    ceph, pool = spec.storage.ceph, _ceph_pool(spec)
    if ceph is None or pool is None:
        return
    for role in ("storage_public", "storage_cluster"):
        if spec.fabric.vlans.get(role) is None:
            yield Problem(f"fabric.vlans.{role}", f"missing: Ceph needs a {role} VLAN")
        elif role not in pool.vlans:
            yield Problem(f"pools.{ceph.pool}.vlans", f"Ceph hosts must be on the {role} VLAN")


@rule("storage.ceph-replicas-fit")
def ceph_replicas_fit(spec: Spec) -> Iterator[Problem]:
    """There are enough OSDs (failure domain osd) or hosts (failure domain host) for the largest size."""
    ceph, pool = spec.storage.ceph, _ceph_pool(spec)
    if ceph is None or pool is None:
        return
    max_size = max(p.size for p in ceph.pools)
    osds = pool.count * (pool.nvme.count if pool.nvme else 0) * ceph.osds_per_drive
    if ceph.failure_domain == "osd" and osds < max_size:
        yield Problem("storage.ceph.pool", f"{osds} OSDs cannot hold {max_size} replicas")
    if ceph.failure_domain == "host" and pool.count < max_size:
        yield Problem("storage.ceph.pool", f"{pool.count} hosts cannot hold {max_size} replicas on "
                                           f"separate hosts: set pools.{ceph.pool}.count >= {max_size}")


@rule("storage.ceph-cluster-bandwidth")
def ceph_cluster_bandwidth(spec: Spec) -> Iterator[Problem]:
    """The cluster network carries at least public bandwidth x replicas (replication and recovery)."""
    ceph, pool = spec.storage.ceph, _ceph_pool(spec)
    if ceph is None or pool is None:
        return
    replicas = max(p.size for p in ceph.pools)
    speed = {"storage_public": 0, "storage_cluster": 0}
    for nic in pool.nics:
        for role in speed:
            if role in nic.vlans:
                speed[role] += nic.speed_gbps * nic.count
    if not speed["storage_public"] or not speed["storage_cluster"]:
        return
    # Each client write is sent on by the primary to the other replicas and recovery shares the
    # same links: the cluster network needs public bandwidth x replicas (DESIGN section 6).
    if speed["storage_cluster"] < speed["storage_public"] * replicas:
        yield Problem(f"pools.{ceph.pool}.nics",
                      f"cluster network {speed['storage_cluster']} Gb/s is below public {speed['storage_public']} "
                      f"Gb/s x {replicas} replicas: replication and recovery would throttle clients")


@rule("storage.ceph-pool-names-unique")
def ceph_pool_names_unique(spec: Spec) -> Iterator[Problem]:
    """Ceph pool names are unique."""
    ceph = spec.storage.ceph
    if ceph is None:
        return
    names = Counter(p.name for p in ceph.pools)
    for i, p in enumerate(ceph.pools):
        if names[p.name] > 1:
            yield Problem(f"storage.ceph.pools.{i}.name", f"Ceph pool '{p.name}' is declared twice")


@rule("storage.ceph-min-size")
def ceph_min_size(spec: Spec) -> Iterator[Problem]:
    """A Ceph pool's min_size is at most its size."""
    ceph = spec.storage.ceph
    for i, p in enumerate(ceph.pools if ceph is not None else ()):
        if p.min_size > p.size:
            yield Problem(f"storage.ceph.pools.{i}.min_size", f"{p.min_size} is above size {p.size}")


@rule("storage.ceph-redundancy")
def ceph_redundancy(spec: Spec) -> Iterator[Problem]:
    """Ceph pools keep 3 replicas and accept writes on 2, unless allow_reduced_redundancy says otherwise."""
    ceph = spec.storage.ceph
    if ceph is None or ceph.allow_reduced_redundancy:
        return
    for i, p in enumerate(ceph.pools):
        if p.size < 3:
            yield Problem(f"storage.ceph.pools.{i}.size",
                          f"{p.size} < 3 replicas: set size 3, or "
                          "storage.ceph.allow_reduced_redundancy: true (not for production)")
        if p.min_size < 2:
            yield Problem(f"storage.ceph.pools.{i}.min_size",
                          f"{p.min_size} < 2 accepts writes on one copy: set 2, or "
                          "storage.ceph.allow_reduced_redundancy: true")


@rule("storage.ceph-data-total")
def ceph_data_total(spec: Spec) -> Iterator[Problem]:
    """The Ceph pools' percent_data add up to at most 100."""
    ceph = spec.storage.ceph
    if ceph is None:
        return
    total = sum(p.percent_data for p in ceph.pools)
    if total > 100:
        yield Problem("storage.ceph.pools", f"percent_data adds up to {total}: at most 100")


@rule("storage.raid0-explicit")
def raid0_explicit(spec: Spec) -> Iterator[Problem]:
    """A RAID 0 model cache needs storage.raid.allow_raid0: true (one failed drive loses the whole array)."""
    raid = spec.storage.raid
    if raid is not None and raid.level == 0 and not raid.allow_raid0:
        yield Problem("storage.raid.level",
                      "RAID 0 has no redundancy (one failed drive loses the array): use level 10, or set "
                      "storage.raid.allow_raid0: true where the model is fetched again (ephemeral instance stores)")


def _gb(n: int) -> str:
    return f"{n / 10**9:,.1f} GB"


@rule("storage.model-fits", layer=PLAN,
      requires=("storage.raid-pool", "storage.raid-drives", "serving.pool", "serving.model-known",
                "serving.precision-known"))
def model_fits(facts: PlanFacts) -> list[Problem]:
    """The served model's checkpoint, the engine cache and the reserve fit each node's RAID (plan.storage:
    checkpoint + engine cache + 10 % reserve <= usable bytes)."""
    from llmcluster.errors import InfeasibleError, PlanError
    from llmcluster.plan.capacity import size_deployment
    from llmcluster.plan.storage import RESERVE_FRACTION, build_storage_plan, engine_cache_bytes_per_node

    spec = facts.spec
    s = spec.serving
    if spec.storage.raid is None:
        return []
    pool = spec.pools.get(s.pool)
    if pool is None or pool.gpu is None:
        return []
    try:
        cap = size_deployment(model=s.model, gpu=pool.gpu.model, precision=s.precision, context=s.context,
                              concurrency=s.concurrency, gpus_per_node=pool.gpu.count, kv_dtype=s.kv_dtype)
        raid = build_storage_plan(
            spec, facts.ip_plan(), checkpoint_bytes=cap.weights_bytes,
            engine_cache_bytes=engine_cache_bytes_per_node(cap.backend, cap.weights_bytes_per_gpu,
                                                           cap.gpus_per_node)).raid
    except (InfeasibleError, PlanError):  # reported by serving.capacity / the address rules
        return []
    if raid is None or raid.fits is not False:
        return []
    assert raid.required_bytes is not None and raid.checkpoint_bytes is not None
    return [Problem(
        "storage.raid",
        f"{s.model} {cap.precision} needs {_gb(raid.required_bytes)} per node on the RAID "
        f"(checkpoint {_gb(raid.checkpoint_bytes)} + engine cache {_gb(raid.engine_cache_bytes)} + "
        f"{float(RESERVE_FRACTION):.0%} reserve {_gb(raid.reserve_bytes)}) but RAID {raid.level} of {raid.drives} x "
        f"{_gb(raid.drive_bytes)} holds {_gb(raid.usable_bytes)}: use more or larger drives "
        f"(pools.{raid.pool}.nvme) or another level")]
