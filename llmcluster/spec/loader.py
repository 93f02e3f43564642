"""Parse the environment spec from a Pulumi stack file or from Pulumi's runtime config.

Stack files are read as Pulumi reads them (YAML 1.2, :mod:`llmcluster.spec.stackyaml`), only when
they are regular files of at most :data:`MAX_STACK_FILE_BYTES`; a config namespace close to
``llmcluster`` is refused (:func:`looks_like_ours`); every problem is printed on one line of
bounded length (:func:`clip_problem`).

Both paths produce the same raw mapping (section name -> value, the ``llmcluster:``
prefix stripped) and apply ``--set`` overrides; :func:`parse_raw` then runs the field
layer (the typed models). The whole-spec, plan-aware and preflight rules live above the
planners, in :mod:`llmcluster.validate`, whose ``load_stack_file`` / ``load_from_pulumi``
are what programs call: this module only parses. Every user mistake becomes a
:class:`~llmcluster.errors.SpecError` whose problems name the key path; nothing here
raises anything else for bad input.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, ScalarNode

from llmcluster.errors import Problem, SpecError
from llmcluster.spec.models import SECTIONS, Spec
from llmcluster.spec.stackyaml import StackLoader, TooBig, ambiguous_scalars, clip

NAMESPACE = "llmcluster"
#: Top-level keys Pulumi itself accepts in a stack settings file.
PULUMI_STACK_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")
_STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>[A-Za-z0-9_.-]+)\.ya?ml$")


# --------------------------------------------------------------------------- helpers


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def looks_like_ours(ns: str, name: str) -> bool:
    """Whether config key ``<ns>:<name>`` of another namespace is most likely a misspelt ``llmcluster:<name>``.

    Keys of other namespaces are legitimate (``aws:region``, the ``llmcluster-switches:password``
    secret): they are left alone unless the namespace is within edit distance 2 of ``llmcluster``
    (any case: ``llmclsuter``, ``LLMCluster``, ``llm-cluster``), or the key names one of our sections
    under a namespace close to ours (``llmclusters:storage``, ``cluster:pools``).
    """
    low = ns.lower()
    if low == NAMESPACE:
        return True
    if abs(len(low) - len(NAMESPACE)) <= 2 and edit_distance(low, NAMESPACE) <= 2:
        return True
    return name in SECTIONS and bool(difflib.get_close_matches(low, [NAMESPACE], n=1, cutoff=0.6))


#: Longest key path and message a problem prints (a value a megabyte long is cut, not printed).
MAX_PATH_CHARS = 120
MAX_MESSAGE_CHARS = 300


def _printable(text: str) -> str:
    """``text`` with control and other invisible characters written as escapes (``\\n``, ``\\u2028``)."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clip_path(path: str) -> str:
    path = _printable(path[: MAX_PATH_CHARS * 2])
    return path if len(path) <= MAX_PATH_CHARS else path[: MAX_PATH_CHARS - 3] + "..."


def clip_problem(p: Problem) -> Problem:
    """``p`` with its path and message on one line, escaped and cut to :data:`MAX_PATH_CHARS` /
    :data:`MAX_MESSAGE_CHARS` (a value a megabyte long, or holding a newline, never reaches the terminal)."""
    message = _printable(p.message[: MAX_MESSAGE_CHARS * 2])
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    path = clip_path(p.path)
    return p if (path, message) == (p.path, p.message) else Problem(path, message)


def clipped(exc: SpecError, source: str | None = None, rules: Mapping[Problem, str] | None = None) -> SpecError:
    """``exc`` with every problem clipped (:func:`clip_problem`), its rule tags kept."""
    rule_of = dict(exc.rules if rules is None else rules)
    problems = [clip_problem(p) for p in exc.problems]
    tags = {q: rule_of[p] for p, q in zip(exc.problems, problems, strict=True) if p in rule_of}
    return SpecError(problems, source=exc.source if source is None else source, rules=tags)


def stack_name_from_path(path: Path) -> str:
    m = _STACK_FILE.match(path.name)
    return m.group("stack") if m else path.stem


