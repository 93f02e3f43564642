"""Storage planner: RAID capacity/bandwidth/stripe geometry, Ceph OSDs, PGs, daemons, networks."""

from __future__ import annotations

import functools
import json

import pytest

from llmcluster.plan.ipam import build_ip_plan
from llmcluster.plan.storage import build_storage_plan, monitor_count, pg_count
from llmcluster.spec import parse_stack_file
from tests.conftest import STACKS, load_plan

TB = 10**12


@functools.cache
def spec_of(stack: str, overrides: tuple[str, ...] = ()):
    return parse_stack_file(STACKS / f"Pulumi.{stack}.yaml", list(overrides))


def plan_of(stack: str, overrides: tuple[str, ...] = (), weights: int | None = None):
    spec = spec_of(stack, overrides)
    return build_storage_plan(spec, build_ip_plan(spec), weights)


# --------------------------------------------------------------------------- RAID


def test_prod_raid10_of_8_drives():
    raid = plan_of("prod-baremetal", weights=700 * 10**9).raid
    assert (raid.level, raid.drives) == (10, 8)
    # RAID 10: n/2 x s = 4 x 3840 GB = 15.36 TB
    assert raid.usable_bytes == 15_360 * 10**9
    # read bound: 8 drives x 6.8 GB/s = 54.4 GB/s
    assert raid.read_gbps == pytest.approx(54.4)
    # xfs: su = chunk (512 KiB), sw = n/2 = 4
    assert (raid.stripe_unit_kib, raid.stripe_width) == (512, 4)
    assert raid.mkfs_options == ("-d", "su=512k,sw=4")
    # 700 GB / 54.4 GB/s = 12.867... -> 12.9 s
    assert raid.load_time_s == 12.9
    assert [h.host for h in raid.hosts] == ["gpu-01", "gpu-02", "gpu-03", "gpu-04"]
    h = raid.hosts[0]
    assert h.members == tuple(f"/dev/nvme{i}n1" for i in range(8))
    assert h.md_device == "/dev/md/models"
    assert h.fs_device == "/dev/mapper/models"  # encrypt defaults to true
    assert h.mount == "/srv/models"


@pytest.mark.parametrize(
    ("level", "drives", "usable_gb", "read_gbps", "sw"),
    [
        (0, 4, 4 * 3840, 4 * 6.8, 4),  # RAID 0: n x s, n x r
        (1, 2, 3840, 2 * 6.8, None),  # RAID 1: s, n x r (mirrors read in parallel), no stripe
        (5, 8, 7 * 3840, 7 * 6.8, 7),  # RAID 5: (n-1) x s, (n-1) x r
        (6, 8, 6 * 3840, 6 * 6.8, 6),  # RAID 6: (n-2) x s, (n-2) x r
        (10, 4, 2 * 3840, 4 * 6.8, 2),  # RAID 10: n/2 x s, n x r
    ],
)
def test_raid_levels(level, drives, usable_gb, read_gbps, sw):
    raid = plan_of("prod-baremetal", (f"storage.raid.level={level}", f"storage.raid.drives={drives}")).raid
    assert raid.usable_bytes == usable_gb * 10**9
    assert raid.read_gbps == pytest.approx(read_gbps)
    assert raid.stripe_width == sw
    assert raid.load_time_s is None  # no weights given


def test_ext4_stride():
    raid = plan_of("prod-baremetal", ("storage.raid.filesystem=ext4",)).raid
    # 512 KiB chunk / 4 KiB blocks = stride 128; x 4 data drives = 512
    assert raid.mkfs_options == ("-E", "stride=128,stripe_width=512")


def test_lab_raid():
    """The lab's spec has realistic drives (4 x 3840 GB U.2); its VMs realise them as small sparse disks."""
    raid = plan_of("lab", weights=10**9).raid
    assert raid.usable_bytes == 7_680 * 10**9  # 4 x 3840 GB drives, RAID 10
    # 1 GB / (4 x 6.8 GB/s) = 0.0368 s -> 0.0
    assert raid.load_time_s == 0.0


def test_lab_vms_realise_the_drives_as_small_sparse_disks():
    from llmcluster.lab.vm import DATA_DISK_MAX_GB, vm_layout
    from tests.conftest import LAB_VM_OVERRIDES

    plan = load_plan("lab", LAB_VM_OVERRIDES)
    gpu = next(v for v in vm_layout(plan) if v.name == "gpu-02")
    assert gpu.data_disks == tuple((f"nvme{i}", DATA_DISK_MAX_GB) for i in range(4))


# --------------------------------------------------------------------------- space on the RAID


