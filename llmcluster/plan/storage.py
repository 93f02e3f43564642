"""Storage planner: the local NVMe RAID of the serving nodes and the Ceph cluster (pure).

RAID (``storage.raid``) — one md array per host of the pool, members ``/dev/nvme{i}n1``,
array ``/dev/md/models``, optionally LUKS on top (``/dev/mapper/models``), then the file
system mounted at ``mount``. Sizes are decimal (``size_gb`` x 10^9 bytes) and ignore md
and LUKS metadata (a few MiB). For ``n`` drives of ``s`` bytes reading ``r`` GB/s each:

===== ============== ===================== ====================
level usable         sequential read bound xfs sw (data drives)
===== ============== ===================== ====================
0     n x s          n x r                 n
1     s              n x r                 1 (no stripe)
5     (n - 1) x s    (n - 1) x r           n - 1
6     (n - 2) x s    (n - 2) x r           n - 2
10    n / 2 x s      n x r                 n / 2
===== ============== ===================== ====================

The read bandwidths are **upper bounds** of md RAID sequential reads (every member
streaming at its rated speed, mirrors serving reads in parallel, parity drives idle);
real arrays get less (PCIe/NUMA topology, md thread, LUKS if the CPU lacks AES
throughput). The xfs stripe unit is the chunk size. The model load time is
``weights_bytes_per_node / read bandwidth``, seconds rounded to 0.1, the same bound (each
node of a multi-node replica reads only its ranks' share of the weights).

Space on the RAID (``storage.model-fits`` checks it): every node stores the **whole
checkpoint** (a Hugging Face checkpoint is not split per node: each rank reads its tensors
out of the same safetensors files) when ``storage.model_dir`` lies under the RAID's mount,
plus the **engine cache** when ``nvidia.trtllm.engine_cache_dir`` lies under it and the
backend builds engines (``trtllm-build``): :data:`ENGINE_CACHE_ENTRIES` entries (the one in
use and the one a version change builds beside it) of ``weights_bytes_per_gpu x GPUs per
node`` each (an engine holds its rank's weights); the PyTorch backend keeps none. The
**reserve** is :data:`RESERVE_FRACTION` of the usable bytes: xfs metadata and log (1-2 %)
and free space, because xfs allocation degrades near full. ``required = checkpoint +
engine cache + reserve`` must not exceed ``usable``.

Ceph (``storage.ceph``) — ``hosts x drives x osds_per_drive`` OSDs. Raw capacity is all
drives; a pool's usable capacity is ``raw x percent_data / 100 / size`` (before the
``nearfull`` 85 % and ``full`` 95 % ratios). PG counts follow the Ceph pgcalc rule:
``raw_pgs = osds x target_pgs_per_osd x percent_data / 100 / size``, rounded to a power of
two — up, unless the next power is more than 25 % above ``raw_pgs``, then down — and at
least 32 (so small pools still spread over the OSDs and autoscaling has room). Monitors:
the largest odd number not above ``min(5, hosts)`` (1 for 1-2 hosts, 3 for 3-4, 5 from 5);
managers: ``min(2, hosts)``; both on the first hosts of the pool. The public and cluster
networks are the ``storage_public`` and ``storage_cluster`` VLAN subnets.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from llmcluster.errors import PlanError
from llmcluster.plan.ipam import IpPlan
from llmcluster.spec.models import Spec

MD_DEVICE = "/dev/md/models"
CRYPT_NAME = "models"
PG_MIN = 32
PG_ROUND_UP_LIMIT = Fraction(5, 4)  # round up only when the next power is at most 25 % above
MAX_MONS = 5
MAX_MGRS = 2
#: Share of the RAID's usable bytes kept free (xfs metadata and log, allocation headroom).
RESERVE_FRACTION = Fraction(1, 10)
#: Engine cache entries per node the RAID must hold (in use + the next one, built beside it).
ENGINE_CACHE_ENTRIES = 2
#: Minimum member drives per md RAID level (the planner relies on it; ``storage.raid-drives`` enforces it).
RAID_MIN_DRIVES = {0: 2, 1: 2, 5: 3, 6: 4, 10: 4}


def nvme_device(index: int) -> str:
    return f"/dev/nvme{index}n1"


def nvme_devices(count: int) -> list[str]:
    """The NVMe namespaces of a host with ``count`` drives, as the spec's ``nvme.count`` names them."""
    return [nvme_device(i) for i in range(count)]


