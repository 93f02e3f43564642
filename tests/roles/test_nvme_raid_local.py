"""The nvme_raid role's safety rules, run for real on this machine against loop devices.

This kernel has no md driver, so no array is built here (the VM tier builds one:
tests/lab/test_vm.py). What runs here is what decides whether a drive may be touched: the
role's member probe (``tasks/members.yml``: stable names, block devices, ``wipefs --no-act
--json`` and ``mdadm --examine``) and its wipe (``tasks/wipe.yml``), through ansible-playbook
on localhost, against loop devices over sparse files carrying what a used drive carries — a
GPT written by sfdisk, an xfs or ext4 file system made by mkfs, an md 1.2 superblock (written
by hand: ``mdadm --create`` needs the kernel's md; ``mdadm --examine`` and libblkid accept it).
A refused device is proven untouched by hashing its first MiBs before and after; a wipe-listed
one is accepted and wiped. The plan checks (RAID 0 without allow_raid0, encryption without a
key, members outside /dev/disk/by-id) and the refusal on a kernel without md run the
preflight itself.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import blockdev as B
from tests.helpers.tools import tool, tool_env

ROLE = ROOT / "roles" / "nvme_raid"
DISK_MIB = 512  # mkfs.xfs wants more than 300 MB; sparse, so nothing is allocated

PLAYBOOK = """\
- name: Run the nvme_raid role's {tasks} tasks on loop devices
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  tasks:
    - name: The role's {tasks} tasks
      ansible.builtin.include_role:
        name: {role}
        tasks_from: {tasks}
