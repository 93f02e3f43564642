"""Ordinary mistakes on the command line: every one is exit 2 with ``<where>: <message>`` lines,
never an internal error (exit 70), a short answer, and nothing written anywhere.

Each case runs ``llmcluster.cli.main`` in this process (a few through a real subprocess) in a
playground folder holding the usual suspects: a regular file, a folder of someone else's files,
an empty folder, a symlink loop, a dangling symlink, a copy of a stack file. Ansible, the lab,
Pulumi and preflight checks are replaced by tripwires: a case must be refused before any of them
runs. The bounds of numeric options are those of :mod:`llmcluster.plan.capacity` (the spec's own
field limits where it has one, checked here too); a refused number must be refused at once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmcluster.cli import main
from tests.conftest import ROOT, STACKS
from tests.helpers.fs import changes, snapshot

LONG = "n" * 300              # longer than NAME_MAX
NUL = "lab\0x"
S = str(STACKS)
PAGE = 4096


# --------------------------------------------------------------------------- the playground


@pytest.fixture(scope="module")
def playground(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("play")
    (root / "f").write_text("a regular file\n")
    (root / "d").mkdir()
    (root / "d" / "theirs.txt").write_text("someone else's\n")
    (root / "e").mkdir()
    (root / "clash").mkdir()
    for name in ("plan.json", "root-ca.pem"):
        (root / "clash" / name).write_text("not llmcluster's\n")
    (root / "badmanifest").mkdir()
    (root / "badmanifest" / ".llmcluster-export.json").write_text("{not json")
    (root / "escape").mkdir()
    (root / "escape" / ".llmcluster-export.json").write_text(
        '{"tool": "llmcluster", "kind": "plan", "files": ["../f"]}')
    for kind, other in (("plan", "pki"), ("pki", "plan")):
        (root / f"{kind}-output").mkdir()
        (root / f"{kind}-output" / ".llmcluster-export.json").write_text(
            f'{{"tool": "llmcluster", "kind": "{kind}", "files": ["x.txt"]}}')
        (root / f"{kind}-output" / "x.txt").write_text(other)
    (root / "stk").mkdir()
    (root / "stk" / "Pulumi.lab.yaml").write_bytes((STACKS / "Pulumi.lab.yaml").read_bytes())
    os.symlink("loop", root / "loop")
    os.symlink("nowhere", root / "dangling")
    return root


class Tripwire(AssertionError):
    """Something that must not run for a refused command ran."""


@pytest.fixture(autouse=True)
def tripwires(monkeypatch, playground):
    import importlib

    import llmcluster.converge
    import llmcluster.lab
    import llmcluster.pki_export
    import llmcluster.verify.run

    preflight = importlib.import_module("llmcluster.validate.preflight")  # the package exports a function so named

    def trip(what):
        def f(*a, **k):
            raise Tripwire(f"{what} ran for a command that should have been refused")
        return f

    monkeypatch.setattr(llmcluster.converge, "run_playbook", trip("ansible-playbook"))
    monkeypatch.setattr(llmcluster.verify.run, "run_verify", trip("the verification suite"))
    monkeypatch.setattr(llmcluster.verify.run, "check_inventory", trip("ansible-inventory"))
    monkeypatch.setattr(llmcluster.lab, "LabRuntime", trip("the lab"))
    monkeypatch.setattr(llmcluster.lab, "lab_down", trip("lab down"))
    monkeypatch.setattr(llmcluster.pki_export, "from_pulumi", trip("pulumi stack output"))
    monkeypatch.setattr(preflight, "preflight_findings", trip("preflight"))
    monkeypatch.chdir(playground)
    monkeypatch.delenv("LLMCLUSTER_DEBUG", raising=False)
    monkeypatch.delenv("LLMCLUSTER_STACKS_DIR", raising=False)


# --------------------------------------------------------------------------- the cases

#: (argv, where): every stderr line is ``<where>: <message>`` (``where*``: a shortened where starting so).
CASES: list[tuple[list[str], str]] = []


def case(where: str, *argv: str) -> None:
    CASES.append((list(argv), where))


PLAN = ("plan", "--stack", "lab", "--stacks-dir", S)
PKI = ("pki", "export", "--stack", "lab", "--stacks-dir", S, "--offline")

# --out: what a write must refuse (plan --out, pki export --out).
for cmd in (PLAN, PKI):
    for out, where in (
        ("f", "f"),                                  # an existing regular file
        ("f/", "f/"),
        ("f/sub", "f/sub"),                          # a path through a regular file
        ("f/sub/deeper", "f/sub/deeper"),
        ("e/../f", "e/../f"),
        ("stk/Pulumi.lab.yaml", "stk/Pulumi.lab.yaml"),   # a stack file
        ("/proc/llmcluster-nope", "/proc/llmcluster-nope"),  # nowhere to create a folder
        ("/proc/llmcluster-nope/deeper", "/proc/llmcluster-nope/deeper"),
        ("/proc/self/status/x", "/proc/self/status/x"),
        (LONG, "n" * 100 + "*"),                     # a name longer than NAME_MAX (shown shortened)
        (f"e/{LONG}", "e/" + "n" * 98 + "*"),
        (f"new/{LONG}/x", "new/" + "n" * 96 + "*"),
        ("/" + "/".join(["x" * 200] * 25), "/" + "x" * 99 + "*"),  # longer than PATH_MAX
        ("loop", "loop"),                            # a symlink loop
        ("loop/sub", "loop/sub"),
        ("dangling", "dangling"),                    # a symlink to nothing
        (".", "."),                                  # the (non-empty) current folder
        ("..", ".."),
        ("d", "d"),                                  # someone else's folder
        ("", "''"),
        ("badmanifest", "badmanifest"),              # a manifest we did not write
        ("escape", "escape"),                        # a manifest naming files outside the folder
        ("out\0x", "out\\0x"),
    ):
        case(where, *cmd, "--out", out)
    case("clash", *cmd, "--out", "clash", "--replace")   # --replace never overwrites what is not ours
case("pki-output", *PLAN, "--out", "pki-output")         # another command's output
case("plan-output", *PKI, "--out", "plan-output")

# --stacks-dir and --stack, for every command that reads a stack.
USERS = {
    "plan": ("plan",),
    "inventory": ("inventory", "--list"),
    "pki": ("pki", "export", "--offline", "--out", "new-pki"),
    "converge": ("converge",),
    "verify": ("verify",),
    "lab": ("lab", "status"),
}
for cmd in USERS.values():
    for sd in ("f", "f/sub", "loop", LONG, "nonexistent", "/proc/llmcluster-nope", "dangling", "", "e\0x"):
        case("--stacks-dir", *cmd, "--stack", "lab", "--stacks-dir", sd)
    for stack in ("nope", LONG, "a/b", "../stacks/Pulumi.lab", "", NUL, "lab yaml"):
        case("--stack", *cmd, "--stack", stack, "--stacks-dir", S)
    case("--stack", *cmd, "--stack", "lab", "--stacks-dir", "e")          # a folder without stacks
for sd, where in (("f", "--stacks-dir"), ("loop", "--stacks-dir"), (LONG, "--stacks-dir"),
                  ("nonexistent", "--stacks-dir"), ("e", "e"), ("", "--stacks-dir")):
    case(where, "validate", "--stacks-dir", sd)

# Stack files named on the command line.
for path, where in (("f", "f"), ("f/sub", "f/sub"), ("loop", "loop"), (LONG, "n" * 100 + "*"), ("e", "e"),
                    ("/proc/llmcluster-nope", "/proc/llmcluster-nope"), ("dangling", "dangling"),
                    ("/dev/null", "/dev/null"), ("", "''"), ("stk\0x", "stk\\0x"),
                    ("nonexistent.yaml", "nonexistent.yaml")):
    case(where, "validate", path)
case("f", "validate", "stk/Pulumi.lab.yaml", "f")   # one bad file among good ones

# Numbers: bounded before any work.
SIZE = ("size", "--model", "deepseek-r1", "--gpu", "h200")
for opt, values in (
    ("--gpus-per-node", ("0", "-1", "73", "1000000000", str(10 ** 30), "x", "1.5", "", "9" * 5000)),
    ("--context", ("0", "-5", "1048577", str(10 ** 12), "1e6", "nan")),
    ("--concurrency", ("0", "-3", "1048577", "1000000000", "nan", "0x10")),
):
    for v in values:
        case(opt, *SIZE, opt, v)
case("error", *SIZE, "--context", "500000")            # within the bound, above the model's window
case("error", "size", "--model", "nope", "--gpu", "h200")
case("error", "size", "--model", "deepseek-r1", "--gpu", "nope")
case("error", *SIZE, "--precision", "int3")
case("error", "size", "--model", "deepseek-r1", "--gpu", "a100-80gb", "--precision", "fp8")
for v in ("0", "-1", "nan", "inf", "601", "x", "1e400"):
    case("--timeout", "validate", "--preflight", "--timeout", v, str(STACKS / "Pulumi.lab.yaml"))
for v in ("0", "-1", "257", "1000000000", "x"):
    case("--forks", "converge", "--stack", "lab", "--stacks-dir", S, "--forks", v)

# inventory --host, converge / verify --inventory, --playbook, lab --state-dir.
for host in ("nope", "", LONG, "GPU-01", "gpu-01\0"):
    case("--host", "inventory", "--stack", "lab", "--stacks-dir", S, "--host", host)
for inv in ("nonexistent", "loop", LONG, "f/sub", "dangling", ""):
    case("--inventory", "converge", "--inventory", inv)
    case("--inventory", "verify", "--stack", "lab", "--stacks-dir", S, "--inventory", inv)
for pb in ("nonexistent", "e", "loop", LONG, "dangling"):
    case("--playbook", "converge", "--inventory", "f", "--playbook", pb)
case("--stack", "converge")
for sd in ("f", "f/sub", "loop", LONG):
    case("--state-dir", "lab", "status", "--stack", "lab", "--stacks-dir", S, "--state-dir", sd)
    case("--state-dir", "lab", "down", "--state-dir", sd)

# Usage mistakes: one line too.
case("COMMAND", "bogus")
case("llmcluster", "--bogus")
case("llmcluster plan", "plan")
case("--out", "plan", "--stack", "lab", "--out")
case("llmcluster size", "size", "--gpu", "h200")
case("llmcluster inventory", "inventory", "--stack", "lab")
case("action", "pki", "frobnicate", "--stack", "lab", "--out", "x")
case("--kv-dtype", *SIZE, "--kv-dtype", "int4")


def _id(argv: list[str]) -> str:
    text = " ".join(a.replace("\0", "\\0") for a in argv).replace(S, "S")
    return text if len(text) < 90 else text[:70] + "..." + text[-15:]


def _check(code: int, out: str, err: str, where: str) -> None:
    assert code == 2, f"exit {code}\n{err}"
    assert "internal error" not in err and "Traceback" not in err + out, err
    assert len((out + err).encode()) < PAGE, f"{len((out + err).encode())} bytes of output"
    lines = err.splitlines()
    assert lines, "no message"
    for line in lines:
        if where.endswith("*"):
            assert line.startswith(where[:-1]) and re.search(r"\.\.\.[^:]*: \S", line), \
                f"not '{where}: <message>': {line!r}"
        else:
            assert line.startswith(f"{where}: ") and len(line) > len(where) + 2, f"not '{where}: <message>': {line!r}"


@pytest.mark.parametrize(("argv", "where"), CASES, ids=[_id(a) for a, _ in CASES])
def test_bad_input_is_a_clean_error_and_writes_nothing(argv, where, playground, capsys):
    before, stacks = snapshot(playground), snapshot(STACKS)
    started = time.monotonic()
    code = main(argv)
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    _check(code, captured.out, captured.err, where)
    assert changes(before, snapshot(playground)) == [], "the playground changed"
    assert changes(stacks, snapshot(STACKS)) == [], "the stacks changed"
    assert elapsed < 10, f"{elapsed:.1f}s to refuse"


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 100


# --------------------------------------------------------------------------- real processes


@pytest.mark.parametrize(("argv", "where"), [
    # l40s: no NVLink, so every divisor up to gpus-per-node was a TP size to try (half an hour)
    (["size", "--model", "deepseek-r1", "--gpu", "l40s", "--gpus-per-node", "1000000000"], "--gpus-per-node"),
    (["size", "--model", "deepseek-r1-distill-qwen-7b", "--gpu", "l40s", "--gpus-per-node", "72", "--concurrency",
      str(10 ** 12)], "--concurrency"),
    (["size", "--model", "deepseek-r1", "--gpu", "h100", "--context", str(10 ** 40)], "--context"),
    (["plan", "--stack", "lab", "--stacks-dir", S, "--out", "f"], "f"),
    (["pki", "export", "--stack", "lab", "--stacks-dir", S, "--offline", "--out", "d"], "d"),
    (["validate", "--stacks-dir", "loop"], "--stacks-dir"),
], ids=lambda x: _id(x) if isinstance(x, list) else None)
def test_in_a_real_process(argv, where, playground):
    before = snapshot(playground)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LLMCLUSTER_DEBUG", None)
    r = subprocess.run([sys.executable, "-m", "llmcluster.cli", *argv], capture_output=True, text=True,
                       cwd=playground, env=env, timeout=30)
    _check(r.returncode, r.stdout, r.stderr, where)
    assert changes(before, snapshot(playground)) == []


def test_sizing_at_the_bounds_is_fast():
    """The largest inputs the bounds allow: answered (or refused as infeasible) in well under a second each."""
    from llmcluster.errors import InfeasibleError
    from llmcluster.plan import capacity as C

    for kwargs in ({"gpus_per_node": C.MAX_GPUS_PER_NODE}, {"concurrency": C.MAX_CONCURRENCY},
                   {"gpus_per_node": C.MAX_GPUS_PER_NODE, "concurrency": C.MAX_CONCURRENCY,
                    "max_nodes": C.MAX_NODES, "context": 163840}):
        started = time.monotonic()
        try:
            C.size_deployment("deepseek-r1", "l40s", **kwargs)
        except InfeasibleError:
            pass
        assert time.monotonic() - started < 5, kwargs


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"gpus_per_node": 10 ** 9}, "gpus_per_node must be >= 1 and <= 72"),
    ({"concurrency": 10 ** 9}, "concurrency must be >= 1 and <= 1048576"),
    ({"context": 10 ** 9}, "context must be >= 1 and <= 1048576"),
    ({"max_nodes": 10 ** 9}, "max_nodes must be >= 1 and <= 4096"),
    ({"gpus_per_node": True}, "whole number"),
])
def test_the_library_checks_the_bounds_too(kwargs, text):
    from llmcluster.errors import InfeasibleError
    from llmcluster.plan.capacity import size_deployment

    with pytest.raises(InfeasibleError, match=text):
        size_deployment("deepseek-r1", "h200", **kwargs)


def test_the_bounds_are_the_specs_field_limits():
    from annotated_types import Ge, Le

    from llmcluster.plan import capacity as C
    from llmcluster.spec.models import GpuConfig, Pool, Serving

    def limits(model, name):
        meta = model.model_fields[name].metadata
        return next(m.ge for m in meta if isinstance(m, Ge)), next(m.le for m in meta if isinstance(m, Le))

    assert limits(GpuConfig, "count") == (C.MIN_GPUS_PER_NODE, C.MAX_GPUS_PER_NODE)
    assert limits(Serving, "concurrency")[0] == C.MIN_CONCURRENCY
    assert limits(Serving, "concurrency")[1] <= C.MAX_CONCURRENCY  # size answers what-ifs beyond one stack
    assert limits(Serving, "context")[1] == C.MAX_CONTEXT
    assert limits(Pool, "count")[1] == C.MAX_NODES
