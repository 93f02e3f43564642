"""VM lab hosts: qemu guests for the kernel features namespaces lack (md, dm, 802.1Q, vlan_filtering).

The pure tests (layout, provisioning files, qemu command line, inventory) always run. The
tests on running VMs use the session ``lab`` fixture and run only in the VM tier
(``pytest --lab-vms``, i.e. ``make test-vm``), where the lab plan has ``storage-01`` as an
access-mode VM and ``gpu-02`` as a tagged VM behind the VM leaf (tests/conftest.py
``LAB_VM_OVERRIDES``); elsewhere they are skipped with that reason.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from llmcluster.lab import network as N
from llmcluster.lab import vm as V
from llmcluster.lab._sys import proc_info
from llmcluster.lab.vm_image import KERNEL_CMDLINE, SEED_SERIAL
from tests.conftest import LAB_VM_OVERRIDES, ROOT, load_plan

# xdist_group: the running-VM tests get the lab through getfixturevalue, so mark the group here.
pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.xdist_group("lab")]

OUTSIDE = "198.51.100.1"  # TEST-NET-2: documentation only, never a real host
#: Timings for the session summary: filled into tests/conftest.py's TIMINGS (the instance
#: pytest loaded as a plugin, not a second import of the module) by the ``timings`` fixture.
TIMINGS: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def timings(request):
    yield TIMINGS
    for plugin in request.config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", "") == str(ROOT / "tests" / "conftest.py"):
            plugin.TIMINGS.update(TIMINGS)


@pytest.fixture(scope="module")
def vm_plan():
    return load_plan("lab", LAB_VM_OVERRIDES)


@pytest.fixture(scope="module")
def vm_lab(request):
    """The session lab, when it has VM hosts (``--lab-vms``); never brings a lab up just to skip."""
    if not request.config.getoption("--lab-vms"):
        pytest.skip("the VM tier runs with --lab-vms (make test-vm): this session's lab has no VM hosts")
    lab = request.getfixturevalue("lab")
    assert V.any_vm(lab.plan), "--lab-vms, but the session's lab plan has no VM hosts"
    return lab


def _qemu_pids(state_dir: Path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = proc_info(int(entry))
            if info and info.state != "Z" and info.cmdline and "qemu-system" in info.cmdline[0] \
                    and any(str(state_dir) in a for a in info.cmdline):
                pids.append(int(entry))
    return pids


# --------------------------------------------------------------------------- pure (no root)


def test_vm_layout_of_the_vm_lab(vm_plan):
    vms = {v.name: v for v in V.vm_layout(vm_plan)}
    assert list(vms) == ["gpu-02", "storage-01", V.LEAF_NAME]
    gpu, storage, leaf = vms["gpu-02"], vms["storage-01"], vms[V.LEAF_NAME]
    assert gpu.role == "tagged" and [n.ifname for n in gpu.nics] == [V.TAGGED_UPLINK]
    assert gpu.nics[0].bridge == leaf.nics[1].bridge == V.trunk_bridge_name("gpu-02")
    assert [s for s, _ in gpu.data_disks] == ["nvme0", "nvme1", "nvme2", "nvme3"]  # the gpu pool's 4 NVMe
    assert storage.role == "access" and [n.ifname for n in storage.nics] == ["mgmt", "stor-pub", "stor-clu"]
    assert [n.bridge for n in storage.nics] == ["llb-10", "llb-30", "llb-31"]
    assert [n.mtu for n in storage.nics] == [1500, 9000, 9000]
    assert [s for s, _ in storage.data_disks] == ["nvme0", "nvme1"]  # the storage pool's 2 NVMe (Ceph OSDs)
    assert leaf.role == "leaf" and leaf.memory_mb < storage.memory_mb == 1536
    assert [n.ifname for n in leaf.nics] == ["eth0", "swp1", "acc10", "acc20", "acc30", "acc40"]
    assert leaf.mgmt_ip == vm_plan.ip.vlans["mgmt"].reserved_last
    assert [(p.ifname, p.vlans, p.access) for p in leaf.leaf_ports] == [
        ("swp1", (10, 20, 30, 40), False), ("acc10", (10,), True), ("acc20", (20,), True),
        ("acc30", (30,), True), ("acc40", (40,), True)]
    nics = [n for v in vms.values() for n in v.nics]
    assert len({n.tap for n in nics}) == len(nics) and len({n.mac for n in nics}) == len(nics)
    for n in nics:
        assert len(n.tap) <= N.IFNAMSIZ and n.tap.startswith(N.TAP_PREFIX), n.tap
        assert len(n.ifname) <= N.IFNAMSIZ
        first = int(n.mac.split(":")[0], 16)
        assert first & 2 and not first & 1, f"{n.mac}: not a locally administered unicast MAC"


def test_seed_files_provision_the_network(vm_plan, tmp_path):
    vms = {v.name: v for v in V.vm_layout(vm_plan)}
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0lab llmcluster-lab"
    gpu = V.seed_files(vms["gpu-02"], vm_plan, key)
    netplan = gpu["etc/netplan/50-provisioning.yaml"][0]
    assert gpu["etc/netplan/50-provisioning.yaml"][1] == 0o600  # netplan refuses world-readable files
    assert "vlan10:" in netplan and "link: eth0" in netplan and "10.42.0.12/24" in netplan
    for other in (20, 30, 40):  # the network role adds them
        assert f"vlan{other}:" not in netplan
    assert gpu["etc/hostname"][0] == "gpu-02\n" and gpu["etc/resolv.conf"][0] == ""
    assert gpu["root/.ssh/authorized_keys"] == (key + "\n", 0o600)
    storage = V.seed_files(vms["storage-01"], vm_plan, key)
    net = storage["etc/systemd/network/20-llmcluster-stor-pub.network"][0]
    assert "Address=10.42.2.13/24" in net and "MTUBytes=9000" in net and "Gateway" not in net
    link = storage["etc/systemd/network/10-llmcluster-stor-pub.link"][0]
    assert f"MACAddress={vms['storage-01'].nics[1].mac}" in link and "Name=stor-pub" in link
    leaf = V.seed_files(vms[V.LEAF_NAME], vm_plan, key)
    assert "VLANFiltering=yes" in leaf["etc/systemd/network/10-br0.netdev"][0]
    acc = leaf["etc/systemd/network/30-acc20.network"][0]
    assert "PVID=20" in acc and "EgressUntagged=20" in acc
    trunk = leaf["etc/systemd/network/30-swp1.network"][0]
    assert [int(v) for v in re.findall(r"^VLAN=(\d+)$", trunk, re.M)] == [10, 20, 30, 40]
    seed = tmp_path / "seed.tar"
    V.write_seed(seed, storage)
    assert seed.stat().st_size % 512 == 0
    with tarfile.open(seed) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["root/.ssh"].isdir() and members["root/.ssh"].mode == 0o700
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert set(storage) <= set(members)


def test_qemu_command_line_has_no_way_out(vm_plan, tmp_path):
    from llmcluster.lab.vm_image import VmImage

    image = VmImage("k", tmp_path, False, 0.0, {})
    for vm in V.vm_layout(vm_plan):
        argv = V.qemu_argv(vm, tmp_path / vm.name, image, "tcg")
        joined = " ".join(argv)
        assert "-netdev user" not in joined and "hostfwd" not in joined and "slirp" not in joined
        netdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
        assert len(netdevs) == len(vm.nics) and all(n.startswith("tap,") for n in netdevs)
        assert ["-accel", "tcg"] == argv[3:5] and "-nodefaults" in argv
        assert f"serial={SEED_SERIAL}" in joined and KERNEL_CMDLINE in argv
        assert sum(a.startswith("virtio-blk-pci") for a in argv) == 2 + len(vm.data_disks)


def test_vm_hosts_in_the_inventory(vm_plan, tmp_path):
    from llmcluster.lab import LabRuntime

    hv = LabRuntime(vm_plan, tmp_path / "state").inventory()["_meta"]["hostvars"]
    assert hv["gpu-02"]["llmcluster_network_mode"] == "tagged"
    assert hv["gpu-02"]["llmcluster_interface_names"] == {
        "mgmt": "vlan10", "inference": "vlan20", "storage_public": "vlan30", "rdma": "vlan40"}
    assert hv["gpu-02"]["llmcluster_uplink"] == V.TAGGED_UPLINK
    assert hv["gpu-02"]["llmcluster_default_route_vlan"] == ""
    assert "llmcluster_qos vlan20" in hv["gpu-02"]["llmcluster_tc_script"]
    assert hv["storage-01"]["llmcluster_network_mode"] == "access"
    for name in ("gpu-02", "storage-01"):
        assert hv[name]["llmcluster_manage_services"] is True
        assert hv[name]["common_sysctl_apply"] is True
        assert hv[name]["llmcluster_lab_kind"] == "vm"
        # their own kernel: auditd and every hardening key
        assert hv[name]["common_auditd_enabled"] is True and hv[name]["common_sysctl_apply_netns"] is False
    assert hv["gw-01"]["llmcluster_network_mode"] == "access"
    # hosts on this machine's kernel (nspawn gw-01, namespace storage hosts elsewhere): no auditd, and of
    # the kernel hardening only the per-namespace keys
    assert hv["gw-01"]["common_auditd_enabled"] is False and hv["gw-01"]["common_sysctl_apply_netns"] is True
    assert V.LEAF_NAME not in hv  # lab infrastructure, not a plan host


# --------------------------------------------------------------------------- the running VMs


def _ssh(lab, host: str, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return lab.exec(host, ["sh", "-c", script], timeout=timeout)


def test_vms_answer_and_run_their_own_kernel(vm_lab):
    status = {s.name: s for s in vm_lab.status()}
    assert all(s.ok for s in status.values()), status
    assert {n: s.kind for n, s in status.items() if s.kind in ("vm", "leaf")} == {
        "gpu-02": "vm", "storage-01": "vm", V.LEAF_NAME: "leaf"}
    mine = os.uname().release
    for name in ("gpu-02", "storage-01", V.LEAF_NAME):
        proc = vm_lab.exec(name, ["sh", "-c", "hostname; uname -r; systemctl is-system-running || true"])
        assert proc.returncode == 0, proc.stderr
        hostname, release, running = proc.stdout.split()[:3]
        assert hostname == name and release != mine and release.endswith("-cloud-amd64")
        assert running in ("running", "degraded", "starting"), proc.stdout
    boots = {k: v for k, v in vm_lab.state().timings.items() if k.startswith("vm_boot_s.")}
    TIMINGS.update({f"VM boot to SSH ({k.split('.', 1)[1]})": f"{v:.1f}s" for k, v in boots.items()})


# --------------------------------------------------------------------------- the model cache (nvme_raid)

RAID_HOST = "gpu-02"  # the plan's RAID pool is gpu; gpu-02 is the VM with the four NVMe stand-ins
RAID_TAGS = ("nvme_raid_install", "nvme_raid_configure", "nvme_raid_run")
#: The member that first carries a file system (refused, then wipe-listed).
USED = "/dev/disk/by-id/virtio-nvme3"


def _head_sha(lab, device: str) -> str:
    proc = _ssh(lab, RAID_HOST, f"dd if={device} bs=1M count=4 status=none | sha256sum")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[0]


#: The roles the VM tier converges on gpu-02, in one run of site.yml (and once more for idempotence):
#: under TCG every ansible-playbook run costs minutes, so the RAID, the tagged network and the host
#: hardening share theirs.
VM_TAGS = ("common_install", "common_configure", "common_run", "network_install", "network_configure",
           "network_run", *RAID_TAGS)


@pytest.fixture(scope="module")
def vm_converged(vm_lab, tmp_path_factory):
    """gpu-02 converged: the nvme_raid role first refused while a member carries ext4 (which it leaves
    untouched), then common, network (tagged mode: netplan) and nvme_raid in one run with that member
    wipe-listed, then the same run again without it: nothing changes."""
    from llmcluster.converge import run_playbook

    inventory = vm_lab.write_inventory(tmp_path_factory.mktemp("vm-converge") / "inventory.yml")
    env = {"ANSIBLE_CACHE_PLUGIN": "memory", "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    made = _ssh(vm_lab, RAID_HOST, f"mkfs.ext4 -q -F {USED}")
    assert made.returncode == 0, made.stdout + made.stderr
    before = _head_sha(vm_lab, USED)
    t = time.monotonic()
    refused = run_playbook(ROOT / "ansible" / "site.yml", inventory, tags=RAID_TAGS, limit=RAID_HOST, envvars=env)
    TIMINGS["nvme_raid refusal (gpu-02)"] = f"{time.monotonic() - t:.1f}s"
    error = refused.hosts[RAID_HOST].last_error if RAID_HOST in refused.hosts else ""
    after = _head_sha(vm_lab, USED)
    t = time.monotonic()
    first = run_playbook(ROOT / "ansible" / "site.yml", inventory, tags=VM_TAGS, limit=RAID_HOST, envvars=env,
                         extravars={"nvme_raid_wipe_devices": [USED]})
    TIMINGS["common + network (tagged) + nvme_raid (RAID 10 + LUKS + xfs) on gpu-02"] = \
        f"{time.monotonic() - t:.1f}s"
    assert first.ok, f"converging gpu-02 failed: {[(h, p.last_error) for h, p in first.hosts.items()]}"
    t = time.monotonic()
    again = run_playbook(ROOT / "ansible" / "site.yml", inventory, tags=VM_TAGS, limit=RAID_HOST, envvars=env)
    TIMINGS["second converge of gpu-02"] = f"{time.monotonic() - t:.1f}s"
    return {"refused": refused, "refused_error": error, "sha": (before, after), "first": first, "again": again,
            "inventory": inventory}


@pytest.fixture(scope="module")
def raid_converged(vm_converged):
    return vm_converged


def _raid_facts(lab) -> dict:
    from llmcluster.verify import raid as R

    checks = R.raid_checks(lab.plan, lab.inventory()["_meta"]["hostvars"])
    check = next(c for c in checks if c.host == RAID_HOST)
    proc = lab.exec(RAID_HOST, ["python3", "-c", R.GATHER, *R.gather_args(check)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {c.name: c for c in checks if c.host == RAID_HOST}, json.loads(proc.stdout)


def test_raid_refuses_a_member_with_a_file_system_and_leaves_it_alone(vm_lab, raid_converged):
    refused = raid_converged["refused"]
    assert not refused.ok, "the role accepted a member that carries ext4"
    assert f"refusing to touch {USED} (" in raid_converged["refused_error"], raid_converged["refused_error"]
    assert "ext4" in raid_converged["refused_error"]
    before, after = raid_converged["sha"]
    assert before == after, f"the refused member {USED} was modified"
    assert refused.changed(RAID_HOST) == 0, refused.changed_tasks


def test_raid_is_built_as_planned_and_the_verify_checks_pass(vm_lab, raid_converged):
    from llmcluster.verify import raid as R

    checks, facts = _raid_facts(vm_lab)
    for name, check in checks.items():
        assert not check.skip, check.skip
        assert R.judge(check, facts) == [], f"raid[{name}]: {R.judge(check, facts)}"
    detail = _ssh(vm_lab, RAID_HOST, "mdadm --detail /dev/md/models").stdout
    assert re.search(r"Raid Level : raid10", detail) and re.search(r"Raid Devices : 4", detail)
    assert re.search(r"Chunk Size : 512K", detail), detail


def test_raid_second_converge_changes_nothing(raid_converged):
    again = raid_converged["again"]
    assert again.ok and again.changed(RAID_HOST) == 0, f"second run changed {again.changed_tasks}"


def test_raid_mount_is_by_uuid_with_noatime(vm_lab, raid_converged):
    proc = _ssh(vm_lab, RAID_HOST, "findmnt -n -o SOURCE,FSTYPE,OPTIONS /srv/models; "
                                   "grep -E '[[:space:]]/srv/models[[:space:]]' /etc/fstab; cat /etc/crypttab")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    source, fstype, options = lines[0].split()
    assert source == "/dev/mapper/models" and fstype == "xfs" and "noatime" in options.split(","), lines[0]
    assert lines[1].startswith("UUID=") and "noatime,nofail" in lines[1], lines[1]
    assert re.search(r"^models\s+UUID=\S+\s+/etc/llmcluster/keys/\S+\s+luks,nofail$", proc.stdout, re.M), proc.stdout


def test_raid_initramfs_carries_the_array_line_written_before_it(vm_lab, raid_converged):
    """mdadm.conf has the ARRAY line and the initramfs built after it carries that file (else the
    array comes up as /dev/md127 after a reboot: mrlesmithjr/ansible-mdadm#63)."""
    proc = _ssh(vm_lab, RAID_HOST, """set -e
        img=/boot/initrd.img-$(uname -r)
        uuid=$(mdadm --detail --brief /dev/md/models | sed -n 's/.*UUID=\\([^ ]*\\).*/\\1/p')
        grep -q "^ARRAY .*UUID=$uuid" /etc/mdadm/mdadm.conf && echo conf-ok
        lsinitramfs "$img" | grep -qx 'etc/mdadm/mdadm.conf' && echo listed
        d=$(mktemp -d); unmkinitramfs "$img" "$d"
        find "$d" -path '*etc/mdadm/mdadm.conf' -exec grep -l "UUID=$uuid" {} + | head -1 | grep -q . && echo packed
        rm -rf "$d"
        [ "$(stat -c %Y "$img")" -ge "$(stat -c %Y /etc/mdadm/mdadm.conf)" ] && echo ordered""", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["conf-ok", "listed", "packed", "ordered"], proc.stdout + proc.stderr


def test_raid_read_bandwidth_next_to_the_planner(vm_lab, raid_converged):
    """Measured, not judged: a sequential O_DIRECT read through LUKS and xfs of the VM's RAID, printed
    next to the planner's upper bound for the pool's real drives (``llmcluster plan``'s model cache
    table). The VM's drives are sparse files under TCG: the figure shows the path works end to end and
    what this machine gives, not what NVMe gives."""
    raid = vm_lab.plan.storage.raid
    proc = _ssh(vm_lab, RAID_HOST, """set -e
        f=/srv/models/.llbench; dd if=/dev/urandom of=$f bs=1M count=256 status=none conv=fsync
        sync; echo 3 > /proc/sys/vm/drop_caches
        s=$(date +%s.%N); dd if=$f of=/dev/null bs=4M iflag=direct status=none; e=$(date +%s.%N)
        rm -f $f; echo "$s $e" """, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    start, end = map(float, proc.stdout.split()[-2:])
    gbps = 256 * 2**20 / (end - start) / 1e9
    assert gbps > 0
    TIMINGS["RAID sequential read (gpu-02 VM, TCG, 256 MiB O_DIRECT)"] = (
        f"{gbps:.3f} GB/s; planner's bound for {raid.drives} x {raid.drive_read_gbps} GB/s drives RAID "
        f"{raid.level}: {raid.read_gbps} GB/s (ratio {gbps / raid.read_gbps:.4f})")


def test_raid_failed_member_is_reported_degraded_by_verify(vm_lab, raid_converged):
    """Last of the RAID tests: a member failed with mdadm --fail -> the verify check names it."""
    from llmcluster.verify import raid as R

    failed = _ssh(vm_lab, RAID_HOST, "mdadm /dev/md/models --fail /dev/disk/by-id/virtio-nvme0")
    assert failed.returncode == 0, failed.stdout + failed.stderr
    checks, facts = _raid_facts(vm_lab)
    problems = R.judge(checks["array"], facts)
    assert len(problems) == 1 and "is degraded" in problems[0], problems
    assert "missing /dev/disk/by-id/virtio-nvme0 (/dev/vdb)" in problems[0], problems


def test_device_mapper_works(vm_lab):
    proc = _ssh(vm_lab, "storage-01", """set -e
        dmsetup targets
        echo "0 2048 linear /dev/disk/by-id/virtio-nvme0 0" | dmsetup create lltest
        blockdev --getsz /dev/mapper/lltest
        dmsetup remove lltest""")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^linear\s", proc.stdout, re.M) and re.search(r"^striped\s", proc.stdout, re.M)
    assert "\n2048\n" in proc.stdout


def test_tagged_host_has_its_mgmt_vlan_on_the_trunk(vm_lab):
    proc = vm_lab.exec("gpu-02", ["ip", "-d", "-j", "link", "show", "vlan10"])
    assert proc.returncode == 0, proc.stderr
    link = json.loads(proc.stdout)[0]
    info = link["linkinfo"]
    assert info["info_kind"] == "vlan" and info["info_data"]["protocol"] == "802.1Q" and info["info_data"]["id"] == 10
    assert link["link"] == V.TAGGED_UPLINK and link["mtu"] == 1500
    addr = vm_lab.exec("gpu-02", ["ip", "-4", "-br", "addr", "show", "dev", "vlan10"]).stdout
    assert "10.42.0.12/24" in addr


def test_the_leaf_bridge_filters_vlans(vm_lab):
    proc = vm_lab.exec(V.LEAF_NAME, ["sh", "-c", "cat /sys/class/net/br0/bridge/vlan_filtering; bridge -j vlan show"])
    assert proc.returncode == 0, proc.stderr
    flag, _, rest = proc.stdout.partition("\n")
    assert flag.strip() == "1"
    vlans = {e["ifname"]: e["vlans"] for e in json.loads(rest)}
    assert sorted(v["vlan"] for v in vlans["swp1"]) == [10, 20, 30, 40]
    assert all("Egress Untagged" not in v.get("flags", []) for v in vlans["swp1"])  # the trunk: tagged
    for vid in (10, 20, 30, 40):
        (entry,) = vlans[f"acc{vid}"]
        assert entry["vlan"] == vid and {"PVID", "Egress Untagged"} <= set(entry["flags"])


def test_no_vm_has_a_way_out(vm_lab):
    for name in ("gpu-02", "storage-01", V.LEAF_NAME):
        route = vm_lab.exec(name, ["ip", "route", "get", OUTSIDE])
        assert route.returncode != 0, f"{name} has a route to {OUTSIDE}: {route.stdout}"
        default = vm_lab.exec(name, ["ip", "-4", "route", "show", "default"]).stdout
        assert default.strip() == "", f"{name}: {default}"
    pids = _qemu_pids(vm_lab.state_dir)
    assert len(pids) == 3
    for pid in pids:
        argv = proc_info(pid).cmdline
        netdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
        assert netdevs and all(n.startswith("tap,") for n in netdevs), netdevs
    for rec in vm_lab.state().of_kind("tap"):  # every tap is a port of a lab bridge
        master = N.links()[rec.name].get("master", "")
        assert master.startswith(N.BRIDGE_PREFIX), f"{rec.name} on {master!r}"


@pytest.fixture(scope="module")
def tagged_network_converged(vm_converged):
    """The network role (tagged mode: netplan) converged on gpu-02 (:func:`vm_converged`), twice: the
    second run changes nothing."""
    again = vm_converged["again"]
    assert again.ok and again.changed(RAID_HOST) == 0, f"second run changed {again.changed_tasks}"
    return vm_converged["inventory"]


def test_tagged_vm_reaches_a_namespace_host_on_every_vlan_through_the_leaf(vm_lab, tagged_network_converged):
    """After the network role (tagged mode): every VLAN of gpu-02 crosses the leaf, at full MTU."""
    plan = vm_lab.plan
    gpu2, gpu1 = plan.ip.host("gpu-02"), plan.ip.host("gpu-01")
    links = json.loads(vm_lab.exec("gpu-02", ["ip", "-d", "-j", "link"]).stdout)
    vlans = {link["ifname"]: link for link in links if link.get("linkinfo", {}).get("info_kind") == "vlan"}
    for role in gpu2.addresses:
        vlan = plan.ip.vlans[role]
        link = vlans[f"vlan{vlan.id}"]
        assert link["linkinfo"]["info_data"]["id"] == vlan.id and link["mtu"] == vlan.mtu
        payload = vlan.mtu - 28
        target = gpu1.addresses[role]
        ok = vm_lab.exec("gpu-02", ["ping", "-M", "do", "-s", str(payload), "-c", "2", "-W", "3", target])
        assert ok.returncode == 0, f"{role}: {ok.stdout}{ok.stderr}"
        too_big = vm_lab.exec("gpu-02", ["ping", "-M", "do", "-s", str(payload + 1), "-c", "1", "-W", "2",
                                         target])
        assert too_big.returncode != 0, f"{role}: {too_big.stdout}"
        assert ipaddress.ip_address(target) in ipaddress.ip_network(vlan.cidr)
    # the namespace host reaches the tagged VM the other way, too (jumbo, DF)
    back = vm_lab.exec("gpu-01", ["ping", "-M", "do", "-s", "8972", "-c", "1", "-W", "3",
                                  gpu2.addresses["storage_public"]])
    assert back.returncode == 0, back.stdout + back.stderr
    # the leaf forwarded it: both MACs were learnt on the trunk's VLAN 30
    fdb = vm_lab.exec(V.LEAF_NAME, ["bridge", "fdb", "show", "br", "br0", "vlan", "30"]).stdout
    assert "swp1" in fdb and "acc30" in fdb, fdb


# --------------------------------------------------------------------------- host hardening

#: The VMs run their own kernel: the common role applies every hardening key and runs auditd there.
#: gpu-02 only: one VM under TCG costs the tier minutes per converge (storage-01 runs the same role).
HARDENED = ("gpu-02",)


@pytest.fixture(scope="module")
def common_converged(vm_converged):
    """The common role converged on gpu-02 (:func:`vm_converged`), twice: the second run changes nothing."""
    again = vm_converged["again"]
    assert again.ok and all(again.changed(h) == 0 for h in HARDENED), f"second run changed {again.changed_tasks}"
    return vm_converged["inventory"]


def _hardening_baseline() -> tuple[dict, str, str]:
    """The role's hardening keys (plain keys only: globs are checked by the role's script), its
    file and its check script."""
    defaults = yaml.safe_load((ROOT / "roles/common/defaults/main.yml").read_text())
    script = yaml.safe_load((ROOT / "roles/common/vars/main.yml").read_text())["_common_sysctl_check_script"]
    keys = {k.lstrip("-"): v for k, v in defaults["common_sysctl_hardening"].items() if "*" not in k}
    keys.update({"net.ipv4.conf.all.rp_filter": 1, "net.ipv4.conf.default.rp_filter": 1})  # the lab: strict
    return keys, defaults["common_sysctl_hardening_file"], script


def test_vms_run_the_kernel_hardening(vm_lab, common_converged):
    keys, path, script = _hardening_baseline()
    for name in HARDENED:
        values = _ssh(vm_lab, name, "sysctl -n " + " ".join(keys)).stdout.split()
        assert dict(zip(keys, values, strict=True)) == {k: str(v) for k, v in keys.items()}, name
        # every interface (the file's globs), as the role checks it: no difference at all
        check = vm_lab.exec(name, ["sh", "-c", script, "sh", path])
        assert check.returncode == 0 and check.stdout == "", f"{name}: {check.stdout}{check.stderr}"
        # as at boot: every sysctl.d file applied in order leaves the baseline in force (the file sorts
        # after Debian's 99-protect-links.conf, which sets fs.protected_fifos = 1)
        boot = _ssh(vm_lab, name, f"/lib/systemd/systemd-sysctl && sh -c {shlex.quote(script)} sh {path}")
        assert boot.returncode == 0 and boot.stdout == "", f"{name}: {boot.stdout}{boot.stderr}"
        # an interface that appears later gets the baseline too (default, and systemd's udev rule)
        new = _ssh(vm_lab, name, """set -e
            ip link add lltest0 type dummy; udevadm settle
            for k in accept_redirects send_redirects secure_redirects rp_filter; do
                cat /proc/sys/net/ipv4/conf/lltest0/$k; done
            ip link del lltest0""")
        assert new.returncode == 0 and new.stdout.split() == ["0", "0", "0", "1"], f"{name}: {new.stdout}{new.stderr}"


def test_vms_audit_with_the_rules(vm_lab, common_converged):
    keys = yaml.safe_load((ROOT / "roles/common/vars/main.yml").read_text())["_common_auditd_keys"]
    for name in HARDENED:
        status = vm_lab.exec(name, ["auditctl", "-s"])
        assert status.returncode == 0 and re.search(r"^enabled 1$", status.stdout, re.M), status.stdout
        rules = vm_lab.exec(name, ["auditctl", "-l"]).stdout
        assert "-w /etc/passwd -p wa -k identity" in rules and "-w /etc/llmcluster -p wa -k llmcluster-config" in rules
        missing = [k for k in keys if not re.search(rf"(-k |key=){re.escape(k)}(\s|$)", rules)]
        assert missing == [], f"{name}: no rule with the keys {missing}:\n{rules}"
        assert "-S execve,execveat" in rules or "-S execve -S execveat" in rules, rules
        # a syscall rule records: a command run as root from a login session (key root-commands)
        marker = f"lltest-{time.time_ns()}"
        ran = _ssh(vm_lab, name, f"/bin/echo {marker} >/dev/null")
        assert ran.returncode == 0, ran.stderr
        # --input-logs: run over SSH, ausearch sees a pipe on stdin and reads it instead of the logs
        deadline = time.monotonic() + 60  # under TCG, ausearch over a busy log takes seconds itself
        while True:
            found = vm_lab.exec(name, ["ausearch", "--input-logs", "-i", "-k", "root-commands"]).stdout
            if marker in found or time.monotonic() > deadline:
                break
            time.sleep(1)
        if marker not in found:  # what auditd saw: its counters (lost, backlog) and the last records it kept
            log = "/var/log/audit/audit.log"
            diag = vm_lab.exec(name, ["sh", "-c", f"auditctl -s; systemctl is-active auditd; grep -c . {log}; "
                                      f"grep -c root-commands {log}; tail -n 3 {log}; "
                                      "journalctl -k -n 5 --no-pager | grep -i audit"])
            pytest.fail(f"{name}: no root-commands record of the marker command {marker} within 60 s; "
                        f"found {found.count('type=SYSCALL')} root-commands records; auditd: {diag.stdout[-1500:]}"
                        f"{diag.stderr[-300:]}")


def test_vms_audit_watch_records_a_write_in_the_folder(vm_lab, common_converged):
    for name in HARDENED:
        touched = _ssh(vm_lab, name, "test -d /etc/llmcluster && touch /etc/llmcluster/lltest"
                                     " && rm -f /etc/llmcluster/lltest")
        assert touched.returncode == 0, f"{name}: {touched.stderr}"
        found = ""
        for _ in range(20):
            found = vm_lab.exec(name, ["ausearch", "--input-logs", "-i", "-k", "llmcluster-config"]).stdout
            if "lltest" in found:
                break
            time.sleep(0.5)
        assert "lltest" in found, f"{name}: no audit record of /etc/llmcluster/lltest"


def test_vms_sshd_listens_on_mgmt_only_and_passes_ssh_audit(vm_lab, common_converged):
    from tests.helpers import ssh_audit

    for name in HARDENED:
        mgmt = vm_lab.plan.ip.host(name).mgmt_ip
        listening = vm_lab.exec(name, ["ss", "-Hltn", "sport = :22"]).stdout.split("\n")
        local = sorted(line.split()[3] for line in listening if line.strip())
        assert local == [f"{mgmt}:22"], f"{name}: sshd listens on {local}"
        # forwarding refused: a direct-tcpip channel (ssh -W) to the VM's own sshd
        argv = vm_lab.ssh_argv(name)
        argv[-1:-1] = ["-W", f"{mgmt}:22"]
        fwd = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
        assert fwd.returncode == 255 and "stdio forwarding failed" in fwd.stderr, fwd.stderr
        if not ssh_audit.available():
            pytest.skip("ssh-audit is not installed here (apt-get install ssh-audit; scripts/setup.sh does)")
        audit = ssh_audit.run(mgmt)
        TIMINGS[f"ssh-audit {name}"] = audit.summary()
        assert audit.fails == [], audit.text
        assert audit.unexplained_warnings() == [], audit.text
        assert audit.offered["key"] == ["ssh-ed25519"], audit.offered


def test_down_removes_every_vm_object_and_up_brings_them_back(vm_lab):
    """Last in this module: ``down`` leaves no qemu, tap or disk; ``up`` boots the VMs again."""
    state = vm_lab.state()
    taps = [r.name for r in state.of_kind("tap")]
    disks = [r.name for r in state.of_kind("vmdisk")]
    assert taps and disks and all(Path(d).exists() for d in disks)
    t = time.monotonic()
    vm_lab.down()
    TIMINGS["down with VMs"] = f"{time.monotonic() - t:.1f}s"
    assert _qemu_pids(vm_lab.state_dir) == []
    assert [t for t in N.lab_links() if t.startswith(N.TAP_PREFIX)] == []
    assert [d for d in disks if Path(d).exists()] == []
    assert not vm_lab.state().records
    assert vm_lab.down() == []
    t = time.monotonic()
    report = vm_lab.up()
    TIMINGS["up again with VMs"] = f"{time.monotonic() - t:.1f}s"
    assert {"gpu-02", "storage-01", V.LEAF_NAME} <= set(report.started)
    # every host answers again (bounded: a systemd host may still be finishing its boot)
    for _ in range(60):
        bad = [s for s in vm_lab.status() if not s.ok]
        if not bad:
            break
        time.sleep(2)
    assert not bad, bad
