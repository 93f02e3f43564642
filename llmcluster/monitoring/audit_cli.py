"""``llmcluster audit --stack S --since ... [--client ...]``: query the central audit store and verify its chain.

The store (:mod:`llmcluster.monitoring.audit_chain`) lives on the monitor host; by default it is
fetched read-only over SSH (``tar`` of the store folder, to a temporary folder here), or read from
``--store DIR`` (a copy, a backup). The whole chain is verified before anything is printed; a
broken chain exits 5 and names the first bad lines. ``--checkpoint FILE`` (kept off the monitor
host) holds the last head seen: a tail deleted or rewritten since is detected, and the file is
updated (atomically) after a chain that verifies.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from llmcluster.errors import Problem, SpecError
from llmcluster.monitoring import audit_chain

STORE_DIR = "/var/lib/llmcluster/audit/chain"
EXIT_BROKEN = 5
_REL = re.compile(r"^(\d{1,5})([mhd])$")


def parse_since(text: str, now: dt.datetime | None = None) -> float:
    """``24h``, ``7d``, ``30m``, an ISO date or date-time (UTC unless it says otherwise) -> epoch seconds."""
    now = now or dt.datetime.now(dt.UTC)
    m = _REL.match(text.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        unit_name = {"m": "minutes", "h": "hours", "d": "days"}[unit]
        return (now - dt.timedelta(**{unit_name: n})).timestamp()
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise SpecError(Problem("--since", f"{text[:40]!r} is not a time: use 24h, 7d, 30m, 2026-01-31 or "
                                           "2026-01-31T12:00:00")) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def matches_client(line: dict[str, Any], client: str | None) -> bool:
    if not client:
        return True
    cn = line.get("client_cn", "")
    return cn == client or cn.startswith(client + ".") or line.get("serial", "").lower() == client.lower()


def query(store: Path, since: float, client: str | None, checkpoint: dict | None = None
          ) -> tuple[list[str], dict, list[dict]]:
    problems, head = audit_chain.verify(store, checkpoint)
    rows = [line for _p, _n, line in audit_chain.read_lines(store)
            if line and "event" not in line and float(line.get("ts", 0)) >= since and matches_client(line, client)]
    return problems, head, rows


def fetch_store(address: str, user: str, dest: Path, key: Path | None = None, accept_new: bool = False) -> Path:
    """Copy the monitor host's store here (read-only on the host: ``tar -c``)."""
    parent, name = STORE_DIR.rsplit("/", 1)
    opts = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if key is not None:
        opts += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    if accept_new:
        opts += ["-o", "StrictHostKeyChecking=accept-new"]
    out = subprocess.run(["ssh", *opts, f"{user}@{address}", "tar", "-C", parent, "-cf", "-", name],
                         capture_output=True, check=False, timeout=600)
    if out.returncode != 0:
        raise SpecError(Problem("--stack", f"could not read the audit store on {address}: "
                                           f"{out.stderr.decode(errors='replace').strip()[:200] or 'ssh failed'}"))
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest / name


def _read_checkpoint(path: Path | None) -> dict | None:
    if path is None or not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {"seq": int(doc["seq"]), "hash": str(doc["hash"])}
    except (OSError, ValueError, KeyError, TypeError):
        raise SpecError(Problem("--checkpoint", f"{path} is not a checkpoint written by llmcluster audit")) from None


def _write_checkpoint(path: Path, head: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(head, f)
        f.write("\n")
    os.replace(tmp, path)


def cmd_audit(args, *, console, load, print_json) -> int:
    """``console``/``load``/``print_json``: the CLI's helpers (passed in: this module never imports the CLI)."""
    _console, _load, _print_json = console, load, print_json
    since = parse_since(args.since)
    ckpt_path = Path(args.checkpoint) if args.checkpoint else None
    if ckpt_path is not None and not ckpt_path.parent.is_dir():
        raise SpecError(Problem("--checkpoint", f"{ckpt_path.parent}: no such folder"))
    checkpoint = _read_checkpoint(ckpt_path)
    with tempfile.TemporaryDirectory(prefix="llmcluster-audit-") as tmp:
        if args.store:
            store = Path(args.store)
            if not store.is_dir():
                raise SpecError(Problem("--store", f"{args.store}: no such folder"))
        else:
            from llmcluster.plan.build import build_plan
            from llmcluster.plan.monitoring import monitoring_plan

            plan = build_plan(_load(args))
            mp = monitoring_plan(plan)
            if mp is None or not mp.servers:
                raise SpecError(Problem("monitoring", f"stack {plan.spec.stack} has no monitor host "
                                                      "(monitoring.pool): nothing stores the audit trail"))
            key = Path(args.ssh_key) if args.ssh_key else None
            if key is not None and not key.is_file():
                raise SpecError(Problem("--ssh-key", f"{args.ssh_key}: no such file"))
            store = fetch_store(mp.server_addresses[0], plan.hostnet.ssh_user, Path(tmp), key,
                                args.accept_new_host_key)
        problems, head, rows = query(store, since, args.client, checkpoint)
    if args.json:
        _print_json({"chain_ok": not problems, "problems": problems, "head": head, "entries": rows})
    else:
        from rich.table import Table

        t = Table("time (UTC)", "gateway", "client", "serial", "decision", "method", "path", "status", "ms")
        for r in rows:
            t.add_row(dt.datetime.fromtimestamp(float(r["ts"]), dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
                      r.get("host", ""), r.get("client_cn", "") or r.get("client", ""), r.get("serial", ""),
                      r.get("decision", ""), r.get("method", ""), r.get("path", ""), str(r.get("status", "")),
                      str(r.get("Ta", "")))
        _console().print(t)
        con = _console(stderr=True)
        if problems:
            for p in problems:
                con.print(f"chain: {p}", markup=False, highlight=False)
        else:
            con.print(f"chain: verified up to seq {head['seq']}", markup=False, highlight=False)
    if problems:
        return EXIT_BROKEN
    if ckpt_path is not None:
        _write_checkpoint(ckpt_path, head)
    return 0


def add_parser(sub):
    """The ``audit`` subcommand (registered by llmcluster.cli, which sets its ``func``); returns the parser."""
    au = sub.add_parser("audit", help="query the central audit store (the gateways' access log) and verify its "
                                      "hash chain (exit 5 when it does not verify)")
    au.add_argument("--stack", default="lab")
    au.add_argument("--stacks-dir", default=None)
    au.add_argument("--since", required=True, help="24h, 7d, 30m, or an ISO date/time (UTC)")
    au.add_argument("--client", default=None, help="a client's name (its certificate CN's first label), "
                                                   "full CN, or certificate serial")
    au.add_argument("--store", default=None, help="read a copy of the store from this folder instead of the "
                                                  "monitor host")
    au.add_argument("--checkpoint", default=None, help="file holding the last verified head (kept off the "
                                                       "monitor host); updated after a chain that verifies")
    au.add_argument("--ssh-key", default=None, help="private key for the monitor host (the lab's: "
                                                    "<lab state dir>/ssh/id_ed25519)")
    au.add_argument("--accept-new-host-key", action="store_true",
                    help="trust the monitor host's SSH key on first use (labs; production keeps known_hosts)")
    au.add_argument("--json", action="store_true")
    au.set_defaults(set=None)
    return au
