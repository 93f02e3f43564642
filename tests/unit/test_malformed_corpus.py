"""The malformed-stack corpus: every file is a whole stack file with exactly one thing broken.

Header of each ``tests/unit/malformed/NN-short-name.yaml``:

* ``# expect: <key.path>``: a problem must have exactly this dotted path (no ``llmcluster:``
  prefix); ``<root>`` stands for a problem about the file as a whole (empty path), such as
  malformed YAML.
* ``# message: <substring>`` (optional): that problem's message contains this text.
* ``# rule: <rule id>`` (optional, among the leading comment lines): that problem was found by
  this rule of :mod:`llmcluster.validate` (every rule has a case: ``tests/unit/test_rules.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcluster.errors import Problem, SpecError
from llmcluster.spec import parse_stack_file
from llmcluster.validate import load_stack_file
from tests.helpers.corpus import FILES, NAME, ROOT, expectation

def test_corpus_is_big_enough() -> None:
    assert len(FILES) >= 40


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_corpus_file_name(path: Path) -> None:
    assert NAME.match(path.name), path.name


def test_corpus_numbers_are_unique() -> None:
    numbers = [p.name.split("-", 1)[0] for p in FILES]
    assert len(numbers) == len(set(numbers))


def _load_error(path: Path) -> SpecError:
    try:
        spec = load_stack_file(path)
    except SpecError as exc:
        return exc
    except Exception as exc:  # the point of the test: anything but SpecError fails
        pytest.fail(f"{path.name}: {type(exc).__name__} instead of SpecError: {exc}")
    pytest.fail(f"{path.name}: loaded without error as stack {spec.stack!r}")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_malformed_stack_is_rejected_at_the_expected_key(path: Path) -> None:
    want = expectation(path)
    exc = _load_error(path)
    assert exc.problems, "a SpecError always carries at least one problem"
    at_path = [p for p in exc.problems if p.path == want.path]
    listing = "\n".join(f"  {p}" for p in exc.problems)
    assert at_path, f"{path.name}: no problem at {want.path or ROOT!r}; got:\n{listing}"
    if want.message is not None:
        assert any(want.message in p.message for p in at_path), (
            f"{path.name}: no problem at {want.path or ROOT!r} mentions {want.message!r}; got:\n{listing}")
    if want.rule is not None:
        found = {exc.rules.get(p) for p in at_path if want.message is None or want.message in p.message}
        assert want.rule in found, f"{path.name}: the problem at {want.path or ROOT!r} came from {found}, " \
                                   f"not {want.rule}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_malformed_stack_cli_formatting(path: Path) -> None:
    """What the CLI prints: one ``<file>: <path>: <message>`` line per problem."""
    exc = _load_error(path)
    assert exc.source == str(path)
    lines = exc.lines()
    assert len(lines) == len(exc.problems)
    for problem, line in zip(exc.problems, lines, strict=True):
        assert isinstance(problem, Problem)
        assert problem.message and "\n" not in problem.message
        assert "llmcluster:" not in problem.path, "paths are written without the namespace prefix"
        text = str(problem)
        if problem.path:
            assert text == f"{problem.path}: {problem.message}"
        else:
            assert text == problem.message
        assert line.startswith(f"{path}: ")
        assert line == f"{path}: {text}"
    assert str(exc) == "\n".join(lines)
    # Problems are sorted and free of duplicates.
    assert exc.problems == sorted(set(exc.problems), key=lambda p: (p.path, p.message))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_field_layer_alone_never_crashes(path: Path) -> None:
    """Without whole-spec rules a file may load, but any failure is still a SpecError."""
    try:
        parse_stack_file(path)
    except SpecError as exc:
        assert exc.problems
