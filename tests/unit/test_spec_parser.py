"""The stack-file parser: YAML read as Pulumi reads it (YAML 1.2), bounded, namespaces checked.

* plain scalars resolve by the YAML 1.2 core schema (``1:30``, ``on``, ``yes``, dates are strings);
  spellings go-yaml v3 (Pulumi) reads differently from YAML 1.2 are refused with their key path;
* a merge key's values may be overridden; duplicate keys stay refused;
* only regular files of at most 4 MiB are read (a FIFO used to hang); aliases are bounded while
  composing (a "billion laughs" document used to print a 722 MB line); no error line is longer
  than about 300 characters;
* a misspelt ``llmcluster`` namespace is refused ("did you mean"); other namespaces are left alone.

Every case is also checked through ``llmcluster validate``: exit code 2 and ``<file>: <path>: <message>``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmcluster.errors import SpecError
from llmcluster.spec.loader import MAX_MESSAGE_CHARS, looks_like_ours, parse_override, parse_yaml
from llmcluster.spec.stackyaml import StackLoader, core_value, go_yaml_value
from llmcluster.validate import load_stack_file
from tests.conftest import STACKS
from tests.helpers.corpus import FILES, expectation

ROOT = Path(__file__).resolve().parents[2]
LAB_TEXT = (STACKS / "Pulumi.lab.yaml").read_text(encoding="utf-8")


def _cli(path: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``llmcluster validate <path>`` in a child process (bounded in time and memory)."""

    def limit() -> None:  # pragma: no cover - runs in the child
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "llmcluster.cli", "validate", str(path), *extra],
                          capture_output=True, text=True, timeout=timeout, env=env, preexec_fn=limit, cwd=ROOT)


def _lab_with(tmp_path: Path, old: str, new: str, name: str = "case") -> Path:
    assert LAB_TEXT.count(old) == 1, old
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(LAB_TEXT.replace(old, new), encoding="utf-8")
    return path


def _problems(path: Path) -> dict[str, str]:
    with pytest.raises(SpecError) as ei:
        load_stack_file(path)
    assert ei.value.exit_code == 2
    return {p.path: p.message for p in ei.value.problems}


# --------------------------------------------------------------------------- YAML 1.2 resolution


@pytest.mark.parametrize(("text", "value"), [
    ("1:30", "1:30"),  # YAML 1.1 (PyYAML): sexagesimal 90
    ("-1:30", "-1:30"),
    ("190:20:30", "190:20:30"),
    ("on", "on"), ("off", "off"), ("yes", "yes"), ("no", "no"), ("y", "y"), ("n", "n"),
    ("On", "On"), ("YES", "YES"),
    ("2024-01-01", "2024-01-01"),  # YAML 1.1: a date
    ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
    ("1e3", 1000.0),  # YAML 1.1: the string "1e3"
    ("0o17", 15), ("0x1F", 31), ("017", 17), ("0", 0), ("-5", -5), ("+5", 5),
    (".5", 0.5), ("1.", 1.0), ("-.inf", float("-inf")),
    ("true", True), ("False", False), ("TRUE", True), ("~", None), ("null", None), ("Null", None),
    ("1_000", "1_000"), ("0b101", "0b101"), (".e3", ".e3"), ("=", "="),
])
def test_plain_scalars_resolve_by_the_yaml_1_2_core_schema(text: str, value: Any) -> None:
    assert core_value(text) == value
    got = yaml.load(f"a: {text}\n", Loader=StackLoader)["a"]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(("text", "go"), [
    ("017", 15), ("010", 8), ("1_000", 1000), ("0b101", 5), ("-0b101", -5), ("0X1F", 31), ("0O17", 15),
    ("-0x1F", -31), ("+0o7", 7), ("08", 8.0), ("1__0", 10), ("1_0.5", 10.5), ("99999999999999999999", 1e20),
])
def test_spellings_pulumi_reads_differently_are_refused_with_their_key_path(tmp_path: Path, text: str, go: Any) -> None:
    assert go_yaml_value(text) == go and type(go_yaml_value(text)) is type(go)
    assert go_yaml_value(text) != core_value(text) or type(go_yaml_value(text)) is not type(core_value(text))
    path = _lab_with(tmp_path, "    concurrency: 8\n", f"    concurrency: {text}\n")
    found = _problems(path)
    assert list(found) == ["serving.concurrency"], found
    assert "read differently by YAML parsers" in found["serving.concurrency"]
    run = _cli(path)
    assert run.returncode == 2
    assert run.stderr.startswith(f"{path}: serving.concurrency: {text!r} is read differently")


