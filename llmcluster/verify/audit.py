"""The gateway's audit trail (role ``audit_log``): journald keeps HAProxy's access log on disk for
the planned retention, seals it (Forward Secure Sealing) and systemd-journal-upload forwards it
over mTLS to a collector.

Shared by the verification suite (``llmcluster/verify/suite/test_audit.py``, against the lab or a
real inventory) and the local tests (``tests/roles/test_audit_log_local.py``: a scratch journald,
systemd-journal-upload and a collector on loopback). As in :mod:`llmcluster.verify.gateway`,
functions return what to run and judges return a list of problems (empty: the check passed).

Two facts shape the checks (measured with systemd 252, Debian 12):

* The **verification key is the seed of every sealing key**: whoever holds it can seal forged
  entries for any epoch. It is kept on the controller only (the role saves it there), so the
  integrity check copies the host's *archived* journal files to the verifying machine and runs
  ``journalctl --verify --verify-key`` there (:data:`FETCH`, :func:`seal_problems`); the key is
  never sent to the host. A sealed file never passes ``--verify`` without the key, and an
  *unsealed* file passes it even with the key, so the judge also requires every file started
  after sealing began to be sealed: a forged replacement written without the key is caught.
* Debian's ``systemd-journal-remote`` is built without GnuTLS: it refuses ``--trust`` ("Option
  --trust is not available") and, with ``--listen-https``, accepts any client ("Certificate
  checking disabled"). The collector therefore terminates mTLS in front of it (HAProxy,
  ``verify required`` against the cluster CA chain) and journal-remote listens on loopback
  (:func:`collector_plan`).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import ipaddress
import json
import re
import shutil
import struct
import subprocess
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

#: The spec's floor for the retention (serving.gateway.audit.retention_days, unless allow_short_retention).
MIN_RETENTION_DAYS = 180
DEFAULT_MAX_USE = "20G"
#: The syslog identifier of HAProxy's access log lines in the journal (``journalctl -t``).
IDENTIFIER = "haproxy"
#: The controller folder of the verification keys: next to the PKI export folder (the role's default).
KEY_DIR_SUFFIX = "-audit-keys"
#: systemd-journal-remote's HTTPS port (systemd-journal-upload's default).
COLLECTOR_PORT = 19532
#: Where journal-remote listens behind the collector's mTLS terminator (loopback only).
COLLECTOR_BACKEND = ("127.0.0.1", 19531)
#: The collector's journal writer (package systemd-journal-remote).
JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
#: Where journald keeps the persistent journal.
JOURNAL_DIR = "/var/log/journal"
#: The path a marker request asks for: outside the API's allow-list, so the gateway refuses it
#: (403/404) and logs it like every request.
MARKER_PATH = "/llmcluster-audit/{marker}"


# --------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class AuditExpectation:
    retention_days: int
    max_use: str
    forward_to: tuple[str, ...]


def expectation(gateway: Mapping[str, Any] | None) -> AuditExpectation:
    """What the plan asks of the audit trail (``llmcluster_gateway.audit``; the spec's defaults
    where the plan has none)."""
    audit = (gateway or {}).get("audit") or {}
    return AuditExpectation(int(audit.get("retention_days") or MIN_RETENTION_DAYS),
                            str(audit.get("max_use") or DEFAULT_MAX_USE),
                            tuple(audit.get("forward_to") or ()))


def default_key_dir(pki_dir: str | Path) -> Path:
    """The role's default ``audit_log_key_dir``: ``<llmcluster_pki_dir>-audit-keys``."""
    return Path(str(pki_dir).rstrip("/") + KEY_DIR_SUFFIX)


def key_path(key_dir: str | Path, host: str, machine_id: str) -> Path:
    """Where the role saved a host's verification key: one per machine id (a reinstalled host keeps
    the former key beside the new one)."""
    return Path(key_dir) / host / f"{machine_id}.key"


# --------------------------------------------------------------------------- systemd values

_TIME_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
    "M": 2629800, "month": 2629800, "months": 2629800, "y": 31557600, "year": 31557600, "years": 31557600,
}
_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5, "E": 1024**6}


