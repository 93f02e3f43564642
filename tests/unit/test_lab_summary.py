"""``llmcluster lab summary`` (make lab's last screen) from the lab plan, a PKI export and a saved
verification report: what was built, the verification, the files, the call commands, the teardown."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from llmcluster.cli import main
from llmcluster.lab.summary import call_commands, client_netns, summary_lines
from llmcluster.verify.run import LAB_REPORT, VerifyReport, save_report
from tests.conftest import load_plan
from tests.helpers.role_local import export_lab_pki

RESULTS = [
    {"host": "gw-01", "check": "gateway[valid-client]", "outcome": "passed", "message": ""},
    {"host": "gw-01", "check": "firewall[tcp/443]", "outcome": "passed", "message": ""},
    {"host": "storage-01", "check": "firewall[tcp/6800-7300]", "outcome": "failed",
     "message": "expected accept from storage-02, observed: timed out"},
    {"host": "gpu-01", "check": "model[manifest]", "outcome": "skipped", "message": "no model staged"},
]


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lab-state")
    export_lab_pki(d)  # d/pki, as LabRuntime.write_inventory keeps it
    (d / "inventory.yml").write_text("all: {}\n")
    save_report(VerifyReport(rc=1, stack="lab", results=RESULTS), d / LAB_REPORT)
    return d


def test_summary_says_what_was_built_verified_where_and_how_to_call(state, tmp_path):
    plan = load_plan("lab")
    lines = summary_lines(plan, state, artifacts=tmp_path)
    text = "\n".join(lines)
    # what was built, from the plan
    assert "hosts     7: gpu 2 (gpu-01, gpu-02); storage 3 (storage-01, storage-02, storage-03); gateway 1 (gw-01); " \
           "monitor 1 (mon-01)" in lines
    assert any(line.startswith("VLANs     mgmt 10 10.42.0.0/24 mtu 1500; inference 20 ") for line in lines)
    assert "model     deepseek-r1 fp8: 2 replica(s) of 8 x h200 (tp 8, ep 8), heads gpu-01, gpu-02" in lines
    assert "SIMULATED" in text
    # the verification: totals, counts per host and group, the failure in full
    assert "  verify lab: 2 passed, 1 failed, 1 skipped" in lines
    assert any(line.split()[:3] == ["storage-01", "1/0/0", "-"] or line.split()[:2] == ["storage-01", "-"]
               for line in lines)
    assert any("firewall[tcp/6800-7300]" in line and line.endswith("observed: timed out") for line in lines)
    assert "gateway[valid-client]" not in text  # passed rows are counted, not listed
    # the files
    assert f"  inventory  {state / 'inventory.yml'}" in lines and f"  PKI        {state / 'pki'}" in lines
    assert f"  rendered   {tmp_path}" in lines
    # the tear-down
    assert lines[-1].startswith("tear down: llmcluster lab down")
    # the summary comes before the commands
    assert text.index("verify lab:") < text.index("call the model") < text.index("tear down")


def test_the_call_commands_use_the_plan_and_the_export(state):
    plan = load_plan("lab")
    netns = client_netns(plan)
    assert netns == "llh-probe-clients"  # the probe of zone clients, the api flow's source
    calls = call_commands(plan, state / "pki", netns=netns)
    argv = shlex.split(calls.curl)
    assert argv[:5] == ["ip", "netns", "exec", netns, "curl"]
    opt = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    assert calls.client == "client-lab-analyst" == plan.serving.gateway.access.caller_of()
    for key in ("--cacert", "--cert", "--key"):
        assert Path(opt[key]).is_file(), key  # real files of the export
    assert opt["--cert"].endswith("/certs/client-lab-analyst.pem")
    assert opt["--resolve"] == "api.lab.llmcluster.internal:443:10.42.1.2"
    assert argv[-1] == "https://api.lab.llmcluster.internal:443/v1/chat/completions"
    assert '"model": "deepseek-r1"' in opt["--data-binary"]
    chat = shlex.split(calls.chat)
    assert chat[:4] == ["ip", "netns", "exec", netns] and chat[5:8] == ["chat", "--stack", "lab"]
    compile("\n".join(calls.python), "snippet", "exec")  # the OpenAI snippet is valid Python
    assert any("load_cert_chain" in line and "client-lab-analyst.key" in line for line in calls.python)


def test_summary_without_a_report_or_export_says_what_to_run(tmp_path):
    lines = summary_lines(load_plan("lab"), tmp_path)
    assert "verify    no report yet: run `llmcluster lab verify`" in lines
    assert any(line.startswith("  inventory") and line.endswith("(not written: `llmcluster lab up`)")
               for line in lines)


def test_lab_summary_cli(state, capsys):
    assert main(["lab", "summary", "--state-dir", str(state), "--artifacts", str(state)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("llmcluster lab lab:") and "verify lab: 2 passed, 1 failed" in out and err == ""
    assert f"chat --stack lab --state-dir {state}" in out


def test_the_phase_table_and_the_slowest_roles_when_they_were_measured(state, tmp_path, monkeypatch, capsys):
    from llmcluster.lab.phases import CONVERGE_ROLES, PHASES_ENV, PHASES_HEADER

    d = tmp_path / "state"
    d.mkdir()
    (d / "inventory.yml").write_text("all: {}\n")
    phases = tmp_path / "lab-phases.tsv"
    phases.write_text(PHASES_HEADER + "\nsetup / pip install\t60.0\nsetup\t80.0\nvalidate\t2.0\n"
                      "lab up / base image\t30.0\nlab up\t40.0\nconverge\t70.0\nverify\t8.0\n")
    (d / CONVERGE_ROLES).write_text('{"roles": {"nvidia": 12.0, "common": 30.5, "ceph": 20.0}, "plays": []}\n')
    lines = summary_lines(load_plan("lab"), d, phases=phases)
    at = lines.index(f"phases    ({phases}; total 200.0 s)")
    assert lines[at + 1].split() == ["phase", "seconds", "share"]
    assert lines[at + 2].split() == ["setup", "80.0", "40.0%"] and lines[at + 3].split() == ["pip", "install", "60.0",
                                                                                             "30.0%"]
    assert lines[at + 8].split() == ["verify", "8.0", "4.0%"]
    assert lines[at + 9] == "  slowest roles: common 30.5 s (48.8%), ceph 20.0 s (32.0%), nvidia 12.0 s (19.2%) " \
                            "(of 62.5 s in tasks)"
    assert lines.index("verify    no report yet: run `llmcluster lab verify`") < at < lines.index("files")
    # the CLI: make lab names the file in the environment; --phases names it by hand
    monkeypatch.setenv(PHASES_ENV, str(phases))
    assert main(["lab", "summary", "--state-dir", str(d)]) == 0
    assert re.search(r"\n  lab up +40\.0 +20\.0%\n    base image +30\.0 +15\.0%\n", capsys.readouterr().out)
    monkeypatch.delenv(PHASES_ENV)
    assert main(["lab", "summary", "--state-dir", str(d), "--phases", str(phases)]) == 0
    assert f"phases    ({phases}; total 200.0 s)" in capsys.readouterr().out


def test_no_phase_table_when_nothing_was_measured(state, tmp_path, monkeypatch, capsys):
    from llmcluster.lab.phases import PHASES_ENV

    lines = summary_lines(load_plan("lab"), state, phases=tmp_path / "none.tsv")
    assert not any(line.startswith("phases") or "slowest roles" in line for line in lines)
    assert summary_lines(load_plan("lab"), state) == lines
    monkeypatch.setenv(PHASES_ENV, str(tmp_path / "none.tsv"))  # make lab's file is not there: no table
    assert main(["lab", "summary", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "\nphases " not in out and "slowest roles" not in out
    # a --phases file named by hand must be there
    assert main(["lab", "summary", "--state-dir", str(state), "--phases", str(tmp_path / "none.tsv")]) != 0
    assert capsys.readouterr().err.strip() == f"--phases: {tmp_path / 'none.tsv'}: no such phases file"
