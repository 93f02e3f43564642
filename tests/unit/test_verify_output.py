"""The human report of ``llmcluster verify`` / ``lab verify``: summary first (host x check group), then
only the failures with what was observed; ``--all`` every row; names never split, on a narrow or a
wide terminal; plain unwrapped text when stdout is not a terminal; the saved JSON report."""

from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

from llmcluster.verify.output import check_group, print_report, report_lines
from llmcluster.verify.run import VerifyReport, load_report, report_document, save_report

LONG = ("expected tcp/6800-7300 from storage-02 (10.42.30.12) to be accepted on the storage_public VLAN, "
        "observed: connection timed out after 3.0 s (dropped by the host firewall's input chain)")
RESULTS = [
    *({"host": h, "check": f"firewall[tcp/{p}]", "outcome": "passed", "message": ""}
      for h in ("storage-01", "storage-02") for p in ("22", "3300", "6789")),
    {"host": "storage-01", "check": "firewall[tcp/6800-7300]", "outcome": "failed", "message": LONG},
    {"host": "gpu-01", "check": "gpu[driver]", "outcome": "passed", "message": "", "detail": "570.172.08"},
    {"host": "gpu-01", "check": "gpu[fabric-manager-version-lock]", "outcome": "failed",
     "message": "nvidia-fabricmanager-570 570.124.06 != driver 570.172.08"},
    {"host": "gpu-01", "check": "model[manifest]", "outcome": "skipped", "message": "no model staged"},
    {"host": "gw-01", "check": "gateway[valid-client]", "outcome": "passed", "message": ""},
    {"host": "monitor-with-a-very-long-host-name-01", "check": "monitoring[prometheus-rules-loaded]",
     "outcome": "passed", "message": ""},
]
REPORT = VerifyReport(rc=1, stack="lab", results=RESULTS)


def tokens(lines):
    return {t for line in lines for t in line.split()}


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200, None])
def test_summary_first_then_only_failures_and_no_name_is_split(width):
    lines = report_lines(REPORT, width=width)
    assert " ".join(lines[:2]).startswith("verify lab: 9 passed, 2 failed, 1 skipped")
    failures_at = next(i for i, line in enumerate(lines) if line.startswith("2 failed check(s)"))
    assert "counts: passed/failed/skipped per" in " ".join(lines[:failures_at])
    assert any(line.split()[:2] == ["firewall", "3/1/0"] or line.split()[:2] == ["storage-01", "3/1/0"]
               for line in lines[3:failures_at])
    # only the failures are listed, each check name and host whole on one line
    rows = lines[failures_at + 1:]
    assert [line.split()[0] for line in rows if line[:4] in ("FAIL", "pass", "skip")] == ["FAIL", "FAIL"]
    for r in RESULTS:
        if r["outcome"] == "failed":
            assert any(r["check"] in line.split() for line in rows), (width, r["check"])
            assert any(line.split()[:2] == ["FAIL", r["host"]] for line in rows), (width, r["host"])
    assert "gateway[valid-client]" not in "\n".join(rows)
    # the observed value is all there, word for word, and every token whole
    assert all(t in tokens(rows) for t in LONG.split())
    if width is not None:
        assert all(len(line) <= width for line in lines if " " in line.strip()), (width, lines)
    else:  # no terminal: one line per failure
        assert any(line.endswith("input chain)") and "firewall[tcp/6800-7300]" in line for line in rows)