@pytest.mark.parametrize(("text", "value"), [("'017'", "017"), ('"1_000"', "1_000"), ("!!str 017", "017"),
                                            ("17", 17), ("0o21", 17), ("0x11", 17), ("1:30", "1:30")])
def test_quoted_tagged_and_agreed_spellings_pass(text: str, value: Any) -> None:
    assert parse_yaml(f"config:\n  llmcluster:x: {{v: {text}}}\n")["config"]["llmcluster:x"]["v"] == value


def test_other_namespaces_are_not_checked_for_ambiguous_numbers() -> None:
    assert parse_yaml("config:\n  aws:thing: 017\n")["config"]["aws:thing"] == 17


@pytest.mark.parametrize(("old", "new", "path", "message"), [
    ("      count: 2\n", "      count: 1:30\n", "pools.gpu.count", "got string '1:30'"),
    ("nvswitch: true", "nvswitch: on", "pools.gpu.gpu.nvswitch", "got string 'on'"),
    ("nvswitch: true", "nvswitch: yes", "pools.gpu.gpu.nvswitch", "got string 'yes'"),
    ("    leaf_validity_days: 30\n", "    leaf_validity_days: 0:30\n", "pki.leaf_validity_days", "got string '0:30'"),
    ('driver_version: "570.172.08"', "driver_version: 2025-01-01", "pools.gpu.gpu.driver_version", "not a version"),
])
def test_yaml_1_1_readings_become_strings_and_fail_typing(tmp_path: Path, old: str, new: str, path: str,
                                                          message: str) -> None:
    stack = _lab_with(tmp_path, old, new)
    found = _problems(stack)
    assert message in found[path], found
    run = _cli(stack)
    assert run.returncode == 2 and f"{stack}: {path}: " in run.stderr


# --------------------------------------------------------------------------- merge keys and duplicates

MERGED = LAB_TEXT.replace(
    "  llmcluster:pools:\n",
    "  x-defaults: &node {role: storage, count: 1, vlans: [mgmt, storage_public, storage_cluster]}\n"
    "  llmcluster:pools:\n",
).replace(
    "    storage:\n      role: storage\n      count: 3\n      vlans: [mgmt, storage_public, storage_cluster]\n",
    "    storage:\n      <<: *node\n      count: 3\n",
).replace(
    "    gateway:\n      role: gateway\n      count: 1\n      hostname_prefix: gw\n      vlans: [mgmt, inference]\n",
    "    gateway:\n      <<: *node\n      role: gateway\n      hostname_prefix: gw\n      vlans: [mgmt, inference]\n",
)


def test_merge_key_values_may_be_overridden(tmp_path: Path) -> None:
    assert MERGED.count("<<: *node") == 2
    path = tmp_path / "Pulumi.lab.yaml"
    path.write_text(MERGED.replace("  x-defaults:", "  aws:x-defaults:"), encoding="utf-8")
    merged = load_stack_file(path)
    assert merged == load_stack_file(STACKS / "Pulumi.lab.yaml")
    assert _cli(path).returncode == 0


@pytest.mark.parametrize(("text", "message"), [
    ("a: {x: 1, x: 2}\n", "duplicate key 'x'"),
    ("b: &b {x: 1}\na: {<<: *b, y: 1, y: 2}\n", "duplicate key 'y'"),
    ("b: &b {x: 1}\na: {<<: *b, <<: *b}\n", "a second merge key"),
    ("a: {1: a, 0x1: b}\n", "duplicate key 1"),
])
def test_duplicate_keys_stay_refused(text: str, message: str) -> None:
    with pytest.raises(SpecError) as ei:
        parse_yaml(text)
    assert message in ei.value.problems[0].message