def test_space_on_the_raid_of_the_plan():
    """Each node stores the whole checkpoint (the PyTorch backend keeps no engines) + a 10 % reserve."""
    plan = load_plan("prod-baremetal")
    raid, cap = plan.storage.raid, plan.capacity
    assert cap.backend == "pytorch" and raid.engine_cache_bytes == 0
    assert raid.checkpoint_bytes == cap.weights_bytes  # the whole checkpoint, not the node's share
    assert raid.reserve_bytes == raid.usable_bytes // 10 == 1_536 * 10**9
    assert raid.required_bytes == cap.weights_bytes + raid.reserve_bytes and raid.fits is True
    # the load time reads only the node's share: weights / nodes at the read bound
    per_node = cap.weights_bytes // cap.nodes
    assert raid.load_time_s == round(per_node / (raid.read_gbps * 10**9), 1)
    d = plan.storage.to_dict()["raid"]
    assert (d["required_bytes"], d["fits"], d["allow_raid0"]) == (raid.required_bytes, True, False)


@pytest.mark.parametrize(("model_dir", "engine_dir", "stored", "engines"), [
    ("/srv/models", "/var/lib/llmcluster/engines", 600, 0),  # the defaults: engines on the root disk
    ("/srv/models", "/srv/models/engines", 600, 200),  # both on the RAID
    ("/data/models", "/srv/models-engines", 0, 0),  # neither: a sibling path is not under the mount
])
def test_what_counts_on_the_raid(model_dir, engine_dir, stored, engines):
    spec = spec_of("prod-baremetal", (f"storage.model_dir={model_dir}", f"nvidia.trtllm.engine_cache_dir={engine_dir}"))
    raid = build_storage_plan(spec, build_ip_plan(spec), None, checkpoint_bytes=600, engine_cache_bytes=200).raid
    assert (raid.checkpoint_bytes, raid.engine_cache_bytes) == (stored, engines)
    assert raid.required_bytes == stored + engines + raid.reserve_bytes


def test_engine_cache_per_node():
    from llmcluster.plan.storage import ENGINE_CACHE_ENTRIES, engine_cache_bytes_per_node

    assert engine_cache_bytes_per_node("pytorch", 10**10, 8) == 0
    assert engine_cache_bytes_per_node("engine", 10**10, 8) == ENGINE_CACHE_ENTRIES * 8 * 10**10


def test_a_model_that_does_not_fit_is_refused_with_the_numbers():
    from llmcluster.errors import SpecError
    from llmcluster.validate import load_stack_file

    with pytest.raises(SpecError) as ei:
        load_stack_file(STACKS / "Pulumi.prod-baremetal.yaml", ["pools.gpu.nvme.size_gb=100"])
    (problem,) = [p for p in ei.value.problems if p.path == "storage.raid"]
    assert ei.value.rules[problem] == "storage.model-fits"
    assert "RAID 10 of 8 x 100.0 GB holds 400.0 GB" in problem.message and "10% reserve 40.0 GB" in problem.message
    # just large enough: 4 x 200 GB = 800 GB >= 673.2 GB + 80 GB reserve
    load_stack_file(STACKS / "Pulumi.prod-baremetal.yaml", ["pools.gpu.nvme.size_gb=200"])


def test_raid0_needs_the_explicit_opt_in():
    from llmcluster.errors import SpecError
    from llmcluster.validate import load_stack_file

    load_stack_file(STACKS / "Pulumi.prod-aws.yaml")  # allow_raid0: true (instance store)
    with pytest.raises(SpecError) as ei:
        load_stack_file(STACKS / "Pulumi.prod-aws.yaml", ["storage.raid.allow_raid0=false"])
    assert [p.path for p in ei.value.problems] == ["storage.raid.level"]
    assert "allow_raid0" in ei.value.problems[0].message


# --------------------------------------------------------------------------- Ceph


def test_pg_rule():
    # 36 OSDs x 100 x 60 % / 3 = 720; next power 1024 is 42 % above -> round down to 512.
    assert pg_count(36, 100, 60, 3) == 512
    # 36 x 100 x 25 % / 3 = 300; 512 is 71 % above -> 256.
    assert pg_count(36, 100, 25, 3) == 256
    # 36 x 100 x 10 % / 3 = 120; 128 is 6.7 % above -> 128.
    assert pg_count(36, 100, 10, 3) == 128
    # exactly a power of two stays: 48 x 100 x 64 % / 3 = 1024
    assert pg_count(48, 100, 64, 3) == 1024
    # 100 x 100 x 20 % / 3 = 666.7; 1024 is 54 % above -> 512
    assert pg_count(100, 100, 20, 3) == 512
    # 3 x 100 x 50 % / 3 = 50; 64 is 28 % above -> 32.
    assert pg_count(3, 100, 50, 3) == 32
    # 3 x 100 x 55 % / 3 = 55; 64 is 16 % above -> 64.
    assert pg_count(3, 100, 55, 3) == 64
    # tiny pools get the minimum of 32
    assert pg_count(3, 100, 1, 3) == 32


