"""Fuzzing the spec loader: whatever the input, the result is a Spec or a SpecError.

Three fuzzers: (a) arbitrary text and bytes as a stack file, (b) structure-aware mutations of
the lab stack's parsed document, (c) random ``--set`` override strings. They are derandomized
(same examples on every run, no example database) so that CI is reproducible, and sized to run
in well under a minute together.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llmcluster.errors import Problem, SpecError
from llmcluster.plan.build import build_plan
from llmcluster.spec import Spec
from llmcluster.spec.loader import apply_overrides, parse_override, raw_from_stack_document
from llmcluster.validate import load_stack_file, validate_raw

STACKS = Path(__file__).resolve().parents[2] / "stacks"
LAB = STACKS / "Pulumi.lab.yaml"
LAB_DOC: dict[str, Any] = yaml.safe_load(LAB.read_text(encoding="utf-8"))

#: Exploratory runs: LLMCLUSTER_FUZZ_SCALE=50 LLMCLUSTER_FUZZ_RANDOM=1 pytest tests/unit/test_spec_fuzz.py
#: (more examples, fresh random ones each run). CI uses the defaults: fixed examples, < 60 s.
SCALE = max(1, int(os.environ.get("LLMCLUSTER_FUZZ_SCALE", "1") or 1))
RANDOM = os.environ.get("LLMCLUSTER_FUZZ_RANDOM", "") not in ("", "0")

FUZZ = settings(
    derandomize=not RANDOM,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                           HealthCheck.large_base_example],
)

_counter = itertools.count()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(directory: Path, data: str | bytes) -> Path:
    path = directory / f"Pulumi.fuzz{next(_counter)}.yaml"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def _check_outcome(load: Callable[[], Spec]) -> Spec | None:
    """Run ``load``; a Spec or a well-formed SpecError pass, anything else fails the test."""
    try:
        spec = load()
    except SpecError as exc:
        assert exc.problems, "SpecError without problems"
        for p in exc.problems:
            assert isinstance(p, Problem)
            assert isinstance(p.path, str) and isinstance(p.message, str) and p.message
        assert exc.problems == sorted(set(exc.problems), key=lambda p: (p.path, p.message))
        assert len(exc.lines()) == len(exc.problems)
        str(exc)
        return None
    assert isinstance(spec, Spec)
    # Whatever validate accepts, the planners can plan: validate catches everything plan would.
    build_plan(spec)
    return spec


def _load_file(directory: Path, data: str | bytes, overrides: list[str] | None = None) -> Spec | None:
    path = _write(directory, data)
    try:
        return _check_outcome(lambda: load_stack_file(path, overrides or ()))
    finally:
        path.unlink()


def _load_doc(doc: Any, overrides: list[str] | None = None) -> Spec | None:
    """The in-memory equivalent of load_stack_file for an already parsed document."""

    def load() -> Spec:
        raw = raw_from_stack_document(doc)
        raw = apply_overrides(raw, overrides or ())
        return validate_raw(raw, "fuzz")

    return _check_outcome(load)


# --------------------------------------------------------------------------- (a) arbitrary text

YAML_ALPHABET = st.sampled_from(list("{}[]:-,&*!|>'\"%@`#?\n\t \\.=/0123456789abcdefgxyzlmnu")
                                + ["config:", "llmcluster:", "\n  ", "\n    ", "- ", ": ", "!!", "<<: ",
                                   "&a ", "*a", "---\n", "...\n", "~", "null", "true", "0x1F", "1e3",
                                   ".nan", "2001-12-14", "llmcluster:site", "llmcluster:pools"])
yaml_like_text = st.lists(YAML_ALPHABET, max_size=60).map("".join)


@settings(FUZZ, max_examples=250 * SCALE)
@given(text=st.text(max_size=400))
def test_arbitrary_text(fuzz_dir: Path, text: str) -> None:
    _load_file(fuzz_dir, text)


@settings(FUZZ, max_examples=150 * SCALE)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes(fuzz_dir: Path, data: bytes) -> None:
    _load_file(fuzz_dir, data)  # undecodable bytes: the loader reads the file itself
    _load_file(fuzz_dir, data.decode("latin-1"))
    _load_file(fuzz_dir, data.decode("utf-8", errors="replace"))


@settings(FUZZ, max_examples=300 * SCALE)
@given(text=yaml_like_text)
def test_yaml_like_text(fuzz_dir: Path, text: str) -> None:
    _load_file(fuzz_dir, text)


@settings(FUZZ, max_examples=200 * SCALE)
@given(section=st.sampled_from(["site", "fabric", "pools", "zones", "flows", "serving", "platform", "pki"]),
       text=yaml_like_text)
def test_yaml_like_section_value(fuzz_dir: Path, section: str, text: str) -> None:
    """Garbage as the value of one section of an otherwise complete stack file."""
    body = LAB.read_text(encoding="utf-8")
    _load_file(fuzz_dir, body + f"  llmcluster:{section}x: {text}\n")
    _load_file(fuzz_dir, f"config:\n  llmcluster:{section}: {text}\n")


@pytest.mark.parametrize("text", [
    "", "\n", "#", "---", "--- |\n  x", "[]", "{}", "null", "~", "42", "'config'", "config:", "config: ~",
    "config: 3", "config: []", "config: {llmcluster:site: ~}", "config: {llmcluster:: 1}", "config: {:: 1}",
    "config: {? [a, b] : 1}", "config: {? {a: 1} : 1}", "config: {1: 2}", "config: {null: 2}",
    "config: {llmcluster:pools: {1: 2}}", "config: {llmcluster:site: {1: 2, true: 3, null: 4}}",
    "config: &a {llmcluster:site: *a}", "a: &a [*a]\nconfig: {}", "config: {llmcluster:flows: &f [*f]}",
    "config: !!python/object:os.system {}", "config: !!binary aGVsbG8=", "config: !custom x",
    "config: {<<: 3}", "config: {<<: [1, 2]}", "config:\n  <<: {llmcluster:platform: aws}\n",
    "config: {llmcluster:platform: !!set {a, b}}", "\x00", "\ufeffconfig: {}", "config: '\ud7ff'",
    "---\na: 1\n---\nb: 2\n", "config: {llmcluster:site: {secure: x}}", "config: {llmcluster:zones: {secure: x}}",
    "config: {llmcluster:serving: {context: 1e309}}", "config: {llmcluster:pools: {gpu: {count: .nan}}}",
    "config: {llmcluster:pools: {gpu: {count: 99999999999999999999999999999}}}",
    "config:\n  llmcluster:site: " + "[" * 200 + "]" * 200,
    "config:\n  llmcluster:site: " + "{a: " * 150 + "1" + "}" * 150,
    "config:\n  llmcluster:site: " + "[" * 5000,
    "config:\n" + "".join(f"  llmcluster:x{i}: {i}\n" for i in range(200)),
])
def test_known_nasty_inputs(fuzz_dir: Path, text: str) -> None:
    _load_file(fuzz_dir, text)


def test_deepest_parsable_nesting_still_gives_spec_error(fuzz_dir: Path) -> None:
    """Nesting just below what the YAML composer accepts must not blow the stack later on."""
    for depth in (200, 300, 350, 400, 420, 440, 460, 480, 490, 500, 520, 600, 1000):
        for open_, close in (("[", "]"), ("{a: ", "}")):
            _load_file(fuzz_dir, "config:\n  llmcluster:site: " + open_ * depth + close * depth + "\n")
            _load_file(fuzz_dir, "config:\n  llmcluster:pools: {gpu: {labels: " + open_ * depth + close * depth
                       + "}}\n", ["pools.gpu.count=1"])


def _missing(tmp: Path) -> Path:
    return tmp / "Pulumi.missing.yaml"


def _directory(tmp: Path) -> Path:
    (tmp / "Pulumi.dir.yaml").mkdir()
    return tmp / "Pulumi.dir.yaml"


def _dangling_link(tmp: Path) -> Path:
    (tmp / "Pulumi.link.yaml").symlink_to(tmp / "nowhere.yaml")
    return tmp / "Pulumi.link.yaml"


def _undecodable(tmp: Path) -> Path:
    (tmp / "Pulumi.bytes.yaml").write_bytes(b"config:\n  \xff\xfe: 1\n")
    return tmp / "Pulumi.bytes.yaml"


def _under_a_file(tmp: Path) -> Path:
    (tmp / "afile").write_text("x")
    return tmp / "afile" / "Pulumi.x.yaml"


def _symlink_loop(tmp: Path) -> Path:
    (tmp / "Pulumi.loop.yaml").symlink_to(tmp / "Pulumi.loop.yaml")
    return tmp / "Pulumi.loop.yaml"


@pytest.mark.parametrize(("make", "message"), [
    (_missing, "no such stack file"),
    (_directory, "not a regular file"),
    (_dangling_link, "no such stack file"),
    (_undecodable, "cannot read: UnicodeDecodeError"),
    pytest.param(_under_a_file, "cannot read: NotADirectoryError"),
    pytest.param(_symlink_loop, "cannot read: OSError"),
])
def test_unreadable_paths(tmp_path: Path, capsys, make, message: str) -> None:
    """An unreadable stack file is a clean SpecError naming the file (``path: message``), exit 2 from the CLI."""
    from llmcluster.cli import main

    path = make(tmp_path)
    with pytest.raises(SpecError) as info:
        load_stack_file(path)
    assert info.value.source == str(path)
    assert info.value.lines() == [f"{path}: {message}"]
    assert info.value.exit_code == 2
    assert main(["validate", str(path)]) == 2
    assert f"{path}: {message}\n" in capsys.readouterr().err


# --------------------------------------------------------------------------- (b) structure-aware

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)

# Values that a real spec uses: they get mutated specs past the field layer into the whole-spec rules.
PLAUSIBLE = st.sampled_from([
    0, 1, 2, 3, 4, 7, 8, 10, 16, 20, 24, 29, 30, 40, 100, 443, 1024, 1500, 4094, 4095, 9000, 9216, 65535, 65536,
    -1, 2**31, True, False, None, "", "mgmt", "oob", "inference", "storage_public", "storage_cluster", "rdma",
    "gpu", "storage", "gateway", "control", "admin", "clients", "h100", "h200", "a100-80gb", "l40s", "b200",
    "deepseek-r1", "deepseek-v3", "deepseek-r1-distill-qwen-7b", "fp8", "bf16", "fp4", "int4-awq",
    "10.42.0.0/16", "10.42.0.0/24", "10.42.0.0/29", "10.42.1.0/24", "10.43.0.0/24", "10.0.0.0/8",
    "192.168.0.0/16", "8.8.8.0/24", "10.42.0.1/24", "tcp/443", "udp/4791", "tcp/1-65535", "icmp",
    "tcp/0", "RSA", "ECDSA", "1.2", "1.3", "aws", "baremetal", "g6e.xlarge", "p5.48xlarge", "m7i.large",
    "/srv/models", "relative", "roce", "cnp", ["mgmt"], ["mgmt", "inference"], [], {}, ["tcp/22"],
    {"id": 50, "prefix": 24}, {"cidrs": ["10.0.0.0/8"]}, {"pools": ["gpu"]}, {"model": "h100", "count": 8},
])
# Copies: the mutations change values in place, and the sampled constants must stay as they are.
mutation_values = st.one_of(PLAUSIBLE, PLAUSIBLE, json_values).map(copy.deepcopy)


def _nodes(doc: Any, path: tuple = ()) -> list[tuple]:
    """Every path into ``doc`` (mappings by key, lists by index), the root included."""
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _nodes(v, (*path, i))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


PLAUSIBLE_INTS = st.sampled_from([v for v in PLAUSIBLE.elements if type(v) is int])
PLAUSIBLE_STRS = st.sampled_from([v for v in PLAUSIBLE.elements if type(v) is str])

# "same_type" keeps the document well-typed so that many mutants reach the whole-spec rules.
OPS = ("replace", "replace", "delete", "insert_key", "swap_container", "duplicate", "null", "nudge_int",
       "mangle_str", "same_type", "same_type", "same_type", "same_type")


@st.composite
def mutated_lab(draw: st.DrawFn, ops: tuple[str, ...] = OPS) -> Any:
    doc: Any = copy.deepcopy(LAB_DOC)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        nodes = _nodes(doc)
        path = draw(st.sampled_from(nodes))
        # Most mutations go to the llmcluster: sections, not to the document frame.
        if len(path) < 2 and draw(st.integers(0, 9)) > 1:
            path = draw(st.sampled_from([n for n in nodes if len(n) >= 2] or nodes))
        op = draw(st.sampled_from(ops))
        node = _get(doc, path)
        if op == "replace":
            doc = _set(doc, path, draw(mutation_values))
        elif op == "delete" and path:
            parent = _get(doc, path[:-1])
            del parent[path[-1]]
        elif op == "insert_key" and isinstance(node, dict):
            key = draw(st.one_of(st.sampled_from(["vlan", "supernt", "cuont", "modle", "extra", "llmcluster:pool",
                                                  "llmcluster:nosuch", "nosuch:x", "secure", "<<"]),
                                 st.text(max_size=10), st.integers(-5, 5), st.booleans(), st.none()))
            node[key] = draw(mutation_values)
        elif op == "swap_container":
            if isinstance(node, dict):
                doc = _set(doc, path, list(node.values()) if draw(st.booleans()) else list(node.items()))
            elif isinstance(node, list):
                doc = _set(doc, path, {str(i): v for i, v in enumerate(node)})
        elif op == "duplicate" and isinstance(node, list) and node:
            node.append(copy.deepcopy(node[draw(st.integers(0, len(node) - 1))]))
        elif op == "null":
            doc = _set(doc, path, None)
        elif op == "nudge_int" and isinstance(node, int) and not isinstance(node, bool):
            doc = _set(doc, path, node + draw(st.sampled_from([-100, -10, -1, 1, 10, 1000, 2**20])))
        elif op == "same_type":
            if isinstance(node, bool):
                doc = _set(doc, path, not node)
            elif isinstance(node, int):
                doc = _set(doc, path, draw(PLAUSIBLE_INTS))
            elif isinstance(node, str):
                doc = _set(doc, path, draw(PLAUSIBLE_STRS))
            elif isinstance(node, list) and node and draw(st.booleans()):
                del node[draw(st.integers(0, len(node) - 1))]
            elif isinstance(node, list):
                node.append(draw(PLAUSIBLE_STRS))
        elif op == "mangle_str" and isinstance(node, str):
            doc = _set(doc, path, draw(st.sampled_from([node.upper(), node + "x", node[:-1], node * 2, " " + node])))
    return doc


@settings(FUZZ, max_examples=600 * SCALE)
@given(doc=mutated_lab())
def test_mutated_lab_document(doc: Any) -> None:
    _load_doc(doc)


@settings(FUZZ, max_examples=400 * SCALE)
@given(doc=mutated_lab(ops=("same_type", "same_type", "nudge_int", "duplicate", "delete")))
def test_well_typed_mutations_reach_whole_spec_rules(doc: Any) -> None:
    _load_doc(doc)


@settings(FUZZ, max_examples=120 * SCALE)
@given(doc=mutated_lab())
def test_mutated_lab_through_a_file(fuzz_dir: Path, doc: Any) -> None:
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:  # pragma: no cover - safe_dump of JSON-like values does not fail
        assume(False)
    spec = _load_file(fuzz_dir, text)
    in_memory = _load_doc(yaml.safe_load(text))
    assert (spec is None) == (in_memory is None)


def test_unmutated_lab_passes() -> None:
    spec = _load_doc(copy.deepcopy(LAB_DOC))
    assert spec is not None and spec.stack == "fuzz"


# --------------------------------------------------------------------------- (c) --set overrides

LAB_PATHS = sorted({".".join(str(p) for p in path[1:])
                    for path in _nodes(LAB_DOC["config"]) if path and str(path[0]).startswith("llmcluster:")}
                   | {k.removeprefix("llmcluster:") for k in LAB_DOC["config"]})
LAB_PATHS = [p.replace("llmcluster:", "") for p in LAB_PATHS if p]


@st.composite
def override_paths(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from(LAB_PATHS))
    extra = draw(st.lists(st.one_of(st.sampled_from(["x", "0", "1", "99", "count", "id", "-", "_"]),
                                    st.from_regex(r"[A-Za-z0-9_-]{1,6}", fullmatch=True)), max_size=2))
    return ".".join([base, *extra])


value_texts = st.one_of(
    st.text(max_size=30),
    yaml_like_text,
    PLAUSIBLE.map(lambda v: yaml.safe_dump(v, default_flow_style=True).removesuffix("\n...\n").strip()),
    json_values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).removesuffix("\n...\n").strip()),
)


@settings(FUZZ, max_examples=300 * SCALE)
@given(overrides=st.lists(st.builds(lambda p, v: f"{p}={v}", override_paths(), value_texts), min_size=1,
                          max_size=3))
def test_structured_overrides(overrides: list[str]) -> None:
    _load_doc(copy.deepcopy(LAB_DOC), overrides)


@settings(FUZZ, max_examples=300 * SCALE)
@given(overrides=st.lists(st.one_of(st.text(max_size=40), yaml_like_text,
                                    st.builds(lambda a, b: f"{a}={b}", st.text(max_size=20), st.text(max_size=20))),
                          min_size=1, max_size=3))
def test_arbitrary_override_strings(overrides: list[str]) -> None:
    _load_doc(copy.deepcopy(LAB_DOC), overrides)


@settings(FUZZ, max_examples=200 * SCALE)
@given(text=st.text(max_size=60))
def test_parse_override_only_raises_spec_error(text: str) -> None:
    try:
        path, _value = parse_override(text)
    except SpecError as exc:
        assert exc.problems
    else:
        assert path and "=" in text


@settings(FUZZ, max_examples=100 * SCALE)
@given(overrides=st.lists(st.builds(lambda p, v: (p, v), override_paths(), mutation_values), min_size=1,
                          max_size=3))
def test_tuple_overrides(overrides: list[tuple[str, Any]]) -> None:
    """apply_overrides also takes (path, value) pairs (what the CLI builds for typed options)."""
    _load_doc(copy.deepcopy(LAB_DOC), overrides)  # type: ignore[arg-type]
