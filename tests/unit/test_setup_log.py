"""scripts/setup.sh keeps apt's and pip's output in a log: one line per step on the screen; a failing
step shows the log's last lines and its path, and stops setup (its ``logged`` function, run by bash)."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT


def _logged_function() -> str:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    m = re.search(r"^logged\(\) \{\n.*?^\}\n", text, flags=re.S | re.M)
    assert m, "scripts/setup.sh defines logged()"
    return m.group(0)


def _run(tmp_path, steps: str) -> subprocess.CompletedProcess:
    script = f"set -euo pipefail\nLOG={tmp_path}/out/setup.log\nmkdir -p {tmp_path}/out\n{_logged_function()}{steps}"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=False)


def test_a_passing_step_prints_one_line_and_logs_its_output(tmp_path):
    r = _run(tmp_path, "logged 'step one' sh -c 'echo lots of pip output; echo warnings >&2'\necho after\n")
    assert r.returncode == 0 and r.stdout == "setup: step one\nafter\n" and r.stderr == ""
    log = (tmp_path / "out" / "setup.log").read_text()
    assert "lots of pip output" in log and "warnings" in log


def test_a_failing_step_shows_the_log_tail_and_path_and_stops(tmp_path):
    r = _run(tmp_path, "logged 'pip install' sh -c 'seq 1 100; echo E: no such package >&2; exit 3'\necho never\n")
    assert r.returncode == 1 and "never" not in r.stdout
    assert r.stderr.startswith(f"setup: FAILED: pip install; the last lines of {tmp_path}/out/setup.log:\n")
    assert "E: no such package" in r.stderr and "\n100\n" in r.stderr and "\n50\n" not in r.stderr
    assert r.stderr.rstrip().endswith(f"setup: the whole log: {tmp_path}/out/setup.log")