def test_monitor_count():
    assert [monitor_count(n) for n in range(1, 9)] == [1, 1, 3, 3, 5, 5, 5, 5]


def test_prod_ceph():
    ceph = plan_of("prod-baremetal").ceph
    # 3 hosts x 12 drives x 1 OSD per drive
    assert ceph.osd_count == 36
    # raw: 36 x 15.36 TB = 552.96 TB
    assert ceph.raw_bytes == 552_960 * 10**9
    pools = {p.name: p for p in ceph.pools}
    assert {n: p.pg_num for n, p in pools.items()} == {"models": 512, "engines": 256, "shared": 128}
    assert pools["models"].pg_raw == 720.0
    # usable: 552.96 TB x 60 % / 3 = 110.592 TB; x 25 % / 3 = 46.08; x 10 % / 3 = 18.432
    assert pools["models"].usable_bytes == 110_592 * 10**9
    assert pools["engines"].usable_bytes == 46_080 * 10**9
    assert pools["shared"].usable_bytes == 18_432 * 10**9
    assert ceph.usable_bytes == (110_592 + 46_080 + 18_432) * 10**9
    # (512 + 256 + 128) x 3 replicas / 36 OSDs = 74.7 PGs per OSD
    assert ceph.pgs_per_osd == 74.7
    assert ceph.mons == ("storage-01", "storage-02", "storage-03")
    assert ceph.mgrs == ("storage-01", "storage-02")
    assert ceph.public_network == "10.64.24.0/21"
    assert ceph.cluster_network == "10.64.32.0/21"
    assert ceph.failure_domain == "host"


def test_lab_ceph():
    ceph = plan_of("lab").ceph
    assert ceph.osd_count == 6  # 3 hosts x 2 drives
    pools = {p.name: p.pg_num for p in ceph.pools}
    # models: 6 x 100 x 70 % / 3 = 140 -> 256 is 83 % above -> 128; engines: 40 -> 64 is 60 % above -> 32
    assert pools == {"models": 128, "engines": 32}
    assert ceph.mons == ("storage-01", "storage-02", "storage-03") and ceph.mgrs == ("storage-01", "storage-02")
    assert ceph.failure_domain == "host" and ceph.pgs_per_osd == 80.0
    assert (ceph.public_network, ceph.cluster_network) == ("10.42.2.0/24", "10.42.3.0/24")


def test_osds_per_drive_multiplies_osds_not_capacity():
    ceph = plan_of("prod-baremetal", ("storage.ceph.osds_per_drive=2",)).ceph
    assert ceph.osd_count == 72
    assert ceph.raw_bytes == 552_960 * 10**9
    # 72 x 100 x 60 % / 3 = 1440; 2048 is 42 % above -> 1024
    assert {p.name: p.pg_num for p in ceph.pools}["models"] == 1024


def test_no_storage_sections():
    plan = plan_of("dev-aws")
    assert plan.raid is None and plan.ceph is None
    assert plan.to_dict() == {"model_dir": "/srv/models", "raid": None, "ceph": None}


def test_to_dict_json():
    d = plan_of("prod-baremetal", weights=700 * 10**9).to_dict()
    json.dumps(d)
    assert set(d) == {"model_dir", "raid", "ceph"}
    assert d["raid"]["md_device"] == "/dev/md/models"
    assert d["raid"]["load_time_s"] == 12.9
    assert d["ceph"]["osd_count"] == 36
    assert [p["pg_num"] for p in d["ceph"]["pools"]] == [512, 256, 128]
    assert d["raid"]["usable_bytes"] == 15.36 * TB


def test_the_inventory_carries_the_storage_plan():
    """The storage roles' input is the plan's storage section, and host drives are the plan's device names."""
    from llmcluster.inventory import build_inventory
    from llmcluster.plan.storage import nvme_devices

    plan = load_plan("prod-baremetal")
    inv = build_inventory(plan)
    assert inv["all"]["vars"]["llmcluster_storage"] == plan.storage.to_dict()
    raid = plan.storage.to_dict()["raid"]
    assert raid is not None and raid["hosts"]
    for h in plan.ip.hosts:
        pool = plan.spec.pools[h.pool]
        if pool.nvme is not None:
            assert inv["_meta"]["hostvars"][h.name]["llmcluster_nvme"]["devices"] == nvme_devices(pool.nvme.count)
