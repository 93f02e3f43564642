"""A reboot across a sealing epoch, with the real journald (scratch namespace, a new boot id per
start): systemd issue 17833 (open; systemd 252) and the role's answer to it (its archive script
and its two boot units, run here by their own ExecStart lines: no systemd as PID 1 here), judged
by the verification suite's own functions (llmcluster/verify/audit.py).

Sealing interval 2 s and a 5 s stop: the gap spans epochs, as a night's shutdown does with 15 min.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from llmcluster.verify import audit as A
from tests.conftest import ROOT
from tests.helpers.scratch_journal import JOURNAL_REMOTE, ScratchJournal, skip_reason

ROLE_FILES = ROOT / "roles" / "audit_log" / "files"
DROPIN = {"60-llmcluster-audit.conf": "[Journal]\nStorage=persistent\nSeal=yes\n"}
LINE = ('10.0.0.9:40000 [07/Dec/2026:01:00:00.000] api~ api/vllm 0/0/1/2/3 403 10 - - ---- 1/1/0/0/0 0/0 '
        'client="/OU=clients/CN=chat.clients" serial=0A1B "GET /llmcluster-audit/{m} HTTP/1.1"')


def _exec(unit: str, key: str, machine_id: str) -> list[list[str]]:
    """The unit's ``ExecStart=``/``ExecStop=`` command lines (as the role installs it)."""
    out = []
    for line in (ROLE_FILES / unit).read_text().splitlines():
        if line.startswith(f"{key}="):
            out.append(shlex.split(line.split("=", 1)[1].lstrip("-@+!").replace("%m", machine_id)))
    assert out, f"{unit} has no {key}="
    return out


def _access(j: ScratchJournal, n: int, epochs: bool = True) -> list[str]:
    markers = [uuid.uuid4().hex for _ in range(n)]
    for m in markers:
        j.syslog(A.IDENTIFIER, LINE.format(m=m))
        if epochs:
            time.sleep(1.1)
    return markers


def reboot(root: Path, steps: str) -> dict:
    """Boot A (sealing set up as the role does, access log lines over several epochs), a stop for
    5 s, boot B with ``steps``: ``none`` (journald alone), ``archive`` (the archive unit's start
    only) or ``role`` (archive unit, flush, seal unit: the role's boot order); access log lines
    after the boot. Returns the key, the markers and a folder of copies of the archived files."""
    if skip_reason():
        pytest.skip(skip_reason())
    j = ScratchJournal(root, DROPIN, boot_id=uuid.uuid4().hex).start()
    try:
        shutil.copy2(ROLE_FILES / "llmcluster-journal-archive", root / "usr-local-sbin")  # the role's copy task
        j.check(["journalctl", "--flush"])
        key = j.setup_keys("2s")
        j.check(["journalctl", "--rotate"])
        before = _access(j, 3)
        j.check(["journalctl", "--sync"])
        if steps != "none":  # at shutdown: journald still writes to /var here, so this does nothing
            for argv in _exec("llmcluster-journal-archive.service", "ExecStop", j.machine_id):
                assert "nothing to do" in j.check(argv)
    finally:
        j.stop()
    time.sleep(5)
    j = ScratchJournal(root, DROPIN, boot_id=uuid.uuid4().hex).start()
    try:
        if steps != "none":
            for argv in _exec("llmcluster-journal-archive.service", "ExecStart", j.machine_id):
                assert "archived" in j.check(argv)
        j.check(["journalctl", "--flush"])  # systemd-journal-flush.service
        if steps == "role":
            for argv in _exec("llmcluster-journal-seal.service", "ExecStart", j.machine_id):
                j.check(argv)
        after = _access(j, 3)  # services after sysinit.target: HAProxy
        j.check(["journalctl", "--rotate"])
    finally:
        j.stop()
    copies = root / "copies"
    copies.mkdir()
    for f in j.journal_dir.glob("*@*.journal"):
        shutil.copy2(f, copies / f.name)
    return {"key": key, "before": before, "after": after, "copies": copies}


def _judge(copies: Path, key: str) -> tuple[list[str], dict[str, str], tuple]:
    """As the suite's audit[sealed] does."""
    rc, out, headers = A.verify_here(copies, key)
    seams = A.explained_seams(copies, key, out, headers)
    return A.seal_problems(rc, out, headers, "gw", seams), seams, (rc, out, headers)


