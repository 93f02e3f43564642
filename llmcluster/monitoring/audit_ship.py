#!/usr/bin/python3
"""Ship a gateway's access log to CloudWatch Logs and archive it to an S3 Object Lock bucket (AWS stacks).

Standard library only: the ``audit_cloudwatch`` role installs this file on the gateways together with
its two siblings, ``audit_chain.py`` (the hash chain of the central store, :mod:`llmcluster.monitoring.audit_chain`)
and ``s3_sigv4.py`` (the SigV4 signer and IMDSv2 credentials of the llmcluster.hosts collection); the
unit ``llmcluster-audit-ship.service`` runs ``run``. One loop, each round:

1. **ingest** -- the journal entries of ``identifier`` (HAProxy's access log) after the saved journald
   cursor are chained (``seq``/``prev``/``hash``, :func:`audit_chain.line_hash`) and appended to the
   current *segment* ``chain-YYYY-MM-DDTHH.jsonl`` of the state folder (one per hour or per day); then the
   state (cursor, head, segment and its size) is replaced atomically. A crash between the append and the
   state leaves lines past the recorded size: the next start truncates them and reads them again from the
   journal (no loss, no duplicate).
2. **ship** -- the chained lines after the shipped position go to the log stream (one per host) with
   ``PutLogEvents``: batches of at most 10,000 events and 1,048,576 bytes (message + 26 bytes each),
   within 24 hours, timestamps never decreasing; a message over 256 KiB is cut (the archive keeps it
   whole). Throttling and 5xx are retried with exponential backoff; a missing stream is created. The
   shipped position is saved atomically after each acknowledged batch: a restart resends nothing except
   a batch acknowledged in the instant before the save (at-least-once in that window; ``seq`` tells).
3. **archive** -- a segment whose period has ended is *sealed*: it is put whole to the archive bucket
   (``<prefix><stream>/chain-....jsonl``) with ``Content-MD5`` and ``x-amz-checksum-sha256`` (Object Lock
   requires one); the bucket's default retention (COMPLIANCE) locks it. The segments chain onto each
   other (the first line's ``prev`` is the previous segment's last ``hash``), so the archive verifies
   alone (:func:`verify_segments`, ``verify`` below). Archived segments older than ``keep_days`` are
   deleted locally.

Credentials: the environment, else the instance profile through IMDSv2; fetched again every
``credentials_refresh_s`` (IMDS rotates them well before they expire) and at once on an expired token.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

try:  # on the host: installed side by side
    import audit_chain  # type: ignore[import-not-found]
    import s3_sigv4 as sigv4  # type: ignore[import-not-found]
except ImportError:  # in this repository
    from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import s3_sigv4 as sigv4
    from llmcluster.monitoring import audit_chain

#: CloudWatch Logs PutLogEvents quotas (AWS CloudWatch Logs API reference, PutLogEvents).
MAX_BATCH_BYTES = 1_048_576
MAX_BATCH_EVENTS = 10_000
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 262_144
MAX_SPAN_MS = 24 * 3600 * 1000
RETRY_CODES = {"ThrottlingException", "ServiceUnavailableException", "InternalFailure", "RequestExpired"}
AUTH_CODES = {"ExpiredTokenException", "ExpiredToken", "UnrecognizedClientException", "InvalidSignatureException",
              "AccessDeniedException", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
              "IncompleteSignatureException", "MissingAuthenticationTokenException", "InvalidClientTokenId"}
STATE = "state.json"
SEGMENT_PREFIX = "chain-"
PERIODS = ("hour", "day")


class ShipError(Exception):
    """A failure the operator must see; its text names the service and the credentials' origin, never a key."""


class Throttled(ShipError):
    pass


# --------------------------------------------------------------------------- configuration and state


def load_config(path: Path) -> dict:
    cfg = json.loads(path.read_text(encoding="utf-8"))
    need = ("region", "log_group", "stream", "bucket", "state_dir")
    missing = [k for k in need if not cfg.get(k)]
    if missing:
        raise ShipError(f"{path}: {', '.join(missing)}: missing or empty")
    if cfg.get("period", "hour") not in PERIODS:
        raise ShipError(f"{path}: period: {cfg.get('period')!r} is not one of {', '.join(PERIODS)}")
    return cfg


def _atomic_json(path: Path, data: dict) -> None:
    audit_chain._atomic_write(path, json.dumps(data, sort_keys=True) + "\n", 0o600)


