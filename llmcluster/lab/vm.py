"""VM lab hosts: qemu guests with their own Debian kernel, for the kernel features namespaces lack.

This machine's kernel has no 802.1Q subinterfaces, no bridge ``vlan_filtering``, no md RAID
and no device-mapper, so a namespace host cannot run the roles' tagged-VLAN mode or build a
RAID. A lab node asks for a VM in the stack (``lab.hosts.<name>.kind: vm`` or
``lab.pools.<pool>.kind: vm``, sized by ``lab.vm``) and becomes a qemu guest
(``accel=tcg``, software emulation: this machine's ``/dev/kvm`` cannot boot a stock kernel)
booting the cached VM image (:mod:`llmcluster.lab.vm_image`) from a per-VM qcow2 overlay.

**Provisioning** happens before boot, as MAAS or cloud-init would do it: a *seed* (a tar
archive attached as a read-only virtio disk) carries the hostname, ``/etc/hosts``, an empty
``resolv.conf``, a machine id, root's ``authorized_keys`` (the lab key) and the provisioning
network; the image's initramfs extracts it over the root file system before systemd starts.

**Network.** Every guest NIC is a virtio NIC on a persistent tap device of this machine
(``llt-<6 hex>-<suffix>``) that is a port of a lab bridge, with a fixed MAC derived from the
host and the port (locally administered, ``02:…``); inside the guest a systemd ``.link`` file
renames it by MAC. No user-mode (slirp) network exists: a VM reaches exactly what its taps'
bridges reach, and those are lab bridges behind the forward guard.

* ``access`` VM (like the namespace hosts): one NIC per VLAN, a port of ``llb-<vlan id>``,
  named like the namespace hosts' interfaces (``mgmt``, ``stor-pub``, ...), addressed by
  systemd-networkd from the IP plan, MTU per VLAN, no default route.
* ``tagged`` VM (production's mode): one trunk NIC, :data:`TAGGED_UPLINK` (the inventory's
  ``llmcluster_uplink``), on a trunk bridge ``llb-t<6 hex>`` shared only with the leaf. The
  provisioning netplan file (``50-provisioning.yaml``) defines the uplink and the mgmt VLAN
  subinterface (``vlan<id>``) so that Ansible reaches the host; the ``network`` role then
  writes every VLAN (``60-llmcluster.yaml``) and applies it.
* **The leaf** (:data:`LEAF_NAME`, the lab's stand-in for leaf switch ``leaf-01``; lab
  infrastructure, not a plan host): a small VM with a VLAN-aware bridge (``br0``,
  ``vlan_filtering 1``, no default PVID). Per tagged host a trunk port ``swp<n>`` carrying
  that host's VLANs tagged; per VLAN an access port ``acc<id>`` (PVID, egress untagged)
  that is a tap on the lab's bridge ``llb-<id>`` — so a tagged VM talks to the namespace
  hosts on every VLAN through a real 802.1Q switch path. Its management port ``eth0``
  (not bridged) has the mgmt VLAN's last reserved address (:func:`leaf_mgmt_ip`), so the
  controller reaches it over SSH like a switch's out-of-band port.

**Storage.** A VM of a pool with NVMe drives gets that many extra sparse raw disks (virtio,
serial ``nvme<i>``, at most :data:`DATA_DISK_MAX_GB` each), so md RAID is built for real.

Every object (trunk bridges, taps, disk files, the qemu processes with their start times) is
recorded in the lab state before it is created, so ``down`` removes exactly those. The serial
console of each VM goes to ``<state>/vms/<name>/console.log``; its last lines are reported
when a VM dies or does not answer SSH within ``lab.vm.boot_timeout_s``.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from llmcluster.lab import hosts as H
from llmcluster.lab import network as N
from llmcluster.lab._sys import LabError, proc_info, reap, run, spawn_detached
from llmcluster.lab.vm_image import KERNEL_CMDLINE, SEED_SERIAL, VmImage, ensure_vm_disk
from llmcluster.plan.hostnet import ACCESS_IFNAMES
from llmcluster.spec.models import LabVm

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.lab.state import LabState, Record
    from llmcluster.plan.build import Plan

Progress = Callable[[str], None]

QEMU_PROGRAM = "qemu-system-x86_64"
#: The lab's stand-in for the leaf switch the tagged hosts hang off.
LEAF_NAME = "leaf-01"
LEAF_MEMORY_MB = 640
#: Name of a tagged VM's trunk NIC (its ``llmcluster_uplink``).
TAGGED_UPLINK = "eth0"
#: NVMe stand-ins are sparse files: a RAID over them needs no real capacity.
DATA_DISK_MAX_GB = 2
#: Record kinds this module adds to the lab state (removed by :func:`remove_record`).
RECORD_KINDS = ("tap", "vmdisk")

VmRole = Literal["access", "tagged", "leaf"]


# --------------------------------------------------------------------------- names


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:6]


def tap_name(host: str, suffix: str) -> str:
    name = f"{N.TAP_PREFIX}{_digest(host)}-{suffix}"
    if len(name) > N.IFNAMSIZ:  # pragma: no cover - suffixes are short by construction
        raise LabError(f"tap name {name!r} is longer than {N.IFNAMSIZ} characters")
    return name


def trunk_bridge_name(host: str) -> str:
    """The bridge between a tagged host's trunk NIC and its leaf port (a plain cable)."""
    return f"{N.BRIDGE_PREFIX}t{_digest(host)}"


