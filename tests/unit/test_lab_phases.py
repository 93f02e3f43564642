"""make lab's phase table (docs/lab.md "First run: phases"): scripts/phases.sh starts the phases file
afresh (never a file it did not start), appends ``phase<TAB>seconds`` rows atomically and times make
lab's steps; ``lab up`` adds its split; :mod:`llmcluster.lab.phases` reads the file and draws the table."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from llmcluster import cli
from llmcluster.lab.phases import (PHASES_ENV, PHASES_HEADER, Phases, append_phases, phase_lines,
                                   read_phases)
from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "phases.sh"


def sh(*args: str, phases: Path | None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != PHASES_ENV}
    if phases is not None:
        env[PHASES_ENV] = str(phases)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30, check=False,
                          env=env, input=stdin)


def test_the_shell_and_python_headers_are_one():
    assert f'PHASES_HEADER="{PHASES_HEADER}"' in SCRIPT.read_text()


def test_start_add_run(tmp_path):
    f = tmp_path / "out" / "lab-phases.tsv"
    assert sh("start", phases=f).returncode == 0
    assert f.read_text() == PHASES_HEADER + "\n"
    assert sh("add", "validate", "2.5", phases=f).returncode == 0
    r = sh("run", "lab up", "bash", "-c", "sleep 0.3; echo up; exit 3", phases=f)
    assert r.returncode == 3 and r.stdout == "up\n"  # the command's status and output, untouched
    assert re.fullmatch(r"make lab: lab up: 0\.[3-9] s \(exit 3\)\n", r.stderr), r.stderr
    rows = f.read_text().splitlines()
    assert rows[:2] == [PHASES_HEADER, "validate\t2.5"] and re.fullmatch(r"lab up\t0\.[3-9]", rows[2])
    assert sorted(p.name for p in f.parent.iterdir()) == ["lab-phases.tsv"]  # no temporary file left
    # a new make lab starts the file afresh
    assert sh("start", phases=f).returncode == 0 and f.read_text() == PHASES_HEADER + "\n"


def test_a_file_make_lab_did_not_start_is_never_written(tmp_path):
    f = tmp_path / "lab-phases.tsv"
    f.write_text("precious\n")
    r = sh("start", phases=f)
    assert r.returncode == 1 and "not a phases file that make lab started" in r.stderr and "move it away" in r.stderr
    r = sh("add", "plan", "1.0", phases=f)
    assert r.returncode == 1 and "the row 'plan' is not written" in r.stderr
    r = sh("run", "plan", "true", phases=f)
    assert r.returncode == 0  # the step itself is not failed by the table
    assert append_phases(f, [("lab up / base image", 1.0)]) == f"{f}: not a phases file that make lab started: " \
                                                                  "not written"
    assert f.read_text() == "precious\n"
    assert "phases file is started by make lab" in append_phases(tmp_path / "missing.tsv", [("x", 1.0)])
    assert not (tmp_path / "missing.tsv").exists()


def test_without_the_variable_nothing_is_recorded_and_bad_input_is_refused(tmp_path):
    assert sh("add", "plan", "1.0", phases=None).returncode == 0
    r = sh("run", "plan", "true", phases=None)
    assert r.returncode == 0 and r.stderr.startswith("make lab: plan: 0.")
    assert list(tmp_path.iterdir()) == []
    r = sh("start", phases=None)
    assert r.returncode == 2 and "LLMCLUSTER_PHASES is not set" in r.stderr
    f = tmp_path / "p.tsv"
    sh("start", phases=f)
    r = sh("add", "plan", "soon", phases=f)
    assert r.returncode == 2 and r.stderr == "phases: plan: seconds must be a number, got 'soon'\n"
    assert sh("add", "too", phases=f).returncode == 2 and sh(phases=f).returncode == 2
    assert f.read_text() == PHASES_HEADER + "\n"


def test_python_appends_and_reads(tmp_path):
    f = tmp_path / "lab-phases.tsv"
    f.write_text(PHASES_HEADER + "\nvalidate\t2.0\n")
    assert append_phases(f, [("lab up / base image", 31.04), ("lab\tup / host\nstart", 2.0)]) is None
    assert f.read_text().splitlines()[2:] == ["lab up / base image\t31.0", "lab up / host start\t2.0"]
    f.write_text(f.read_text() + "garbage\nx\t-1\n\t3\ny\tnan\n")
    p = read_phases(f)
    assert p.rows == [("validate", 2.0), ("lab up / base image", 31.0), ("lab up / host start", 2.0)]
    assert p.skipped == [5, 6, 7, 8]
    assert read_phases(tmp_path / "none.tsv") is None


def test_the_table_counts_parts_once_and_shows_shares():
    p = Phases([("setup / apt-get update", 10.0), ("setup / pip install", 30.0), ("setup", 50.0),
                ("validate", 5.0), ("lab up / base image", 20.0), ("lab up / host start", 5.0), ("lab up", 30.0),
                ("converge", 15.0)], skipped=[])
    lines = phase_lines(p, {"common": 9.0, "nvidia": 3.0, "(play tasks)": 3.0}, source=Path("out/lab-phases.tsv"),
                        top=2)
    assert lines[0] == "phases    (out/lab-phases.tsv; total 100.0 s)"
    assert lines[1].split() == ["phase", "seconds", "share"]
    rows = {m[1]: [m[2], m[3]] for m in (re.fullmatch(r"\s+(\S.*?)\s{2,}(\d+\.\d)\s+(\S+)", x) for x in lines[2:-1])}
    assert rows["setup"] == ["50.0", "50.0%"] and rows["apt-get update"] == ["10.0", "10.0%"]
    assert rows["lab up"] == ["30.0", "30.0%"] and rows["base image"] == ["20.0", "20.0%"]
    assert [line.split()[0] for line in lines[2:-1]] == ["setup", "apt-get", "pip", "validate", "lab", "base",
                                                        "host", "converge"]
    assert lines[-1] == "  slowest roles: common 9.0 s (60.0%), nvidia 3.0 s (20.0%) (of 15.0 s in tasks)"
    # a phase known only by its parts (setup that failed before its total row) counts as their sum
    only_parts = phase_lines(Phases([("setup / pip install", 4.0), ("plan", 1.0)], []), None)
    assert only_parts[0] == "phases    (make lab, total 5.0 s)"
    assert only_parts[2].split()[:3] == ["setup", "4.0", "80.0%"]
    assert phase_lines(None, None) == [] and phase_lines(Phases([], []), {}) == []
    assert phase_lines(None, {"ceph": 2.0}) == ["converge  slowest roles: ceph 2.0 s (100.0%) (of 2.0 s in tasks)"]


def test_lab_up_adds_its_split_under_make_lab(tmp_path, monkeypatch, capsys):
    f = tmp_path / "lab-phases.tsv"
    f.write_text(PHASES_HEADER + "\n")
    monkeypatch.setenv(PHASES_ENV, str(f))
    cli._record_up_phases({"image_s": 25.123, "network_s": 1.04, "start_s": 7.5, "up_s": 34.0, "vm_boot_s.x": 3.0})
    assert f.read_text().splitlines()[1:] == ["lab up / base image\t25.1", "lab up / network and host disks\t1.0",
                                              "lab up / host start\t7.5"]
    f.write_text("mine\n")
    cli._record_up_phases({"image_s": 1.0})
    assert f.read_text() == "mine\n" and "lab up: phase table: " in capsys.readouterr().err
    monkeypatch.delenv(PHASES_ENV)
    cli._record_up_phases({"image_s": 1.0})  # not under make lab: nothing
    assert f.read_text() == "mine\n"


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed here")
def test_make_lab_starts_the_file_then_times_each_step(tmp_path):
    # under `make test` the parent make's flags (-w: "Entering directory") would reach this make
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    r = subprocess.run(["make", "--no-print-directory", "-n", "lab", f"OUT={tmp_path}/o"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=False, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "bash scripts/phases.sh start"  # before setup, so that setup's rows stay
    assert lines[1] == "make --no-print-directory -s setup"
    timed = [m.group(1) for m in re.finditer(r"bash scripts/phases\.sh run (\"[^\"]+\"|\S+) ", r.stdout)]
    assert timed == ["validate", "plan", '"lab up"', "converge", "verify"]
    assert not (tmp_path / "o").exists()  # make -n wrote nothing
    text = (ROOT / "Makefile").read_text()
    assert "lab: export LLMCLUSTER_PHASES := $(PHASES)" in text and "PHASES := $(OUT)/lab-phases.tsv" in text