def parse_timespan(text: str) -> float | None:
    """A systemd time span (``180day``, ``6month``, ``1d 12h``, a bare number: seconds) in seconds;
    None when it is not one."""
    text = text.strip()
    if not text:
        return None
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    total, pos = 0.0, 0
    for m in re.finditer(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)", text):
        if m.start() != pos or m.group(2) not in _TIME_UNITS:
            return None
        total += float(m.group(1)) * _TIME_UNITS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos else None


def parse_size(text: str) -> int | None:
    """A systemd size (``20G``, ``512M``, base 1024) in bytes; None when it is not one."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTPE]?)(?:i?B)?\s*", text)
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)]) if m else None


def parse_bool(text: str) -> bool | None:
    t = text.strip().lower()
    if t in ("1", "yes", "y", "true", "t", "on"):
        return True
    if t in ("0", "no", "n", "false", "f", "off"):
        return False
    return None


def journald_settings(cat_config: str) -> dict[str, str]:
    """The ``[Journal]`` settings in force from ``systemd-analyze cat-config systemd/journald.conf``
    (the main file, then the drop-ins in order: the last assignment wins)."""
    out: dict[str, str] = {}
    section = None
    for raw in cat_config.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section == "Journal" and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def config_files(cat_config: str) -> list[str]:
    """The files ``systemd-analyze cat-config`` printed (its ``# /path`` headers)."""
    return [m.group(1) for m in re.finditer(r"(?m)^# (/\S+\.conf)\s*$", cat_config)]


def journald_problems(settings: Mapping[str, str], exp: AuditExpectation, what: str) -> list[str]:
    """journald keeps the journal on disk, seals it, keeps it at least the planned retention within
    the planned size."""
    problems = []
    storage = settings.get("Storage", "auto")
    if storage != "persistent":
        problems.append(f"{what}: Storage={storage}, expected persistent (a missing /var/log/journal "
                        "would leave the access log in memory only)")
    seal = parse_bool(settings.get("Seal", "yes"))
    if seal is not True:
        problems.append(f"{what}: Seal={settings.get('Seal')}: the journal is not sealed")
    retention = settings.get("MaxRetentionSec")
    seconds = parse_timespan(retention) if retention is not None else None
    if retention is None or seconds is None or seconds == 0:
        problems.append(f"{what}: MaxRetentionSec={retention or 'unset'}: no time-based retention "
                        f"(expected {exp.retention_days} days)")
    elif seconds < exp.retention_days * 86400:
        problems.append(f"{what}: MaxRetentionSec={retention} keeps entries {seconds / 86400:.1f} days, "
                        f"less than the planned {exp.retention_days} days")
    max_use = settings.get("SystemMaxUse")
    if max_use is None or parse_size(max_use) != parse_size(exp.max_use):
        problems.append(f"{what}: SystemMaxUse={max_use or 'unset'}, expected the planned {exp.max_use}")
    return problems


def parse_epoch(text: str) -> int | None:
    """``systemctl show --timestamp=unix`` (``@1796486951``) or a bare number, in seconds."""
    m = re.fullmatch(r"\s*@?([0-9]+)\s*", text or "")
    return int(m.group(1)) if m else None


def restart_problems(started: int | None, newest_config: int | None, what: str) -> list[str]:
    """The running journald was started after its configuration was last written (else the
    settings on disk are not the ones in force)."""
    if started is None:
        return [f"{what}: systemd-journald is not running (no start time)"]
    if newest_config is not None and newest_config > started:
        return [f"{what}: journald runs since {dt.datetime.fromtimestamp(started, dt.UTC):%F %T}Z but its "
                f"configuration changed at {dt.datetime.fromtimestamp(newest_config, dt.UTC):%F %T}Z: not in force"]
    return []


# --------------------------------------------------------------------------- entries


def parse_json_entries(text: str) -> list[dict[str, Any]]:
    """``journalctl -o json`` output (one object per line; broken lines are skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def field(entry: Mapping[str, Any], name: str) -> str:
    """A field as text (journalctl writes non-UTF-8 values as byte arrays)."""
    v = entry.get(name)
    if isinstance(v, list):
        try:
            return bytes(v).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return ""
    return "" if v is None else str(v)


def with_marker(entries: Iterable[Mapping[str, Any]], marker: str) -> list[Mapping[str, Any]]:
    return [e for e in entries if marker in field(e, "MESSAGE")]


_CLIENT = re.compile(r'client="([^"]*)"')
_SERIAL = re.compile(r"serial=([0-9A-Fa-f]*)")


def access_log_problems(entries: Iterable[Mapping[str, Any]], marker: str, what: str,
                        identifier: str = IDENTIFIER) -> list[str]:
    """The marker request is in the journal as an access log line of HAProxy with the client
    certificate's subject and serial."""
    entries = list(entries)
    found = with_marker(entries, marker)
    if not found:
        return [f"{what}: no journal entry mentions the marker request {marker} "
                f"({len(entries)} {identifier} entries read)"]
    problems = []
    for e in found:
        msg, ident = field(e, "MESSAGE"), field(e, "SYSLOG_IDENTIFIER")
        if ident != identifier:
            problems.append(f"{what}: the marker's entry has SYSLOG_IDENTIFIER={ident!r}, expected {identifier!r}")
        client, serial = _CLIENT.search(msg), _SERIAL.search(msg)
        if client is None or not client.group(1).strip():
            problems.append(f"{what}: the access log line has no client certificate subject "
                            f"(client=\"...\"): {msg[:200]!r}")
        if serial is None or not serial.group(1):
            problems.append(f"{what}: the access log line has no client certificate serial (serial=HEX): {msg[:200]!r}")
    return problems


def forwarded_problems(entries: Iterable[Mapping[str, Any]], marker: str, what: str,
                       hostname: str | None = None) -> list[str]:
    """The collector received the marker's access log line (from the gateway, when its hostname is
    given: the entry's ``_HOSTNAME``)."""
    found = with_marker(list(entries), marker)
    if not found:
        return [f"{what}: the collector has no entry with the marker request {marker}"]
    if hostname is not None and not any(field(e, "_HOSTNAME") == hostname for e in found):
        return [f"{what}: the marker arrived, but from {sorted({field(e, '_HOSTNAME') for e in found})}, "
                f"not from {hostname}"]
    return access_log_problems(found, marker, what)


# --------------------------------------------------------------------------- sealing


@dataclass(frozen=True)
class VerificationKey:
    seed: str
    start_epoch: int
    interval_usec: int

    @property
    def start_usec(self) -> int:
        """The start of the first sealed epoch (realtime, microseconds)."""
        return self.start_epoch * self.interval_usec


def parse_verification_key(text: str) -> VerificationKey | None:
    """``journalctl --setup-keys``'s verification key: ``SEED/START-INTERVAL`` (hex; the seed in
    dash-separated groups)."""
    m = re.fullmatch(r"\s*([0-9a-f]+(?:-[0-9a-f]+)*)/([0-9a-f]+)-([0-9a-f]+)\s*", text)
    if not m or int(m.group(3), 16) == 0:
        return None
    return VerificationKey(m.group(1), int(m.group(2), 16), int(m.group(3), 16))


def parse_header(text: str) -> dict[str, str]:
    """``journalctl --header --file=F``: ``Key: value`` lines."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def header_sealed(header: Mapping[str, str]) -> bool:
    return "SEALED" in header.get("Compatible flags", "").split()


def header_usec(header: Mapping[str, str], name: str) -> int | None:
    """A realtime timestamp of the header (its hex value in parentheses), microseconds."""
    m = re.search(r"\(([0-9a-f]+)\)\s*$", header.get(name, ""))
    return int(m.group(1), 16) if m else None


_VERIFY = re.compile(r"^(PASS|FAIL): (.+?)(?: \((.*)\))?$")


def parse_verify(text: str) -> dict[str, tuple[str, str]]:
    """``journalctl --verify`` output: file -> (PASS|FAIL, reason)."""
    out = {}
    for line in text.splitlines():
        m = _VERIFY.match(line.strip())
        if m:
            out[m.group(2)] = (m.group(1), m.group(3) or "")
    return out


def seal_problems(rc: int, output: str, headers: Mapping[str, Mapping[str, str]], what: str,
                  seams: Mapping[str, str] | None = None) -> list[str]:
    """``journalctl --verify --verify-key=KEY`` over copies of the host's journal files, and their
    headers (``journalctl --header``, by the same file names).

    Every file passes; at least one is sealed; and no file started after the first sealed one is
    unsealed: an unsealed file passes ``--verify`` even with the key, so a file rewritten without
    the key (a forged replacement) would otherwise go unnoticed. Files from before sealing began
    may be unsealed. ``seams`` (:func:`explained_seams`): failing files that are a reboot's seam
    (systemd issue 17833), not counted as failures; every other failure stays one."""
    results = parse_verify(output)
    seams = seams or {}
    if not headers:
        return [f"{what}: no journal file to verify"]
    problems = []
    failing = [p for p, (verdict, _) in results.items() if verdict == "FAIL"]
    if rc != 0 and (not failing or any(p not in seams for p in failing)):
        problems.append(f"{what}: journalctl --verify exit {rc}: {output.strip()[-400:]}")
    for path, (verdict, reason) in sorted(results.items()):
        if verdict == "FAIL" and path not in seams:
            problems.append(f"{what}: {Path(path).name} fails verification ({reason})")
    for path in headers:
        if path not in results and not any(Path(p).name == Path(path).name for p in results):
            problems.append(f"{what}: {Path(path).name} was not verified (not in journalctl's output)")
    sealed = {p: header_usec(h, "Head realtime timestamp") for p, h in headers.items() if header_sealed(h)}
    if not sealed:
        problems.append(f"{what}: none of the {len(headers)} journal file(s) is sealed (no sealing key, or Seal=no)")
        return problems
    first = min((t for t in sealed.values() if t is not None), default=None)
    for path, h in sorted(headers.items()):
        head = header_usec(h, "Head realtime timestamp")
        if path not in sealed and first is not None and head is not None and head >= first:
            problems.append(f"{what}: {Path(path).name} is not sealed although it starts after sealing began "
                            "(replaced or rewritten without the key?)")
    return problems


#: ``journalctl --verify``'s complaint about a file journald appended to with the sealing state of
#: before a stop that spanned a sealing epoch (systemd issue 17833, open; systemd 252).
SEAM_ERROR = "tag/entry realtime timestamp out of synchronization"
SEAM_ISSUE = "systemd issue 17833"
_VERIFY_NOISE = re.compile(r"^(File corruption detected at |FAIL: |=> Validated from )")


def header_seqnum(header: Mapping[str, str], name: str) -> int | None:
    """A sequence number of the header (``Head sequential number: 7 (7)``)."""
    m = re.match(r"\s*([0-9]+)\b", header.get(name, ""))
    return int(m.group(1)) if m else None


def seam_refusals(name: str, verify_output: str, entries: list[Mapping[str, Any]], header: Mapping[str, str],
                  earlier_in_boot: bool, continued: bool, identifier: str = IDENTIFIER) -> list[str]:
    """Why a file failing ``journalctl --verify --verify-key`` is *not* a reboot's seam (empty: it is).

    A seam (systemd issue 17833): the file journald starts at the flush after a reboot that spanned
    a sealing epoch is written with the former sealing state and fails only with :data:`SEAM_ERROR`.
    The role closes it at once (``llmcluster-journal-seal.service``), so it holds the boot's first
    entries and nothing the audit trail needs. So: ``verify_output`` (this file alone) reports that
    error and no other; the file is sealed; it holds no ``identifier`` entry; all its entries belong
    to one boot and none of that boot is in an earlier file (``earlier_in_boot``); a file that
    passes verification continues its sequence numbers (``continued``)."""
    out = []
    lines = [ln.strip() for ln in verify_output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if not _VERIFY_NOISE.match(ln)]
    if len(errors) != 1 or SEAM_ERROR not in errors[0]:
        out.append(f"{name}: not the {SEAM_ISSUE} error alone ({'; '.join(errors)[-200:] or 'no error line'})")
    if not header_sealed(header):
        out.append(f"{name}: not sealed")
    access = [e for e in entries if field(e, "SYSLOG_IDENTIFIER") == identifier]
    if access:
        out.append(f"{name}: holds {len(access)} {identifier} access log entries")
    boots = {field(e, "_BOOT_ID") for e in entries}
    if len(boots) != 1 or "" in boots:
        out.append(f"{name}: entries of {len(boots)} boots (a seam holds the first entries of one boot)")
    elif earlier_in_boot:
        out.append(f"{name}: does not start its boot (earlier entries of boot {next(iter(boots))} in another file)")
    if not continued:
        out.append(f"{name}: no file that passes verification continues its sequence numbers")
    return out


def file_entries(path: Path) -> list[dict[str, Any]]:
    """A journal file's entries (``journalctl --file -o json``), on this machine."""
    r = subprocess.run(["journalctl", f"--file={path}", "-o", "json", "--no-pager",
                        "--output-fields=SYSLOG_IDENTIFIER,_BOOT_ID"], capture_output=True, text=True, check=False)
    return parse_json_entries(r.stdout)


def _any_entry(argv: list[str]) -> bool:
    """Whether a journalctl query prints an entry (reads the first line only: ``-n`` with
    ``--until`` finds nothing in journalctl 252)."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as p:
        assert p.stdout is not None
        first = p.stdout.readline()
        p.kill()
    return bool(parse_json_entries(first))


def explained_seams(directory: Path, key: str, output: str, headers: Mapping[str, Mapping[str, str]],
                    identifier: str = IDENTIFIER) -> dict[str, str]:
    """The failing files of :func:`verify_here`'s run that are reboot seams (:func:`seam_refusals`):
    path -> what the seam holds. Each failing file is verified again alone and read, here."""
    results = parse_verify(output)
    by_name = {Path(p).name: p for p in headers}
    passing = [by_name.get(Path(p).name) for p, (v, _) in results.items() if v == "PASS"]
    out = {}
    for path, (verdict, _) in sorted(results.items()):
        h = headers.get(path) or headers.get(by_name.get(Path(path).name, ""), {})
        if verdict != "FAIL" or not h:
            continue
        alone = subprocess.run(["journalctl", "--verify", f"--verify-key={key}", f"--file={path}"],
                               capture_output=True, text=True, check=False)
        if SEAM_ERROR not in alone.stdout + alone.stderr:
            continue  # not a seam: no need to read it
        entries = file_entries(Path(path))
        head = header_usec(h, "Head realtime timestamp")
        boots = {field(e, "_BOOT_ID") for e in entries}
        earlier = False
        if len(boots) == 1 and head is not None:
            earlier = _any_entry(["journalctl", f"--directory={directory}", f"_BOOT_ID={next(iter(boots))}",
                                  f"--until=@{(head - 1) / 1e6:.6f}", "-o", "json", "--no-pager",
                                  "--output-fields=_BOOT_ID"])
        tail, seqid = header_seqnum(h, "Tail sequential number"), h.get("Sequential number ID")
        continued = tail is not None and any(
            p and headers[p].get("Sequential number ID") == seqid
            and header_seqnum(headers[p], "Head sequential number") == tail + 1 for p in passing)
        if not seam_refusals(Path(path).name, alone.stdout + alone.stderr, entries, h, earlier, continued,
                             identifier):
            out[path] = (f"{Path(path).name}: a reboot's seam ({SEAM_ISSUE}): {len(entries)} entries of boot "
                         f"{next(iter(boots))}, no {identifier} entry, continued by a verified file")
    return out


def tamper_problems(pristine: tuple[int, str], tampered: tuple[int, str], what: str) -> list[str]:
    """A copy passes ``journalctl --verify --verify-key``; the same copy with bytes flipped in an
    entry's data must fail it."""
    problems = []
    if pristine[0] != 0 or "FAIL" in pristine[1]:
        problems.append(f"{what}: the untouched copy does not pass verification: {pristine[1].strip()[-300:]}")
    if tampered[0] == 0 or "FAIL" not in tampered[1]:
        problems.append(f"{what}: bytes flipped in an entry's data went unnoticed: {tampered[1].strip()[-300:]}")
    return problems


# --------------------------------------------------------------------------- journal files

_HEADER = struct.Struct("<8sII")
OBJECT_DATA = 1
_COMPRESSED = 0x07  # object flags: XZ | LZ4 | ZSTD
_INCOMPATIBLE_COMPACT = 0x10


@dataclass(frozen=True)
class DataObject:
    offset: int
    size: int
    payload_offset: int
    compressed: bool


def data_objects(blob: bytes) -> list[DataObject]:
    """The DATA objects of a journal file (systemd's journal file format: a header, then objects
    aligned to 8 bytes, each with a 16-byte header: type, flags, 6 reserved, le64 size)."""
    sig, _compat, incompat = _HEADER.unpack_from(blob, 0)
    if sig != b"LPKSHHRH":
        raise ValueError("not a journal file")
    header_size, arena_size = struct.unpack_from("<QQ", blob, 88)
    tail_object = struct.unpack_from("<Q", blob, 136)[0]
    # DATA: object header (16), hash, next_hash, next_field, entry, entry_array, n_entries (6 x 8),
    # compact files add tail_entry_array_offset and n_entry_arrays (2 x 4).
    payload_at = 16 + 48 + (8 if incompat & _INCOMPATIBLE_COMPACT else 0)
    out, off, end = [], header_size, min(len(blob), header_size + arena_size)
    while off <= tail_object and off + 16 <= end:
        kind, flags = blob[off], blob[off + 1]
        size = struct.unpack_from("<Q", blob, off + 8)[0]
        if size < 16 or off + size > end:
            break
        if kind == OBJECT_DATA and size > payload_at:
            out.append(DataObject(off, size, off + payload_at, bool(flags & _COMPRESSED)))
        off += (size + 7) & ~7
    return out


def tamper_file(src: Path, dst: Path, needle: bytes | None = None) -> int:
    """Copy a journal file and flip one byte inside an entry's data in the copy (the DATA object
    holding ``needle``, else the first uncompressed ``MESSAGE=``, else any); returns the offset.
    The source is only read."""
    blob = bytearray(Path(src).read_bytes())
    objects = data_objects(bytes(blob))
    if not objects:
        raise ValueError(f"{src}: no data object")

    def payload(o: DataObject) -> bytes:
        return bytes(blob[o.payload_offset:o.offset + o.size])

    target, at = None, None
    if needle:
        for o in objects:
            i = payload(o).find(needle) if not o.compressed else -1
            if i >= 0:
                target, at = o, o.payload_offset + i
                break
    if target is None:
        target = next((o for o in objects if not o.compressed and payload(o).startswith(b"MESSAGE=")), objects[0])
        at = target.offset + target.size - 1
    blob[at] ^= 0x20
    Path(dst).write_bytes(bytes(blob))
    return at


#: Run on the host (``python3 -c FETCH JOURNAL_DIR MACHINE_ID MAX_BYTES``): the archived journal
#: files of the machine (newest first, up to MAX_BYTES), as JSON with a base64 tar.gz. The active
#: files are left out (being written); rotate first so that recent entries are archived.
FETCH = r"""
import base64, io, json, os, sys, tarfile
root = os.path.join(sys.argv[1], sys.argv[2])
cap = int(sys.argv[3])
names = sorted((n for n in os.listdir(root) if n.endswith(".journal") and "@" in n),
               key=lambda n: os.stat(os.path.join(root, n)).st_mtime, reverse=True)
picked, total, left = [], 0, []
for n in names:
    size = os.stat(os.path.join(root, n)).st_size
    if total + size > cap and picked:
        left.append(n)
        continue
    picked.append(n)
    total += size
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as t:
    for n in picked:
        t.add(os.path.join(root, n), arcname=n)
print(json.dumps({"files": picked, "left_out": left, "bytes": total,
                  "tar": base64.b64encode(buf.getvalue()).decode()}))
"""
FETCH_MAX_BYTES = 256 * 1024 * 1024


def unpack_fetch(doc: Mapping[str, Any], dest: Path) -> list[Path]:
    """Write the files :data:`FETCH` sent into ``dest`` (plain names only)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(doc["tar"])), mode="r:gz") as t:
        for m in t.getmembers():
            name = Path(m.name).name
            if not m.isfile() or name != m.name or not name.endswith(".journal"):
                continue
            f = t.extractfile(m)
            if f is None:
                continue
            (dest / name).write_bytes(f.read())
            out.append(dest / name)
    return sorted(out)


# --------------------------------------------------------------------------- checks over a host


class Host(Protocol):
    """Where a check runs its commands (:class:`llmcluster.verify.remote.RemoteHost` over SSH, or a
    local stand-in): ``run`` and ``python`` return a result with ``rc``, ``stdout``, ``stderr``."""

    def run(self, argv: list[str], timeout: float = 60) -> Any: ...

    def python(self, script: str, *args: str, timeout: float = 60) -> Any: ...


def journald_check(host: Host, exp: AuditExpectation, what: str, systemd: bool = True) -> list[str]:
    """The journald configuration in force on the host (and, with systemd, that journald was started
    after it was last written)."""
    r = host.run(["systemd-analyze", "cat-config", "systemd/journald.conf"])
    if r.rc != 0:  # without systemd-analyze: the same files, in the same order
        r = host.run(["sh", "-c", "for f in /etc/systemd/journald.conf /etc/systemd/journald.conf.d/*.conf; "
                                  'do [ -f "$f" ] && echo "# $f" && cat "$f"; done; true'])
    problems = journald_problems(journald_settings(r.stdout), exp, what)
    if systemd:
        started = host.run(["sh", "-c", 't=$(systemctl show -P ExecMainStartTimestamp systemd-journald.service); '
                                        '[ -n "$t" ] && date +@%s -d "$t"'])
        files = config_files(r.stdout)
        stat = host.run(["stat", "-c", "%Y", *files]) if files else None
        mtimes = [int(x) for x in stat.stdout.split() if x.isdigit()] if stat is not None else []
        problems += restart_problems(parse_epoch(started.stdout), max(mtimes, default=None), what)
    return problems


def persistent_entries(host: Host, identifier: str = IDENTIFIER, lines: int = 5000) -> list[dict[str, Any]]:
    """The identifier's latest entries in the *persistent* journal only (``/var/log/journal``)."""
    r = host.run(["journalctl", f"--directory={JOURNAL_DIR}", "-t", identifier, "-o", "json", "-n", str(lines),
                  "--no-pager"], timeout=60)
    return parse_json_entries(r.stdout)


def fetch_journal(host: Host, dest: Path, max_bytes: int = 0) -> dict[str, Any]:
    """Rotate the host's journal (what was just logged gets archived, in a sealed file) and copy its
    archived files into ``dest``; returns what was copied and left out. The host is only read."""
    host.run(["journalctl", "--rotate"], timeout=60)
    machine_id = host.run(["cat", "/etc/machine-id"]).stdout.strip()
    res = host.python(FETCH, JOURNAL_DIR, machine_id, str(max_bytes or FETCH_MAX_BYTES), timeout=300)
    try:
        doc = json.loads(res.stdout)
    except ValueError:
        raise RuntimeError(f"copying the journal files: exit {res.rc}: {(res.stderr or res.stdout)[-400:]}") from None
    unpack_fetch(doc, dest)
    return {"machine_id": machine_id, **{k: v for k, v in doc.items() if k != "tar"}}


def verify_here(directory: Path, key: str) -> tuple[int, str, dict[str, dict[str, str]]]:
    """``journalctl --verify --verify-key`` over a folder of journal file copies, on this machine (the
    key never leaves it), and each file's header."""
    exe = shutil.which("journalctl")
    if exe is None:
        raise RuntimeError("journalctl is not installed on this machine")
    r = subprocess.run([exe, "--verify", f"--verify-key={key}", f"--directory={directory}"],
                       capture_output=True, text=True, check=False)
    headers = {}
    for f in sorted(Path(directory).glob("*.journal")):
        h = subprocess.run([exe, "--header", f"--file={f}"], capture_output=True, text=True, check=False)
        headers[str(f)] = parse_header(h.stdout)
    return r.returncode, r.stdout + r.stderr, headers


def tamper_check(copies: Path, key: str, what: str, needle: bytes | None = None) -> list[str]:
    """On copies only: the newest sealed file passes verification, and fails it with a byte flipped
    inside an entry's data (the one holding ``needle`` when given)."""
    _, output, headers = verify_here(copies, key)
    seams = explained_seams(Path(copies), key, output, headers)
    sealed = [Path(p) for p, h in sorted(headers.items()) if header_sealed(h) and p not in seams]
    if needle:
        sealed = [p for p in sealed if needle in p.read_bytes()] or sealed
    if not sealed:
        return [f"{what}: no sealed journal file to tamper with"]
    src = sealed[-1]
    work = Path(copies).parent / f"{Path(copies).name}-tamper"
    for sub in ("pristine", "tampered"):
        shutil.rmtree(work / sub, ignore_errors=True)
        (work / sub).mkdir(parents=True)
    shutil.copy2(src, work / "pristine" / src.name)
    tamper_file(src, work / "tampered" / src.name, needle)
    pristine = verify_here(work / "pristine", key)
    tampered = verify_here(work / "tampered", key)
    return tamper_problems(pristine[:2], tampered[:2], f"{what} ({src.name})")


# --------------------------------------------------------------------------- collector


def collector_endpoint(url: str) -> tuple[str, int]:
    """Host and port of a collector URL (``https://ADDRESS[:PORT]``; default port 19532)."""
    u = urlsplit(url)
    if u.scheme != "https" or not u.hostname:
        raise ValueError(f"{url}: not an https:// URL")
    return u.hostname, u.port or COLLECTOR_PORT


@dataclass(frozen=True)
class CollectorPlan:
    """A collector: HAProxy terminates mTLS (client certificate required, chained to the cluster CA)
    and hands the stream to systemd-journal-remote on loopback, which writes ``output``."""

    config: str
    config_path: Path
    output: Path
    terminator_argv: list[str]
    remote_argv: list[str]

    def write(self) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config)
        self.output.mkdir(parents=True, exist_ok=True)

    def read_argv(self, identifier: str = IDENTIFIER) -> list[str]:
        """What the collector received (run on the machine that holds ``output``)."""
        return ["journalctl", f"--directory={self.output}", "-t", identifier, "-o", "json", "--no-pager"]