"""


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed here: {', '.join(missing)} (scripts/setup.sh installs fdisk, xfsprogs, mdadm)")


def _plan(members: int = 4, **raid) -> dict:
    return {
        "level": 10, "drives": members, "chunk_kib": 512, "filesystem": "xfs", "mount": "/srv/models",
        "encrypt": False, "allow_raid0": False, "mkfs_options": ["-d", "su=512k,sw=2"], **raid,
        "hosts": [{"host": "localhost", "md_device": "/dev/md/models", "crypt_device": None,
                   "fs_device": "/dev/md/models", "mount": "/srv/models",
                   "members": [f"/dev/nvme{i}n1" for i in range(members)]}],
    }


def _run(tmp: Path, tasks: str, variables: dict) -> subprocess.CompletedProcess[str]:
    play = tmp / f"{tasks}.yml"
    play.write_text(PLAYBOOK.format(role=ROLE, tasks=tasks), encoding="utf-8")
    extra = tmp / f"{tasks}-vars.json"
    extra.write_text(json.dumps(variables), encoding="utf-8")
    return subprocess.run([tool("ansible-playbook") or "ansible-playbook", "-i", "localhost,", str(play),
                           "-e", f"@{extra}"], cwd=tmp, env=tool_env(), capture_output=True, text=True,
                          check=False, timeout=300)


@pytest.fixture
def disks(tmp_path):
    """Four loop devices over sparse files, each behind a by-id style link in ``tmp_path/by-id``;
    detached in the finalizer."""
    if shutil.which("losetup") is None or not Path("/dev/loop-control").exists():
        pytest.skip("no loop devices here (losetup, /dev/loop-control)")
    links = tmp_path / "by-id"
    links.mkdir()
    attached: list[str] = []
    try:
        for i in range(4):
            image = tmp_path / f"disk{i}.img"
            with open(image, "wb") as f:
                f.truncate(DISK_MIB << 20)
            try:
                dev = B.losetup(image)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"losetup failed here: {exc.stderr.strip()}")
            attached.append(dev)
            (links / f"test-disk{i}").symlink_to(dev)
        yield [str(links / f"test-disk{i}") for i in range(4)], attached
    finally:
        for dev in attached:
            B.detach(dev)


def _signatures(dev: str) -> list[dict]:
    out = subprocess.run(["wipefs", "--no-act", "--json", dev], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["signatures"] if out.strip() else []


def _prepare(devs: list[str]) -> None:
    """disk0: a GPT; disk1: xfs; disk2: an md superblock; disk3: blank."""
    B.write_gpt(devs[0])
    subprocess.run(["mkfs.xfs", "-q", "-f", devs[1]], check=True, capture_output=True)
    B.write_md_superblock(devs[2])
    assert [s["type"] for s in _signatures(devs[0])] == ["gpt", "PMBR"] or \
        {s["type"] for s in _signatures(devs[0])} >= {"gpt"}
    assert [s["type"] for s in _signatures(devs[1])] == ["xfs"]
    assert [s["type"] for s in _signatures(devs[2])] == ["linux_raid_member"]
    assert _signatures(devs[3]) == []


def test_members_with_data_are_refused_and_left_untouched(disks, tmp_path):
    _need("sfdisk", "mkfs.xfs", "wipefs", "mdadm")
    links, devs = disks
    _prepare(devs)
    before = [B.head_digest(d) for d in devs]
    r = _run(tmp_path, "members", {"nvme_raid_plan": _plan(), "nvme_raid_devices": links,
                                   "nvme_raid_by_id_dir": str(tmp_path / "by-id")})
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "refusing to touch" in out and "Nothing was changed" in out, out
    for link, dev, what in ((links[0], devs[0], "gpt at 0x200"), (links[1], devs[1], "xfs at 0x0"),
                            (links[2], devs[2], "linux_raid_member at 0x1000")):
        assert f"{link} ({dev}), which holds {what}" in out, out
    assert "an md superblock (array other:models raid10, mdadm --examine)" in out, out
    assert links[3] not in out.split("refusing to touch", 1)[1], "the blank member is not refused"
    assert [B.head_digest(d) for d in devs] == before, "a refused device was modified"


def test_an_ext4_member_is_refused_too(disks, tmp_path):
    _need("wipefs", "mkfs.ext4")
    links, devs = disks
    subprocess.run(["mkfs.ext4", "-q", "-F", devs[3]], check=True, capture_output=True)
    before = B.head_digest(devs[3])
    r = _run(tmp_path, "members", {"nvme_raid_plan": _plan(), "nvme_raid_devices": links,
                                   "nvme_raid_by_id_dir": str(tmp_path / "by-id")})
    assert r.returncode != 0 and f"{links[3]} ({devs[3]}), which holds ext4 at 0x438" in r.stdout, r.stdout
    assert B.head_digest(devs[3]) == before


def test_wipe_listed_members_are_accepted_and_wiped(disks, tmp_path):
    _need("sfdisk", "mkfs.xfs", "wipefs", "mdadm")
    links, devs = disks
    _prepare(devs)
    blank_before = B.head_digest(devs[3])
    variables = {"nvme_raid_plan": _plan(), "nvme_raid_devices": links, "nvme_raid_wipe_devices": links[:3],
                 "nvme_raid_by_id_dir": str(tmp_path / "by-id")}
    r = _run(tmp_path, "members", variables)
    assert r.returncode == 0, r.stdout + r.stderr
    # members + wipe in one play: the wipe needs the probe's results
    play = tmp_path / "both.yml"
    play.write_text(PLAYBOOK.format(role=ROLE, tasks="members") + f"""
    - name: The role's wipe tasks
      ansible.builtin.include_role:
        name: {ROLE}
        tasks_from: wipe
