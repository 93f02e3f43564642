"""The llmcluster.hosts parsers of md RAID and block device probes (mdadm, wipefs, by-id links),
on real output (tests/helpers/hosttool_samples.py), as Python and as the roles' filters."""

from __future__ import annotations

import pytest

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import blockdev as BD
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import mdadm as M
from tests.helpers import hosttool_samples as S


def test_detail_of_a_resyncing_array_is_whole():
    d = M.mdadm_detail(S.MDADM_DETAIL_RESYNC)
    assert d["found"] and d["device"] == "/dev/md/models"
    assert (d["level"], d["level_number"], d["raid_devices"], d["chunk_kib"]) == ("raid10", 10, 4, 512)
    assert d["state"] == ["clean", "resyncing"] and d["progress"] == {"resync_status": "39% complete"}
    assert d["name"] == "gpu-02:models" and d["uuid"] == "b668fb7e:c6ce05dd:d98815bc:655841e9"
    assert d["active_members"] == ["/dev/vdb", "/dev/vdc", "/dev/vdd", "/dev/vde"]
    assert not d["degraded"] and d["failed_members"] == [] and d["removed_slots"] == []
    assert d["members"][1] == {"number": 1, "raid_device": 1, "state": ["active", "sync", "set-B"],
                               "device": "/dev/vdc"}


def test_detail_of_a_clean_array():
    d = M.mdadm_detail(S.MDADM_DETAIL_CLEAN)
    assert d["state"] == ["clean"] and d["progress"] == {} and not d["degraded"]


def test_detail_of_an_array_with_a_failed_member_is_degraded():
    d = M.mdadm_detail(S.MDADM_DETAIL_FAULTY)
    assert d["degraded"] and d["state"] == ["clean", "degraded"]
    assert d["failed_members"] == ["/dev/vdb"] and d["removed_slots"] == [0]
    assert d["active_members"] == ["/dev/vdc", "/dev/vdd", "/dev/vde"] and d["failed_devices"] == 1
    assert d["members"][-1] == {"number": 0, "raid_device": None, "state": ["faulty"], "device": "/dev/vdb"}


def test_detail_of_a_rebuilding_array_is_degraded_until_the_spare_is_in_sync():
    d = M.mdadm_detail(S.MDADM_DETAIL_REBUILDING)
    assert d["degraded"] and d["spare_members"] == ["/dev/vdf"]
    assert d["progress"] == {"rebuild_status": "4% complete"} and len(d["active_members"]) == 3


def test_the_state_word_alone_makes_it_degraded():
    """A member table cut off (or an mdadm that prints none) still reads degraded from State."""
    text = S.MDADM_DETAIL_CLEAN.split("    Number")[0].replace("State : clean ", "State : active, FAILED, Not Started ")
    d = M.mdadm_detail(text)
    assert d["degraded"] and d["state"] == ["active", "failed", "not started"]


@pytest.mark.parametrize("text", ["", "mdadm: cannot open /dev/md/models: No such file or directory\n", None])
def test_no_array(text):
    d = M.mdadm_detail(text)
    assert not d["found"] and not d["degraded"] and d["members"] == [] and d["level_number"] is None


def test_stdout_lines_parse_like_stdout():
    assert M.mdadm_detail(S.MDADM_DETAIL_FAULTY.splitlines()) == M.mdadm_detail(S.MDADM_DETAIL_FAULTY)


def test_array_lines_of_brief_and_of_mdadm_conf():
    assert M.mdadm_arrays(S.MDADM_BRIEF) == [{"device": "/dev/md/models", "metadata": "1.2", "name": "gpu-02:models",
                                              "uuid": "b668fb7e:c6ce05dd:d98815bc:655841e9"}]
    conf = M.mdadm_arrays(S.MDADM_CONF)
    assert [a["device"] for a in conf] == ["/dev/md/models", "/dev/md0"]
    assert conf[1]["devices"] == "/dev/sdb,/dev/sdc,/dev/sdd,/dev/sde" and conf[1]["level"] == "raid10"
    assert M.mdadm_arrays("# ARRAY /dev/md/x UUID=1\nDEVICE partitions\n") == []


def test_examine():
    ex = M.mdadm_examine(S.MDADM_EXAMINE)
    assert ex == {"superblock": True, "uuid": "23f2a519:1eb04eda:bd7efaf5:55160ec6", "name": "other:models",
                  "level": "raid10", "raid_devices": 4}
    assert M.mdadm_examine("")["superblock"] is False  # "No md superblock detected" goes to stderr
    results = [{"item": "/dev/loop0", "stdout": S.MDADM_EXAMINE, "rc": 0},
               {"item": "/dev/loop1", "stdout": "", "rc": 1}, {"item": "/dev/loop2", "skipped": True}]
    assert M.md_superblock_devices(results) == ["/dev/loop0"]