def parse_yaml(text: str, base: tuple[str, ...] | None = None) -> Any:
    """Parse YAML as Pulumi does (:mod:`llmcluster.spec.stackyaml`), every parser error a SpecError.

    ``base`` is the key path of the text's value (``--set`` overrides); without it the text is a
    stack file, whose ``config: llmcluster:<section>`` values are checked for plain scalars that
    Pulumi and YAML 1.2 read differently.
    """
    loader: StackLoader | None = None
    try:
        loader = StackLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        places = [(base, node)] if base is not None else _our_sections(node)
        seen: set[int] = set()
        problems = [Problem(".".join(path), why) for where, n in places
                    for path, why in ambiguous_scalars(loader, n, where, seen)]
        if problems:
            raise SpecError(problems)
        return loader.construct_document(node)
    except TooBig as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(Problem("", f"{where}{exc.problem}")) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        raise SpecError(Problem("", f"malformed YAML: {where}{what}")) from None
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        raise SpecError(Problem("", f"malformed YAML: {exc}")) from None
    except RecursionError:
        raise SpecError(Problem("", "malformed YAML: nesting too deep")) from None
    finally:
        if loader is not None:
            loader.dispose()


def _our_sections(root: Any) -> list[tuple[tuple[str, ...], Any]]:
    """``(section path, value node)`` of each ``config: llmcluster:<section>`` of a stack document node."""
    if not isinstance(root, MappingNode):
        return []
    out = []
    for k, config in root.value:
        if isinstance(k, ScalarNode) and k.value == "config" and isinstance(config, MappingNode):
            for key, value in config.value:
                ns, sep, name = str(getattr(key, "value", "")).partition(":")
                if sep and ns == NAMESPACE:
                    out.append(((name,), value))
    return out


# --------------------------------------------------------------------------- raw config


def raw_from_stack_document(doc: Any) -> dict[str, Any]:
    """Extract the ``llmcluster:`` sections from a parsed Pulumi stack settings document."""
    if doc is None:
        raise SpecError(Problem("", "the stack file is empty: it needs a 'config:' mapping"))
    if not isinstance(doc, dict):
        raise SpecError(Problem("", f"a stack file is a mapping with a 'config:' key, not a {_tname(doc)}"))
    problems = [
        Problem(clip_path(str(k)), f"unknown stack file key{did_you_mean(k, PULUMI_STACK_KEYS)}")
        for k in doc
        if k not in PULUMI_STACK_KEYS
    ]
    config = doc.get("config")
    if config is None:
        problems.append(Problem("config", "missing: the stack file needs a 'config:' mapping"))
    elif not isinstance(config, dict):
        problems.append(Problem("config", f"must be a mapping, not a {_tname(config)}"))
    if problems:
        raise SpecError(problems)
    return raw_from_config_mapping(config)


def raw_from_config_mapping(config: Mapping[Any, Any], *, json_values: bool = False) -> dict[str, Any]:
    """``{"llmcluster:site": {...}, "aws:region": ...}`` -> ``{"site": {...}}``.

    Keys of other namespaces (provider settings such as ``aws:region``) are left alone.
    With ``json_values`` the values are JSON strings, as Pulumi's runtime passes them.
    """
    raw: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in config.items():
        if not isinstance(key, str):
            problems.append(Problem(clip_path(str(key)), "config keys are strings such as 'llmcluster:site'"))
            continue
        ns, sep, name = key.partition(":")
        if not sep:
            problems.append(Problem(clip_path(key), f"config keys need a namespace: write '{NAMESPACE}:{key[:40]}'"))
            continue
        if ns != NAMESPACE:
            if looks_like_ours(ns, name):
                problems.append(Problem(clip_path(key), f"unknown namespace '{ns[:40]}': did you mean "
                                                        f"'{NAMESPACE}:{name[:40]}'? (this section would be ignored)"))
            continue
        if name not in SECTIONS:
            problems.append(Problem(clip_path(name), f"unknown section{did_you_mean(name, SECTIONS)}"))
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            problems.append(Problem(name, "a whole section cannot be a secret: encrypt single values"))
            continue
        if json_values and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass  # plain string values (e.g. platform) arrive unquoted
        raw[name] = value
    if problems:
        raise SpecError(problems)
    return raw


def raw_from_pulumi_config() -> dict[str, Any]:
    """Read every ``llmcluster:`` key from the running Pulumi program's config."""
    from pulumi.runtime import config as pconfig  # imported lazily: pure layers stay Pulumi-free

    merged: dict[str, Any] = {**pconfig.get_config_env(), **pconfig.CONFIG.get()}
    return raw_from_config_mapping(merged, json_values=True)