""", encoding="utf-8")
    extra = tmp_path / "both.json"
    extra.write_text(json.dumps(variables), encoding="utf-8")
    r = subprocess.run([tool("ansible-playbook") or "ansible-playbook", "-i", "localhost,", str(play), "-e",
                        f"@{extra}"], cwd=tmp_path, env=tool_env(), capture_output=True, text=True, check=False,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for dev in devs[:3]:
        assert _signatures(dev) == [], dev
        ex = subprocess.run(["mdadm", "--examine", dev], capture_output=True, text=True, check=False)
        assert ex.returncode != 0 and "No md superblock" in ex.stderr, ex.stdout + ex.stderr
    assert B.head_digest(devs[3]) == blank_before, "a blank member not on the wipe list was written"
    # wiped: the probe now passes without the wipe list
    r = _run(tmp_path, "members", {**variables, "nvme_raid_wipe_devices": []})
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_wipe_list_is_by_name_not_by_accident(disks, tmp_path):
    """A wipe list that names another device does not let a member with data through."""
    _need("mkfs.xfs", "wipefs")
    links, devs = disks
    subprocess.run(["mkfs.xfs", "-q", "-f", devs[0]], check=True, capture_output=True)
    before = B.head_digest(devs[0])
    r = _run(tmp_path, "members", {"nvme_raid_plan": _plan(), "nvme_raid_devices": links,
                                   "nvme_raid_wipe_devices": [links[1]],
                                   "nvme_raid_by_id_dir": str(tmp_path / "by-id")})
    assert r.returncode != 0 and f"{links[0]} ({devs[0]}), which holds xfs" in r.stdout, r.stdout
    assert B.head_digest(devs[0]) == before


def test_missing_stable_names_are_refused(disks, tmp_path):
    """Without nvme_raid_devices the planned /dev/nvme<i>n1 must have by-id links: here none does."""
    r = _run(tmp_path, "members", {"nvme_raid_plan": _plan(), "nvme_raid_by_id_dir": str(tmp_path / "by-id")})
    assert r.returncode != 0, r.stdout
    assert "no " + str(tmp_path / "by-id") + " link for /dev/nvme0n1, /dev/nvme1n1" in r.stdout, r.stdout


@pytest.mark.parametrize(("case", "variables", "message"), [
    ("raid0", {"nvme_raid_plan": _plan(level=0)}, "RAID 0 needs the spec's storage.raid.allow_raid0"),
    ("no-key", {"nvme_raid_plan": _plan(encrypt=True)}, "no LUKS key is given"),
    ("not-by-id", {"nvme_raid_plan": _plan(), "nvme_raid_devices": ["/dev/loop0", "/dev/loop1", "/dev/loop2",
                                                                      "/dev/loop3"]},
     "nvme_raid_devices must name one /dev/disk/by-id/<link> per planned member"),
    ("wipe-not-by-id", {"nvme_raid_plan": _plan(), "nvme_raid_wipe_devices": ["/dev/sda"]},
     "nvme_raid_wipe_devices only /dev/disk/by-id/<link> paths"),
    ("too-few", {"nvme_raid_plan": _plan(), "nvme_raid_devices": ["/dev/disk/by-id/a"]}, "per planned member"),
])
def test_the_preflight_refuses_a_bad_plan(tmp_path, case, variables, message):
    r = _run(tmp_path, "preflight", variables)
    assert r.returncode != 0 and message in r.stdout, r.stdout
    assert "Check the RAID plan" in r.stdout and "Probe the members" not in r.stdout.split("fatal:", 1)[0][-200:]


def test_a_host_without_md_fails_unless_the_raid_is_off_with_a_reason(tmp_path):
    if Path("/proc/mdstat").exists():
        pytest.skip("this kernel has md: the refusal is for kernels without it")
    r = _run(tmp_path, "preflight", {"nvme_raid_plan": _plan()})
    assert r.returncode != 0 and "has no md RAID in its kernel" in r.stdout, r.stdout
    off = _run(tmp_path, "preflight", {"nvme_raid_plan": _plan(), "nvme_raid_enabled": False})
    assert off.returncode != 0 and "without nvme_raid_disabled_reason" in off.stdout, off.stdout
    ok = _run(tmp_path, "preflight", {"nvme_raid_plan": _plan(), "nvme_raid_enabled": False,
                                      "nvme_raid_disabled_reason": "a container without md"})
    assert ok.returncode == 0 and "nvme_raid is disabled on localhost: a container without md" in ok.stdout, ok.stdout


def test_a_host_outside_the_plan_is_left_alone(tmp_path):
    """The plan gives this host no RAID: the preflight passes and probes nothing (no md needed)."""
    plan = _plan()
    plan["hosts"][0]["host"] = "gpu-99"
    r = _run(tmp_path, "preflight", {"nvme_raid_plan": plan})
    assert r.returncode == 0, r.stdout
    assert "Look for the kernel's md driver" not in r.stdout or "skipping" in r.stdout
