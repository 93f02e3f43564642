#!/usr/bin/python3
"""The central audit store: the gateways' access log, hash-chained, kept and capped.

Standard library only: the ``audit_store`` role installs this very file on the monitor host as
``/usr/local/sbin/llmcluster-audit-chain`` (a timer runs ``ingest`` every minute and ``verify``
daily), and ``llmcluster audit`` imports it to query and verify a fetched copy.

Store layout (``STORE``): ``chain-YYYY-MM-DD.jsonl`` (UTC day of the entry), one JSON object per
line: the record (``ts``, ``host``, ``message`` and the fields parsed from HAProxy's access log
line: client subject and serial, decision, role, model, method, path, status, timings, bytes),
``seq`` (1, 2, ...), ``prev`` (the previous line's ``hash``; 64 zeros for the first) and ``hash``
= sha256 of ``prev`` and the canonical JSON of the line without ``hash``. Editing a line breaks its
hash; deleting one breaks the next line's ``prev`` and the ``seq`` run; deleting the tail is caught
against a checkpoint (the last ``seq``/``hash`` the controller saw, kept off the host).

Retention and cap: ``prune`` deletes whole day files older than the retention, then the oldest
while the store is above its cap, and records each deletion **in the chain** (an ``event: prune``
line naming the file's last ``seq``/``hash``); verification starts from the newest such anchor, so
pruning by policy verifies and deleting a file by hand does not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

GENESIS = "0" * 64
STATE = "state.json"
FILE_RE = re.compile(r"^chain-(\d{4}-\d{2}-\d{2})\.jsonl$")
# HAProxy's access log line (roles/gateway log-format)
LOG_RE = re.compile(
    r'^(?P<client_ip>[0-9a-fA-F:.\[\]]+):(?P<client_port>\d+) \[(?P<accepted>[^\]]+)\] (?P<frontend>\S+) '
    r'(?P<backend>[^/\s]+)/(?P<server>\S+) (?P<TR>-?\d+)/(?P<Tw>-?\d+)/(?P<Tc>-?\d+)/(?P<Tr>-?\d+)/(?P<Ta>-?\d+) '
    r'(?P<status>-?\d+) (?P<bytes>\d+) (?P<term>\S+) \S+ \S+ client="(?P<client>[^"]*)" serial=(?P<serial>\S*) '
    r'decision=(?P<decision>\S*) role=(?P<role>\S*) model="?(?P<model>[^"]*?)"? "(?P<request>[^"]*)"')


def canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def line_hash(line: dict) -> str:
    body = {k: v for k, v in line.items() if k != "hash"}
    return hashlib.sha256(line["prev"].encode() + canonical(body)).hexdigest()


def parse_access(message: str) -> dict:
    """The fields of one HAProxy access log line ({} when it is not one)."""
    m = LOG_RE.match(message or "")
    if not m:
        return {}
    d = m.groupdict()
    method, _, rest = d.pop("request").partition(" ")
    d["method"], d["path"] = method, rest.rsplit(" ", 1)[0] if " " in rest else rest
    for k in ("TR", "Tw", "Tc", "Tr", "Ta", "status", "bytes", "client_port"):
        d[k] = int(d[k])
    cn = re.search(r"/CN=([^/]+)", d["client"])
    d["client_cn"] = cn.group(1) if cn else ""
    return d


def _atomic_write(path: Path, text: str, mode: int = 0o640) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(store: Path) -> dict:
    try:
        return json.loads((store / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"seq": 0, "hash": GENESIS}


def chain_files(store: Path) -> list[Path]:
    return sorted(p for p in store.iterdir() if FILE_RE.match(p.name))


def append(store: Path, records: list[dict]) -> dict:
    """Chain ``records`` (each with ``ts``, seconds since the epoch) onto the store; returns the new head."""
    store.mkdir(parents=True, exist_ok=True)
    state = load_state(store)
    seq, prev = int(state["seq"]), state["hash"]
    by_file: dict[Path, list[str]] = {}
    for rec in records:
        seq += 1
        line = {**rec, "seq": seq, "prev": prev}
        line["hash"] = line_hash(line)
        prev = line["hash"]
        day = dt.datetime.fromtimestamp(float(rec["ts"]), dt.UTC).strftime("%Y-%m-%d")
        by_file.setdefault(store / f"chain-{day}.jsonl", []).append(json.dumps(line, sort_keys=True) + "\n")
    for path, lines in by_file.items():
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
    head = {"seq": seq, "hash": prev, "ts": records[-1]["ts"] if records else state.get("ts")}
    if records:
        _atomic_write(store / STATE, json.dumps(head) + "\n")
    return head


def read_lines(store: Path) -> list[tuple[Path, int, dict | None]]:
    out = []
    for path in chain_files(store):
        for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                out.append((path, n, json.loads(raw)))
            except ValueError:
                out.append((path, n, None))
    return out


def verify(store: Path, checkpoint: dict | None = None) -> tuple[list[str], dict]:
    """Problems of the chain (empty: it verifies) and its head ``{seq, hash}``."""
    problems: list[str] = []
    lines = read_lines(store)
    # Start at the newest prune anchor recorded in the chain (files before it were deleted by policy).
    anchor = {"seq": 0, "hash": GENESIS}
    for _path, _n, line in lines:
        if line and line.get("event") == "prune" and int(line.get("last_seq", 0)) > anchor["seq"]:
            anchor = {"seq": int(line["last_seq"]), "hash": line["last_hash"]}
    seq, prev = anchor["seq"], anchor["hash"]
    started = False
    for path, n, line in lines:
        where = f"{path.name}:{n}"
        if line is None:
            problems.append(f"{where}: not a JSON line (edited)")
            continue
        if not started:
            if int(line.get("seq", -1)) <= seq:
                continue  # before the anchor: kept longer than needed, not part of the verified chain
            started = True
        if "prev" not in line or line.get("hash") != line_hash(line):
            problems.append(f"{where}: seq {line.get('seq')}: hash mismatch (the line was edited)")
        if line.get("prev") != prev or int(line.get("seq", -1)) != seq + 1:
            problems.append(f"{where}: seq {line.get('seq')}: does not follow seq {seq} "
                            "(a line before it was deleted or reordered)")
        seq, prev = int(line.get("seq", seq + 1)), line.get("hash", "")
    state = load_state(store)
    if lines and (int(state["seq"]) != seq or state["hash"] != prev):
        problems.append(f"{STATE}: head seq {state['seq']} but the chain ends at seq {seq} "
                        "(lines at the end were deleted)")
    if checkpoint:
        cseq, chash = int(checkpoint["seq"]), checkpoint["hash"]
        found = any(line and int(line.get("seq", -1)) == cseq and line.get("hash") == chash for _p, _n, line in lines)
        if cseq > seq:
            problems.append(f"checkpoint seq {cseq} is beyond the chain's end (seq {seq}): the tail was deleted")
        elif cseq > anchor["seq"] and not found:
            problems.append(f"checkpoint seq {cseq} is not in the chain with its hash: the chain was rewritten")
    return problems, {"seq": seq, "hash": prev}


def prune(store: Path, retention_days: int, max_bytes: int, now: float) -> list[str]:
    """Delete day files past the retention, then the oldest above the cap; chain an anchor for each."""
    removed = []
    cutoff = dt.datetime.fromtimestamp(now, dt.UTC).date() - dt.timedelta(days=retention_days)
    files = chain_files(store)
    total = sum(p.stat().st_size for p in files)
    for path in files[:-1]:  # never the newest (it holds the head)
        day = dt.date.fromisoformat(FILE_RE.match(path.name).group(1))
        reason = "retention" if day < cutoff else ("cap" if total > max_bytes else None)
        if reason is None:
            break
        last = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()][-1]
        size = path.stat().st_size
        append(store, [{"ts": now, "event": "prune", "file": path.name, "reason": reason,
                        "last_seq": last["seq"], "last_hash": last["hash"]}])
        path.unlink()
        total -= size
        removed.append(path.name)
    return removed


def write_metrics(textfile_dir: Path, head: dict, store: Path, chain_ok: int | None = None) -> None:
    textfile_dir.mkdir(parents=True, exist_ok=True)
    path = textfile_dir / "llmcluster_audit.prom"
    old = {}
    if path.exists():
        for ln in path.read_text(encoding="utf-8").splitlines():
            if ln and not ln.startswith("#"):
                k, _, v = ln.partition(" ")
                old[k] = v
    size = sum(p.stat().st_size for p in chain_files(store)) if store.exists() else 0
    vals = {"llmcluster_audit_last_entry_timestamp_seconds": head.get("ts") or old.get(
        "llmcluster_audit_last_entry_timestamp_seconds", 0),
        "llmcluster_audit_store_bytes": size,
        "llmcluster_audit_chain_ok": chain_ok if chain_ok is not None else old.get("llmcluster_audit_chain_ok", 1)}
    # node_exporter (user prometheus) reads it
    _atomic_write(path, "".join(f"# TYPE {k} gauge\n{k} {v}\n" for k, v in vals.items()), 0o644)


def journal_records(journal_dir: str, cursor_file: Path, identifier: str = "haproxy") -> list[dict]:
    """New access log entries from the journal-remote output (``journalctl --cursor-file`` keeps the place)."""
    out = subprocess.run(["journalctl", "-D", journal_dir, "-t", identifier, "-o", "json", "--no-pager",
                          f"--cursor-file={cursor_file}"], capture_output=True, text=True, check=False)
    records = []
    for raw in out.stdout.splitlines():
        try:
            e = json.loads(raw)
        except ValueError:
            continue
        msg = e.get("MESSAGE")
        if not isinstance(msg, str):
            continue
        records.append({"ts": int(e.get("__REALTIME_TIMESTAMP", "0")) / 1e6, "host": e.get("_HOSTNAME", ""),
                        "message": msg, **parse_access(msg)})
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="llmcluster-audit-chain")
    ap.add_argument("command", choices=["ingest", "verify"])
    ap.add_argument("--store", required=True)
    ap.add_argument("--journal", default="/var/log/journal/remote")
    ap.add_argument("--textfile", default="/var/lib/prometheus/node-exporter")
    ap.add_argument("--retention-days", type=int, default=180)
    ap.add_argument("--max-bytes", type=int, default=1 << 30)
    a = ap.parse_args(argv)
    store = Path(a.store)
    store.mkdir(parents=True, exist_ok=True)
    if a.command == "ingest":
        head = append(store, journal_records(a.journal, store / "cursor"))
        prune(store, a.retention_days, a.max_bytes, dt.datetime.now(dt.UTC).timestamp())
        write_metrics(Path(a.textfile), head, store)
        return 0
    problems, head = verify(store)
    write_metrics(Path(a.textfile), {}, store, chain_ok=0 if problems else 1)
    for p in problems:
        print(p, file=sys.stderr)
    return 5 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
