"""`llmcluster rollback`: two pins, rollback renders exactly the previous objects; only the pin key changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmcluster.cli import main
from llmcluster.plan.build import build_plan
from llmcluster.render.kubernetes import kubernetes_plan
from llmcluster.rollback import set_active_text
from llmcluster.validate import load_stack_file
from tests.helpers import k8s

NEW = k8s.pin("0123abcd", k8s.D2, k8s.IMAGE2)
OLD = k8s.pin("00aa11bb", k8s.D1, k8s.IMAGE1)
STACK = "prod-baremetal"


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    d = tmp_path / "stacks"
    d.mkdir()
    (d / f"Pulumi.{STACK}.yaml").write_text(k8s.stack_text([NEW, OLD]))
    os.chmod(d / f"Pulumi.{STACK}.yaml", 0o640)
    return d


def objects(path: Path):
    return kubernetes_plan(build_plan(load_stack_file(path))).objects


def test_rollback_renders_exactly_the_previous_pins_objects(stacks: Path, tmp_path: Path, capsys):
    f = stacks / f"Pulumi.{STACK}.yaml"
    before_text = f.read_text()
    new_objects = objects(f)
    # what the stack rendered when the older pin was the newest (the deployment being rolled back to)
    prev = tmp_path / "prev"
    prev.mkdir()
    (prev / f"Pulumi.{STACK}.yaml").write_text(k8s.stack_text([OLD]))
    previous_objects = objects(prev / f"Pulumi.{STACK}.yaml")
    assert new_objects != previous_objects

    assert main(["rollback", "--stack", STACK, "--stacks-dir", str(stacks)]) == 0
    assert "kubernetes.active 0 -> 1" in capsys.readouterr().out
    after = f.read_text()
    assert objects(f) == previous_objects
    # only the pin key: one line inserted, every other byte as it was; mode kept
    b, a = before_text.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(a) == len(b) + 1
    i = next(n for n, (x, y) in enumerate(zip(b, a, strict=False)) if x != y)
    assert a[i] == "    active: 1\n" and a[:i] + a[i + 1:] == b
    assert f.stat().st_mode & 0o777 == 0o640

    # roll forward: the same line changes back, nothing else
    assert main(["rollback", "--stack", STACK, "--stacks-dir", str(stacks), "--to", "0"]) == 0
    assert f.read_text() == after.replace("    active: 1\n", "    active: 0\n")
    assert objects(f) == new_objects


def test_an_existing_active_line_is_edited_in_place_with_its_comment():
    text = "config:\n  llmcluster:kubernetes:\n    active: 0  # the pin in production\n    namespace: x\n"
    assert set_active_text(text, 2) == text.replace("active: 0", "active: 2")


def test_inline_sections_are_refused():
    with pytest.raises(Exception, match="inline"):
        set_active_text("config:\n  llmcluster:kubernetes: {namespace: x}\n", 1)


@pytest.mark.parametrize("args, words", [
    (["--to", "2"], "--to: 2: the stack keeps pins 0..1"),
    (["--to", "0"], "--to: 0 is already the active pin"),
    (["--to", "x"], "--to: 'x' is not an integer"),
])
def test_bad_targets_are_one_line_errors_and_write_nothing(stacks: Path, capsys, args, words):
    f = stacks / f"Pulumi.{STACK}.yaml"
    before, mtime = f.read_bytes(), f.stat().st_mtime_ns
    assert main(["rollback", "--stack", STACK, "--stacks-dir", str(stacks), *args]) != 0
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert f.read_bytes() == before and f.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in stacks.iterdir()) == [f.name]


def test_the_oldest_pin_cannot_be_rolled_back_further(stacks: Path, capsys):
    assert main(["rollback", "--stack", STACK, "--stacks-dir", str(stacks)]) == 0
    assert main(["rollback", "--stack", STACK, "--stacks-dir", str(stacks)]) == 2
    assert "already the oldest" in capsys.readouterr().err


def test_a_systemd_or_invalid_stack_is_refused_untouched(tmp_path: Path, capsys):
    from tests.conftest import STACKS

    d = tmp_path / "s"
    d.mkdir()
    (d / f"Pulumi.{STACK}.yaml").write_bytes((STACKS / f"Pulumi.{STACK}.yaml").read_bytes())
    assert main(["rollback", "--stack", STACK, "--stacks-dir", str(d)]) == 2
    assert "serving.runtime:" in capsys.readouterr().err
    bad = k8s.stack_text([NEW, OLD]).replace(f"image: {k8s.IMAGE1}", "image: nvcr.io/x/y:latest")
    (d / f"Pulumi.{STACK}.yaml").write_text(bad)
    assert main(["rollback", "--stack", STACK, "--stacks-dir", str(d)]) == 2
    assert "pinned by tag" in capsys.readouterr().err
    assert (d / f"Pulumi.{STACK}.yaml").read_text() == bad
