"""Lab hosts that boot systemd: the host's namespace and overlay root under ``systemd-nspawn -b``.

A host of kind ``nspawn`` (``lab.pools`` / ``lab.hosts`` of the stack) gets the same network
namespace (with its per-VLAN veths, :mod:`~llmcluster.lab.network`) and the same overlay root
as a namespace host (:mod:`~llmcluster.lab.hosts`), but boots it with systemd as init::

    SYSTEMD_NSPAWN_API_VFS_WRITABLE=network \\
    systemd-nspawn --boot --register=no --keep-unit --resolv-conf=off --link-journal=no \\
        --timezone=off --console=read-only --capability=CAP_NET_ADMIN \\
        --network-namespace-path=/run/netns/llh-<host> --machine=llh-<host> --hostname=<host> \\
        --directory=<state>/hosts/<host>/root

so the roles' systemd paths run for real there (services enabled and started, units reloaded,
boot-time units). Details:

* ``--register=no --keep-unit``: nspawn talks to no systemd or machined on this machine (which
  may have neither). nspawn creates its ``payload``/``supervisor`` cgroups below the cgroup it
  runs in, so each host first moves into its own cgroup ``llmcluster-lab-<host>`` in every
  hierarchy nspawn uses (cgroup2, and ``name=systemd`` on a hybrid v1 machine): two hosts
  never share a cgroup tree. ``down`` removes those cgroups.
* ``SYSTEMD_NSPAWN_API_VFS_WRITABLE=network`` makes ``/proc/sys/net`` writable (the host's own
  network namespace), ``CAP_NET_ADMIN`` lets it configure its interfaces, tc and nftables.
  The rest of ``/proc/sys`` stays read-only: kernel parameters are this machine's.
* The console (systemd's boot messages) goes to ``<state>/hosts/<host>/console.log``.
* In the host's own layer (never the shared image) the runtime writes
  :data:`SSH_DROPIN` (``ssh-keygen -A`` before ``sshd -t``: the image carries no host keys)
  and masks :data:`MASKED_UNITS` (a mirror no lab host can reach, NVMe-oF a container lacks).

Stopping: SIGTERM to ``systemd-nspawn``, which sends SIGRTMIN+3 to the container's systemd (an
orderly shutdown; services stop, the journal is flushed); wait; SIGKILL to the container's
init (which ends its whole PID namespace) and then to nspawn only as the last resort. The
mounts nspawn makes live in its own mount namespace and vanish with it; the overlay root is
the runtime's, unmounted by ``down`` as for namespace hosts.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from llmcluster.lab import network as N
from llmcluster.lab._sys import (
    LabError,
    children_of,
    proc_info,
    reap,
    runs,
    signal_process,
    spawn_detached,
    wait_gone,
    which,
)
from llmcluster.lab.hosts import HostPaths, ProcRef, ssh_answers

NSPAWN_PROGRAM = "systemd-nspawn"
#: The container's init as this machine sees it (``/usr/lib/systemd/systemd``).
INIT_PROGRAM = "systemd"
#: The Debian package that has systemd-nspawn.
NSPAWN_PACKAGE = "systemd-container"
CGROUP_PREFIX = "llmcluster-lab-"
#: Seconds from start until sshd must answer (a boot takes ~1-3 s here).
BOOT_TIMEOUT = 90.0
#: Seconds an orderly shutdown may take before the container is killed.
STOP_TIMEOUT = 20.0

#: ssh.service drop-in of the host's layer: make the host keys first (the image has none;
#: ``sshd -t`` fails without them). ``ssh-keygen -A`` only creates missing keys.
SSH_DROPIN_PATH = "etc/systemd/system/ssh.service.d/10-llmcluster-lab.conf"
SSH_DROPIN = """\
# llmcluster lab host (a lab, not production): the image has no SSH host keys, make them
# on first boot (ssh-keygen -A only creates missing keys), then check the configuration.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
#: Units masked on nspawn lab hosts: daily apt runs need a mirror, and lab hosts reach none.
MASKED_UNITS: tuple[str, ...] = (
    "apt-daily.timer", "apt-daily-upgrade.timer",
    # nvme-cli (in the image as a dependency of ceph-osd) connects NVMe-oF subsystems at boot: a container has no
    # /dev/nvme-fabrics, so the unit fails and the host reports "degraded".
    "nvmf-autoconnect.service",
)

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}

