"""The central audit store (llmcluster.monitoring.audit_chain) and ``llmcluster audit``: hash-chained,
pruned by retention and size cap with anchors in the chain; an edited, deleted or truncated line is
detected. Local, no lab."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llmcluster.cli import main
from llmcluster.monitoring import audit_chain as A

LINE = ('10.42.1.2:40000 [06/Dec/2026:06:00:00.000] api inference/gpu-01 0/0/1/20/21 200 512 ---- 1/1/0/0/0 0/0 '
        'client="/O=llmcluster lab/OU=admin/CN=lab-admin.clients.lab.llmcluster.internal" serial=0A1B '
        'decision=allow role=admin model="deepseek-r1" "POST /v1/chat/completions HTTP/1.1"')
DENY = LINE.replace("decision=allow", "decision=deny").replace(" 200 ", " 403 ").replace(
    "lab-admin", "lab-analyst").replace("serial=0A1B", "serial=0C0D")
NOW = time.time()


def _store(tmp_path: Path, n: int = 6, start: float = NOW - 3600) -> Path:
    store = tmp_path / "chain"
    A.append(store, [{"ts": start + i, "host": "gw-01", "message": m, **A.parse_access(m)}
                     for i, m in enumerate([LINE, DENY] * (n // 2))])
    return store


def _lines(store: Path) -> tuple[Path, list[str]]:
    f = A.chain_files(store)[-1]
    return f, f.read_text().splitlines()


def test_parse_access_line_gives_identity_and_request():
    d = A.parse_access(LINE)
    assert d["client_cn"] == "lab-admin.clients.lab.llmcluster.internal" and d["serial"] == "0A1B"
    assert (d["method"], d["path"], d["status"], d["decision"], d["model"]) == (
        "POST", "/v1/chat/completions", 200, "allow", "deepseek-r1")
    assert d["Ta"] == 21 and d["bytes"] == 512
    assert A.parse_access("not an access line") == {}


def test_a_pristine_chain_verifies(tmp_path):
    store = _store(tmp_path)
    problems, head = A.verify(store)
    assert problems == [] and head["seq"] == 6


def test_an_edited_line_is_detected(tmp_path):
    store = _store(tmp_path)
    f, lines = _lines(store)
    doc = json.loads(lines[1])
    doc["status"] = 200  # hide a refusal
    lines[1] = json.dumps(doc, sort_keys=True)
    f.write_text("\n".join(lines) + "\n")
    problems, _ = A.verify(store)
    assert any("seq 2: hash mismatch" in p for p in problems), problems


def test_a_deleted_line_is_detected(tmp_path):
    store = _store(tmp_path)
    f, lines = _lines(store)
    del lines[3]
    f.write_text("\n".join(lines) + "\n")
    problems, _ = A.verify(store)
    assert any("seq 5: does not follow seq 3" in p for p in problems), problems


def test_a_deleted_tail_is_detected_by_state_and_by_checkpoint(tmp_path):
    store = _store(tmp_path)
    _problems, head = A.verify(store)
    f, lines = _lines(store)
    f.write_text("\n".join(lines[:-2]) + "\n")
    problems, _ = A.verify(store)
    assert any("lines at the end were deleted" in p for p in problems)
    (store / A.STATE).write_text(json.dumps({"seq": 4, "hash": json.loads(lines[3])["hash"]}))  # state forged too
    problems, _ = A.verify(store, checkpoint=head)
    assert problems == ["checkpoint seq 6 is beyond the chain's end (seq 4): the tail was deleted"]


def test_prune_by_retention_and_cap_keeps_the_chain_verifiable(tmp_path):
    day = 86400
    store = tmp_path / "chain"
    for age in (200, 100, 1):  # three day files
        A.append(store, [{"ts": NOW - age * day, "host": "gw-01", "message": LINE, **A.parse_access(LINE)}])
    removed = A.prune(store, 180, 1 << 30, NOW)
    assert len(removed) == 1  # the 200-day-old file: past the retention
    assert A.verify(store)[0] == []
    removed = A.prune(store, 180, 1, NOW)  # a cap smaller than the store: oldest first, never the newest
    assert removed and len(A.chain_files(store)) == 1  # only the newest (the prune anchors went there)
    assert A.verify(store)[0] == []


def test_a_file_deleted_by_hand_is_detected(tmp_path):
    day = 86400
    store = tmp_path / "chain"
    for age in (3, 2, 1):
        A.append(store, [{"ts": NOW - age * day, "host": "gw-01", "message": LINE, **A.parse_access(LINE)}])
    A.chain_files(store)[1].unlink()
    problems, _ = A.verify(store)
    assert any("does not follow" in p for p in problems), problems


def test_metrics_textfile(tmp_path):
    store = _store(tmp_path)
    A.write_metrics(tmp_path / "tf", {"ts": 123.0}, store, chain_ok=1)
    prom = tmp_path / "tf" / "llmcluster_audit.prom"
    assert prom.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    text = prom.read_text()
    assert "llmcluster_audit_last_entry_timestamp_seconds 123.0" in text and "llmcluster_audit_chain_ok 1" in text


def test_cli_audit_filters_by_client_and_since(tmp_path, capsys):
    store = _store(tmp_path)
    ckpt = tmp_path / "ckpt.json"
    rc = main(["audit", "--since", "2h", "--client", "lab-admin", "--store", str(store), "--json",
               "--checkpoint", str(ckpt)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["chain_ok"] is True
    assert len(out["entries"]) == 3 and {e["client_cn"] for e in out["entries"]} == {
        "lab-admin.clients.lab.llmcluster.internal"}
    assert json.loads(ckpt.read_text())["seq"] == 6
    rc = main(["audit", "--since", "30m", "--store", str(store), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["entries"] == []


def test_cli_audit_exits_5_on_a_broken_chain(tmp_path, capsys):
    store = _store(tmp_path)
    f, lines = _lines(store)
    f.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    assert main(["audit", "--since", "1d", "--store", str(store)]) == 5
    assert "does not follow" in capsys.readouterr().err


@pytest.mark.parametrize("argv,key", [
    (["--since", "yesterday-ish"], "--since"),
    (["--since", "1d", "--store", "/nonexistent-folder"], "--store"),
    (["--since", "1d", "--checkpoint", "/nonexistent-folder/c.json"], "--checkpoint"),
])
def test_cli_audit_bad_input_is_one_line(tmp_path, capsys, argv, key):
    rc = main(["audit", *argv] if "--store" in argv else ["audit", "--store", str(_store(tmp_path)), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(key) and "Traceback" not in err[0], err


def test_cli_audit_refuses_a_missing_ssh_key(capsys):
    rc = main(["audit", "--since", "1d", "--ssh-key", "/nonexistent-key"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("--ssh-key"), err
