"""Small system helpers shared by the lab modules: commands, mounts, process identity.

Everything here is a thin, typed wrapper over the commands and ``/proc`` files the lab uses.
Nothing in this module creates lab objects on its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmcluster.errors import LLMClusterError


class LabError(LLMClusterError):
    """A lab operation failed (a command, a conflict with something outside the lab, ...)."""


def require_root(what: str = "the lab") -> None:
    """Raise :class:`LabError` unless running as root (namespaces, mounts and bridges need it)."""
    if os.geteuid() != 0:
        raise LabError(
            f"{what} needs root: it creates network namespaces, bridges, veths, overlay mounts "
            "and an nftables table; run it as root (e.g. with sudo)"
        )


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; raise :class:`LabError` with its stderr on failure."""
    try:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {argv[0]} (install it first)") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError(f"command failed ({proc.returncode}): {' '.join(argv)}: {detail}")
    return proc


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> int:
    """Stop a process this program started: SIGTERM, up to ``timeout`` seconds for it to exit, then
    SIGKILL; its exit status (negative: the signal that ended it)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def which(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories (absent from some PATHs)."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


# --------------------------------------------------------------------------- mounts


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_below(path: Path | str) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    base = os.path.realpath(path)
    found: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            target = _unescape(line.split()[4])
            if target == base or target.startswith(base.rstrip("/") + "/"):
                found.append(target)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def is_mountpoint(path: Path | str) -> bool:
    return os.path.realpath(path) in mounts_below(path)


def unmount_tree(path: Path | str) -> None:
    """Unmount everything at or below ``path`` (deepest first); lazy unmount as a last resort."""
    for target in mounts_below(path):
        proc = run(["umount", target], check=False)
        if proc.returncode != 0 and target in mounts_below(target):
            run(["umount", "-l", target], check=False)
    left = mounts_below(path)
    if left:
        raise LabError(f"could not unmount {', '.join(left)}")


def safe_rmtree(path: Path | str) -> None:
    """Remove a directory tree, refusing to descend into anything still mounted below it."""
    p = Path(path)
    if not p.exists():
        return
    unmount_tree(p)
    shutil.rmtree(p)


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    state: str
    starttime: int  # clock ticks since boot: with the pid it identifies one process
    cmdline: tuple[str, ...]


def proc_info(pid: int) -> ProcInfo | None:
    """What ``/proc/PID`` says about a process, or ``None`` when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The comm field may hold spaces and parentheses: split after its closing one.
    rest = stat[stat.rindex(")") + 2 :].split()
    return ProcInfo(
        pid=pid,
        ppid=int(rest[1]),
        state=rest[0],
        starttime=int(rest[19]),
        cmdline=tuple(a for a in raw.decode(errors="replace").split("\0") if a),
    )


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (by scanning /proc; CONFIG_PROC_CHILDREN may be off)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = proc_info(int(entry))
        if info is not None and info.ppid == pid:
            kids.append(info.pid)
    return sorted(kids)


def runs(info: ProcInfo, program: str) -> bool:
    """Whether a process runs ``program``: argv[0] is it (by basename) or its proctitle
    starts with it (``sshd: /usr/sbin/sshd -D -e [listener] ...``)."""
    if not info.cmdline:
        return False
    argv0 = info.cmdline[0]
    return os.path.basename(argv0.split(" ", 1)[0]) == program or argv0.startswith(f"{program}:")


def same_process(pid: int, starttime: int, program: str) -> bool:
    """True when ``pid`` is still the process recorded: same start time, running ``program``."""
    info = proc_info(pid)
    if info is None or info.state == "Z":
        return False
    return info.starttime == starttime and runs(info, program)


def wait_gone(pid: int, starttime: int, timeout: float) -> bool:
    """Wait until the process recorded as (pid, starttime) has exited (or is a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = proc_info(pid)
        if info is None or info.state == "Z" or info.starttime != starttime:
            return True
        time.sleep(0.02)
    return False


def signal_process(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def inheritable_fds() -> list[int]:
    """This process's inheritable descriptors above stderr (e.g. a lock held with ``flock(1)``
    around the whole command): closed in the lab's long-lived children, which must not keep
    such a lock after the command that took it has exited."""
    fds = []
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        try:
            if fd > 2 and os.get_inheritable(fd):
                fds.append(fd)
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return fds


def spawn_detached(argv: list[str], log: str | os.PathLike, env: dict[str, str], *, truncate: bool = False,
                   search_path: bool = True) -> int:
    """Start a long-lived lab process in a new session and return its pid.

    stdin is /dev/null, stdout and stderr go to ``log`` (appended, or truncated), and every
    inheritable descriptor above stderr is closed in the child (:func:`inheritable_fds`: a lock
    held with ``flock(1)`` around ``lab up`` must not live on in a host). Raises OSError.
    """
    mode = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), mode, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
        *((os.POSIX_SPAWN_CLOSE, fd) for fd in inheritable_fds()),
    ]
    spawn = os.posix_spawnp if search_path else os.posix_spawn
    return spawn(argv[0], argv, env, file_actions=actions, setsid=True)


def reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our child (avoids a zombie); else no-op."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
