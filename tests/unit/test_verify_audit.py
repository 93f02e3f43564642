"""The audit trail's judges (llmcluster/verify/audit.py) on healthy and broken tool output: each
judge must fail on an empty, partial or wrong document. The same judges run against real tools in
tests/roles/test_audit_log_local.py and against the lab in the verification suite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmcluster.verify import audit as A

EXP = A.AuditExpectation(180, "20G", ("https://10.42.0.14:19532",))

CAT_CONFIG = """\
# /etc/systemd/journald.conf
[Journal]
#Storage=auto
#Seal=yes
SystemMaxUse=1G

# /etc/systemd/journald.conf.d/60-llmcluster-audit.conf
# llmcluster audit trail
[Journal]
Storage=persistent
Seal=yes
MaxRetentionSec=180day
SystemMaxUse=20G
SystemKeepFree=1G
"""


def test_timespans_and_sizes():
    assert A.parse_timespan("180day") == 180 * 86400
    assert A.parse_timespan("6month") == pytest.approx(6 * 2629800)
    assert A.parse_timespan("1d 12h") == 1.5 * 86400
    assert A.parse_timespan("15min") == 900
    assert A.parse_timespan("3600") == 3600
    for bad in ("", "forever", "180 parsecs", "day", "1d x"):
        assert A.parse_timespan(bad) is None, bad
    assert A.parse_size("20G") == 20 * 1024**3
    assert A.parse_size("512M") == 512 * 1024**2
    assert A.parse_size("1.5G") == int(1.5 * 1024**3)
    assert A.parse_size("4096") == 4096
    for bad in ("", "lots", "20Q", "-1G"):
        assert A.parse_size(bad) is None, bad
    assert A.parse_bool("yes") is True and A.parse_bool("0") is False and A.parse_bool("maybe") is None


def test_journald_settings_last_assignment_wins():
    s = A.journald_settings(CAT_CONFIG)
    assert s == {"SystemMaxUse": "20G", "Storage": "persistent", "Seal": "yes", "MaxRetentionSec": "180day",
                 "SystemKeepFree": "1G"}
    assert A.config_files(CAT_CONFIG) == ["/etc/systemd/journald.conf",
                                          "/etc/systemd/journald.conf.d/60-llmcluster-audit.conf"]
    assert A.journald_problems(s, EXP, "gw-01") == []


@pytest.mark.parametrize(("change", "expect"), [
    ({"Storage": "auto"}, "Storage=auto"),
    ({"Storage": "volatile"}, "Storage=volatile"),
    ({"Seal": "no"}, "not sealed"),
    ({"MaxRetentionSec": None}, "no time-based retention"),
    ({"MaxRetentionSec": "0"}, "no time-based retention"),
    ({"MaxRetentionSec": "30day"}, "less than the planned 180 days"),
    ({"MaxRetentionSec": "1month"}, "less than the planned 180 days"),
    ({"MaxRetentionSec": "eternity"}, "no time-based retention"),
    ({"SystemMaxUse": "1G"}, "expected the planned 20G"),
    ({"SystemMaxUse": None}, "SystemMaxUse=unset"),
])
def test_journald_problems_catch_each_setting(change, expect):
    s = A.journald_settings(CAT_CONFIG)
    for k, v in change.items():
        if v is None:
            s.pop(k)
        else:
            s[k] = v
    problems = A.journald_problems(s, EXP, "gw-01")
    assert any(expect in p for p in problems), problems


def test_journald_problems_on_an_empty_document():
    problems = A.journald_problems(A.journald_settings(""), EXP, "gw-01")
    assert len(problems) == 3  # storage, retention, size (Seal defaults to yes in journald)


def test_longer_retention_passes_and_the_spec_default_is_180():
    s = {**A.journald_settings(CAT_CONFIG), "MaxRetentionSec": "1y"}
    assert A.journald_problems(s, EXP, "gw-01") == []
    assert A.expectation(None) == A.AuditExpectation(180, "20G", ())
    assert A.expectation({"audit": {"retention_days": 400, "max_use": "1T", "forward_to": ["https://x:1"]}}) == \
        A.AuditExpectation(400, "1T", ("https://x:1",))


def test_restart_problems():
    assert A.restart_problems(2000, 1000, "gw") == []
    assert A.restart_problems(None, 1000, "gw")
    assert "not in force" in A.restart_problems(1000, 2000, "gw")[0]
    assert A.parse_epoch("@1796486951\n") == 1796486951 and A.parse_epoch("n/a") is None


LINE = ('10.42.1.6:51234 [05/Dec/2026:10:00:00.000] api~ inference/gpu-01 0/0/1/2/3 403 120 - - ---- 1/1/0/0/0 0/0 '
        'client="/O=llmcluster lab/OU=operators/CN=admin.lab.llmcluster.internal" serial=4F1A0C "GET {p} HTTP/1.1"')


def _entry(message, ident="haproxy", host="gw-01"):
    return {"MESSAGE": message, "SYSLOG_IDENTIFIER": ident, "_HOSTNAME": host}


def test_access_log_judge():
    m = "c0ffee"
    good = [_entry(LINE.format(p=f"/llmcluster-audit/{m}"))]
    assert A.access_log_problems(good, m, "gw") == []
    # journalctl writes non-UTF-8 messages as byte arrays
    assert A.access_log_problems([{**good[0], "MESSAGE": list(good[0]["MESSAGE"].encode())}], m, "gw") == []
    assert A.access_log_problems([], m, "gw"), "an empty journal fails"
    assert A.access_log_problems([_entry("something else")], m, "gw")
    assert any("SYSLOG_IDENTIFIER" in p for p in A.access_log_problems([_entry(m, ident="logger")], m, "gw"))
    no_dn = LINE.replace('client="/O=llmcluster lab/OU=operators/CN=admin.lab.llmcluster.internal"', 'client=""')
    assert any("subject" in p for p in A.access_log_problems([_entry(no_dn.format(p=m))], m, "gw"))
    no_serial = LINE.replace("serial=4F1A0C", "serial=")
    assert any("serial" in p for p in A.access_log_problems([_entry(no_serial.format(p=m))], m, "gw"))


def test_forwarded_judge():
    m = "feed"
    e = _entry(LINE.format(p=m))
    assert A.forwarded_problems([e], m, "collector", hostname="gw-01") == []
    assert A.forwarded_problems([], m, "collector")
    assert "not from gw-01" in A.forwarded_problems([_entry(LINE.format(p=m), host="gw-02")], m, "c", "gw-01")[0]


def test_json_entries_skip_broken_lines():
    text = json.dumps({"MESSAGE": "a"}) + "\nnot json\n\n" + json.dumps([1, 2]) + "\n" + json.dumps({"MESSAGE": "b"})
    assert [e["MESSAGE"] for e in A.parse_json_entries(text)] == ["a", "b"]


def test_verification_key():
    k = A.parse_verification_key("de18ef-facecb-c17787-89d88b/1e7540-35a4e900\n")
    assert k is not None and k.interval_usec == 900_000_000 and k.start_epoch == 0x1E7540
    assert k.start_usec == 0x1E7540 * 900_000_000
    for bad in ("", "de18ef/1e7540", "xyz/1-2", "de18ef/1e7540-0", "de18ef/1e7540-35a4e900 extra"):
        assert A.parse_verification_key(bad) is None, bad


HEADER = """\
File path: {name}
State: ARCHIVED
Compatible flags: {flags}
Incompatible flags: COMPRESSED-ZSTD KEYED-HASH COMPACT
Head realtime timestamp: Sat 2026-12-05 16:20:20 UTC ({head:x})
Tail realtime timestamp: Sat 2026-12-05 16:20:25 UTC ({tail:x})
"""


def _headers(*files):
    return {f"/c/{n}": A.parse_header(HEADER.format(name=n, flags="SEALED" if sealed else "", head=h, tail=h + 5))
            for n, sealed, h in files}


def test_seal_judge():
    out = "PASS: /c/a.journal\n=> No sealing yet\nPASS: /c/b.journal\n=> Validated from X to Y\n"
    # an old unsealed file (before sealing began), then sealed files
    headers = _headers(("a.journal", False, 1000), ("b.journal", True, 2000))
    assert A.seal_problems(0, out, headers, "gw") == []
    # nothing to verify
    assert A.seal_problems(0, "", {}, "gw")
    # a failing file
    bad = "PASS: /c/a.journal\n391b38: Invalid hash\nFAIL: /c/b.journal (Bad message)\n"
    problems = A.seal_problems(1, bad, headers, "gw")
    assert any("b.journal fails verification (Bad message)" in p for p in problems)
    assert any("exit 1" in p for p in problems)
    # no file sealed at all
    unsealed = _headers(("a.journal", False, 1), ("b.journal", False, 2))
    assert "none of the 2" in A.seal_problems(0, out, unsealed, "gw")[0]
    # an unsealed file started after sealing began: a replacement written without the key
    replaced = _headers(("a.journal", True, 1000), ("b.journal", False, 2000))
    assert "not sealed although" in A.seal_problems(0, out, replaced, "gw")[0]
    # a file journalctl did not report on
    assert any("was not verified" in p for p in A.seal_problems(0, "PASS: /c/b.journal\n", headers, "gw"))


def test_tamper_judge():
    ok, bad = (0, "PASS: /c/a.journal\n"), (1, "FAIL: /c/a.journal (Bad message)\n")
    assert A.tamper_problems(ok, bad, "x") == []
    assert "went unnoticed" in A.tamper_problems(ok, ok, "x")[0]
    assert "untouched copy" in A.tamper_problems(bad, bad, "x")[0]


def test_key_paths():
    assert A.default_key_dir("/srv/pki/lab/") == Path("/srv/pki/lab-audit-keys")
    assert A.key_path("/k", "gw-01", "ab" * 16) == Path("/k/gw-01") / ("ab" * 16 + ".key")


def test_collector_endpoint():
    assert A.collector_endpoint("https://10.42.0.14:19532") == ("10.42.0.14", 19532)
    assert A.collector_endpoint("https://10.42.0.14") == ("10.42.0.14", 19532)
    with pytest.raises(ValueError):
        A.collector_endpoint("http://10.42.0.14:19532")


def test_collector_configuration_is_valid_haproxy(tmp_path):
    plan = A.collector_plan("10.42.0.14", 19532, tmp_path, tmp_path / "c.pem", tmp_path / "chain.pem",
                            crl_file=tmp_path / "crl.pem")
    assert "bind 10.42.0.14:19532 ssl crt" in plan.config and "verify required" in plan.config
    assert f"crl-file {tmp_path / 'crl.pem'}" in plan.config
    assert plan.remote_argv[1:] == ["--listen-http=127.0.0.1:19531", f"--output={tmp_path / 'received'}/",
                                    "--split-mode=host"]
    assert "--trust" not in " ".join(plan.remote_argv), "Debian's journal-remote has no --trust (no GnuTLS)"
    assert plan.read_argv()[:3] == ["journalctl", f"--directory={tmp_path / 'received'}", "-t"]
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed here (the configuration's syntax is checked with haproxy -c)")
    # haproxy -c needs the files it names: a throwaway certificate bundle and CA.
    from llmcluster.verify.gateway import other_ca_client

    c = other_ca_client(tmp_path / "tls")
    (tmp_path / "c.pem").write_text(Path(c.cert).read_text() + Path(c.key).read_text())
    (tmp_path / "chain.pem").write_text(Path(c.cert).read_text())
    local = A.collector_plan("127.0.0.1", 19532, tmp_path, tmp_path / "c.pem", tmp_path / "chain.pem")
    local.write()
    r = subprocess.run(["haproxy", "-c", "-f", str(local.config_path)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def _fake_journal(path: Path, size: int) -> None:
    path.write_bytes(b"LPKSHHRH" + b"\0" * (size - 8))


def test_fetch_script_sends_archived_files_newest_first_within_the_cap(tmp_path):
    mid = "ab" * 16
    d = tmp_path / "journal" / mid
    d.mkdir(parents=True)
    for i, name in enumerate(["system@1-1.journal", "system@2-2.journal", "user-1000@3-3.journal"]):
        _fake_journal(d / name, 4096)
        os.utime(d / name, (1000 + i, 1000 + i))
    _fake_journal(d / "system.journal", 4096)  # active: left out
    (d / "fss").write_bytes(b"secret sealing state")  # never sent
    r = subprocess.run([sys.executable, "-c", A.FETCH, str(tmp_path / "journal"), mid, str(2 * 4096)],
                       capture_output=True, text=True, check=True)
    doc = json.loads(r.stdout)
    assert doc["files"] == ["user-1000@3-3.journal", "system@2-2.journal"]
    assert doc["left_out"] == ["system@1-1.journal"]
    got = A.unpack_fetch(doc, tmp_path / "copy")
    assert [p.name for p in got] == ["system@2-2.journal", "user-1000@3-3.journal"]
    assert not (tmp_path / "copy" / "fss").exists() and not (tmp_path / "copy" / "system.journal").exists()


def test_data_objects_reject_a_non_journal(tmp_path):
    with pytest.raises(ValueError):
        A.data_objects(b"not a journal file" + b"\0" * 300)