def load_state(state_dir: Path) -> dict:
    try:
        return json.loads((state_dir / STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"cursor": "", "seq": 0, "hash": audit_chain.GENESIS, "segment": "", "size": 0,
                "shipped": {"segment": "", "offset": 0}, "archived": ""}


def segment_key(ts: float, period: str) -> str:
    t = dt.datetime.fromtimestamp(ts, dt.timezone.utc)  # noqa: UP017 (the hosts run Python 3.9+)
    return t.strftime("%Y-%m-%dT%H") if period == "hour" else t.strftime("%Y-%m-%dT00")


def segment_name(key: str) -> str:
    return f"{SEGMENT_PREFIX}{key}.jsonl"


def segments(chain_dir: Path) -> list[Path]:
    return sorted(p for p in chain_dir.glob(f"{SEGMENT_PREFIX}*.jsonl"))


# --------------------------------------------------------------------------- 1. ingest


def journal_entries(cfg: dict, cursor: str, limit: int) -> list[dict]:
    """At most ``limit`` journal entries of the identifier after ``cursor``, oldest first."""
    argv = ["journalctl", "-t", cfg.get("identifier", "haproxy"), "-o", "json", "--no-pager"]
    if cfg.get("journal_dir"):
        argv += ["-D", cfg["journal_dir"]]
    if cursor:
        argv.append(f"--after-cursor={cursor}")
    out: list[dict] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None
        for raw in p.stdout:
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            out.append(e)
            if len(out) >= limit:
                p.kill()
                break
        _, err = p.communicate()
    if p.returncode not in (0, -9) and not out:
        raise ShipError(f"journalctl failed ({p.returncode}): {err.strip()[:300]}")
    return out


def recover(cfg: dict, state: dict) -> None:
    """Drop lines appended after the last saved state (a crash between the append and the save)."""
    if state.get("segment"):
        seg = Path(cfg["state_dir"]) / "chain" / segment_name(state["segment"])
        if seg.exists() and seg.stat().st_size > int(state["size"]):
            with open(seg, "r+b") as f:
                f.truncate(int(state["size"]))
                os.fsync(f.fileno())


def ingest(cfg: dict, state: dict, now: float, limit: int = 5000) -> int:
    chain_dir = Path(cfg["state_dir"]) / "chain"
    chain_dir.mkdir(parents=True, exist_ok=True)
    period = cfg.get("period", "hour")
    entries = journal_entries(cfg, state.get("cursor", ""), limit)
    if not entries:
        return 0
    seq, prev, current = int(state["seq"]), state["hash"], state.get("segment", "")
    by_seg: dict[str, list[str]] = {}
    for e in entries:
        msg = e.get("MESSAGE")
        if isinstance(msg, list):  # journald's byte-array form of a non-UTF-8 message
            msg = bytes(msg).decode("utf-8", "replace")
        ts = int(e.get("__REALTIME_TIMESTAMP", "0")) / 1e6
        key = segment_key(ts, period)
        if not current or key > current:  # segments only move forward (a clock stepping back stays in the current)
            current = key
        seq += 1
        line = {"ts": ts, "host": e.get("_HOSTNAME", ""), "message": msg or "", **audit_chain.parse_access(msg or ""),
                "seq": seq, "prev": prev}
        line["hash"] = audit_chain.line_hash(line)
        prev = line["hash"]
        by_seg.setdefault(current, []).append(json.dumps(line, sort_keys=True) + "\n")
    for key, lines in by_seg.items():
        with open(chain_dir / segment_name(key), "a", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
    state.update(cursor=entries[-1]["__CURSOR"], seq=seq, hash=prev, segment=current,
                 size=(chain_dir / segment_name(current)).stat().st_size)
    _atomic_json(Path(cfg["state_dir"]) / STATE, state)
    return len(entries)


# --------------------------------------------------------------------------- AWS requests


class Aws:
    """Signed requests with credentials that are refreshed before they expire."""

    def __init__(self, cfg: dict, clock=time.time):
        self.cfg, self.clock = cfg, clock
        self.creds: sigv4.Credentials | None = None
        self.fetched = 0.0
        self.ctx = sigv4.ssl_context(cfg.get("ca_path", ""))
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.ctx))

    def credentials(self, force: bool = False) -> sigv4.Credentials:
        stale = self.clock() - self.fetched > float(self.cfg.get("credentials_refresh_s", 300))
        if force or self.creds is None or stale:
            try:
                self.creds = sigv4.find_credentials(imds_endpoint=self.cfg.get("imds_endpoint", ""))
            except sigv4.S3Error as e:
                raise ShipError(f"no AWS credentials: {e}") from None
            self.fetched = self.clock()
        return self.creds

    def request(self, service: str, method: str, url: str, body: bytes, headers: dict) -> tuple[int, bytes, dict]:
        for attempt in (0, 1):
            creds = self.credentials(force=attempt == 1)
            h = dict(headers)
            if creds.token:
                h["x-amz-security-token"] = creds.token
            amz_date = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")  # noqa: UP017
            signed = sigv4.sign(method, url, h, region=self.cfg["region"], service=service,
                                access_key=creds.access_key, secret_key=creds.secret_key, amz_date=amz_date,
                                payload_sha256=hashlib.sha256(body).hexdigest())
            req = urllib.request.Request(url, data=body, headers=signed, method=method)
            try:
                with self.opener.open(req, timeout=float(self.cfg.get("timeout_s", 30))) as r:
                    return r.status, r.read(), dict(r.headers)
            except urllib.error.HTTPError as e:
                data = e.read() or b""
                code = error_code(data, dict(e.headers))
                if code in AUTH_CODES and attempt == 0:
                    continue  # fetch the credentials again once (rotated or expired)
                return e.code, data, dict(e.headers)
            except (urllib.error.URLError, OSError) as e:
                raise Throttled(f"{service} at {url} is not reachable: {getattr(e, 'reason', e)}") from None
        raise AssertionError("unreachable")