def vm_mac(host: str, port: str) -> str:
    """A fixed, locally administered unicast MAC per host and port."""
    d = hashlib.sha256(f"llmcluster-lab/{host}/{port}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in d[:5])


def leaf_mgmt_ip(plan: Plan) -> str:
    """The leaf's management address: the mgmt VLAN's last reserved address (kept for switches)."""
    return plan.ip.vlans["mgmt"].reserved_last


def vm_dir(state_dir: Path, name: str) -> Path:
    return state_dir / "vms" / name


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Nic:
    port: str  # the port's name in the layout (the MAC and tap derive from it)
    ifname: str  # name inside the guest
    tap: str  # tap device on this machine
    bridge: str  # lab bridge the tap is a port of
    mtu: int
    mac: str


@dataclass(frozen=True)
class LeafPort:
    ifname: str
    vlans: tuple[int, ...]  # tagged (trunk) or the single PVID (access)
    access: bool


@dataclass(frozen=True)
class VmHost:
    """One VM of the lab: a plan host (``access``/``tagged``) or the leaf."""

    name: str
    role: VmRole
    mgmt_ip: str
    nics: tuple[Nic, ...]
    memory_mb: int
    cpus: int
    disk_gb: int
    data_disks: tuple[tuple[str, int], ...] = ()  # (serial, size in GiB)
    leaf_ports: tuple[LeafPort, ...] = ()
    trunk_mtu: int = 0
    addresses: dict[str, str] = field(default_factory=dict)  # VLAN role -> address (plan hosts)


def host_kind(plan: Plan, host_name: str) -> str:
    """``namespace`` | ``nspawn`` | ``vm``: how the lab realises one plan host."""
    lab = plan.spec.lab
    if lab is None:
        return "namespace"
    return lab.host(host_name, plan.ip.host(host_name).pool).kind


def vm_settings(plan: Plan) -> LabVm:
    return plan.spec.lab.vm if plan.spec.lab is not None else LabVm()


def vm_layout(plan: Plan) -> list[VmHost]:
    """Every VM the plan's lab needs: the VM hosts in plan order, then the leaf if any is tagged."""
    ip, spec, settings = plan.ip, plan.spec, vm_settings(plan)
    trunk_mtu = max([spec.fabric.mtu, *(v.mtu for v in ip.vlans.values())])
    out: list[VmHost] = []
    tagged: list[tuple[str, tuple[int, ...]]] = []
    for h in ip.hosts:
        if host_kind(plan, h.name) != "vm":
            continue
        entry = spec.lab.host(h.name, h.pool)  # type: ignore[union-attr]
        pool = spec.pools[h.pool]
        disks = tuple((f"nvme{i}", min(pool.nvme.size_gb, DATA_DISK_MAX_GB)) for i in range(pool.nvme.count)) \
            if pool.nvme is not None else ()
        if entry.network == "tagged":
            nics = (Nic("trunk", TAGGED_UPLINK, tap_name(h.name, "t"), trunk_bridge_name(h.name), trunk_mtu,
                         vm_mac(h.name, "trunk")),)
            tagged.append((h.name, tuple(sorted(ip.vlans[r].id for r in h.addresses))))
        else:
            nics = tuple(
                Nic(role, ACCESS_IFNAMES[role], tap_name(h.name, str(ip.vlans[role].id)),
                    N.bridge_name(ip.vlans[role]), ip.vlans[role].mtu, vm_mac(h.name, role))
                for role in h.addresses
            )
        out.append(VmHost(h.name, entry.network, h.mgmt_ip, nics, settings.memory_mb, settings.cpus,
                          settings.disk_gb, disks, trunk_mtu=trunk_mtu, addresses=dict(h.addresses)))
    if tagged:
        mgmt = ip.vlans["mgmt"]
        nics = [Nic("mgmt", "eth0", tap_name(LEAF_NAME, "m"), N.bridge_name(mgmt), mgmt.mtu, vm_mac(LEAF_NAME, "mgmt"))]
        ports: list[LeafPort] = []
        for i, (host, vids) in enumerate(tagged, start=1):
            nics.append(Nic(f"swp{i}", f"swp{i}", tap_name(LEAF_NAME, f"t{i}"), trunk_bridge_name(host), trunk_mtu,
                            vm_mac(LEAF_NAME, f"swp{i}")))
            ports.append(LeafPort(f"swp{i}", vids, access=False))
        by_id = {v.id: v for v in ip.vlans.values()}
        for vid in sorted({v for _, vids in tagged for v in vids}):
            vlan = by_id[vid]
            nics.append(Nic(f"acc{vid}", f"acc{vid}", tap_name(LEAF_NAME, str(vid)), N.bridge_name(vlan), vlan.mtu,
                            vm_mac(LEAF_NAME, f"acc{vid}")))
            ports.append(LeafPort(f"acc{vid}", (vid,), access=True))
        out.append(VmHost(LEAF_NAME, "leaf", leaf_mgmt_ip(plan), tuple(nics), LEAF_MEMORY_MB, 1,
                          settings.disk_gb, leaf_ports=tuple(ports), trunk_mtu=trunk_mtu))
    return out


# --------------------------------------------------------------------------- provisioning


def _link_file(nic: Nic) -> str:
    # Driver= too: VLAN subinterfaces (and bridges) inherit the MAC, and must keep their names.
    return (f"# llmcluster lab VM: name the NIC on {nic.bridge} by its MAC\n"
            f"[Match]\nMACAddress={nic.mac}\nDriver=virtio_net\n\n[Link]\nName={nic.ifname}\nMTUBytes={nic.mtu}\n")


_NETWORK_COMMON = "LinkLocalAddressing=no\nIPv6AcceptRA=no\nConfigureWithoutCarrier=yes\n"


def _access_network(nic: Nic, cidr: str) -> str:
    return (f"# llmcluster lab VM: VLAN {nic.port} (access port on {nic.bridge}); no default route\n"
            f"[Match]\nName={nic.ifname}\n\n[Link]\nMTUBytes={nic.mtu}\n\n"
            f"[Network]\nAddress={cidr}\n{_NETWORK_COMMON}")


def _tagged_netplan(vm: VmHost, plan: Plan) -> str:
    mgmt = plan.ip.vlans["mgmt"]
    return f"""\
# llmcluster lab VM: provisioning network (as MAAS would write it): the uplink and the mgmt
# VLAN, so that Ansible reaches the host; the network role adds the other VLANs.
network:
  version: 2
  renderer: networkd
  ethernets:
    {TAGGED_UPLINK}:
      mtu: {vm.trunk_mtu}
      dhcp4: false
      dhcp6: false
      accept-ra: false
      link-local: []
  vlans:
    vlan{mgmt.id}:
      id: {mgmt.id}
      link: {TAGGED_UPLINK}
      mtu: {mgmt.mtu}
      dhcp4: false
      dhcp6: false
      accept-ra: false
      link-local: []
      addresses:
        - {vm.addresses["mgmt"]}/{mgmt.prefixlen}
"""


def _leaf_files(vm: VmHost, plan: Plan) -> dict[str, str]:
    mgmt = plan.ip.vlans["mgmt"]
    net = "etc/systemd/network"
    files = {
        f"{net}/10-br0.netdev": (
            "# llmcluster lab leaf (stand-in for leaf switch leaf-01): a VLAN-aware bridge\n"
            f"[NetDev]\nName=br0\nKind=bridge\nMTUBytes={vm.trunk_mtu}\n\n"
            "[Bridge]\nVLANFiltering=yes\nDefaultPVID=none\nSTP=no\n"
        ),
        f"{net}/20-br0.network": f"[Match]\nName=br0\n\n[Network]\n{_NETWORK_COMMON}",
        f"{net}/20-eth0.network": (
            "# management port (not bridged), like a switch's out-of-band port\n"
            f"[Match]\nName=eth0\n\n[Network]\nAddress={vm.mgmt_ip}/{mgmt.prefixlen}\n{_NETWORK_COMMON}"
        ),
    }
    mtus = {n.ifname: n.mtu for n in vm.nics}
    for port in vm.leaf_ports:
        body = (f"[Match]\nName={port.ifname}\n\n[Link]\nMTUBytes={mtus[port.ifname]}\n\n"
                f"[Network]\nBridge=br0\n{_NETWORK_COMMON}")
        if port.access:
            vid = port.vlans[0]
            body = (f"# access port of VLAN {vid} (untagged; the lab bridge llb-{vid})\n" + body
                    + f"\n[BridgeVLAN]\nVLAN={vid}\nPVID={vid}\nEgressUntagged={vid}\n")
        else:
            body = f"# trunk port: VLANs {', '.join(map(str, port.vlans))} tagged\n" + body
            body += "".join(f"\n[BridgeVLAN]\nVLAN={vid}\n" for vid in port.vlans)
        files[f"{net}/30-{port.ifname}.network"] = body
    return files


def seed_files(vm: VmHost, plan: Plan, authorized_key: str) -> dict[str, tuple[str, int]]:
    """Path (relative to /) -> (content, mode) of everything the VM is provisioned with."""
    hosts = H.hosts_file(plan.ip.hosts)
    if any(v.role == "tagged" for v in vm_layout(plan)) or vm.role == "leaf":
        hosts += f"{leaf_mgmt_ip(plan)}\t{LEAF_NAME}\n"
    files: dict[str, tuple[str, int]] = {
        "etc/hostname": (f"{vm.name}\n", 0o644),
        "etc/hosts": (hosts, 0o644),
        "etc/resolv.conf": ("", 0o644),  # no DNS in the lab: lookups must fail fast
        "etc/machine-id": (hashlib.sha256(f"llmcluster-lab-machine/{vm.name}".encode()).hexdigest()[:32] + "\n",
                           0o444),
        "root/.ssh/authorized_keys": (authorized_key.strip() + "\n", 0o600),
    }
    for nic in vm.nics:
        files[f"etc/systemd/network/10-llmcluster-{nic.ifname}.link"] = (_link_file(nic), 0o644)
    if vm.role == "access":
        for nic in vm.nics:
            vlan = plan.ip.vlans[nic.port]
            files[f"etc/systemd/network/20-llmcluster-{nic.ifname}.network"] = (
                _access_network(nic, f"{vm.addresses[nic.port]}/{vlan.prefixlen}"), 0o644)
    elif vm.role == "tagged":
        files["etc/netplan/50-provisioning.yaml"] = (_tagged_netplan(vm, plan), 0o600)
    else:
        files.update({k: (v, 0o644) for k, v in _leaf_files(vm, plan).items()})
    return files


def write_seed(path: Path, files: dict[str, tuple[str, int]]) -> None:
    """The seed tar (root-owned entries; ``root/.ssh`` 0700), written atomically."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs = {"root/.ssh": 0o700}
        for d, mode in dirs.items():
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, int(time.time())
            tar.addfile(info)
        for name, (content, mode) in sorted(files.items()):
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    blob += b"\0" * (-len(blob) % 512)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- qemu


def qemu_argv(vm: VmHost, vdir: Path, image: VmImage, accel: str, qemu: str = QEMU_PROGRAM) -> list[str]:
    accel_args = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg"]
    argv = [
        qemu, "-name", f"llmcluster-lab-{vm.name}", *accel_args,
        "-machine", "q35", "-m", str(vm.memory_mb), "-smp", str(vm.cpus),
        "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none", "-no-reboot",
        "-serial", f"file:{vdir / 'console.log'}", "-monitor", "none",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", KERNEL_CMDLINE,
        "-drive", f"file={vdir / 'disk.qcow2'},if=none,id=root,format=qcow2,cache=unsafe,discard=unmap",
        "-device", "virtio-blk-pci,drive=root,serial=root",
    ]
    for serial, _ in vm.data_disks:
        argv += ["-drive", f"file={vdir / (serial + '.raw')},if=none,id={serial},format=raw,cache=unsafe",
                 "-device", f"virtio-blk-pci,drive={serial},serial={serial}"]
    argv += ["-drive", f"file={vdir / 'seed.tar'},if=none,id=seed,format=raw,readonly=on",
             "-device", f"virtio-blk-pci,drive=seed,serial={SEED_SERIAL}"]
    for i, nic in enumerate(vm.nics):
        argv += ["-netdev", f"tap,id=n{i},ifname={nic.tap},script=no,downscript=no",
                 "-device", f"virtio-net-pci,netdev=n{i},mac={nic.mac},host_mtu={nic.mtu}"]
    return argv


def _qemu_ref(rec: Record | None) -> H.ProcRef | None:
    return H.ProcRef.from_dict(rec.data) if rec is not None else None


def process_name(vm: str) -> str:
    return f"{vm}:qemu"


def healthy(state: LabState, vm: VmHost) -> bool:
    ref = _qemu_ref(state.find("process", process_name(vm.name)))
    return bool(ref and ref.alive() and H.ssh_answers(vm.mgmt_ip))


# --------------------------------------------------------------------------- create / start


def ensure_tap(tap: str, bridge: str, mtu: int) -> None:
    if tap not in N.links():
        run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
    N._disable_ipv6(tap)
    run(["ip", "link", "set", tap, "mtu", str(mtu), "master", bridge, "up"])


def prepare(state: LabState, plan: Plan, state_dir: Path, image: VmImage, authorized_key: str,
            progress: Progress | None = None) -> list[VmHost]:
    """Trunk bridges, taps, disks and seeds of every VM (each recorded before it is made)."""
    vms = vm_layout(plan)
    if not vms:
        return vms
    settings = vm_settings(plan)
    base = ensure_vm_disk(image, settings.disk_gb, progress)
    for vm in vms:
        for nic in vm.nics:
            if nic.bridge.startswith(f"{N.BRIDGE_PREFIX}t") and state.find("bridge", nic.bridge) is None:
                state.record("bridge", nic.bridge, vlan="trunk", mtu=vm.trunk_mtu)
            if nic.bridge.startswith(f"{N.BRIDGE_PREFIX}t"):
                N.ensure_bridge(nic.bridge, vm.trunk_mtu)
    for vm in vms:
        vdir = vm_dir(state_dir, vm.name)
        vdir.mkdir(parents=True, exist_ok=True)
        _say(progress, f"VM {vm.name} ({vm.role}): {len(vm.nics)} taps, overlay disk"
                       + (f", {len(vm.data_disks)} data disks" if vm.data_disks else ""))
        for nic in vm.nics:
            state.record("tap", nic.tap, host=vm.name, bridge=nic.bridge, ifname=nic.ifname, mac=nic.mac)
            ensure_tap(nic.tap, nic.bridge, nic.mtu)
        disk = vdir / "disk.qcow2"
        state.record("vmdisk", str(disk), host=vm.name, base=str(base))
        if not disk.exists():
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw", str(disk),
                 f"{vm.disk_gb}G"])
        for serial, size in vm.data_disks:
            path = vdir / f"{serial}.raw"
            state.record("vmdisk", str(path), host=vm.name)
            if not path.exists():
                with open(path, "wb") as fh:
                    fh.truncate(size << 30)
        seed = vdir / "seed.tar"
        state.record("vmdisk", str(seed), host=vm.name)
        write_seed(seed, seed_files(vm, plan, authorized_key))
    return vms


def start(state: LabState, vm: VmHost, state_dir: Path, image: VmImage, accel: str,
          progress: Progress | None = None) -> H.ProcRef:
    """Start (or restart) one VM's qemu; returns at once (boot is waited for in :func:`wait_ready`)."""
    H.stop_process(_qemu_ref(state.find("process", process_name(vm.name))), term_timeout=5)
    vdir = vm_dir(state_dir, vm.name)
    log = vdir / "console.log"
    log.write_text("")
    argv = qemu_argv(vm, vdir, image, accel)
    _say(progress, f"VM {vm.name}: booting ({accel}, {vm.memory_mb} MB)")
    state.record("process", process_name(vm.name), host=vm.name, role="qemu", pid=None)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    try:
        pid = spawn_detached(argv, vdir / "qemu.log", env, truncate=True)
    except OSError as exc:
        raise LabError(f"could not start VM {vm.name}: {exc}") from exc
    info = proc_info(pid)
    if info is None or info.state == "Z":
        reap(pid)
        raise LabError(f"VM {vm.name}: qemu exited at once: {H.tail(vdir / 'qemu.log')}")
    ref = H.ProcRef(pid, info.starttime, QEMU_PROGRAM)
    state.record("process", process_name(vm.name), host=vm.name, role="qemu", **ref.to_dict())
    return ref


def wait_ready(vm: VmHost, ref: H.ProcRef, state_dir: Path, timeout: float) -> float:
    """Wait until the VM's sshd answers on its mgmt address; return the seconds it took."""
    t0 = time.monotonic()
    vdir = vm_dir(state_dir, vm.name)
    while time.monotonic() - t0 < timeout:
        if not ref.alive():
            reap(ref.pid)
            raise LabError(f"VM {vm.name}: qemu stopped while booting: {H.tail(vdir / 'qemu.log', 4)}; "
                           f"console ({vdir / 'console.log'}): {H.tail(vdir / 'console.log', 12)}")
        if H.ssh_answers(vm.mgmt_ip, timeout=1.0):
            return time.monotonic() - t0
        time.sleep(0.25)
    raise LabError(f"VM {vm.name}: sshd did not answer on {vm.mgmt_ip}:{H.SSH_PORT} in {timeout:.0f}s "
                   f"(lab.vm.boot_timeout_s); console ({vdir / 'console.log'}): {H.tail(vdir / 'console.log', 12)}")


# --------------------------------------------------------------------------- the runtime's hooks


def any_vm(plan: Plan) -> bool:
    return any(host_kind(plan, h.name) == "vm" for h in plan.ip.hosts)


def up_vms(state: LabState, plan: Plan, state_dir: Path, authorized_key: str, *, cache: Path | None = None,
           progress: Progress | None = None, timings: dict[str, float] | None = None) -> Booting:
    """Everything before boot: tools check, image, trunk bridges, taps, disks, seeds; then start
    every VM that is not healthy (qemu returns at once; :meth:`Booting.wait` waits for SSH)."""
    from llmcluster.lab.vm_image import ensure_vm_image, require_vm_tools

    require_vm_tools()
    t = time.monotonic()
    image = ensure_vm_image(cache=cache, progress=progress)
    if timings is not None:
        timings["vm_image_s"] = round(time.monotonic() - t, 3)
    vms = prepare(state, plan, state_dir, image, authorized_key, progress)
    settings = vm_settings(plan)
    booting: list[tuple[VmHost, H.ProcRef, float]] = []
    for vm in vms:
        if healthy(state, vm):
            continue
        booting.append((vm, start(state, vm, state_dir, image, settings.accel, progress), time.monotonic()))
    return Booting(state, state_dir, booting, settings.boot_timeout_s, progress)


@dataclass
class Booting:
    """VMs started by :func:`up_vms`, waited for (in parallel) by :meth:`wait`."""

    state: LabState
    state_dir: Path
    vms: list[tuple[VmHost, H.ProcRef, float]]
    timeout: float
    progress: Progress | None = None
    boot_s: dict[str, float] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [vm.name for vm, _, _ in self.vms]

    def wait(self) -> dict[str, float]:
        """Wait until every started VM answers SSH; return seconds from start to SSH per VM."""
        for vm, ref, started in self.vms:
            left = max(1.0, self.timeout - (time.monotonic() - started))
            wait_ready(vm, ref, self.state_dir, left)
            self.boot_s[vm.name] = round(time.monotonic() - started, 1)
            _say(self.progress, f"VM {vm.name}: booted, sshd answers on {vm.mgmt_ip}:{H.SSH_PORT} "
                                f"({self.boot_s[vm.name]:.1f}s)")
        return self.boot_s


def inventory_vars(plan: Plan, host_name: str) -> dict:
    """Host variables of a VM host in the lab inventory (on top of the plan's).

    A VM runs systemd and its own kernel: the roles manage services, apply kernel parameters
    and run auditd there. A tagged VM (its tagged-mode artifacts, ``vlan<id>`` names, come with the
    plan's inventory: :meth:`~llmcluster.plan.build.Plan.in_lab`) gets its trunk NIC as the uplink
    and no default route (lab hosts never get one: nothing outside the lab is reachable, and the
    controller does not route).
    """
    hv: dict = {"llmcluster_manage_services": True, "common_sysctl_apply": True, "common_auditd_enabled": True,
                "common_sysctl_apply_netns": False}
    raid = plan.storage.raid
    entry = next((h for h in raid.hosts if h.host == host_name), None) if raid is not None else None
    if entry is not None:
        # The NVMe stand-ins are virtio disks with serial nvme<i>: their stable names (the role's
        # nvme_raid_devices) replace the planned /dev/nvme<i>n1, which a VM does not have.
        hv["nvme_raid_devices"] = [f"/dev/disk/by-id/virtio-nvme{i}" for i in range(len(entry.members))]
    if plan.hostnet.mode(host_name) == "tagged":
        hv["llmcluster_uplink"] = TAGGED_UPLINK
        hv["llmcluster_default_route_vlan"] = ""
    return hv


def ssh_argv(private_key: Path, address: str, command: str) -> list[str]:
    return H.ssh_argv(private_key, address, command)


# --------------------------------------------------------------------------- teardown


def remove_record(rec: Record) -> None:
    if rec.kind == "tap":
        N.delete_link(rec.name)
    elif rec.kind == "vmdisk":
        Path(rec.name).unlink(missing_ok=True)
    else:  # pragma: no cover - only the kinds in RECORD_KINDS come here
        raise LabError(f"not a VM record: {rec.kind} {rec.name}")


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
