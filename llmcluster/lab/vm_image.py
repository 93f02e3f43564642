"""The lab's VM base image: Debian bookworm with a kernel, systemd and the kernel-feature tools.

Namespace hosts share this machine's kernel, which lacks 802.1Q, bridge ``vlan_filtering``,
md RAID and device-mapper. VM hosts (:mod:`llmcluster.lab.vm`) boot their own Debian kernel
under qemu instead. Their image is built like the namespace image
(:mod:`llmcluster.lab.image`: ``debootstrap --variant=minbase``, packages installed in a
chroot with no network and no service allowed to start) with :data:`VM_PACKAGES`, then made
bootable:

* the kernel (``linux-image-cloud-amd64``) and its initramfs are copied out of ``/boot`` to
  ``vmlinuz`` and ``initrd.img`` (qemu boots them with ``-kernel``/``-initrd``);
* the initramfs carries a provisioning step (``init-bottom``): it extracts the VM's *seed*
  (a tar archive attached as a read-only virtio disk with serial :data:`SEED_SERIAL`) over
  the root filesystem before systemd starts — hostname, hosts file, lab key, network
  configuration — as MAAS or cloud-init would provision a server;
* systemd-networkd is enabled (access VMs get ``.link``/``.network`` files, tagged VMs a
  netplan file, which netplan's generator turns into networkd files), SSH host keys are
  generated at first boot, IPv6 is off, and the timers that would only burn emulated CPU
  (apt, man-db, e2scrub, fstrim) are masked;
* the tree is written into an ext4 file system image (``mkfs.ext4 -d``, sparse) per root
  disk size: ``disk-<N>g.raw``. Every VM boots a qcow2 overlay over it, so VMs cost a few MB
  each and are created and destroyed in milliseconds.

Cached in the lab cache dir under ``vm-<suite>-<hash of packages and revision>``, built in a
``.build-*`` directory renamed into place when complete, under the cache lock.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from llmcluster.lab import image as I
from llmcluster.lab._sys import LabError, run, safe_rmtree, which

#: What a VM host has on top of minbase: the namespace image's packages, a kernel that boots
#: under qemu, systemd, and the tools of the kernel features VMs exist for (md, dm, VLANs).
VM_PACKAGES: tuple[str, ...] = (
    *I.LAB_PACKAGES,
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "kmod",
    "procps",
    "mdadm",
    "dmsetup",
    "cryptsetup",  # the nvme_raid role's LUKS layer (storage.raid.encrypt) over the md array
    "xfsprogs",
    "netplan.io",  # the network role's tagged mode writes netplan (renderer: systemd-networkd)
    "auditd",  # the common role's audit rules (a VM has its own kernel; namespace hosts run no auditd)
)
#: Bump when :func:`_make_bootable` or :data:`VM_PACKAGES` changes, so cached VM images are rebuilt.
VM_IMAGE_REVISION = 3
#: The serial of the seed disk the initramfs provisions from (virtio-blk serials: <= 20 chars).
SEED_SERIAL = "llmcluster-seed"
#: Kernel command line of every lab VM (root is the first virtio disk, the console a file).
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1 systemd.show_status=1"

_INITRAMFS_HOOK = """\
#!/bin/sh
# llmcluster lab VM: tar for the provisioning step (scripts/init-bottom/llmcluster-seed).
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
copy_exec /usr/bin/tar /bin
"""

_INITRAMFS_SEED = f"""\
#!/bin/sh
# llmcluster lab VM: per-VM provisioning, before systemd starts. The seed is a tar archive
# attached as a read-only virtio disk with serial {SEED_SERIAL}; it is extracted over the
# root file system (hostname, hosts, lab key, network configuration).
PREREQ=""
prereqs() {{ echo "$PREREQ"; }}
case "$1" in prereqs) prereqs; exit 0 ;; esac
for d in /sys/block/vd*; do
    [ -r "$d/serial" ] || continue
    if [ "$(cat "$d/serial")" = "{SEED_SERIAL}" ]; then
        echo "llmcluster-seed: provisioning from /dev/${{d##*/}}"
        /bin/tar -x --numeric-owner -f "/dev/${{d##*/}}" -C "${{rootmnt}}" || echo "llmcluster-seed: FAILED"
    fi
