"""Issue 16's host-configuration diff (``llmcluster diff --layer hosts``) against the converged lab:
a real ``ansible-playbook --check --diff`` through the CLI, limited to the gateway's configure phase
(``--limit gw-01 --tags gateway_configure``) to keep it short.

* right after the converge: no change, exit 0 (the roles are idempotent, so the preview is quiet);
* a line planted in gw-01's ``/etc/haproxy/haproxy.cfg`` (drift a person made by hand): exit 1, the
  report names gw-01, the ``gateway`` role and the template task, and its diff removes the planted
  line; nothing on the host is changed by the preview (check mode), and the file is restored after.
"""

from __future__ import annotations

import json

import pytest

from llmcluster.cli import main

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("lab")]

CONFIG = "/etc/haproxy/haproxy.cfg"
PLANTED = "# planted by tests/lab/test_diff_hosts_lab.py: drift made by hand"


def _diff(capsys, inventory) -> tuple[int, dict]:
    rc = main(["diff", "--layer", "hosts", "--inventory", str(inventory), "--limit", "gw-01",
               "--tags", "gateway_configure", "--format", "json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err[-2000:]
    try:
        return rc, json.loads(out)
    except ValueError:
        raise AssertionError(f"not a JSON report (rc {rc}): {out[-1000:]} {err[-1000:]}") from None


def test_the_host_diff_is_quiet_after_a_converge_and_names_hand_made_drift(lab, lab_converged, capsys):
    rc, report = _diff(capsys, lab_converged)
    hosts = report["hosts"]
    assert rc == 0, json.dumps(hosts, indent=1)[:3000]
    assert hosts["summary"]["tasks_changed"] == 0 and [h["host"] for h in hosts["hosts"]] == ["gw-01"]

    original = lab.exec("gw-01", ["cat", CONFIG], check=True).stdout
    try:
        lab.exec("gw-01", ["sh", "-c", f"echo '{PLANTED}' >> {CONFIG}"], check=True)
        rc, report = _diff(capsys, lab_converged)
        assert rc == 1, json.dumps(report["hosts"], indent=1)[:3000]
        (gw,) = report["hosts"]["hosts"]
        assert gw["host"] == "gw-01" and gw["changed"] >= 1 and not gw["failed"], gw
        tasks = [t for r in gw["roles"] if r["role"] == "gateway" for t in r["tasks"]]
        task = next((t for t in tasks if t["task"] == "Write the HAProxy configuration"), None)
        assert task is not None, f"the template task is not in the report: {tasks}"
        assert f"-{PLANTED}" in task["diff"], task["diff"][-2000:]
        # a preview changes nothing: the planted line is still there
        assert PLANTED in lab.exec("gw-01", ["cat", CONFIG], check=True).stdout
    finally:
        lab.exec("gw-01", ["python3", "-c", "import sys; p, line = sys.argv[1:]; s = open(p).read(); "
                           "open(p, 'w').write(s.replace(line + '\\n', ''))", CONFIG, PLANTED], check=True)
    assert lab.exec("gw-01", ["cat", CONFIG], check=True).stdout == original
