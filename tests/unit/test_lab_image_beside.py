"""make lab builds the lab's base image beside setup's pip install (issue 18, the first run's time):
``python3 -m llmcluster.lab.image`` needs only the standard library, ``lab up`` waits for it on the image
cache's lock, and its phase row and setup's rows go into one phases file without losing a row."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import llmcluster.lab.image as I
from llmcluster.lab.phases import PHASES_HEADER, append_phases, read_phases
from tests.conftest import ROOT

PHASE = "setup / base image, built beside it"


def _fake_cached_image(cache: Path) -> Path:
    final = cache / I.image_key()
    (final / "rootfs/usr/sbin").mkdir(parents=True)
    (final / "rootfs/usr/sbin/sshd").write_text("")
    (final / "image.json").write_text(json.dumps({"key": I.image_key()}))
    return final


def _beside(cache: Path, phases: Path, *args: str) -> subprocess.Popen:
    # -S: no site-packages at all, as on a machine whose python3 has none of the venv's packages
    env = {"PATH": os.environ["PATH"], "LLMCLUSTER_LAB_CACHE": str(cache), "LLMCLUSTER_PHASES": str(phases)}
    return subprocess.Popen([sys.executable, "-S", "-m", "llmcluster.lab.image", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_machine_python_finds_a_cached_image_with_the_standard_library_only(tmp_path):
    cache, phases = tmp_path / "cache", tmp_path / "phases.tsv"
    final = _fake_cached_image(cache)
    phases.write_text(PHASES_HEADER + "\n")
    p = _beside(cache, phases, "--phase", PHASE)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert f"{final.name} found in the cache" in out
    assert phases.read_text() == PHASES_HEADER + "\n"  # nothing built: no row


def test_it_waits_for_a_build_that_holds_the_cache_lock(tmp_path):
    """What lab up does when the image is still building beside setup: the same lock, then the cache hit."""
    cache, phases = tmp_path / "cache", tmp_path / "phases.tsv"
    _fake_cached_image(cache)
    with open(cache / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        p = _beside(cache, phases)
        time.sleep(1.5)
        assert p.poll() is None, "it did not wait for the lock"
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and "found in the cache" in out, err


def test_a_build_adds_its_row(monkeypatch, tmp_path, capsys):
    phases = tmp_path / "phases.tsv"
    phases.write_text(PHASES_HEADER + "\n")
    monkeypatch.setenv("LLMCLUSTER_PHASES", str(phases))
    built = I.BaseImage("k", tmp_path / "k" / "rootfs", True, 42.04, {})
    monkeypatch.setattr(I, "ensure_base_image", lambda **kw: built)
    assert I.main(["--phase", PHASE]) == 0
    assert read_phases(phases).rows == [(PHASE, 42.0)]
    assert "k built in 42.0 s" in capsys.readouterr().out


def test_a_failed_build_is_one_line_and_exit_1(monkeypatch, capsys):
    def fail(**kw):
        raise I.LabError("debootstrap is not available and could not be installed")

    monkeypatch.setattr(I, "ensure_base_image", fail)
    assert I.main([]) == 1
    err = capsys.readouterr().err
    assert err == "base image: debootstrap is not available and could not be installed\n"


@pytest.mark.parametrize("n", [25])
def test_two_writers_at_once_lose_no_row(tmp_path, n):
    """setup's rows (scripts/phases.sh) and the image's row (llmcluster.lab.phases) are written by two
    processes at the same time: each read-and-replace holds the folder's lock."""
    phases = tmp_path / "out" / "lab-phases.tsv"
    phases.parent.mkdir()
    phases.write_text(PHASES_HEADER + "\n")
    script = "; ".join(f"bash {ROOT}/scripts/phases.sh add shell-{i} {i}" for i in range(n))
    shell = subprocess.Popen(["bash", "-c", script], env={**os.environ, "LLMCLUSTER_PHASES": str(phases)})
    for i in range(n):
        assert append_phases(phases, [(f"python-{i}", float(i))]) is None
    assert shell.wait(timeout=120) == 0
    names = {name for name, _ in read_phases(phases).rows}
    assert names == {f"{w}-{i}" for w in ("shell", "python") for i in range(n)}
    assert sorted(p.name for p in phases.parent.iterdir()) == ["lab-phases.tsv"]  # no lock or temporary file
