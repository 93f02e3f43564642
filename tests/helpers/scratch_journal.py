"""A real systemd-journald (and journalctl, journal-upload) in a private mount namespace, without
systemd as PID 1: the audit trail's local tests run the role's rendered configuration for real.

Nothing outside the scratch folder is written: in the namespace, ``/run`` and ``/var/log`` are
fresh tmpfs mounts, ``/var/log/journal`` is the scratch folder's ``journal/`` (so the journal files
outlive the namespace, as they outlive a journald restart, and can be read from outside; the
runtime journal in ``/run`` must stay on tmpfs: journald refuses to flush from elsewhere),
``/etc/systemd`` a scratch copy of the
machine's (plus the drop-ins under test), ``/usr/local/sbin`` a scratch folder (where a role
installs its scripts) and ``/etc/machine-id`` a scratch file. With ``boot_id``, the kernel's boot
id file is a scratch file too: journald stamps the entries with it (``_BOOT_ID``), so that a
stop and a start with a new id reads, in the journal, as a reboot. journald logs
its own messages to stderr (captured), reads no kernel messages and writes no wall messages. The
namespace lives as long as journald: :meth:`ScratchJournal.stop` ends it (only the process this
object started). Needs root (mount namespaces) and util-linux's ``unshare``/``nsenter``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

JOURNALD = "/lib/systemd/systemd-journald"
JOURNAL_UPLOAD = "/lib/systemd/systemd-journal-upload"
JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
MACHINE_ID = "0123456789abcdef0123456789abcdef"
#: Test-only settings (after the role's drop-in; none of the role's keys): keep journald off the
#: machine's kernel log and terminals.
TEST_DROPIN = "[Journal]\nReadKMsg=no\nForwardToWall=no\nForwardToConsole=no\nForwardToSyslog=no\n"
DEV_LOG = "/run/systemd/journal/dev-log"


def missing_tools() -> list[str]:
    need = [JOURNALD, JOURNAL_UPLOAD, JOURNAL_REMOTE]
    out = [p for p in need if not os.access(p, os.X_OK)]
    out += [t for t in ("unshare", "nsenter", "journalctl", "logger", "systemd-analyze") if shutil.which(t) is None]
    return out


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a private mount namespace for a scratch journald)"
    missing = missing_tools()
    if missing:
        return f"not installed here: {', '.join(missing)} (apt-get install systemd-journal-remote util-linux)"
    return None


_SETUP = """\
set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 scratch-run /run
mount -t tmpfs -o mode=0755 scratch-log /var/log
mkdir -p /var/log/journal
mount --bind "$ROOT/journal" /var/log/journal
mount --bind "$ROOT/etc-systemd" /etc/systemd
mount --bind "$ROOT/machine-id" /etc/machine-id
mount --bind "$ROOT/usr-local-sbin" /usr/local/sbin
if [ -n "$BOOT_ID" ]; then
    printf '%s\n' "$BOOT_ID" > "$ROOT/boot_id"
    mount --bind "$ROOT/boot_id" /proc/sys/kernel/random/boot_id
fi
mkdir -p /run/systemd/journal
exec "$JOURNALD"
"""


class ScratchJournal:
    """journald over ``root`` (reusable: a second instance over the same folder is a restart)."""

    def __init__(self, root: Path, dropins: Mapping[str, str] | None = None,
                 upload_dropins: Mapping[str, str] | None = None, machine_id: str = MACHINE_ID,
                 boot_id: str | None = None):
        self.root = Path(root)
        self.boot_id = boot_id
        self.machine_id = machine_id
        self.proc: subprocess.Popen | None = None
        self._log = None
        etc = self.root / "etc-systemd"
        if not etc.exists():
            shutil.copytree("/etc/systemd", etc, symlinks=True)
        for folder, files in (("journald.conf.d", dropins or {}), ("journal-upload.conf.d", upload_dropins or {})):
            (etc / folder).mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (etc / folder / name).write_text(text)
        (etc / "journald.conf.d" / "99-scratch-test.conf").write_text(TEST_DROPIN)
        (self.root / "machine-id").write_text(machine_id + "\n")
        (self.root / "usr-local-sbin").mkdir(exist_ok=True)
        (self.root / "journal" / machine_id).mkdir(parents=True, exist_ok=True)

    @property
    def journal_dir(self) -> Path:
        """The machine's journal folder, as seen from outside the namespace."""
        return self.root / "journal" / self.machine_id

    def start(self, timeout: float = 10) -> ScratchJournal:
        env = {**os.environ, "ROOT": str(self.root), "JOURNALD": JOURNALD,
               "BOOT_ID": str(uuid.UUID(self.boot_id)) if self.boot_id else "",  # the kernel's format
               "SYSTEMD_LOG_TARGET": "console", "SYSTEMD_LOG_LEVEL": "info"}
        self._log = open(self.root / "journald.log", "ab")  # closed by stop()
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", _SETUP],
                                     env=env, stdout=subprocess.DEVNULL, stderr=self._log)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise RuntimeError(f"journald exited {code}: {self.log()[-800:]}")
            if self.run(["test", "-S", DEV_LOG]).returncode == 0:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"journald did not open {DEV_LOG} within {timeout}s: {self.log()[-800:]}")

    def log(self) -> str:
        p = self.root / "journald.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def run(self, argv: Sequence[str], input: str | None = None, timeout: float = 60,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        """A command in the namespace (root's mounts replaced as described above)."""
        assert self.proc is not None, "start() first"
        return subprocess.run(["nsenter", f"--target={self.proc.pid}", "--mount", "--", *argv], input=input,
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, **(env or {})})

    def check(self, argv: Sequence[str], **kw) -> str:
        r = self.run(argv, **kw)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: exit {r.returncode}: {r.stdout[-400:]} {r.stderr[-800:]}")
        return r.stdout

    def syslog(self, identifier: str, message: str) -> None:
        """A syslog line through /dev/log (as HAProxy sends its access log)."""
        self.check(["logger", "-u", DEV_LOG, "-t", identifier, "--", message])

    def setup_keys(self, interval: str = "15min") -> str:
        """``journalctl --setup-keys`` (the role's task): returns the verification key."""
        return self.check(["journalctl", "--setup-keys", f"--interval={interval}"]).strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ScratchJournal:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class NamespaceHost:
    """A :class:`ScratchJournal`'s namespace as a verification host (the ``run``/``python``
    interface of :class:`llmcluster.verify.remote.RemoteHost`): the suite's checks run on it."""

    def __init__(self, journal: ScratchJournal):
        self.journal = journal

    def run(self, argv: Sequence[str], timeout: float = 60):
        from llmcluster.verify.remote import Result

        r = self.journal.run(argv, timeout=timeout)
        return Result(r.returncode, r.stdout, r.stderr)

    def python(self, script: str, *args: str, timeout: float = 60):
        return self.run(["python3", "-c", script, *args], timeout=timeout)