def collector_plan(address: str, port: int, workdir: Path, bundle: Path, ca_file: Path,
                   crl_file: Path | None = None, backend: tuple[str, int] = COLLECTOR_BACKEND,
                   haproxy: str = "haproxy",
                   journal_remote: str = JOURNAL_REMOTE) -> CollectorPlan:
    """The collector's two processes (run both in the collector's network namespace, in the
    foreground). ``bundle``: its certificate, chain and key in one PEM (HAProxy's ``crt``)."""
    ip = ipaddress.ip_address(address)
    bind = f"[{ip}]" if ip.version == 6 else str(ip)
    crl = f" crl-file {crl_file}" if crl_file else ""
    config = f"""\
# llmcluster audit collector (verification): mTLS terminator in front of systemd-journal-remote.
global
    log stderr format short local0
    ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets
    tune.ssl.cachesize 0
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend audit
    bind {bind}:{port} ssl crt {bundle} ca-file {ca_file} verify required{crl}
    log-format "%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts client=\\"%[ssl_c_s_dn]\\" serial=%[ssl_c_serial,hex]"
    default_backend journal_remote
backend journal_remote
    server remote {backend[0]}:{backend[1]}
"""
    workdir = Path(workdir)
    output = workdir / "received"
    cfg = workdir / "collector.cfg"
    return CollectorPlan(config, cfg, output, [haproxy, "-db", "-f", str(cfg)],
                         [journal_remote, f"--listen-http={backend[0]}:{backend[1]}", f"--output={output}/",
                          "--split-mode=host"])


def issue_collector_cert(intermediate_key_pem: str, chain_pem: str, address: str, common_name: str,
                         directory: Path, days: int = 1) -> Path:
    """A server certificate for a verification collector at ``address`` (IP SAN, plus ``common_name``
    as DNS SAN), issued by the cluster intermediate (lab only: its key is in the lab export). Writes
    ``collector.pem`` (certificate, chain, key; 0600) into ``directory`` and returns it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key(intermediate_key_pem.encode(), password=None)
    end = "-----END CERTIFICATE-----"
    inter = x509.load_pem_x509_certificate((chain_pem.split(end)[0] + end + "\n").encode())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "lab-tests"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(inter.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name),
                                                        x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    bundle = directory / "collector.pem"
    bundle.touch(mode=0o600)
    bundle.chmod(0o600)
    bundle.write_text(cert.public_bytes(serialization.Encoding.PEM).decode() + chain_pem.strip() + "\n"
                      + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode())
    return bundle