def data_drives(level: int, drives: int) -> int:
    """Drives that carry distinct data in a stripe (the xfs ``sw``)."""
    return {0: drives, 1: 1, 5: drives - 1, 6: drives - 2, 10: drives // 2}[level]


def under(path: str, mount: str) -> bool:
    """Whether ``path`` lies on the file system mounted at ``mount`` (the mount point itself or below)."""
    p, m = path.rstrip("/") or "/", mount.rstrip("/") or "/"
    return p == m or p.startswith(m + "/") or m == "/"


def engine_cache_bytes_per_node(backend: str, weights_bytes_per_gpu: int, gpus_per_node: int) -> int:
    """Bytes of the engine cache on one node: none for the PyTorch backend, else
    :data:`ENGINE_CACHE_ENTRIES` engines of every rank the node runs."""
    if backend != "engine":
        return 0
    return ENGINE_CACHE_ENTRIES * weights_bytes_per_gpu * gpus_per_node


def read_drives(level: int, drives: int) -> int:
    """Drives that stream in a sequential read (mirrors read in parallel; parity does not)."""
    return {0: drives, 1: drives, 5: drives - 1, 6: drives - 2, 10: drives}[level]


def pg_count(osds: int, target_pgs_per_osd: int, percent_data: int, size: int) -> int:
    """Ceph pgcalc: nearest power of two per the 25 % rule, at least 32 (module docstring)."""
    raw = Fraction(osds * target_pgs_per_osd * percent_data, 100 * size)
    if raw <= PG_MIN:
        return PG_MIN
    lower = 1 << (int(raw).bit_length() - 1)  # largest power of two <= raw
    upper = lower if lower == raw else lower * 2
    chosen = upper if upper <= raw * PG_ROUND_UP_LIMIT else lower
    return max(PG_MIN, chosen)


def monitor_count(hosts: int) -> int:
    n = min(MAX_MONS, hosts)
    return n if n % 2 else max(1, n - 1)


@dataclass(frozen=True)
class RaidHost:
    host: str
    md_device: str
    members: tuple[str, ...]
    crypt_device: str | None  # /dev/mapper/<name> when encrypted
    fs_device: str
    mount: str

    def to_dict(self) -> dict:
        return {"host": self.host, "md_device": self.md_device, "members": list(self.members),
                "crypt_device": self.crypt_device, "fs_device": self.fs_device, "mount": self.mount}


@dataclass(frozen=True)
class RaidPlan:
    pool: str
    level: int
    drives: int
    drive_bytes: int
    drive_read_gbps: float
    chunk_kib: int
    filesystem: str
    mount: str
    encrypt: bool
    allow_raid0: bool
    usable_bytes: int
    read_gbps: float  # md RAID sequential read upper bound, GB/s
    data_drives: int
    stripe_unit_kib: int | None  # xfs su (None for RAID 1: no stripe)
    stripe_width: int | None  # xfs sw
    mkfs_options: tuple[str, ...]
    load_time_s: float | None
    hosts: tuple[RaidHost, ...]
    #: What each node keeps on the RAID (module docstring): None when the model is not known.
    checkpoint_bytes: int | None = None
    engine_cache_bytes: int = 0
    reserve_bytes: int = 0
    required_bytes: int | None = None

    @property
    def fits(self) -> bool | None:
        return None if self.required_bytes is None else self.required_bytes <= self.usable_bytes

    def to_dict(self) -> dict:
        return {
            "pool": self.pool, "level": self.level, "drives": self.drives, "drive_bytes": self.drive_bytes,
            "drive_read_gbps": self.drive_read_gbps, "chunk_kib": self.chunk_kib, "filesystem": self.filesystem,
            "mount": self.mount, "encrypt": self.encrypt, "md_device": MD_DEVICE,
            "usable_bytes": self.usable_bytes, "read_gbps": self.read_gbps, "data_drives": self.data_drives,
            "stripe_unit_kib": self.stripe_unit_kib, "stripe_width": self.stripe_width,
            "mkfs_options": list(self.mkfs_options), "load_time_s": self.load_time_s,
            "allow_raid0": self.allow_raid0,
            "checkpoint_bytes": self.checkpoint_bytes, "engine_cache_bytes": self.engine_cache_bytes,
            "reserve_bytes": self.reserve_bytes, "required_bytes": self.required_bytes, "fits": self.fits,
            "hosts": [h.to_dict() for h in self.hosts],
        }


@dataclass(frozen=True)
class CephPoolPlan:
    name: str
    application: str
    size: int
    min_size: int
    percent_data: int
    pg_raw: float
    pg_num: int
    usable_bytes: int

    def to_dict(self) -> dict:
        return {"name": self.name, "application": self.application, "size": self.size, "min_size": self.min_size,
                "percent_data": self.percent_data, "pg_raw": self.pg_raw, "pg_num": self.pg_num,
                "usable_bytes": self.usable_bytes}


@dataclass(frozen=True)
class CephPlan:
    pool: str
    hosts: tuple[str, ...]
    drives_per_host: int
    drive_bytes: int
    osds_per_drive: int
    osd_count: int
    raw_bytes: int
    usable_bytes: int
    target_pgs_per_osd: int
    pgs_per_osd: float  # PG replicas per OSD with the chosen pg_num values
    failure_domain: str
    encrypt: bool
    mons: tuple[str, ...]
    mgrs: tuple[str, ...]
    public_network: str | None
    cluster_network: str | None
    pools: tuple[CephPoolPlan, ...]

    def to_dict(self) -> dict:
        return {
            "pool": self.pool, "hosts": list(self.hosts), "drives_per_host": self.drives_per_host,
            "drive_bytes": self.drive_bytes, "osds_per_drive": self.osds_per_drive, "osd_count": self.osd_count,
            "raw_bytes": self.raw_bytes, "usable_bytes": self.usable_bytes,
            "target_pgs_per_osd": self.target_pgs_per_osd, "pgs_per_osd": self.pgs_per_osd,
            "failure_domain": self.failure_domain, "encrypt": self.encrypt,
            "mons": list(self.mons), "mgrs": list(self.mgrs),
            "public_network": self.public_network, "cluster_network": self.cluster_network,
            "pools": [p.to_dict() for p in self.pools],
        }


@dataclass(frozen=True)
class StoragePlan:
    model_dir: str
    raid: RaidPlan | None
    ceph: CephPlan | None

    def to_dict(self) -> dict:
        return {"model_dir": self.model_dir, "raid": self.raid.to_dict() if self.raid else None,
                "ceph": self.ceph.to_dict() if self.ceph else None}


def _raid(spec: Spec, ip: IpPlan, weights_bytes_per_node: int | None, checkpoint_bytes: int | None,
          engine_cache_bytes: int) -> RaidPlan | None:
    raid = spec.storage.raid
    if raid is None:
        return None
    pool = spec.pools.get(raid.pool)
    if pool is None or pool.nvme is None or pool.nvme.count == 0:
        raise PlanError("storage.raid.pool", f"pool '{raid.pool}' has no NVMe drives for the RAID")
    n = raid.drives or pool.nvme.count
    if n > pool.nvme.count:
        raise PlanError("storage.raid.drives", f"{n} drives but pools.{raid.pool}.nvme.count is {pool.nvme.count}")
    minimum = RAID_MIN_DRIVES[raid.level]
    if n < minimum or (raid.level == 10 and n % 2):
        raise PlanError("storage.raid.drives", f"RAID {raid.level} cannot be built from {n} drives")
    size = pool.nvme.size_gb * 10**9
    data = data_drives(raid.level, n)
    usable = {0: n * size, 1: size, 5: (n - 1) * size, 6: (n - 2) * size, 10: n // 2 * size}[raid.level]
    read = round(read_drives(raid.level, n) * pool.nvme.read_gbps, 3)
    striped = raid.level != 1
    if raid.filesystem == "xfs":
        mkfs = ("-d", f"su={raid.chunk_kib}k,sw={data}") if striped else ()
    else:  # ext4: stride and stripe width in 4 KiB blocks
        stride = max(1, raid.chunk_kib // 4)
        mkfs = ("-E", f"stride={stride},stripe_width={stride * data}") if striped else ()
    load = None
    if weights_bytes_per_node is not None:
        load = round(weights_bytes_per_node / (read * 10**9), 1)
    stored = None
    reserve = int(usable * RESERVE_FRACTION)
    engines = engine_cache_bytes if under(spec.nvidia.trtllm.engine_cache_dir, raid.mount) else 0
    if checkpoint_bytes is not None:
        stored = checkpoint_bytes if under(spec.storage.model_dir, raid.mount) else 0
    crypt = f"/dev/mapper/{CRYPT_NAME}" if raid.encrypt else None
    hosts = tuple(
        RaidHost(host=h.name, md_device=MD_DEVICE, members=tuple(nvme_device(i) for i in range(n)),
                 crypt_device=crypt, fs_device=crypt or MD_DEVICE, mount=raid.mount)
        for h in ip.hosts_in_pool(raid.pool)
    )
    return RaidPlan(
        pool=raid.pool, level=raid.level, drives=n, drive_bytes=size, drive_read_gbps=pool.nvme.read_gbps,
        chunk_kib=raid.chunk_kib, filesystem=raid.filesystem, mount=raid.mount, encrypt=raid.encrypt,
        allow_raid0=raid.allow_raid0, usable_bytes=usable, read_gbps=read, data_drives=data,
        stripe_unit_kib=raid.chunk_kib if striped else None, stripe_width=data if striped else None,
        mkfs_options=mkfs, load_time_s=load, hosts=hosts,
        checkpoint_bytes=stored, engine_cache_bytes=engines, reserve_bytes=reserve,
        required_bytes=None if stored is None else stored + engines + reserve,
    )


def _ceph(spec: Spec, ip: IpPlan) -> CephPlan | None:
    ceph = spec.storage.ceph
    if ceph is None:
        return None
    pool = spec.pools.get(ceph.pool)
    if pool is None or pool.nvme is None or pool.nvme.count == 0:
        raise PlanError("storage.ceph.pool", f"pool '{ceph.pool}' has no drives for OSDs")
    hosts = tuple(h.name for h in ip.hosts_in_pool(ceph.pool))
    drives = pool.nvme.count
    size = pool.nvme.size_gb * 10**9
    osds = len(hosts) * drives * ceph.osds_per_drive
    raw = len(hosts) * drives * size
    pools = []
    for p in ceph.pools:
        pg_raw = Fraction(osds * ceph.target_pgs_per_osd * p.percent_data, 100 * p.size)
        pools.append(CephPoolPlan(
            name=p.name, application=p.application, size=p.size, min_size=p.min_size,
            percent_data=p.percent_data, pg_raw=round(float(pg_raw), 2),
            pg_num=pg_count(osds, ceph.target_pgs_per_osd, p.percent_data, p.size),
            usable_bytes=raw * p.percent_data // (100 * p.size),
        ))
    pg_replicas = sum(p.pg_num * p.size for p in pools)
    vlans = ip.vlans
    return CephPlan(
        pool=ceph.pool, hosts=hosts, drives_per_host=drives, drive_bytes=size, osds_per_drive=ceph.osds_per_drive,
        osd_count=osds, raw_bytes=raw, usable_bytes=sum(p.usable_bytes for p in pools),
        target_pgs_per_osd=ceph.target_pgs_per_osd,
        pgs_per_osd=round(pg_replicas / osds, 1) if osds else 0.0,
        failure_domain=ceph.failure_domain, encrypt=ceph.encrypt,
        mons=hosts[: monitor_count(len(hosts))] if hosts else (),
        mgrs=hosts[: min(MAX_MGRS, len(hosts))],
        public_network=vlans["storage_public"].cidr if "storage_public" in vlans else None,
        cluster_network=vlans["storage_cluster"].cidr if "storage_cluster" in vlans else None,
        pools=tuple(pools),
    )


def build_storage_plan(spec: Spec, ip: IpPlan, weights_bytes_per_node: int | None = None,
                       checkpoint_bytes: int | None = None, engine_cache_bytes: int = 0) -> StoragePlan:
    """RAID layout, bounds and space, Ceph OSDs/PGs/daemons (see the module docstring for every formula).

    ``weights_bytes_per_node``: what one node reads at load (the load time); ``checkpoint_bytes``:
    the whole checkpoint each node stores; ``engine_cache_bytes``: its engine cache
    (:func:`engine_cache_bytes_per_node`)."""
    return StoragePlan(model_dir=spec.storage.model_dir,
                       raid=_raid(spec, ip, weights_bytes_per_node, checkpoint_bytes, engine_cache_bytes),
                       ceph=_ceph(spec, ip))