def test_merge_order_is_yaml_merge_order() -> None:
    doc = parse_yaml("a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nc: {<<: [*a, *b], z: 3}\n")
    assert doc["c"] == {"x": 1, "y": 1, "z": 3}


# --------------------------------------------------------------------------- bounded input


def _fifo(tmp: Path) -> Path:
    path = tmp / "Pulumi.fifo.yaml"
    os.mkfifo(path)
    return path


def _socket(tmp: Path) -> Path:
    path = tmp / "Pulumi.sock.yaml"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    _SOCKETS.append(s)  # kept open for the test session
    return path


def _device(tmp: Path) -> Path:
    path = tmp / "Pulumi.null.yaml"
    path.symlink_to("/dev/null")
    return path


_SOCKETS: list[socket.socket] = []


@pytest.mark.parametrize("make", [_fifo, _socket, _device], ids=["fifo", "socket", "device"])
def test_non_regular_files_are_refused_before_reading(tmp_path: Path, make) -> None:
    path = make(tmp_path)
    run = _cli(path, timeout=30)  # a FIFO without a writer used to block here for ever
    assert run.returncode == 2
    assert run.stderr == f"{path}: not a regular file\n"
    with pytest.raises(SpecError) as ei:
        load_stack_file(path)
    assert ei.value.lines() == [f"{path}: not a regular file"]


def test_a_file_over_4_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.big.yaml"
    path.write_text(LAB_TEXT + ("#" * 1023 + "\n") * (4 * 1024 + 1), encoding="utf-8")
    run = _cli(path)
    assert run.returncode == 2
    assert run.stderr.startswith(f"{path}: too large: ") and "at most 4 MiB" in run.stderr