LAUNCH_SCRIPT = r"""#!/bin/sh
# llmcluster lab nspawn host: move into the host's own cgroups, then become systemd-nspawn.
set -e
while [ "$1" != "--" ]; do echo $$ > "$1/cgroup.procs"; shift; done
shift
exec "$@"
"""


# --------------------------------------------------------------------------- names and checks


def machine_name(host: str) -> str:
    """nspawn's machine name of a host: its namespace name (``llh-<host>``), lab-prefixed."""
    return N.netns_name(host)


def nspawn_binary() -> str:
    """Path of ``systemd-nspawn``; a :class:`LabError` saying what to install when missing."""
    found = which(NSPAWN_PROGRAM)
    if not found:
        raise LabError(
            f"{NSPAWN_PROGRAM} is missing: lab hosts of kind 'nspawn' boot systemd with it; install the "
            f"{NSPAWN_PACKAGE} package (apt-get install {NSPAWN_PACKAGE}, or scripts/setup.sh as root)"
        )
    return found


def cgroup_roots(mountinfo: str | None = None) -> list[Path]:
    """The cgroup hierarchies nspawn places a container in: every cgroup2 mount and the
    ``name=systemd`` v1 hierarchy (hybrid machines); the first mount of each."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    v2: Path | None = None
    named: Path | None = None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, options = tail[0], tail[2].split(",")
        if fstype == "cgroup2" and v2 is None:
            v2 = Path(fields[4])
        elif fstype == "cgroup" and "name=systemd" in options and named is None:
            named = Path(fields[4])
    return [p for p in (v2, named) if p is not None]


def cgroup_dirs(host: str) -> list[str]:
    """The host's own cgroups (one per hierarchy of :func:`cgroup_roots`)."""
    return [str(root / f"{CGROUP_PREFIX}{host}") for root in cgroup_roots()]


def nspawn_argv(netns: str, paths: HostPaths, host: str) -> list[str]:
    return [
        nspawn_binary(), "--boot", "--register=no", "--keep-unit", "--resolv-conf=off", "--link-journal=no",
        "--timezone=off", "--console=read-only", "--capability=CAP_NET_ADMIN",
        f"--network-namespace-path=/run/netns/{netns}", f"--machine={machine_name(host)}", f"--hostname={host}",
        f"--directory={paths.root}",
    ]


# --------------------------------------------------------------------------- root filesystem


def prepare_root(root: Path) -> None:
    """Write the nspawn-only files into the host's own layer (idempotent; every ``up``)."""
    dropin = root / SSH_DROPIN_PATH
    dropin.parent.mkdir(parents=True, exist_ok=True)
    if not dropin.is_file() or dropin.read_text() != SSH_DROPIN:
        dropin.write_text(SSH_DROPIN)
    units = root / "etc/systemd/system"
    for unit in MASKED_UNITS:
        link = units / unit
        if link.is_symlink() and os.readlink(link) == "/dev/null":
            continue
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("/dev/null")


# --------------------------------------------------------------------------- processes


