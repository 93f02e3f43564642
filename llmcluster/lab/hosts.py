"""Lab hosts: a network namespace, an overlay root filesystem and ``sshd`` per host.

A host is::

    ip netns exec llh-<host> unshare --mount --uts --ipc --pid --fork --kill-child -- \\
        /bin/sh <state>/hosts/<host>/start.sh <root> <host>

and ``start.sh`` (:data:`START_SCRIPT`) mounts proc, sysfs (read-only), /dev, a new devpts
instance, /dev/shm and /run under ``<root>``, sets the hostname and runs
``exec chroot <root> /bin/sh -c 'ssh-keygen -A && exec /usr/sbin/sshd -D -e'``,
where ``<root>`` is an overlayfs (lower: the cached base image, upper and work: the host's
own directories under the lab state dir) mounted in the root mount namespace. The mounts made
by the start script live in the host's private mount namespace and vanish with it; ``sshd``
is PID 1 of the host's PID namespace. Host keys are generated on first start inside the host
(``ssh-keygen -A``) and kept in its upper layer.

``unshare --fork`` ignores SIGTERM, so stopping a host signals ``sshd`` (the namespace's
init, which has a SIGTERM handler; the kernel then kills everything else in the PID
namespace), waits for ``unshare`` to exit (SIGKILL if it does not) and only then unmounts
the host root (lazily as a last resort).
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from llmcluster.lab._sys import (
    LabError,
    children_of,
    spawn_detached,
    is_mountpoint,
    proc_info,
    reap,
    run,
    runs,
    same_process,
    signal_process,
    unmount_tree,
    wait_gone,
)
from llmcluster.plan.ipam import HostPlan

SSH_PORT = 22
#: Connection settings every lab host gets in the inventory. Lab only: the hosts' keys are
#: made fresh per host, so there is nothing to pin them to.
LAB_SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
#: Programs of the host processes (checked, with the start time, before a PID is signalled).
UNSHARE_PROGRAM = "unshare"
SSHD_PROGRAM = "sshd"

START_SCRIPT = r"""#!/bin/sh
# llmcluster lab host: mounts in the host's private mount namespace, then sshd as its init.
set -e
R="$1"; H="$2"
mount -t proc proc "$R/proc"
mount -t sysfs -o ro sysfs "$R/sys"
mount --rbind /dev "$R/dev"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$R/dev/pts"
mount --bind "$R/dev/pts/ptmx" "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$R/run"
mkdir -p "$R/run/sshd" "$R/run/lock"
hostname "$H"
exec chroot "$R" /bin/sh -c 'ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e'
"""

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


@dataclass(frozen=True)
class HostPaths:
    """Where one host lives under the lab state dir."""

    name: str
    base: Path

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def log(self) -> Path:
        return self.base / "console.log"

    @property
    def start_script(self) -> Path:
        return self.base / "start.sh"


def host_paths(state_dir: Path, host: str) -> HostPaths:
    return HostPaths(host, state_dir / "hosts" / host)


# --------------------------------------------------------------------------- root filesystem


def mount_overlay(lower: Path, paths: HostPaths) -> None:
    """Mount the host root (overlay over the base image) unless it is mounted already."""
    for d in (paths.upper, paths.work, paths.root):
        d.mkdir(parents=True, exist_ok=True)
    if is_mountpoint(paths.root):
        return
    dirs = (str(lower), str(paths.upper), str(paths.work))
    if any(c in d for d in dirs for c in ",:"):
        raise LabError(f"overlay paths may not contain ',' or ':': {dirs}")
    opts = f"lowerdir={lower},upperdir={paths.upper},workdir={paths.work}"
    run(["mount", "-t", "overlay", f"llmcluster-lab-{paths.name}", "-o", opts, str(paths.root)])


def unmount_root(root: Path) -> None:
    unmount_tree(root)


def hosts_file(hosts: tuple[HostPlan, ...]) -> str:
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "# llmcluster lab hosts (mgmt addresses)",
    ]
    lines += [f"{h.mgmt_ip}\t{h.fqdn} {h.name}" for h in hosts]
    return "\n".join(lines) + "\n"


def write_host_files(root: Path, host: HostPlan, all_hosts: tuple[HostPlan, ...], authorized_key: str) -> None:
    """Identity and access files in the host's own layer (rewritten on every ``up``)."""
    etc = root / "etc"
    (etc / "hostname").write_text(f"{host.name}\n")
    (etc / "hosts").write_text(hosts_file(all_hosts))
    (etc / "resolv.conf").write_text("")  # no DNS in the lab: lookups must fail fast
    machine_id = etc / "machine-id"
    if not machine_id.exists() or not machine_id.read_text().strip():
        machine_id.write_text(uuid.uuid4().hex + "\n")
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ssh_dir.chmod(0o700)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(authorized_key.strip() + "\n")
    keys.chmod(0o600)


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcRef:
    """A process the lab started: pid plus start time (guards against PID reuse)."""

    pid: int
    starttime: int
    program: str

    def alive(self) -> bool:
        return same_process(self.pid, self.starttime, self.program)

    def to_dict(self) -> dict:
        return {"pid": self.pid, "starttime": self.starttime, "program": self.program}

    @classmethod
    def from_dict(cls, d: dict) -> ProcRef | None:
        if not d or d.get("pid") is None:
            return None
        return cls(int(d["pid"]), int(d["starttime"]), str(d["program"]))


