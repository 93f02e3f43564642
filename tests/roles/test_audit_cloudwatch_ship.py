"""The AWS audit shipper (llmcluster/monitoring/audit_ship.py, installed by roles/audit_cloudwatch) run for
real against a moto server on 127.0.0.1 that checks SigV4 signatures, through a proxy that counts requests
and injects throttling; the input is a real journal written by systemd-journal-remote. Not verified here:
real CloudWatch Logs and S3 (moto only)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llmcluster.monitoring import audit_ship as A
from tests.helpers.aws_local import JOURNAL_REMOTE, MotoAws, Proxy, write_journal

GROUP = "/llmcluster/prod-aws/audit"
BUCKET = "llmcluster-prod-aws-audit-test"

pytestmark = pytest.mark.skipif(not Path(JOURNAL_REMOTE).exists(), reason="systemd-journal-remote not installed")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    m = MotoAws(tmp_path_factory.mktemp("moto"))
    m.client("logs").create_log_group(logGroupName=GROUP)
    s3 = m.client("s3")
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=BUCKET, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 180}}})
    yield m
    m.close()


@pytest.fixture
def proxy(moto):
    p = Proxy(moto.port)
    yield p
    p.close()


def _cfg(tmp: Path, proxy: Proxy, stream: str, **extra) -> dict:
    return {"region": "us-east-1", "log_group": GROUP, "stream": stream, "bucket": BUCKET, "archive_prefix": "audit/",
            "state_dir": str(tmp / "state"), "journal_dir": str(tmp / "journal"), "logs_endpoint": proxy.endpoint,
            "s3_endpoint": proxy.endpoint, "backoff_s": 0.01, "period": "hour", **extra}


def _keys(monkeypatch, moto, secret: str | None = None):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret or moto.secret_key)


def _now_us(offset_s: float = 0) -> int:
    return int((time.time() + offset_s) * 1e6)


def _events(moto, stream: str) -> list[dict]:
    out = moto.client("logs").get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True,
                                            limit=10000)["events"]
    return [json.loads(e["message"]) for e in out]


# --------------------------------------------------------------------------- batching (pure)


def test_batches_keep_the_putlogevents_quotas():
    ev = [{"timestamp": 1000 + i, "message": "x"} for i in range(10_001)]
    assert [len(b) for b in A.batches(ev)] == [10_000, 1]
    big = [{"timestamp": 1000, "message": "y" * 100_000} for _ in range(25)]
    split = A.batches(big)
    assert len(split) == 3 and all(sum(len(e["message"]) + 26 for e in b) <= A.MAX_BATCH_BYTES for b in split)
    day = [{"timestamp": 0, "message": "a"}, {"timestamp": A.MAX_SPAN_MS + 1, "message": "b"}]
    assert len(A.batches(day)) == 2, "a batch spans at most 24 hours"
    back = A.batches([{"timestamp": 5000, "message": "a"}, {"timestamp": 4000, "message": "b"}])
    assert [e["timestamp"] for e in back[0]] == [5000, 5000], "timestamps never decrease in a batch"
    huge = A.event_of(json.dumps({"ts": 1.0, "seq": 7, "message": "z" * 300_000}))
    assert len(huge["message"].encode()) + A.EVENT_OVERHEAD <= A.MAX_EVENT_BYTES and "seq 7" in huge["message"]


# --------------------------------------------------------------------------- against moto


def test_lines_arrive_in_order_and_a_restart_neither_loses_nor_duplicates(moto, proxy, tmp_path, monkeypatch):
    _keys(monkeypatch, moto)
    cfg = _cfg(tmp_path, proxy, "gw-order")
    write_journal(tmp_path / "journal", [(_now_us(-60) + i, f"request {i}") for i in range(40)])
    aws = A.Aws(cfg)
    r = A.step(cfg, aws)
    assert r["ingested"] == 40 and r["shipped"] == 40, r
    assert A.step(cfg, A.Aws(cfg))["shipped"] == 0, "nothing new: nothing sent"
    # A crash after the append but before the state was saved: the restart truncates and reads again.
    write_journal(tmp_path / "journal", [(_now_us(-30) + i, f"request {40 + i}") for i in range(25)])
    saved = (tmp_path / "state" / A.STATE).read_text()
    A.ingest(cfg, A.load_state(Path(cfg["state_dir"])), time.time())
    (tmp_path / "state" / A.STATE).write_text(saved)
    r = A.step(cfg, A.Aws(cfg))  # a new process
    assert r["ingested"] == 25 and r["shipped"] == 25, r
    got = _events(moto, "gw-order")
    assert [e["message"] for e in got] == [f"request {i}" for i in range(65)]
    assert [e["seq"] for e in got] == list(range(1, 66)), "in order, no loss, no duplicate"
    assert A.verify_segments([p.read_text() for p in A.segments(tmp_path / "state" / "chain")])[0] == []


def test_throttling_is_retried_with_backoff(moto, proxy, tmp_path, monkeypatch):
    _keys(monkeypatch, moto)
    cfg = _cfg(tmp_path, proxy, "gw-throttle")
    write_journal(tmp_path / "journal", [(_now_us(-10) + i, f"t {i}") for i in range(5)])
    proxy.throttle = 3
    assert A.step(cfg, A.Aws(cfg))["shipped"] == 5
    assert proxy.throttle == 0 and proxy.count("PutLogEvents") >= 4
    assert [e["message"] for e in _events(moto, "gw-throttle")] == [f"t {i}" for i in range(5)]


def test_an_oversize_batch_is_split(moto, proxy, tmp_path, monkeypatch):
    _keys(monkeypatch, moto)
    cfg = _cfg(tmp_path, proxy, "gw-big")
    write_journal(tmp_path / "journal", [(_now_us(-10) + i, f"{i:03d} " + "q" * 60_000) for i in range(30)])
    assert A.step(cfg, A.Aws(cfg))["shipped"] == 30
    puts = [n for _m, t, n in proxy.calls if t == "PutLogEvents"]
    assert len(puts) >= 2 and max(puts) <= A.MAX_BATCH_BYTES + 100_000, puts
    assert [e["seq"] for e in _events(moto, "gw-big")] == list(range(1, 31))


def test_sealed_segments_are_archived_locked_and_verify_alone(moto, proxy, tmp_path, monkeypatch, capsys):
    _keys(monkeypatch, moto)
    cfg = _cfg(tmp_path, proxy, "gw-archive")
    write_journal(tmp_path / "journal", [(_now_us(-7300) + i, f"old {i}") for i in range(3)]
                  + [(_now_us(-3650) + i, f"mid {i}") for i in range(2)])
    r = A.step(cfg, A.Aws(cfg))
    assert len(r["archived"]) == 2, "the segments of past hours are sealed and archived"
    write_journal(tmp_path / "journal", [(_now_us() + i, f"new {i}") for i in range(2)])
    r = A.step(cfg, A.Aws(cfg))
    assert r["archived"] == [], "the current hour is not sealed yet"
    r = A.step(cfg, A.Aws(cfg), now=time.time() + 3600)
    assert len(r["archived"]) == 1, "sealed once its hour has ended"
    s3 = moto.client("s3")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="audit/gw-archive/")["Contents"])
    assert len(keys) == 3 and all(k.startswith("audit/gw-archive/chain-") for k in keys)
    for k in keys:
        head = s3.head_object(Bucket=BUCKET, Key=k)
        assert head["ObjectLockMode"] == "COMPLIANCE", k
        assert head["ObjectLockRetainUntilDate"].timestamp() > time.time() + 179 * 86400, k
    down = tmp_path / "download"
    down.mkdir()
    for k in keys:
        (down / k.rsplit("/", 1)[1]).write_bytes(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())
    assert A.main(["verify", "--archive-dir", str(down)]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 7
    first = sorted(down.iterdir())[0]
    first.write_text(first.read_text().replace("old 1", "old X"))
    assert A.main(["verify", "--archive-dir", str(down)]) == 5
    assert "hash mismatch" in capsys.readouterr().err
    # An archived segment cannot be deleted (COMPLIANCE).
    ver = s3.head_object(Bucket=BUCKET, Key=keys[0])["VersionId"]
    with pytest.raises(Exception, match="AccessDenied|locked|retention"):
        s3.delete_object(Bucket=BUCKET, Key=keys[0], VersionId=ver)


def test_bad_credentials_are_a_clear_error(moto, proxy, tmp_path, monkeypatch, capsys):
    _keys(monkeypatch, moto, secret="not-the-secret-0000000000000000000000000")
    cfg = _cfg(tmp_path, proxy, "gw-badkey")
    (tmp_path / "ship.json").write_text(json.dumps(cfg))
    write_journal(tmp_path / "journal", [(_now_us(), "x")])
    assert A.main(["once", "--config", str(tmp_path / "ship.json")]) == 3
    err = capsys.readouterr().err
    assert "CloudWatch Logs" in err and "credentials from the environment" in err, err
    assert "not-the-secret" not in err
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert A.main(["once", "--config", str(tmp_path / "ship.json")]) == 3
    assert "no AWS credentials" in capsys.readouterr().err


def test_a_bad_configuration_is_named(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"region": "us-east-1", "log_group": "", "stream": "s", "bucket": "b",
                                                 "state_dir": str(tmp_path), "period": "week"}))
    assert A.main(["once", "--config", str(tmp_path / "c.json")]) == 3
    assert "log_group: missing or empty" in capsys.readouterr().err
