"""The verification suite's local NVMe RAID checks (llmcluster/verify/raid.py): which checks run
where, and the judges on facts built from real tool output (tests/helpers/hosttool_samples.py)."""

from __future__ import annotations

import json

import pytest

from llmcluster.verify import raid as R
from tests.conftest import LAB_VM_OVERRIDES, load_plan
from tests.helpers import hosttool_samples as S

UUID = "3c1d2f52-94b4-4b0e-9a35-2b2f8a1d3c4e"
MEMBERS = [f"/dev/disk/by-id/virtio-nvme{i}" for i in range(4)]
REAL = ["/dev/vdb", "/dev/vdc", "/dev/vdd", "/dev/vde"]


def _check(name: str, **params) -> R.RaidCheck:
    plan = load_plan("lab", LAB_VM_OVERRIDES)
    hv = {"gpu-02": {"nvme_raid_devices": MEMBERS}}
    (check,) = [c for c in R.raid_checks(plan, hv) if c.name == name]
    return R.RaidCheck(check.host, name, {**check.params, **params})


def _facts(detail: str = S.MDADM_DETAIL_CLEAN, **over) -> dict:
    xfs = json.dumps({"signatures": [{"device": "dm-0", "offset": "0x0", "type": "xfs", "uuid": UUID,
                                      "label": "models"}]})
    facts = {
        "detail": {"rc": 0, "out": detail, "err": ""},
        "mdadm_conf": S.MDADM_CONF,
        "mountinfo": "29 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
                     "97 29 253:0 / /srv/models rw,noatime - xfs /dev/mapper/models rw,attr2,sunit=1024,swidth=2048\n",
        "fstab": f"/dev/vda / ext4 rw 0 1\nUUID={UUID} /srv/models xfs noatime,nofail 0 0\n",
        "md_wipefs": {"rc": 0, "out": S.WIPEFS_LUKS, "err": ""},
        "fs_wipefs": {"rc": 0, "out": xfs, "err": ""},
        "fs_uuid": {"rc": 0, "out": UUID + "\n", "err": ""},
        "fs_real": "/dev/dm-0",
        "xfs_info": {"rc": 0, "out": S.XFS_INFO, "err": ""},
        "members": dict(zip(MEMBERS, REAL, strict=True)),
        "by_id": S.BY_ID,
    }
    facts.update(over)
    return facts


def test_checks_per_host_and_the_lab_containers_are_skipped_with_the_reason():
    from llmcluster.lab import LabRuntime

    plan = load_plan("lab")
    hv = LabRuntime(plan, "state-not-used").inventory()["_meta"]["hostvars"]
    checks = R.raid_checks(plan, hv)
    assert {c.host for c in checks} == {h.host for h in plan.storage.raid.hosts}
    assert [c.name for c in checks if c.host == "gpu-01"] == list(R.CHECKS)
    assert all("no md RAID" in c.skip for c in checks), {c.id: c.skip for c in checks}
    vm = load_plan("lab", LAB_VM_OVERRIDES)
    hv = LabRuntime(vm, "state-not-used").inventory()["_meta"]["hostvars"]
    by_host = {c.host: c for c in R.raid_checks(vm, hv)}
    assert by_host["gpu-02"].skip == "" and by_host["gpu-02"].params["members"] == MEMBERS
    assert by_host["gpu-01"].skip
    assert R.raid_checks(load_plan("dev-aws"), {"gpu-01": {}}) == []


def test_a_whole_array_passes_every_check():
    for name in R.CHECKS:
        assert R.judge(_check(name), _facts()) == [], name
    assert R.judge(_check("array"), _facts(S.MDADM_DETAIL_RESYNC)) == []  # the resync after the create


def test_a_failed_member_is_named_by_its_stable_name():
    (problem,) = R.judge(_check("array"), _facts(S.MDADM_DETAIL_FAULTY))
    assert "/dev/md/models is degraded" in problem and "3 of 4 members active" in problem
    assert "missing /dev/disk/by-id/virtio-nvme0 (/dev/vdb)" in problem and "faulty" in problem


def test_a_vanished_drive_is_named_too():
    members = dict(zip(MEMBERS, [None, *REAL[1:]], strict=True))
    (problem,) = R.judge(_check("array"), _facts(S.MDADM_DETAIL_FAULTY, members=members))
    assert "/dev/disk/by-id/virtio-nvme0" in problem
    assert any("absent from the host" in p for p in R.judge(_check("layout"), _facts(members=members)))