def _holding(copies: Path, marker: str) -> Path:
    return next(f for f in sorted(copies.glob("*.journal")) if marker.encode() in f.read_bytes())


#: Reboots tried until journald shows the upstream bug on the role's path (a seam file). Whether the
#: file made at the flush is sealed out of step depends on where the epoch boundaries fall against
#: journald's writes; on a loaded machine one run (of about ten, 2026-12-07) left no seam at all.
SEAM_TRIES = 3


@pytest.fixture(scope="module")
def with_role(tmp_path_factory):
    """The role's boot sequence, rebooted until it shows a seam (at most :data:`SEAM_TRIES` times):
    every try must leave nothing unexplained; ``seam`` is False when no try showed the bug."""
    for attempt in range(SEAM_TRIES):
        r = reboot(tmp_path_factory.mktemp(f"role{attempt}"), "role")
        problems, seams, (_, out, _) = _judge(r["copies"], r["key"])
        assert problems == [], out  # with or without a seam: never a failure the role leaves behind
        if seams:
            return {**r, "seam": True, "tries": attempt + 1}
    return {**r, "seam": False, "tries": SEAM_TRIES}


def _need_seam(with_role) -> None:
    if not with_role["seam"]:
        pytest.skip(f"journald sealed the file made at the flush in step in {SEAM_TRIES} reboots (the upstream "
                    "bug did not show): nothing to classify; the role's path left no failure")


def test_upstream_bug_without_the_units_the_reopened_file_fails(tmp_path):
    """systemd issue 17833: journald reopens the sealed file it closed before the stop, appends
    after the gap and the file no longer verifies: the sealed history before the stop (access
    log included) reads as tampered. Not explained away as a seam."""
    r = reboot(tmp_path, "none")
    problems, seams, (_, out, _) = _judge(r["copies"], r["key"])
    assert A.SEAM_ERROR in out, out
    reopened = _holding(r["copies"], r["before"][-1]).name
    assert any(reopened in p and "fails verification" in p for p in problems), problems
    assert seams == {}


def test_archive_alone_leaves_access_log_lines_in_an_unverifiable_file(tmp_path):
    """The archive step alone: the history before the stop verifies, but the file journald starts
    at the flush keeps the stale sealing state and takes the access log lines after the boot: a
    seam carrying access log lines is refused."""
    r = reboot(tmp_path, "archive")
    problems, seams, (_, out, headers) = _judge(r["copies"], r["key"])
    assert seams == {}
    kept = _holding(r["copies"], r["before"][0]).name
    assert not [p for p in problems if f"{kept} fails verification" in p], problems
    seam = _holding(r["copies"], r["after"][0])
    assert any(seam.name in p and "fails verification" in p for p in problems), problems
    alone = subprocess.run(["journalctl", "--verify", f"--verify-key={r['key']}", f"--file={seam}"],
                           capture_output=True, text=True, check=False)
    refusals = A.seam_refusals(seam.name, alone.stdout + alone.stderr, A.file_entries(seam),
                               headers[str(seam)], False, True)
    assert refusals and all("access log entries" in x for x in refusals), refusals


def test_the_role_units_leave_one_explained_seam(with_role):
    _need_seam(with_role)
    problems, seams, (rc, out, headers) = _judge(with_role["copies"], with_role["key"])
    assert problems == [], out
    assert len(seams) == 1, seams
    assert rc != 0 and A.SEAM_ERROR in out, "journalctl alone still rejects the seam (the upstream bug)"
    # Without the classification the same run is a failure: the test can fail.
    assert A.seal_problems(rc, out, headers, "gw")
    seam = Path(next(iter(seams)))
    assert [e for e in A.file_entries(seam) if A.field(e, "SYSLOG_IDENTIFIER") == "llmcluster-journal-seal"]
    for m in with_role["before"] + with_role["after"]:
        assert _holding(with_role["copies"], m) != seam
    assert A.tamper_check(with_role["copies"], with_role["key"], "gw") == []