def error_code(body: bytes, headers: dict) -> str:
    text = body[:4096].decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        return str(doc.get("__type", doc.get("code", ""))).rsplit("#", 1)[-1]
    except ValueError:
        pass
    import re

    m = re.search(r"<Code>([^<]*)</Code>", text)
    return m.group(1) if m else headers.get("x-amzn-ErrorType", "").split(":")[0]


def error_text(service: str, status: int, body: bytes, headers: dict, creds: sigv4.Credentials | None) -> str:
    text = body[:4096].decode("utf-8", "replace")
    msg = ""
    try:
        doc = json.loads(text)
        msg = doc.get("message") or doc.get("Message") or ""
    except ValueError:
        import re

        m = re.search(r"<Message>([^<]*)</Message>", text)
        msg = m.group(1) if m else ""
    origin = creds.origin if creds else "none"
    return f"{service}: HTTP {status} {error_code(body, headers)} {msg}".rstrip() + f" (credentials from {origin})"


def with_backoff(cfg: dict, call, sleep=time.sleep):
    """``call()`` retried on :class:`Throttled` with exponential backoff and jitter."""
    tries, base = int(cfg.get("max_tries", 8)), float(cfg.get("backoff_s", 0.5))
    for n in range(tries):
        try:
            return call()
        except Throttled:
            if n == tries - 1:
                raise
            sleep(min(60.0, base * (2 ** n)) * (0.5 + random.random() / 2))
    return None


# --------------------------------------------------------------------------- 2. ship


def logs_url(cfg: dict) -> str:
    return (cfg.get("logs_endpoint") or f"https://logs.{cfg['region']}.amazonaws.com").rstrip("/") + "/"


def logs_call(aws: Aws, action: str, payload: dict) -> dict:
    body = json.dumps(payload).encode()
    status, data, headers = aws.request("logs", "POST", logs_url(aws.cfg), body, {
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"Logs_20140328.{action}"})
    if status == 200:
        return json.loads(data or b"{}")
    code = error_code(data, headers)
    text = error_text(f"CloudWatch Logs {action}", status, data, headers, aws.creds)
    if code in RETRY_CODES or status >= 500 or status == 429:
        raise Throttled(text)
    err = ShipError(text)
    err.code = code  # type: ignore[attr-defined]
    raise err


def event_of(raw: str) -> dict:
    line = json.loads(raw)
    msg = raw.rstrip("\n")
    data = msg.encode()
    if len(data) + EVENT_OVERHEAD > MAX_EVENT_BYTES:
        cut = data[:MAX_EVENT_BYTES - EVENT_OVERHEAD - 200].decode("utf-8", "ignore")
        msg = cut + f' ...[cut: seq {line.get("seq")} is {len(data)} bytes, whole in the archive]'
    return {"timestamp": int(float(line["ts"]) * 1000), "message": msg}