def _bomb(depth: int) -> str:
    lines = ["x-bomb:", "  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, depth):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["top", "section"])
def test_an_alias_bomb_stops_while_composing(tmp_path: Path, where: str) -> None:
    path = tmp_path / "Pulumi.bomb.yaml"
    bomb = _bomb(9)  # 10^9 nodes once expanded
    if where == "top":
        path.write_text(bomb + LAB_TEXT[LAB_TEXT.index("config:"):], encoding="utf-8")
    else:
        inner = bomb.replace("x-bomb:\n", "").replace("\n  ", "\n      ").replace("  a0", "      a0", 1)
        path.write_text(LAB_TEXT.replace("  llmcluster:pki:\n", f"  llmcluster:pki:\n    x:\n{inner}"),
                        encoding="utf-8")
    run = _cli(path, timeout=60)
    assert run.returncode == 2, run.stderr[:500]
    (line,) = run.stderr.splitlines()
    assert "expands to more than 250000 nodes" in line and len(line) < 400


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(SpecError, match="inside its own anchor"):
        parse_yaml("a: &a [1, *a]\n")


HUGE = "x" * 1_000_000


@pytest.mark.parametrize(("old", "new"), [
    ("    name: lab\n", f"    name: {HUGE}\n"),  # a field validator quoting the value
    ("    name: lab\n", f"    name: lab\n    {HUGE}: 1\n"),  # an unknown key
    ("  llmcluster:platform: baremetal\n", f"  llmcluster:platform: {HUGE}\n"),  # a literal
    ("    model: deepseek-r1\n", f"    model: deepseek-{HUGE}\n"),  # a whole-spec rule quoting it
    ("  llmcluster:pki:\n", f"  llmcluster:{HUGE}:\n"),  # an unknown section
    ("config:\n", f"{HUGE}: 1\nconfig:\n"),  # an unknown stack-file key
    ("      role: gpu\n      count: 2\n", f"      role: gpu\n      count: [{', '.join(['1'] * 100_000)}]\n"),
])
def test_error_lines_stay_short_whatever_the_value(tmp_path: Path, old: str, new: str) -> None:
    path = _lab_with(tmp_path, old, new)
    run = _cli(path)
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert lines
    for line in lines:
        assert len(line) <= len(f"{path}: ") + 120 + 2 + MAX_MESSAGE_CHARS, len(line)


# --------------------------------------------------------------------------- namespaces


@pytest.mark.parametrize(("key", "suggestion"), [
    ("llmclsuter:storage", "llmcluster:storage"), ("llmcluter:storage", "llmcluster:storage"),
    ("lmcluster:storage", "llmcluster:storage"), ("LLMCLUSTER:storage", "llmcluster:storage"),
    ("llm_cluster:storage", "llmcluster:storage"), ("llmclusterr:storage", "llmcluster:storage"),
    ("llmcluster_:storage", "llmcluster:storage"), ("cluster:storage", "llmcluster:storage"),
    ("llmclusters:anything", "llmcluster:anything"),
])
def test_a_namespace_close_to_ours_is_refused(tmp_path: Path, key: str, suggestion: str) -> None:
    path = _lab_with(tmp_path, "  llmcluster:storage:\n", f"  {key}:\n")
    found = _problems(path)
    assert f"did you mean '{suggestion}'" in found[key], found
    run = _cli(path)
    assert run.returncode == 2 and f"{path}: {key}: unknown namespace" in run.stderr


@pytest.mark.parametrize("key", [
    "aws:region", "llmcluster-switches:password", "kubernetes:context", "gcp:project", "tls:anything",
    "azure-native:location", "pulumi:disable-default-providers", "random:storage",
])
def test_other_namespaces_are_left_alone(tmp_path: Path, key: str) -> None:
    assert not looks_like_ours(*key.split(":", 1))
    path = _lab_with(tmp_path, "config:\n", f"config:\n  {key}: some-value\n", name="lab")
    assert load_stack_file(path) == load_stack_file(STACKS / "Pulumi.lab.yaml")


# --------------------------------------------------------------------------- --set overrides


@pytest.mark.parametrize(("override", "path", "message"), [
    ("pools.gpu.count=1:30", "pools.gpu.count", "got string '1:30'"),
    ("pools.gpu.gpu.nvswitch=on", "pools.gpu.gpu.nvswitch", "got string 'on'"),
    ("pools.gpu.count=010", "pools.gpu.count", "read differently by YAML parsers"),
    ("pools.gpu.count=1_0", "pools.gpu.count", "read differently by YAML parsers"),
    ("flows.0.ports=[tcp/443, 0443]", "flows.0.ports.1", "read differently by YAML parsers"),
])
def test_overrides_are_read_like_the_stack_file(override: str, path: str, message: str) -> None:
    with pytest.raises(SpecError) as ei:
        load_stack_file(STACKS / "Pulumi.lab.yaml", [override])
    found = {p.path: p.message for p in ei.value.problems}
    assert message in found[path], found


def test_override_values_parse_as_yaml_1_2() -> None:
    assert parse_override("serving.revision=2024-01-01") == ("serving.revision", "2024-01-01")
    assert parse_override("pools.gpu.bmc=yes") == ("pools.gpu.bmc", "yes")
    assert parse_override("pools.gpu.count=0x10") == ("pools.gpu.count", 16)


# --------------------------------------------------------------------------- the hardening corpus, end to end

HARDENING = [p for p in FILES if p.name[:1] == "5"]


@pytest.mark.parametrize("path", HARDENING, ids=lambda p: p.stem)
def test_hardening_corpus_through_the_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``llmcluster validate <file>``: exit 2, and a ``<file>: <path>: <message>`` line for the expected problem."""
    from llmcluster.cli import main

    want = expectation(path)
    assert want.rule, f"{path.name}: the 5xx corpus names its rule"
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    prefix = f"{path}: {want.path}: " if want.path else f"{path}: "
    assert any(line.startswith(prefix) and (want.message or "") in line for line in lines), lines
    assert all(len(line) <= len(f"{path}: ") + 120 + 2 + MAX_MESSAGE_CHARS for line in lines)


def test_the_hardening_corpus_is_big_enough() -> None:
    assert len(HARDENING) >= 50