def start_host(netns: str, paths: HostPaths, hostname: str) -> ProcRef:
    """Start the host's ``unshare`` + ``sshd`` in a new session; return the unshare process.

    ``posix_spawn`` leaves no wrapper object behind (nothing to keep alive, no warning when
    this process exits) and keeps unshare our child, so a ``down`` in the same process reaps
    it; after this process exits, init adopts it.
    """
    argv = [
        "ip", "netns", "exec", netns,
        "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "--",
        "/bin/sh", str(paths.start_script), str(paths.root), hostname,
    ]
    paths.base.mkdir(parents=True, exist_ok=True)
    paths.start_script.write_text(START_SCRIPT)
    try:
        pid = spawn_detached(argv, paths.log, _ENV)
    except OSError as exc:
        raise LabError(f"could not start host {hostname}: {exc}") from exc
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # `ip netns exec` replaces itself with unshare
        info = proc_info(pid)
        if info is None or info.state == "Z":
            reap(pid)
            raise LabError(f"host {hostname} exited at once: {tail(paths.log)}")
        if runs(info, UNSHARE_PROGRAM):
            return ProcRef(pid, info.starttime, UNSHARE_PROGRAM)
        time.sleep(0.005)
    raise LabError(f"host {hostname}: unshare did not start")


def find_sshd(unshare: ProcRef) -> ProcRef | None:
    """The host's init (the shell that becomes ``sshd``) once it has exec'ed ``sshd``."""
    for kid in children_of(unshare.pid):
        info = proc_info(kid)
        if info is not None and runs(info, SSHD_PROGRAM):
            return ProcRef(kid, info.starttime, SSHD_PROGRAM)
    return None


def ssh_argv(private_key: Path, address: str, *command: str) -> list[str]:
    """An ``ssh`` command line that logs in to a lab host (or the lab's VM leaf) as root with the lab key."""
    return ["ssh", "-i", str(private_key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            *LAB_SSH_COMMON_ARGS.split(), "-o", "LogLevel=ERROR", f"root@{address}", *command]


def ssh_answers(address: str, port: int = SSH_PORT, timeout: float = 1.0) -> bool:
    """A real TCP connect from the root namespace that reads an SSH banner."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(unshare: ProcRef, address: str, paths: HostPaths, timeout: float = 30.0) -> ProcRef:
    """Wait until the host's sshd runs and answers on its mgmt address; return sshd."""
    deadline = time.monotonic() + timeout
    sshd: ProcRef | None = None
    while time.monotonic() < deadline:
        if not unshare.alive():
            raise LabError(f"host {paths.name} stopped while starting: {tail(paths.log)}")
        sshd = sshd or find_sshd(unshare)
        if sshd is not None and ssh_answers(address, timeout=0.5):
            return sshd
        time.sleep(0.02)
    raise LabError(f"host {paths.name}: sshd did not answer on {address}:{SSH_PORT} in {timeout}s: {tail(paths.log)}")


def stop_process(ref: ProcRef | None, *, term_timeout: float = 2.0) -> None:
    """SIGTERM (then SIGKILL) a process we started, only after checking it is still ours."""
    if ref is None:
        return
    if ref.alive():
        signal_process(ref.pid, signal.SIGTERM)
        if not wait_gone(ref.pid, ref.starttime, term_timeout) and ref.alive():
            signal_process(ref.pid, signal.SIGKILL)
            wait_gone(ref.pid, ref.starttime, 5)
    reap(ref.pid)


def stop_host(unshare: ProcRef | None, sshd: ProcRef | None) -> None:
    """Stop a host's processes: sshd first (unshare ignores SIGTERM), then unshare."""
    if sshd is None and unshare is not None and unshare.alive():
        sshd = find_sshd(unshare)
    stop_process(sshd)
    if unshare is None:
        return
    if unshare.alive():
        # A host still starting (no sshd yet): its init is unshare's child, so ours to kill.
        for kid in children_of(unshare.pid):
            signal_process(kid, signal.SIGKILL)
        # With its child gone unshare exits by itself; SIGKILL if it does not.
        if not wait_gone(unshare.pid, unshare.starttime, 2.0):
            signal_process(unshare.pid, signal.SIGKILL)
            wait_gone(unshare.pid, unshare.starttime, 5)
    reap(unshare.pid)  # our child when started by this process: collect it (no zombie)


def kill_netns_processes(netns: str) -> list[int]:
    """SIGKILL whatever still runs in a lab host's network namespace (our namespace, so ours)."""
    proc = run(["ip", "netns", "pids", netns], check=False)
    pids = [int(p) for p in proc.stdout.split() if p.strip().isdigit()] if proc.returncode == 0 else []
    for pid in pids:
        if pid != os.getpid():
            signal_process(pid, signal.SIGKILL)
    for pid in pids:
        info = proc_info(pid)
        if info is not None:
            wait_gone(pid, info.starttime, 5)
        reap(pid)
    return pids


def nsenter_argv(sshd: ProcRef, argv: list[str]) -> list[str]:
    """Run ``argv`` inside a host: all of its namespaces, its root and working directory."""
    return ["nsenter", "-t", str(sshd.pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--", *argv]
