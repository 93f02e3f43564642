"""scripts/setup.sh keeps apt's and pip's output in a log: one line per step on the screen, with the
step's wall time; a failing step shows the log's last lines and its path, and stops setup (its ``logged``
function, run by bash). Under make lab (``LLMCLUSTER_PHASES`` set) each step is a row of the phase table."""

from __future__ import annotations

import os
import re
import subprocess

from tests.conftest import ROOT


def _logged_function() -> str:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    m = re.search(r"^logged\(\) \{\n.*?^\}\n", text, flags=re.S | re.M)
    assert m, "scripts/setup.sh defines logged()"
    return m.group(0)


def _run(tmp_path, steps: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    script = (f"set -euo pipefail\nLOG={tmp_path}/out/setup.log\nmkdir -p {tmp_path}/out\nsource scripts/phases.sh\n"
              f"{_logged_function()}{steps}")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=False, cwd=ROOT,
                          env={"PATH": os.environ["PATH"], **(env or {})})


def test_a_passing_step_prints_one_line_and_logs_its_output(tmp_path):
    r = _run(tmp_path, "logged 'step one' sh -c 'echo lots of pip output; echo warnings >&2'\necho after\n")
    assert r.returncode == 0 and r.stderr == ""
    assert re.fullmatch(r"setup: step one \.\.\. 0\.\d s\nafter\n", r.stdout), r.stdout
    log = (tmp_path / "out" / "setup.log").read_text()
    assert "lots of pip output" in log and "warnings" in log


def test_a_failing_step_shows_the_log_tail_and_path_and_stops(tmp_path):
    r = _run(tmp_path, "logged 'pip install' sh -c 'seq 1 100; echo E: no such package >&2; exit 3'\necho never\n")
    assert r.returncode == 1 and "never" not in r.stdout
    assert re.fullmatch(r"setup: pip install \.\.\. failed after \d+\.\d s\n", r.stdout), r.stdout
    assert r.stderr.startswith(f"setup: FAILED: pip install; the last lines of {tmp_path}/out/setup.log:\n")
    assert "E: no such package" in r.stderr and "\n100\n" in r.stderr and "\n50\n" not in r.stderr
    assert r.stderr.rstrip().endswith(f"setup: the whole log: {tmp_path}/out/setup.log")


def test_under_make_lab_each_step_is_a_timed_row_of_the_phase_table(tmp_path):
    phases = tmp_path / "out" / "lab-phases.tsv"
    env = {"LLMCLUSTER_PHASES": str(phases)}
    start = subprocess.run(["bash", "scripts/phases.sh", "start"], cwd=ROOT, env={**os.environ, **env},
                           capture_output=True, text=True, timeout=30, check=False)
    assert start.returncode == 0, start.stderr
    r = _run(tmp_path, "logged 'creating .venv' sleep 0.2\n"
                       "logged --phase 'apt-get install' 'installing a b c (apt-get)' true\n", env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"setup: creating \.venv \.\.\. 0\.[2-9] s", lines[0]), lines
    assert re.fullmatch(r"setup: installing a b c \(apt-get\) \.\.\. 0\.\d s", lines[1]), lines
    rows = [line.split("\t") for line in phases.read_text().splitlines()[1:]]
    assert [name for name, _ in rows] == ["setup / creating .venv", "setup / apt-get install"]
    assert 0.2 <= float(rows[0][1]) < 5 and float(rows[1][1]) < 5


def test_setup_sh_names_its_steps_and_the_whole_setup():
    text = (ROOT / "scripts" / "setup.sh").read_text()
    assert "source scripts/phases.sh" in text and 'phases_add setup "$SETUP_SECONDS"' in text
    # every logged step of apt or pip has a short phase name
    for line in re.findall(r"^\s*logged (.*)$", text, flags=re.M):
        assert line.startswith("--phase ") or line.startswith('"apt-get update"'), line
