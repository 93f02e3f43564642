"""roles/audit_cloudwatch run by Ansible on this machine (connection local, every path in a temporary
folder, no service started): installs the shipper with its two siblings, its configuration and a hardened
unit (checked by systemd-analyze); the second run changes nothing; bad values are refused naming the
variable. The shipper itself runs against moto in test_audit_cloudwatch_ship.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.role_local import NO_FACT_CACHE, local_play, run_playbook

ROLE = Path(__file__).resolve().parents[2] / "roles" / "audit_cloudwatch"
GOOD = {"llmcluster_aws_audit": {"log_group": "/llmcluster/prod-aws/audit", "region": "us-east-1",
                                 "logs_endpoint": "https://logs.us-east-1.amazonaws.com",
                                 "s3_endpoint": "https://s3.us-east-1.amazonaws.com", "archive_key_prefix": "audit/",
                                 "archive_period": "hour", "lock_days": 180},
        "llmcluster_aws_audit_archive_bucket": "llmcluster-prod-aws-audit-0123abcd",
        "audit_cloudwatch_manage_services": False}


def _vars(tmp: Path, **extra) -> dict:
    return {**GOOD, "audit_cloudwatch_lib_dir": str(tmp / "lib"),
            "audit_cloudwatch_config_path": str(tmp / "etc" / "ship.json"),
            "audit_cloudwatch_unit_path": str(tmp / "units" / "llmcluster-audit-ship.service"), **extra}


def _converge(d: Path, variables: dict, *args: str):
    play = local_play("audit_cloudwatch", roles=[str(ROLE)], gather_subset=["min"])
    r = run_playbook(d, play, variables, extra=args, env=NO_FACT_CACHE)
    m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)", r.stdout)
    return r.returncode, int(m.group(2)) if m else -1, r.stdout + r.stderr


def test_converges_then_changes_nothing(tmp_path):
    v = _vars(tmp_path)
    rc, changed, out = _converge(tmp_path / "run1", v)
    assert rc == 0 and changed > 0, out[-3000:]
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["audit_chain.py", "audit_ship.py", "s3_sigv4.py"]
    cfg = json.loads((tmp_path / "etc" / "ship.json").read_text())
    assert cfg["log_group"] == "/llmcluster/prod-aws/audit"
    assert cfg["bucket"] == GOOD["llmcluster_aws_audit_archive_bucket"]
    assert cfg["stream"] == "localhost" and cfg["period"] == "hour"
    assert cfg["state_dir"] == "/var/lib/llmcluster-audit-ship"
    # the installed copy runs standalone (siblings, no llmcluster package): a bad config is named
    (tmp_path / "bad.json").write_text(json.dumps({**cfg, "bucket": ""}))
    r = subprocess.run(["python3", "-E", "-s", str(tmp_path / "lib" / "audit_ship.py"), "once", "--config",
                        str(tmp_path / "bad.json")], capture_output=True, text=True, timeout=60, check=False,
                       cwd=tmp_path)
    assert r.returncode == 3 and "bucket: missing or empty" in r.stderr, r.stderr
    rc, changed, out = _converge(tmp_path / "run2", v)
    assert rc == 0 and changed == 0, out[-3000:]
    rc, changed, out = _converge(tmp_path / "check", v, "--check")
    assert rc == 0 and changed == 0, out[-3000:]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_unit_is_hardened_and_valid(tmp_path):
    rc, _c, out = _converge(tmp_path / "run", _vars(tmp_path))
    assert rc == 0, out[-3000:]
    unit = (tmp_path / "units" / "llmcluster-audit-ship.service").read_text()
    for want in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                 "SupplementaryGroups=systemd-journal", "StateDirectory=llmcluster-audit-ship"):
        assert want in unit, want
    unit_path = tmp_path / "units" / "llmcluster-audit-ship.service"
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit_path)], capture_output=True, text=True,
                       timeout=120, check=False)
    problems = [ln for ln in r.stderr.splitlines() if "llmcluster-audit-ship" in ln and "not executable" not in ln
                and "No such file" not in ln]
    assert not problems, r.stderr


@pytest.mark.parametrize(("extra", "named"), [
    ({"llmcluster_aws_audit_archive_bucket": ""}, "audit_cloudwatch_archive_bucket"),
    ({"audit_cloudwatch_region": "moon"}, "audit_cloudwatch_region"),
    ({"audit_cloudwatch_logs_endpoint": "http://logs.us-east-1.amazonaws.com"}, "audit_cloudwatch_logs_endpoint"),
    ({"audit_cloudwatch_period": "week"}, "audit_cloudwatch_period"),
    ({"audit_cloudwatch_credentials_refresh_s": 7200}, "audit_cloudwatch_credentials_refresh_s"),
])
def test_bad_values_are_refused_naming_the_variable(tmp_path, extra, named):
    rc, _c, out = _converge(tmp_path / "run", _vars(tmp_path, **extra))
    assert rc != 0 and named in out, out[-3000:]
    assert not (tmp_path / "etc" / "ship.json").exists(), "nothing configured"