# --------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[str, Any]:
    """``pools.gpu.count=1024`` -> (``pools.gpu.count``, 1024). Values are YAML scalars/flows."""
    path, sep, value = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise SpecError(Problem("--set", f"{clip(text)}: write overrides as key.path=value"))
    if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", path):
        raise SpecError(Problem("--set", f"{clip(path)} is not a dotted key path (e.g. pools.gpu.count)"))
    if not value.strip():
        return path, ""
    try:
        parsed = parse_yaml(value, base=tuple(path.split(".")))
    except SpecError as exc:
        if any(p.path for p in exc.problems):
            raise
        raise SpecError(Problem(path, f"--set value {clip(value)} is not valid YAML")) from None
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str | tuple[str, Any]]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each override applied (creating missing mappings)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        path, value = parse_override(item) if isinstance(item, str) else item
        parts = path.split(".")
        if parts[0] not in SECTIONS:
            raise SpecError(Problem(path, f"unknown section '{parts[0]}'{did_you_mean(parts[0], SECTIONS)}"))
        node: Any = out
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[: i + 1])
            if isinstance(node, dict):
                if part not in node or node[part] is None:
                    node[part] = {}
                node = node[part]
            elif isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise SpecError(Problem(where, f"no list item {part} (the list has {len(node)})"))
                node = node[int(part)]
            else:
                raise SpecError(Problem(where, f"is a {_tname(node)}, not a mapping: cannot set '{path}'"))
        last = parts[-1]
        if isinstance(node, dict):
            node[last] = value
        elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        else:
            raise SpecError(Problem(path, f"cannot set: its parent is a {_tname(node)}"))
    return out


# --------------------------------------------------------------------------- validation


def _tname(v: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", int: "integer", float: "number",
            bool: "boolean", type(None): "null"}.get(type(v), type(v).__name__)


def _fields_at(loc: Sequence[Any]) -> list[str]:
    """Known field names of the model reached by ``loc`` (for 'did you mean')."""
    model: Any = Spec
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                field = next((f for f in model.model_fields.values() if f.alias == part), None)
            if field is None:
                return []
            model = _unwrap(field.annotation, want_container=True)
        elif get_origin(model) in (dict, tuple, list):
            args = [a for a in get_args(model) if a is not Ellipsis]
            model = _unwrap(args[-1], want_container=True) if args else None
        else:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items() if n != "stack"]
    return []


def _unwrap(tp: Any, want_container: bool = False) -> Any:
    """Strip Optional/Annotated to the model or container type inside."""
    for _ in range(6):
        origin = get_origin(tp)
        if origin is None:
            return tp
        if origin in (dict, tuple, list):
            return tp
        args = [a for a in get_args(tp) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            return models[0]
        containers = [a for a in args if get_origin(a) in (dict, tuple, list)]
        if containers:
            return containers[0]
        if not args:
            return tp
        tp = args[0]
    return tp


#: Parts of a pydantic error location that name a union member or validator, not a key: ``int``,
#: ``literal['a','b']``, ``function-after[...]``, ``tuple[...]`` (a key such as ``intermediate_validity_days``
#: is kept: only these exact tags are dropped).
_LOC_TAG = re.compile(r"(int|str|float|bool|none|\[key\]|function-[a-z-]+\[.*|[a-z][a-z-]*\[.*\])\Z", re.DOTALL)


def _loc_path(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and _LOC_TAG.match(p)))