done
exit 0
"""

_SSH_KEYS_UNIT = """\
[Unit]
Description=llmcluster lab VM: generate missing SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
RequiredBy=ssh.service
"""

#: The network as the guest sees it, on the serial console once booted (for boot reports).
_BOOT_REPORT_UNIT = """\
[Unit]
Description=llmcluster lab VM: report the network on the console
After=systemd-networkd.service ssh.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'sleep 2; echo "llmcluster-boot-report:"; ip -br link; ip -br -4 addr; ip -4 route; \
networkctl --no-pager --no-legend list'
StandardOutput=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
"""

_SYSCTL = """\
# llmcluster lab VM: the plan is IPv4 only (hosts show exactly their planned addresses).
net.ipv6.conf.all.disable_ipv6 = 1
net.ipv6.conf.default.disable_ipv6 = 1
"""

#: Units that only burn emulated CPU in a lab VM (no mirror, no long uptime).
_MASKED = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer", "fstrim.timer",
    "systemd-networkd-wait-online.service",
)


def vm_image_key(packages: tuple[str, ...] = VM_PACKAGES, suite: str = I.SUITE) -> str:
    blob = json.dumps({"suite": suite, "packages": sorted(set(packages)), "revision": VM_IMAGE_REVISION,
                       "base_revision": I.IMAGE_REVISION, "cmdline": KERNEL_CMDLINE})
    import hashlib

    return f"vm-{suite}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def require_vm_tools() -> dict[str, str]:
    """Paths of the programs VM hosts need; :class:`LabError` naming the packages when missing."""
    tools = {"qemu": "qemu-system-x86_64", "qemu-img": "qemu-img", "mkfs.ext4": "mkfs.ext4"}
    found = {k: which(v) for k, v in tools.items()}
    missing = [tools[k] for k, v in found.items() if v is None]
    if missing:
        raise LabError(
            f"VM lab hosts need {', '.join(missing)}: install the Debian packages qemu-system-x86 and "
            "qemu-utils (as root: apt-get install --no-install-recommends qemu-system-x86 qemu-utils; "
            "scripts/setup.sh does it when run as root)"
        )
    if not Path("/dev/net/tun").exists():
        raise LabError("VM lab hosts need /dev/net/tun (tap devices connect them to the lab bridges)")
    return {k: str(v) for k, v in found.items()}


@dataclass(frozen=True)
class VmImage:
    """A built VM image: kernel, initramfs and the root file system tree (``rootfs``)."""

    key: str
    directory: Path
    built: bool
    seconds: float
    meta: dict

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    def disk(self, size_gb: int) -> Path:
        """The ext4 root disk image of ``size_gb`` (made by :func:`ensure_vm_disk`)."""
        return self.directory / f"disk-{size_gb}g.raw"


def _systemctl(rootfs: Path, *args: str) -> None:
    I._chroot(rootfs, ["systemctl", *args], network=False)


def _make_bootable(rootfs: Path, directory: Path, progress: I.Progress | None) -> None:
    """VM-specific customisation (see the module doc), then kernel and initramfs copied out."""
    etc = rootfs / "etc"
    (etc / "fstab").write_text("# llmcluster lab VM\n/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    hooks = etc / "initramfs-tools"
    (hooks / "hooks").mkdir(parents=True, exist_ok=True)
    (hooks / "scripts/init-bottom").mkdir(parents=True, exist_ok=True)
    for path, text in ((hooks / "hooks/llmcluster-seed", _INITRAMFS_HOOK),
                       (hooks / "scripts/init-bottom/llmcluster-seed", _INITRAMFS_SEED)):
        path.write_text(text)
        path.chmod(0o755)
    (etc / "systemd/system/llmcluster-ssh-keys.service").write_text(_SSH_KEYS_UNIT)
    (etc / "systemd/system/llmcluster-boot-report.service").write_text(_BOOT_REPORT_UNIT)
    (etc / "sysctl.d/10-llmcluster-lab-vm.conf").write_text(_SYSCTL)
    (etc / "systemd/network").mkdir(parents=True, exist_ok=True)
    _systemctl(rootfs, "enable", "systemd-networkd.service", "llmcluster-ssh-keys.service", "ssh.service",
               "llmcluster-boot-report.service")
    _systemctl(rootfs, "mask", *_MASKED)
    _say(progress, "building the VM initramfs (with the provisioning step)")
    I._chroot(rootfs, ["update-initramfs", "-u", "-k", "all"], network=False)
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise LabError(f"the VM image has no kernel or initramfs in {rootfs / 'boot'}")
    shutil.copyfile(kernels[-1], directory / "vmlinuz")
    shutil.copyfile(initrds[-1], directory / "initrd.img")


def _say(progress: I.Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def ensure_vm_image(
    *, cache: Path | None = None, packages: tuple[str, ...] = VM_PACKAGES, suite: str = I.SUITE,
    mirror: str | None = None, progress: I.Progress | None = None,
) -> VmImage:
    """Return the cached VM image for (suite, packages), building it first if needed."""
    started = time.monotonic()
    cache = cache or I.cache_dir()
    key = vm_image_key(packages, suite)
    final = cache / key
    with I._locked(cache / ".lock"):
        meta_path = final / "image.json"
        if meta_path.is_file() and (final / "vmlinuz").is_file() and (final / "initrd.img").is_file():
            return VmImage(key, final, False, time.monotonic() - started, json.loads(meta_path.read_text()))
        for stale in cache.glob(f".build-{key}-*"):
            safe_rmtree(stale)
        if final.exists():
            safe_rmtree(final)
        mirror = mirror or I.debian_mirror(suite)
        work = cache / f".build-{key}-{os.getpid()}"
        work.mkdir(parents=True)
        try:
            timings = I._build(work / "rootfs", mirror=mirror, packages=packages, suite=suite, progress=progress)
            t = time.monotonic()
            _make_bootable(work / "rootfs", work, progress)
            timings["bootable_s"] = round(time.monotonic() - t, 1)
            meta = {
                "key": key, "suite": suite, "packages": sorted(set(packages)), "revision": VM_IMAGE_REVISION,
                "mirror": mirror, "cmdline": KERNEL_CMDLINE,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **timings,
            }
            (work / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
            os.rename(work, final)
        except BaseException:
            safe_rmtree(work)
            raise
        _say(progress, f"VM image {key} built")
        return VmImage(key, final, True, time.monotonic() - started, meta)


def ensure_vm_disk(image: VmImage, size_gb: int, progress: I.Progress | None = None) -> Path:
    """The image's root tree as a sparse ext4 disk of ``size_gb`` (cached next to the image)."""
    target = image.disk(size_gb)
    with I._locked(image.directory.parent / ".lock"):
        if target.is_file():
            return target
        _say(progress, f"writing the VM root disk ({size_gb} GiB ext4, sparse)")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            run(["mkfs.ext4", "-q", "-F", "-L", "llmcluster-root", "-d", str(image.rootfs), str(tmp),
                 f"{size_gb}G"], timeout=600)
            os.rename(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target
