"""Commands that write a folder (``plan --out``, ``pki export --out``) never delete or overwrite what
they did not write, and replace their own previous output atomically.

A folder is ours when it holds ``.llmcluster-export.json`` (the files we wrote); anything else in
it survives byte for byte. A non-empty folder that is not ours is refused (exit 2, ``<DIR>:
<message>``) unless ``--replace`` is given, which writes beside the foreign files and never over
them. A failure while writing leaves the previous output as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmcluster.cli import main
from tests.conftest import STACKS, load_spec
from tests.helpers.fs import changes, snapshot

MANIFEST = ".llmcluster-export.json"


def cli(*args: str) -> int:
    return main([*args])


def plan_cmd(out: Path | str, *extra: str) -> list[str]:
    return ["plan", "--stack", "lab", "--stacks-dir", str(STACKS), "--out", str(out), *extra]


def pki_cmd(out: Path | str, *extra: str) -> list[str]:
    return ["pki", "export", "--stack", "lab", "--stacks-dir", str(STACKS), "--offline", "--out", str(out), *extra]


COMMANDS = {"plan": plan_cmd, "pki": pki_cmd}


@pytest.fixture(scope="module")
def lab_eval():
    from llmcluster.offline import evaluate

    return evaluate(load_spec("lab"))


@pytest.fixture(scope="module")
def lab_pki():
    from llmcluster.pki_export import from_offline

    return from_offline(load_spec("lab"))


def _foreign(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "notes.txt").write_text("mine, not llmcluster's\n")
    (d / "sub").mkdir(exist_ok=True)
    (d / "sub" / "data.bin").write_bytes(bytes(range(256)))
    os.chmod(d / "sub" / "data.bin", 0o600)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("cmd", COMMANDS)
def test_a_folder_with_unrelated_files_is_refused_and_survives(cmd, tmp_path, capsys):
    d = tmp_path / "out"
    _foreign(d)
    before = snapshot(tmp_path)
    assert cli(*COMMANDS[cmd](d)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{d}: ") and len(err.splitlines()) == 1, err
    assert "--replace" in err
    assert changes(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("cmd", COMMANDS)
def test_replace_writes_beside_unrelated_files_and_never_over_them(cmd, tmp_path, capsys):
    d = tmp_path / "out"
    _foreign(d)
    foreign = {k: v for k, v in snapshot(d).items()}
    for _ in range(2):  # a second run replaces its own files, still beside the foreign ones
        assert cli(*COMMANDS[cmd](d, "--replace")) == 0, capsys.readouterr().err
        now = snapshot(d)
        assert {k: now[k] for k in foreign} == foreign
        assert (d / MANIFEST).is_file()
        written = set(json.loads((d / MANIFEST).read_text())["files"])
        assert not written & set(foreign)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_replace_refuses_a_file_it_did_not_write(cmd, tmp_path, capsys):
    d = tmp_path / "out"
    d.mkdir()
    clash = d / ("plan.json" if cmd == "plan" else "root-ca.pem")
    clash.write_text("someone else's\n")
    before = snapshot(tmp_path)
    assert cli(*COMMANDS[cmd](d, "--replace")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{d}: ") and clash.name in err, err
    assert changes(before, snapshot(tmp_path)) == []


def test_a_pki_export_is_not_replaced_by_plan_artifacts(tmp_path, capsys):
    d = tmp_path / "out"
    assert cli(*pki_cmd(d)) == 0
    before = snapshot(tmp_path)
    assert cli(*plan_cmd(d)) == 2
    assert "pki" in capsys.readouterr().err
    assert changes(before, snapshot(tmp_path)) == []


# --------------------------------------------------------------------------- our own output


def test_plan_out_replaces_its_previous_output(lab_eval, tmp_path):
    from llmcluster.render.artifacts import write_artifacts

    d = tmp_path / "out"
    first = write_artifacts(lab_eval, d)
    manifest = json.loads((d / MANIFEST).read_text())
    assert manifest["kind"] == "plan"
    assert sorted(manifest["files"]) == sorted(str(p.relative_to(d)) for p in first)
    # A file the previous run wrote that this run does not: removed (it was ours).
    (d / "hosts" / "gone-01").mkdir()
    (d / "hosts" / "gone-01" / "qos.sh").write_text("old\n")
    manifest["files"].append("hosts/gone-01/qos.sh")
    (d / MANIFEST).write_text(json.dumps(manifest))
    # A file the user added to our folder: kept.
    (d / "README.local").write_text("kept\n")
    second = write_artifacts(lab_eval, d)
    assert sorted(second) == sorted(first)
    assert not (d / "hosts" / "gone-01").exists()
    assert (d / "README.local").read_text() == "kept\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "no staging folder left behind"


def test_pki_export_replaces_its_previous_export(lab_pki, tmp_path):
    from llmcluster.pki_export import export

    plan, material = lab_pki
    d = tmp_path / "pki"
    export(plan, material, d, lab_tests=True)
    (d / "local.txt").write_text("kept\n")
    export(plan, material, d, lab_tests=True)
    assert (d / "local.txt").read_text() == "kept\n"
    assert (d / "manifest.json").is_file() and (d / MANIFEST).is_file()
    assert oct(d.stat().st_mode & 0o777) == oct(0o700)
    assert all((d / "private" / p).stat().st_mode & 0o077 == 0 for p in os.listdir(d / "private"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pki"]


def test_an_export_written_before_the_manifest_existed_is_ours(lab_pki, tmp_path):
    """Lab state folders hold exports from before ``.llmcluster-export.json``: recognised by their layout."""
    from llmcluster.pki_export import export

    plan, material = lab_pki
    d = tmp_path / "pki"
    export(plan, material, d, lab_tests=True)
    (d / MANIFEST).unlink()
    (d / "local.txt").write_text("kept\n")
    export(plan, material, d, lab_tests=True)
    assert (d / "local.txt").read_text() == "kept\n" and (d / MANIFEST).is_file()


def test_plan_out_written_before_the_manifest_existed_is_ours(lab_eval, tmp_path):
    from llmcluster.render.artifacts import write_artifacts

    d = tmp_path / "out"
    write_artifacts(lab_eval, d)
    (d / MANIFEST).unlink()
    (d / "switches" / "my-notes.txt").write_text("kept\n")
    write_artifacts(lab_eval, d)
    assert (d / "switches" / "my-notes.txt").read_text() == "kept\n"


def test_out_dot_writes_into_an_empty_current_folder(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert cli(*plan_cmd(".")) == 0, capsys.readouterr().err
    assert (work / "plan.json").is_file() and Path.cwd() == work and os.getcwd() == str(work)
    assert cli(*plan_cmd(".")) == 0, "our own previous output, in the current folder"
    (work / "mine.txt").write_text("x")
    assert cli(*plan_cmd(".")) == 0
    assert (work / "mine.txt").read_text() == "x"


# --------------------------------------------------------------------------- failures while writing


def test_a_crash_while_rendering_leaves_the_previous_plan_output_intact(lab_eval, tmp_path, monkeypatch):
    from llmcluster.render import tc
    from llmcluster.render.artifacts import write_artifacts

    d = tmp_path / "out"
    write_artifacts(lab_eval, d)
    (d / "mine.txt").write_text("x")
    before = snapshot(tmp_path)
    from llmcluster.offline import evaluate

    other = evaluate(load_spec("lab"))  # a new PKI: every pki/ file would change

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tc, "render_host_tc", boom)
    with pytest.raises(OSError):
        write_artifacts(other, d)
    assert changes(before, snapshot(tmp_path)) == []


def test_a_failing_write_leaves_the_previous_outputs_intact(lab_eval, lab_pki, tmp_path, monkeypatch):
    """The disk fills up after a few files: the previous output is untouched, nothing is left over."""
    from llmcluster import outdir
    from llmcluster.errors import SpecError
    from llmcluster.pki_export import export
    from llmcluster.render.artifacts import write_artifacts

    plan, material = lab_pki
    write_artifacts(lab_eval, tmp_path / "out")
    export(plan, material, tmp_path / "pki", lab_tests=True)
    before = snapshot(tmp_path)
    real = outdir._write_file
    calls = []

    def flaky(path, data, mode):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(28, "No space left on device", str(path))
        return real(path, data, mode)

    monkeypatch.setattr(outdir, "_write_file", flaky)
    for write in (lambda: write_artifacts(lab_eval, tmp_path / "out"),
                  lambda: export(plan, material, tmp_path / "pki", lab_tests=True),
                  lambda: write_artifacts(lab_eval, tmp_path / "new" / "deeper")):
        calls.clear()
        with pytest.raises(SpecError) as exc:
            write()
        assert "No space left on device" in str(exc.value)
        assert changes(before, snapshot(tmp_path)) == []


def test_a_crash_in_pki_export_leaves_the_previous_export_intact(lab_pki, tmp_path, monkeypatch):
    from llmcluster import pki_export
    from llmcluster.pki_export import export

    plan, material = lab_pki
    d = tmp_path / "pki"
    export(plan, material, d, lab_tests=True)
    before = snapshot(tmp_path)

    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(pki_export, "_expired_client", boom)
    with pytest.raises(RuntimeError):
        export(plan, material, d, lab_tests=True)
    assert changes(before, snapshot(tmp_path)) == []