def test_summary_is_a_matrix_when_it_fits_else_each_host_with_its_groups_below():
    wide = report_lines(REPORT, width=200)
    header = next(line for line in wide if line.startswith("host "))
    assert header.split() == ["host", "firewall", "gpu", "model", "gateway", "monitoring"]
    storage = next(line for line in wide if line.startswith("storage-01 "))
    assert storage.split() == ["storage-01", "3/1/0", "-", "-", "-", "-"]
    gpu = next(line for line in wide if line.startswith("gpu-01 "))
    assert gpu.split() == ["gpu-01", "-", "1/1/0", "0/0/1", "-", "-"]

    narrow = report_lines(REPORT, width=60)
    at = narrow.index("gpu-01")
    assert narrow[at + 1].split() == ["gpu", "1/1/0"] and narrow[at + 2].split() == ["model", "0/0/1"]
    assert narrow[narrow.index("storage-01") + 1].split() == ["firewall", "3/1/0"]
    assert "monitor-with-a-very-long-host-name-01" in narrow


def test_all_lists_every_row_with_what_passing_checks_measured():
    lines = report_lines(REPORT, width=120, show_all=True)
    rows = [line for line in lines if line[:4] in ("FAIL", "pass", "skip")]
    assert len(rows) == len(RESULTS)
    assert any(line.startswith("pass") and "gpu[driver]" in line and line.endswith("570.172.08") for line in rows)
    assert any(line.startswith("skip") and line.endswith("no model staged") for line in rows)


def test_compact_layout_puts_the_message_under_the_check():
    lines = report_lines(REPORT, width=50)
    i = lines.index("FAIL  storage-01  firewall[tcp/6800-7300]")
    assert lines[i + 1].startswith("      expected tcp/6800-7300")


def test_check_group():
    assert check_group("firewall[tcp/6800-7300]") == "firewall"
    assert check_group("hostname") == "hostname"


@pytest.mark.parametrize("terminal,width", [(True, 60), (True, 200), (False, 60)])
def test_print_report_on_a_terminal_and_a_pipe(terminal, width):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=width, color_system="standard" if terminal else None)
    print_report(console, REPORT)
    out = buf.getvalue()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert ("\x1b[" in out) is terminal  # colour on a terminal only
    lines = plain.splitlines()
    assert lines[0] == "verify lab: 9 passed, 2 failed, 1 skipped"
    assert "firewall[tcp/6800-7300]" in plain and "gpu[fabric-manager-version-lock]" in plain
    if terminal:
        assert all(len(line) <= width for line in lines if " " in line.strip())
    else:  # a pipe: the layout of no width limit (a failure and its message on one line)
        assert any(line.startswith("FAIL") and line.endswith("input chain)") for line in lines)


def test_verify_cli_prints_summary_then_failures_and_json_is_unchanged(monkeypatch, capsys, tmp_path):
    """The CLI path (``_verify``) with the suite run replaced by the fixture report."""
    from llmcluster import cli
    from llmcluster.verify import run as R

    monkeypatch.setattr(R, "check_inventory", lambda inv, hosts: tuple(hosts))
    monkeypatch.setattr(R, "run_verify", lambda *a, **k: REPORT)
    args = SimpleNamespace(stacks_dir=None, k=None, json=False, all=False)
    saved = tmp_path / "state" / R.LAB_REPORT
    assert cli._verify("lab", tmp_path / "inv", args, ["gpu-01"], save_to=saved) == R.EXIT_FAILED
    out = capsys.readouterr().out
    assert out.index("verify lab: 9 passed") < out.index("counts: passed/failed/skipped") < out.index("FAIL ")
    assert "gateway[valid-client]" not in out
    args.json = True
    cli._verify("lab", tmp_path / "inv", args, ["gpu-01"])
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"stack", "ok", "counts", "results"} and doc["results"] == RESULTS and doc["ok"] is False
    assert json.loads(saved.read_text()) == doc


def test_saved_report_round_trips(tmp_path):
    path = save_report(REPORT, tmp_path / "r.json")
    back = load_report(path)
    assert back is not None and back.results == RESULTS and not back.ok and back.counts == REPORT.counts
    assert report_document(back) == report_document(REPORT)
    (tmp_path / "bad.json").write_text("{")
    assert load_report(tmp_path / "bad.json") is None and load_report(tmp_path / "none.json") is None