@pytest.mark.parametrize(("level", "n"), [("raid10", 10), ("raid0", 0), ("RAID 5", 5), (6, 6), ("linear", None),
                                          (None, None)])
def test_raid_level_number(level, n):
    assert M.raid_level_number(level) == n


def test_wipefs_signatures():
    assert [s["type"] for s in BD.wipefs_signatures(S.WIPEFS_EXT4)] == ["ext4"]
    gpt = BD.wipefs_signatures(S.WIPEFS_GPT)
    assert {s["usage"] for s in gpt} == {"partition table"}
    assert BD.signature_summary(gpt) == "gpt at 0x200, gpt at 0x1ffffe00, PMBR at 0x1fe"
    assert BD.wipefs_signatures(S.WIPEFS_LUKS)[0]["usage"] == "LUKS header"
    assert BD.wipefs_signatures(S.WIPEFS_BLANK) == [] and BD.wipefs_signatures("") == []


@pytest.mark.parametrize("junk", ["wipefs: error: /dev/x: probing initialization failed", '{"other": 1}', "[]"])
def test_unreadable_wipefs_output_is_never_blank(junk):
    with pytest.raises(ValueError):
        BD.wipefs_signatures(junk)
    found = BD.member_signatures([{"item": "/dev/x", "stdout": junk, "rc": 0}])
    assert found == {"/dev/x": "unreadable wipefs output (exit 0)"}


def test_member_signatures_of_a_probe_loop():
    wipefs = [{"item": "/dev/nvme0n1", "stdout": S.WIPEFS_GPT, "rc": 0},
              {"item": "/dev/nvme1n1", "stdout": S.WIPEFS_BLANK, "rc": 0},
              {"item": "/dev/nvme2n1", "stdout": "", "rc": 0},
              {"item": "/dev/nvme3n1", "skipped": True}]
    examine = [{"item": "/dev/nvme2n1", "stdout": S.MDADM_EXAMINE, "rc": 0}]
    assert BD.member_signatures(wipefs, examine) == {
        "/dev/nvme0n1": "gpt at 0x200, gpt at 0x1ffffe00, PMBR at 0x1fe",
        "/dev/nvme2n1": "an md superblock (array other:models raid10, mdadm --examine)",
    }


def test_by_id_prefers_eui_then_model_serial_and_skips_partitions():
    m = BD.by_id_map(S.BY_ID)
    assert m["/dev/nvme0n1"] == "/dev/disk/by-id/nvme-eui.36434b3057100001002538a500000001"
    assert m["/dev/nvme2n1"] == "/dev/disk/by-id/nvme-SAMSUNG_MZWLO3T8HCLS-00A07_S6CKNA0W100003"
    assert "/dev/nvme1n1p1" not in m
    assert m["/dev/vdb"] == "/dev/disk/by-id/virtio-nvme0"
    assert BD.by_id_map("") == {} and BD.by_id_map("garbage line\n") == {}


def test_the_filters_are_these_functions():
    from ansible.plugins.loader import filter_loader

    from tests.conftest import init_ansible_plugins

    init_ansible_plugins()
    f = {n: filter_loader.get(f"llmcluster.hosts.{n}") for n in (
        "mdadm_detail", "mdadm_arrays", "mdadm_examine", "md_superblock_devices", "raid_level_number",
        "wipefs_signatures", "signature_summary", "member_signatures", "by_id_map", "xfs_geometry")}
    for name in ("mdadm_detail", "mdadm_arrays", "mdadm_examine", "md_superblock_devices", "raid_level_number",
                 "wipefs_signatures", "signature_summary", "member_signatures", "by_id_map"):
        assert f[name] is not None, name
    assert f["mdadm_detail"].j2_function(S.MDADM_DETAIL_FAULTY)["failed_members"] == ["/dev/vdb"]


def test_xfs_geometry_reads_the_data_section_not_the_log():
    g = BD.xfs_geometry(S.XFS_INFO)
    assert g == {"bsize": 4096, "sunit_blocks": 128, "swidth_blocks": 256, "su_kib": 512, "sw": 2}
    flat = S.XFS_INFO.replace("sunit=128    swidth=256 blks", "sunit=0      swidth=0 blks")
    assert BD.xfs_geometry(flat)["sw"] is None and BD.xfs_geometry("")["su_kib"] is None