def start(netns: str, paths: HostPaths, host: str, cgroups: list[str]) -> ProcRef:
    """Start ``systemd-nspawn`` for a host in a new session, in the host's own cgroups.

    Returns the nspawn process (the launcher script execs it, so pid and start time stay).
    """
    argv_nspawn = nspawn_argv(netns, paths, host)
    for d in cgroups:
        os.makedirs(d, exist_ok=True)
    paths.base.mkdir(parents=True, exist_ok=True)
    launcher = paths.base / "start-nspawn.sh"
    launcher.write_text(LAUNCH_SCRIPT)
    argv = ["/bin/sh", str(launcher), *cgroups, "--", *argv_nspawn]
    with open(paths.log, "a") as fh:
        fh.write(f"--- llmcluster lab: starting {host} under {NSPAWN_PROGRAM} at "
                 f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    try:
        pid = spawn_detached(argv, paths.log, _ENV, search_path=False)
    except OSError as exc:
        raise LabError(f"could not start host {host}: {exc}") from exc
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        info = proc_info(pid)
        if info is None or info.state == "Z":
            reap(pid)
            raise LabError(f"host {host}: {NSPAWN_PROGRAM} exited at once: {tail(paths.log)}")
        if runs(info, NSPAWN_PROGRAM):
            return ProcRef(pid, info.starttime, NSPAWN_PROGRAM)
        time.sleep(0.005)
    raise LabError(f"host {host}: {NSPAWN_PROGRAM} did not start: {tail(paths.log)}")


def find_init(nspawn: ProcRef) -> ProcRef | None:
    """The container's init (systemd) once nspawn's child has exec'ed it."""
    for kid in children_of(nspawn.pid):
        info = proc_info(kid)
        if info is not None and info.state != "Z" and runs(info, INIT_PROGRAM):
            return ProcRef(kid, info.starttime, INIT_PROGRAM)
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def tail(path: Path, lines: int = 12) -> str:
    """The last lines of a console log, without terminal colour codes."""
    try:
        text = _ANSI.sub("", path.read_text(errors="replace"))
    except OSError:
        return "(no console log)"
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


def nsenter_argv(init: ProcRef, argv: list[str]) -> list[str]:
    """Run ``argv`` inside the container: every namespace of its init, its root and cwd."""
    return ["nsenter", "-t", str(init.pid), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", "--", *argv]


def in_container(init: ProcRef, argv: list[str], timeout: float = 15) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root", "SYSTEMD_COLORS": "0"}
    return subprocess.run(nsenter_argv(init, argv), capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def diagnostics(init: ProcRef | None, paths: HostPaths) -> str:
    """What went wrong in a boot: the console tail, and from a live container its failed
    units and the journal's tail (ssh.service)."""
    parts = [f"console ({paths.log}): {tail(paths.log)}"]
    if init is not None and init.alive():
        try:
            state = in_container(init, ["systemctl", "is-system-running"]).stdout.strip()
            failed = in_container(init, ["systemctl", "--failed", "--plain", "--no-legend", "--no-pager"]).stdout
            journal = in_container(init, ["journalctl", "-b", "-u", "ssh.service", "-n", "8", "--no-pager",
                                          "-o", "cat"]).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            parts.append(f"(could not ask the container: {exc})")
        else:
            parts.append(f"system {state or '?'}; failed units: {' '.join(failed.split()[:1]) or 'none'}"
                         f"{' ...' if len(failed.splitlines()) > 1 else ''}")
            parts.append("ssh.service journal: " + " | ".join(journal.strip().splitlines()[-8:]))
    return "; ".join(parts)


def wait_booted(init: ProcRef, timeout: float) -> str:
    """Wait (bounded) until the container's systemd has finished its boot jobs; its state.

    sshd answers before the last units have started: a converge or a check right after ``up``
    must find the boot done. Whatever the outcome (``running``, ``degraded``: the roles may fix
    it), the host is up; the state is only reported."""
    try:
        return in_container(init, ["systemctl", "is-system-running", "--wait"], timeout=timeout).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def wait_ready(nspawn: ProcRef, address: str, paths: HostPaths, timeout: float | None = None) -> ProcRef:
    """Wait until the container's systemd runs, its sshd answers on ``address`` and its boot
    jobs are done; return init.

    ``timeout`` defaults to :data:`BOOT_TIMEOUT`."""
    timeout = BOOT_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    init: ProcRef | None = None
    while time.monotonic() < deadline:
        if not nspawn.alive():
            raise LabError(f"host {paths.name} stopped while booting: {diagnostics(None, paths)}")
        init = init or find_init(nspawn)
        if init is not None and ssh_answers(address, timeout=0.5):
            wait_booted(init, max(1.0, deadline - time.monotonic()))
            return init
        time.sleep(0.05)
    raise LabError(f"host {paths.name}: sshd did not answer on {address}:22 within {timeout:.0f}s of booting: "
                   f"{diagnostics(init, paths)}")


def _kill_cgroup_members(cgroup: Path) -> None:
    """SIGKILL every process in a host's cgroup tree (only the host's processes are there)."""
    pids: list[int] = []
    for procs in cgroup.rglob("cgroup.procs"):
        try:
            pids += [int(p) for p in procs.read_text().split()]
        except OSError:
            continue
    for pid in pids:
        if pid != os.getpid():
            signal_process(pid, signal.SIGKILL)
    for pid in pids:
        info = proc_info(pid)
        if info is not None:
            wait_gone(pid, info.starttime, 5)
        reap(pid)


def remove_cgroups(cgroups: list[str]) -> None:
    """Remove the host's cgroups (deepest first), killing whatever is still in them."""
    for d in cgroups:
        top = Path(d)
        if not top.name.startswith(CGROUP_PREFIX) or not top.is_dir():
            continue
        _kill_cgroup_members(top)
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda e: -e[0].count("/")):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise LabError(f"could not remove cgroup {dirpath}: {exc}") from exc


def remove_runtime_dirs(host: str) -> None:
    """What nspawn keeps in /run for a machine (its propagation directory), if still there."""
    prop = Path("/run/systemd/nspawn/propagate") / machine_name(host)
    if prop.is_dir() and not os.path.ismount(prop):
        for dirpath, _dirs, files in sorted(os.walk(prop), key=lambda e: -e[0].count("/")):
            for f in files:
                Path(dirpath, f).unlink(missing_ok=True)
            os.rmdir(dirpath)


def stop(nspawn: ProcRef | None, init: ProcRef | None, *, timeout: float = STOP_TIMEOUT) -> None:
    """Shut a container down: SIGTERM to nspawn (SIGRTMIN+3 to its systemd), wait; then
    SIGKILL its init (the whole PID namespace) and nspawn as the last resort."""
    if nspawn is not None and init is None and nspawn.alive():
        init = find_init(nspawn)
    if nspawn is not None and nspawn.alive():
        signal_process(nspawn.pid, signal.SIGTERM)
        if wait_gone(nspawn.pid, nspawn.starttime, timeout):
            reap(nspawn.pid)
    if init is not None and init.alive():
        signal_process(init.pid, signal.SIGKILL)
        wait_gone(init.pid, init.starttime, 5)
    if nspawn is not None:
        if nspawn.alive():
            for kid in children_of(nspawn.pid):  # a container still being set up
                signal_process(kid, signal.SIGKILL)
            if not wait_gone(nspawn.pid, nspawn.starttime, 5):
                signal_process(nspawn.pid, signal.SIGKILL)
                wait_gone(nspawn.pid, nspawn.starttime, 5)
        reap(nspawn.pid)


# --------------------------------------------------------------------------- state records


def record_name(host: str) -> str:
    return f"{host}:nspawn"


def refs(data: dict | None) -> tuple[ProcRef | None, ProcRef | None]:
    """(nspawn, init) of a host's ``process`` record."""
    if not data:
        return None, None
    return ProcRef.from_dict(data), ProcRef.from_dict(data.get("init") or {})


def stop_recorded(data: dict | None) -> None:
    """Stop what a host's record lists and remove its cgroups and runtime dirs (idempotent)."""
    if not data:
        return
    nspawn, init = refs(data)
    stop(nspawn, init)
    remove_cgroups(list(data.get("cgroups", [])))
    if data.get("host"):
        remove_runtime_dirs(str(data["host"]))


def healthy(data: dict | None, netns: str, address: str) -> bool:
    nspawn, init = refs(data)
    return bool(nspawn and nspawn.alive() and init and init.alive() and N.netns_exists(netns)
                and ssh_answers(address))