def test_no_array():
    facts = _facts()
    facts["detail"] = {"rc": 1, "out": "", "err": "mdadm: cannot open /dev/md/models: No such file"}
    assert "no array at /dev/md/models: mdadm: cannot open" in R.judge(_check("array"), facts)[0]


def test_layout_against_the_plan():
    assert "level raid10, plan says RAID 5" in R.judge(_check("layout", level=5), _facts())[0]
    other = dict(zip(MEMBERS, ["/dev/vdf", *REAL[1:]], strict=True))
    assert "members not in the plan: /dev/vdb" in R.judge(_check("layout"), _facts(members=other))[0]
    assert "chunk 512 KiB, plan says 256 KiB" in R.judge(_check("layout", chunk_kib=256), _facts())[0]


def test_mdadm_conf_needs_the_arrays_line():
    conf = S.MDADM_CONF.replace("UUID=b668fb7e", "UUID=00000000")
    assert "no ARRAY line with UUID=b668fb7e" in R.judge(_check("mdadm-conf"), _facts(mdadm_conf=conf))[0]
    assert "is missing" in R.judge(_check("mdadm-conf"), _facts(mdadm_conf=None))[0]


def test_mount_options_and_fstab_by_uuid():
    f = _facts()
    f["mountinfo"] = f["mountinfo"].replace("rw,noatime", "rw,relatime")
    assert R.judge(_check("mount"), f) == ["/srv/models is mounted with rw,relatime: no noatime"]
    f = _facts(fstab="/dev/mapper/models /srv/models xfs noatime,nofail 0 0\n")
    assert "not by the file system's UUID" in R.judge(_check("mount"), f)[0]
    f = _facts(mountinfo="29 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n")
    assert "/srv/models is not mounted" in R.judge(_check("mount"), f)
    f = _facts(fstab=f"UUID={UUID} /srv/models xfs noatime 0 0\n")
    assert "noatime and nofail wanted" in R.judge(_check("mount"), f)[0]


def test_filesystem_luks2_with_its_second_header_is_luks():
    # wipefs on a LUKS2 device (cryptsetup 2.6, found on the VM tier): the header at 0 and its copy at
    # 0x4000, both crypto_LUKS
    two = json.dumps({"signatures": [
        {"device": "md127", "offset": "0x0", "type": "crypto_LUKS", "uuid": UUID, "label": None},
        {"device": "md127", "offset": "0x4000", "type": "crypto_LUKS", "uuid": UUID, "label": None}]})
    assert R.judge(_check("filesystem"), _facts(md_wipefs={"rc": 0, "out": two, "err": ""})) == []
    # a LUKS header next to another format is still refused
    mixed = json.dumps({"signatures": [
        {"device": "md127", "offset": "0x0", "type": "crypto_LUKS", "uuid": UUID, "label": None},
        {"device": "md127", "offset": "0x438", "type": "ext4", "uuid": UUID, "label": None}]})
    assert "holds ['crypto_LUKS', 'ext4'], plan says LUKS" in R.judge(
        _check("filesystem"), _facts(md_wipefs={"rc": 0, "out": mixed, "err": ""}))[0]


def test_filesystem_luks_and_stripe_geometry():
    assert "plan says LUKS" in R.judge(_check("filesystem"), _facts(md_wipefs={"rc": 0, "out": "", "err": ""}))[0]
    assert R.judge(_check("filesystem", encrypt=False), _facts(md_wipefs={"rc": 0, "out": "", "err": ""})) == []
    assert "xfs stripe su=512k sw=2, plan says su=512k sw=4" in R.judge(_check("filesystem", stripe_width=4),
                                                                        _facts())[0]
    ext4 = S.WIPEFS_EXT4
    assert "holds ['ext4'], plan says xfs" in R.judge(_check("filesystem"),
                                                     _facts(fs_wipefs={"rc": 0, "out": ext4, "err": ""}))[0]


@pytest.mark.parametrize("name", R.CHECKS)
def test_every_check_fails_on_a_host_without_anything(name):
    nothing = {"detail": {"rc": 1, "out": "", "err": "no such"}, "mdadm_conf": None, "mountinfo": "", "fstab": "",
               "md_wipefs": {"rc": 1, "out": ""}, "fs_wipefs": {"rc": 1, "out": ""}, "fs_uuid": {"rc": 2, "out": ""},
               "xfs_info": {"rc": 1, "out": "", "err": "not xfs"}, "members": {}, "by_id": ""}
    assert R.judge(_check(name), nothing), name