def batches(events: list[dict]) -> list[list[dict]]:
    """Split events (in order) into PutLogEvents batches within the quotas; timestamps never decrease."""
    out: list[list[dict]] = []
    cur: list[dict] = []
    size = 0
    last = 0
    for ev in events:
        ev = {**ev, "timestamp": max(ev["timestamp"], last)}
        last = ev["timestamp"]
        n = len(ev["message"].encode()) + EVENT_OVERHEAD
        if cur and (size + n > MAX_BATCH_BYTES or len(cur) >= MAX_BATCH_EVENTS
                    or ev["timestamp"] - cur[0]["timestamp"] > MAX_SPAN_MS):
            out.append(cur)
            cur, size = [], 0
        cur.append(ev)
        size += n
    if cur:
        out.append(cur)
    return out


def pending_lines(cfg: dict, state: dict) -> list[tuple[str, int, str]]:
    """(segment key, offset after the line, line) of every chained line not yet shipped, in order."""
    chain_dir = Path(cfg["state_dir"]) / "chain"
    pos = state.get("shipped") or {"segment": "", "offset": 0}
    out = []
    for seg in segments(chain_dir):
        key = seg.name[len(SEGMENT_PREFIX):-len(".jsonl")]
        if key < pos["segment"] or (state.get("segment") and key > state["segment"]):
            continue
        limit = int(state["size"]) if key == state.get("segment") else seg.stat().st_size
        start = int(pos["offset"]) if key == pos["segment"] else 0
        with open(seg, "rb") as f:
            f.seek(start)
            offset = start
            for raw in f:
                if offset + len(raw) > limit:
                    break
                offset += len(raw)
                out.append((key, offset, raw.decode("utf-8")))
    return out


def ensure_stream(aws: Aws) -> None:
    try:
        with_backoff(aws.cfg, lambda: logs_call(aws, "CreateLogStream", {
            "logGroupName": aws.cfg["log_group"], "logStreamName": aws.cfg["stream"]}))
    except ShipError as e:
        if getattr(e, "code", "") != "ResourceAlreadyExistsException":
            raise


def ship(aws: Aws, state: dict) -> int:
    cfg = aws.cfg
    lines = pending_lines(cfg, state)
    if not lines:
        return 0
    events = [event_of(raw) for _k, _o, raw in lines]
    sent = 0
    for batch in batches(events):
        last_key, last_off, _ = lines[sent + len(batch) - 1]
        payload = {"logGroupName": cfg["log_group"], "logStreamName": cfg["stream"], "logEvents": batch}

        def put(payload=payload):
            try:
                return logs_call(aws, "PutLogEvents", payload)
            except ShipError as e:
                if getattr(e, "code", "") != "ResourceNotFoundException":
                    raise
                ensure_stream(aws)
                return logs_call(aws, "PutLogEvents", payload)

        resp = with_backoff(cfg, put) or {}
        rejected = resp.get("rejectedLogEventsInfo")
        if rejected:  # too old / too new for CloudWatch: the archive still keeps them
            last_seq = json.loads(lines[sent + len(batch) - 1][2])["seq"]
            print(f"CloudWatch rejected events of the batch ending at seq {last_seq}: {json.dumps(rejected)} "
                  "(kept in the archive)", file=sys.stderr)
        sent += len(batch)
        state["shipped"] = {"segment": last_key, "offset": last_off}
        _atomic_json(Path(cfg["state_dir"]) / STATE, state)
    return sent


# --------------------------------------------------------------------------- 3. archive


def archive_key(cfg: dict, name: str) -> str:
    prefix = cfg.get("archive_prefix", "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}{cfg['stream']}/{name}"


def put_object(aws: Aws, key: str, body: bytes) -> None:
    url = sigv4.object_url(aws.cfg["bucket"], key, region=aws.cfg["region"], endpoint=aws.cfg.get("s3_endpoint", ""))
    headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),  # S3 demands it with Object Lock
               "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
               "x-amz-content-sha256": hashlib.sha256(body).hexdigest(), "Content-Type": "application/x-ndjson"}

    def call():
        status, data, h = aws.request("s3", "PUT", url, body, headers)
        if status == 200:
            return
        text = error_text(f"S3 PutObject s3://{aws.cfg['bucket']}/{key}", status, data, h, aws.creds)
        if status >= 500 or status == 429 or error_code(data, h) in ("SlowDown", "RequestTimeout"):
            raise Throttled(text)
        raise ShipError(text)

    with_backoff(aws.cfg, call)