def problems_from_validation_error(exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    seen_paths: set[str] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        etype = err["type"]
        path = _loc_path(loc)
        msg = err["msg"]
        if etype == "extra_forbidden":
            parent = _fields_at(loc[:-1])
            msg = f"unknown key{did_you_mean(str(loc[-1])[:80], parent)}"
            if parent and not did_you_mean(loc[-1], parent):
                msg += f" (allowed: {', '.join(sorted(parent))})"
        elif etype == "missing":
            msg = "missing: this key is required"
        elif etype == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif etype == "literal_error":
            exp = err.get("ctx", {}).get("expected", "")
            msg = f"{_short(err['input'])} is not allowed: expected {exp}"
        elif etype.endswith("_type") or etype in ("int_from_float", "bool_parsing", "int_parsing"):
            msg = f"{msg}, got {_tname(err['input'])} {_short(err['input'])}"
        elif etype == "union_tag_invalid":  # pragma: no cover - no tagged unions yet
            pass
        elif etype == "too_short" and _long_enough(err):
            # pydantic checks min_length after dropping invalid items: the items are reported
            # on their own, "should have at least 1 item" would only be noise.
            continue
        # Union branches report the same location several times; keep the first.
        key = f"{path}|{etype}"
        if key in seen_paths:
            continue
        seen_paths.add(key)
        problems.append(Problem(path, msg))
    # For a None-able section that failed as a model, drop the duplicate "should be None" noise.
    return [p for p in problems if "Input should be None" not in p.message] or problems


def _long_enough(err: Any) -> bool:
    """Whether a ``too_short`` error's input already had the minimum number of items."""
    value, need = err.get("input"), err.get("ctx", {}).get("min_length")
    return isinstance(value, (list, tuple, dict, str)) and isinstance(need, int) and len(value) >= need


def _short(v: Any) -> str:
    if isinstance(v, str):
        return clip(v)
    text = repr(v) if not isinstance(v, (dict, list, tuple)) or len(v) < 8 else f"<{_tname(v)} of {len(v)} items>"
    return text if len(text) <= 40 else text[:37] + "..."


def parse_raw(raw: Mapping[str, Any], stack: str) -> Spec:
    """The field layer: the raw sections as typed models (types, ranges, enums, unknown keys).

    Cross-field and cross-section rules are not checked here: see :mod:`llmcluster.validate`.
    """
    data = dict(raw)
    data["stack"] = stack
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from_validation_error(exc)) from None
    except RecursionError:
        raise SpecError(Problem("", "the spec is nested too deeply")) from None


def raw_from_stack_file(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read ``stacks/Pulumi.<stack>.yaml`` into its raw sections, overrides applied."""
    with source_named(path):
        raw = raw_from_stack_document(parse_yaml(read_stack_text(path)))
        return apply_overrides(raw, overrides)


#: Largest stack file read (real ones are a few kilobytes).
MAX_STACK_FILE_BYTES = 4 * 1024 * 1024


def read_stack_text(path: str | Path) -> str:
    """The text of a stack file: a regular file (a FIFO, device or socket would block or never end),
    at most :data:`MAX_STACK_FILE_BYTES`, UTF-8. SpecError (no path) otherwise."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a socket cannot even be opened
            raise SpecError(Problem("", "not a regular file"))
        fd = os.open(path, flags)  # non-blocking: a FIFO put there since returns at once (fstat below)
    except FileNotFoundError:
        raise SpecError(Problem("", "no such stack file")) from None
    except OSError as exc:  # no permission, a path through a file, a symlink loop
        raise SpecError(Problem("", f"cannot read: {exc.__class__.__name__}")) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SpecError(Problem("", "not a regular file"))
        if st.st_size > MAX_STACK_FILE_BYTES:
            raise SpecError(Problem("", f"too large: {st.st_size} bytes (a stack file is at most "
                                        f"{MAX_STACK_FILE_BYTES // 2**20} MiB)"))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            data = f.read(MAX_STACK_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(Problem("", f"cannot read: {exc.__class__.__name__}")) from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > MAX_STACK_FILE_BYTES:  # it grew while we read
        raise SpecError(Problem("", f"too large: over {MAX_STACK_FILE_BYTES // 2**20} MiB"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(Problem("", "cannot read: UnicodeDecodeError")) from None


def parse_stack_file(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Parse a stack file through the field layer only (no whole-spec rules): for tests and tools
    that build deliberately partial specs. Programs load with :func:`llmcluster.validate.load_stack_file`."""
    raw = raw_from_stack_file(path, overrides)
    with source_named(path):
        return parse_raw(raw, stack_name_from_path(Path(path)))


@contextmanager
def source_named(path: str | Path) -> Iterator[None]:
    """Name ``path`` as the source of any SpecError raised inside (unless it already names one)."""
    try:
        yield
    except SpecError as exc:
        raise clipped(exc, source=exc.source if exc.source is not None else str(path)) from None