def _variant(with_role, tmp_path: Path) -> tuple[Path, Path]:
    _need_seam(with_role)
    copies = tmp_path / "copies"
    shutil.copytree(with_role["copies"], copies)
    _, seams, _ = _judge(copies, with_role["key"])
    return copies, copies / Path(next(iter(seams))).name


def test_a_flipped_byte_in_the_seam_fails(with_role, tmp_path):
    copies, seam = _variant(with_role, tmp_path)
    A.tamper_file(seam, seam, b"MESSAGE=Journal started")
    problems, seams, _ = _judge(copies, with_role["key"])
    assert seams == {} and any(seam.name in p for p in problems), problems


def test_a_flipped_byte_after_the_seam_fails(with_role, tmp_path):
    copies, seam = _variant(with_role, tmp_path)
    target = _holding(copies, with_role["after"][1])
    A.tamper_file(target, target, with_role["after"][1].encode())
    problems, seams, _ = _judge(copies, with_role["key"])
    assert any(target.name in p and "fails verification" in p for p in problems), problems
    # it continued the seam: no longer continued by a verified file, the seam is refused too
    assert seams == {} and any(f"{seam.name} fails verification" in p for p in problems), problems


def test_a_forged_access_log_file_after_the_seam_fails(with_role, tmp_path):
    """Rewritten without the key (export, edit, import): unsealed, refused as before."""
    copies, _ = _variant(with_role, tmp_path)
    target = _holding(copies, with_role["after"][0])
    export = subprocess.run(["journalctl", f"--file={target}", "-o", "export"], capture_output=True, check=True).stdout
    target.unlink()
    r = subprocess.run([JOURNAL_REMOTE, f"--output={target}", "--split-mode=none", "-"],
                       input=export.replace(b"CN=chat.clients", b"CN=someone.else"), capture_output=True, check=False)
    assert r.returncode == 0, r.stderr
    problems, _, _ = _judge(copies, with_role["key"])
    assert any("not sealed although it starts after sealing began" in p for p in problems), problems


def test_a_seam_without_its_continuation_fails(with_role, tmp_path):
    """The file that continues the seam's sequence numbers removed: the seam is no longer tied to a
    verified file and is refused (a forged seam-like file elsewhere would be too)."""
    copies, seam = _variant(with_role, tmp_path)
    rc, out, headers = A.verify_here(copies, with_role["key"])
    tail = A.header_seqnum(headers[str(seam)], "Tail sequential number")
    nxt = next(Path(p) for p, h in headers.items() if A.header_seqnum(h, "Head sequential number") == tail + 1
               and h.get("Sequential number ID") == headers[str(seam)].get("Sequential number ID"))
    nxt.unlink()
    problems, seams, _ = _judge(copies, with_role["key"])
    assert seams == {} and any(seam.name in p for p in problems), problems


@pytest.mark.parametrize("case", ["other-error", "two-errors", "unsealed", "access-log", "two-boots",
                                  "not-first-of-boot", "not-continued"])
def test_seam_refusals(case):
    out = ("391168: tag/entry realtime timestamp out of synchronization (1 >= 0)\n"
           "File corruption detected at /x/system@a.journal:391168 (of 3745048 bytes, 10%).\n"
           "FAIL: /x/system@a.journal (Bad message)\n")
    header = {"Compatible flags": "SEALED"}
    entries = [{"SYSLOG_IDENTIFIER": "kernel", "_BOOT_ID": "b1"}, {"SYSLOG_IDENTIFIER": "systemd", "_BOOT_ID": "b1"}]
    earlier, continued = False, True
    assert A.seam_refusals("f", out, entries, header, earlier, continued) == []
    if case == "other-error":
        out = out.replace(A.SEAM_ERROR, "Invalid hash")
    elif case == "two-errors":
        out = "100: Invalid hash (1 vs. 2)\n" + out
    elif case == "unsealed":
        header = {}
    elif case == "access-log":
        entries = [*entries, {"SYSLOG_IDENTIFIER": A.IDENTIFIER, "_BOOT_ID": "b1"}]
    elif case == "two-boots":
        entries = [*entries, {"SYSLOG_IDENTIFIER": "systemd", "_BOOT_ID": "b2"}]
    elif case == "not-first-of-boot":
        earlier = True
    else:
        continued = False
    assert len(A.seam_refusals("f", out, entries, header, earlier, continued)) == 1