def archive(aws: Aws, state: dict, now: float) -> list[str]:
    """Put every sealed, shipped segment not yet archived; returns their names."""
    cfg = aws.cfg
    chain_dir = Path(cfg["state_dir"]) / "chain"
    now_key = segment_key(now, cfg.get("period", "hour"))
    shipped = (state.get("shipped") or {}).get("segment", "")
    done = []
    for seg in segments(chain_dir):
        key = seg.name[len(SEGMENT_PREFIX):-len(".jsonl")]
        if key <= state.get("archived", ""):
            continue
        sealed = key < state.get("segment", "") or (key == state.get("segment") and key < now_key)
        fully_shipped = key < shipped or (key == shipped and int(state["shipped"]["offset"]) >= seg.stat().st_size)
        if not (sealed and fully_shipped):
            break
        if key == state.get("segment"):
            state["segment"], state["size"] = "", 0  # the next entry starts a new segment
        body = seg.read_bytes()
        put_object(aws, archive_key(cfg, seg.name), body)
        state["archived"] = key
        _atomic_json(Path(cfg["state_dir"]) / STATE, state)
        done.append(seg.name)
    keep = float(cfg.get("keep_days", 7)) * 86400
    for seg in segments(chain_dir):
        key = seg.name[len(SEGMENT_PREFIX):-len(".jsonl")]
        if key <= state.get("archived", "") and now - seg.stat().st_mtime > keep:
            seg.unlink()
    return done


# --------------------------------------------------------------------------- verification


def verify_segments(texts: list[str]) -> tuple[list[str], dict]:
    """Problems of archived segments (in name order) read alone, and the head ``{seq, hash}``."""
    problems: list[str] = []
    seq, prev = 0, audit_chain.GENESIS
    for i, text in enumerate(texts):
        for n, raw in enumerate(text.splitlines(), 1):
            where = f"segment {i + 1} line {n}"
            try:
                line = json.loads(raw)
            except ValueError:
                problems.append(f"{where}: not a JSON line (edited)")
                continue
            if "prev" not in line or line.get("hash") != audit_chain.line_hash(line):
                problems.append(f"{where}: seq {line.get('seq')}: hash mismatch (the line was edited)")
            if line.get("prev") != prev or int(line.get("seq", -1)) != seq + 1:
                problems.append(f"{where}: seq {line.get('seq')}: does not follow seq {seq} "
                                "(a line or segment is missing)")
            seq, prev = int(line.get("seq", seq + 1)), line.get("hash", "")
    return problems, {"seq": seq, "hash": prev}


# --------------------------------------------------------------------------- main


def step(cfg: dict, aws: Aws, now: float | None = None) -> dict:
    """One round: ingest, ship, archive. Returns what it did."""
    state_dir = Path(cfg["state_dir"])
    state_dir.mkdir(parents=True, exist_ok=True)
    state = load_state(state_dir)
    recover(cfg, state)
    now = time.time() if now is None else now
    got = ingest(cfg, state, now)
    sent = ship(aws, state)
    done = archive(aws, state, now)
    return {"ingested": got, "shipped": sent, "archived": done, "seq": state["seq"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="llmcluster-audit-ship")
    ap.add_argument("command", choices=["run", "once", "verify"])
    ap.add_argument("--config", default="/etc/llmcluster/audit-ship.json")
    ap.add_argument("--archive-dir", help="verify: a folder of archived segments (chain-*.jsonl) downloaded from S3")
    a = ap.parse_args(argv)
    if a.command == "verify":
        if not a.archive_dir:
            print("verify: --archive-dir: required", file=sys.stderr)
            return 2
        files = segments(Path(a.archive_dir))
        problems, head = verify_segments([p.read_text(encoding="utf-8") for p in files])
        for p in problems:
            print(p, file=sys.stderr)
        print(json.dumps({"segments": len(files), **head, "ok": not problems}))
        return 5 if problems else 0
    try:
        cfg = load_config(Path(a.config))
        aws = Aws(cfg)
        while True:
            try:
                result = step(cfg, aws)
                if a.command == "once":
                    print(json.dumps(result))
                    return 0
            except Throttled as e:  # still throttled or unreachable after the retries: the next round tries again
                if a.command == "once":
                    raise
                print(f"retrying later: {e}", file=sys.stderr)
            time.sleep(float(cfg.get("poll_s", 5)))
    except (ShipError, OSError, ValueError) as e:
        print(f"llmcluster-audit-ship: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
