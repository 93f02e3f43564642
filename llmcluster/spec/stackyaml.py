"""Stack-file YAML read the way Pulumi reads it, with bounds.

Pulumi reads ``Pulumi.<stack>.yaml`` with go-yaml v3, a YAML 1.2 parser. PyYAML's ``SafeLoader``
resolves plain scalars by YAML 1.1 rules, which disagree on values people write in stack files:
``1:30`` (1.1: the sexagesimal 90; 1.2: the string "1:30"), ``on``/``yes``/``off`` (1.1:
booleans; 1.2: strings), ``2024-01-01`` (1.1: a date; 1.2: a string), ``1e3`` (1.1: a string;
1.2: 1000.0). :class:`StackLoader` resolves by the YAML 1.2 core schema instead, so that what
``llmcluster validate`` accepts is what ``pulumi up`` hands the program.

go-yaml v3 itself departs from the core schema in a few spellings (``017`` is octal 15 there,
17 in YAML 1.2; ``1_000`` is 1000 there, a string in YAML 1.2; ``0b101``, ``0X1F``, ``-0x1F``,
``08``). Such a plain scalar under the ``llmcluster:`` namespace is refused with its key path
(:func:`ambiguous_scalars`) rather than read one way here and another way by Pulumi.

Bounds (a stack file is a few kilobytes; these only stop hostile or broken input):

* :data:`MAX_NODES` nodes after alias expansion, counted while composing: an alias counts
  the whole subtree it stands for, so a "billion laughs" document stops after a few lines
  instead of expanding into gigabytes (a recursive alias is refused outright);
* duplicate keys in one mapping are refused (PyYAML silently keeps the last), but the keys a
  mapping takes from ``<<: *anchor`` may be overridden by its own keys (that is what a merge
  key is for).

The file-size cap and the regular-file check live in :func:`llmcluster.spec.loader.read_stack_text`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

#: Most nodes a document may expand to (aliases count the subtree they repeat).
MAX_NODES = 250_000

_TAG = "tag:yaml.org,2002:"
NULL, BOOL, INT, FLOAT, STR, MERGE = (_TAG + t for t in ("null", "bool", "int", "float", "str", "merge"))

# The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1023-core-schema), plus the merge key.
_CORE_NULL = re.compile(r"(?:~|null|Null|NULL|)\Z")
_CORE_BOOL = re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")
_CORE_INT = re.compile(r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z")
_CORE_FLOAT = re.compile(r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                         r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z")


class CoreResolver(BaseResolver):
    """Implicit tags of the YAML 1.2 core schema (no sexagesimals, yes/no/on/off, timestamps)."""


CoreResolver.add_implicit_resolver(BOOL, _CORE_BOOL, list("tTfF"))
CoreResolver.add_implicit_resolver(NULL, _CORE_NULL, ["~", "n", "N", ""])
CoreResolver.add_implicit_resolver(INT, _CORE_INT, list("-+0123456789"))
CoreResolver.add_implicit_resolver(FLOAT, _CORE_FLOAT, list("-+0123456789."))
CoreResolver.add_implicit_resolver(MERGE, re.compile(r"<<\Z"), ["<"])


def core_value(text: str) -> Any:
    """A plain scalar as the YAML 1.2 core schema reads it."""
    if _CORE_NULL.match(text):
        return None
    if _CORE_BOOL.match(text):
        return text.lower() == "true"
    if _CORE_INT.match(text):
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)
    if _CORE_FLOAT.match(text):
        low = text.lower()
        if low.endswith(".nan"):
            return math.nan
        if low.endswith(".inf"):
            return -math.inf if text.startswith("-") else math.inf
        return float(text)
    return text


# go-yaml v3's resolve(): a table of exact spellings, then Go's strconv on the text without '_'.
_GO_MAP: dict[str, Any] = {
    **dict.fromkeys(("true", "True", "TRUE"), True), **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_GO_INT = re.compile(r"([-+]?)(?:0[xX]([0-9a-fA-F]+)|0[oO]([0-7]+)|0[bB]([01]+)|(0[0-7]*)|([1-9][0-9]*))\Z")
_GO_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_GO_DECIMAL_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")


def _go_int(text: str) -> int | None:
    """Go's ``strconv.ParseInt(text, 0, 64)``, else ``ParseUint(text, 0, 64)``."""
    m = _GO_INT.match(text)
    if not m:
        return None
    sign, hexa, octal, binary, legacy_octal, decimal = m.groups()
    if hexa is not None:
        value = int(hexa, 16)
    elif octal is not None:
        value = int(octal, 8)
    elif binary is not None:
        value = int(binary, 2)
    elif legacy_octal is not None:
        value = int(legacy_octal, 8)
    else:
        value = int(decimal, 10)
    value = -value if sign == "-" else value
    if -(2**63) <= value < 2**63 or (not sign and 0 <= value < 2**64):
        return value
    return None


def _go_float(text: str) -> float | None:
    """Go's ``strconv.ParseFloat(text, 64)`` on the decimal forms go-yaml lets through (None if out of range)."""
    if not _GO_DECIMAL_FLOAT.match(text):
        return None
    value = float(text)
    return None if math.isinf(value) else value


def go_yaml_value(text: str) -> Any:
    """A plain scalar as go-yaml v3 (Pulumi) reads it into an ``interface{}``.

    Timestamps stay strings there (go-yaml v3 keeps them as text for ``interface{}``).
    """
    if not text:
        return None
    hint = text[0]
    if hint not in "+-0123456789yYnNtTfFoO~.":
        return text
    if text in _GO_MAP:
        return _GO_MAP[text]
    if hint == ".":
        value = _go_float(text)
        return text if value is None else value
    if hint in "+-0123456789":
        plain = text.replace("_", "")
        value_int = _go_int(plain)
        if value_int is not None:
            return value_int
        if _GO_FLOAT.match(plain):
            value_float = _go_float(plain)
            if value_float is not None:
                return value_float
    return text


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def clip(text: str, limit: int = 40) -> str:
    """``repr(text)``, cut to about ``limit`` characters (messages quote user values through this)."""
    r = repr(text)
    return r if len(r) <= limit else repr(text[: max(1, limit - 8)]) + "..."


# --------------------------------------------------------------------------- the loader


class TooBig(yaml.MarkedYAMLError):
    """A document beyond :data:`MAX_NODES` (reported without the 'malformed YAML' prefix)."""


class StackLoader(Reader, Scanner, Parser, Composer, SafeConstructor, CoreResolver):
    """YAML 1.2 core schema, bounded composition, duplicate keys refused (merge keys may be overridden)."""

    def __init__(self, stream: str, max_nodes: int = MAX_NODES):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        CoreResolver.__init__(self)
        self.max_nodes = max_nodes
        self.nodes = 0
        #: id(node) -> nodes it expands to; absent while the node is being composed.
        self.sizes: dict[int, int] = {}
        #: ids of plain scalars without a tag (their text was resolved by the schema).
        self.plain: set[int] = set()

    def _count(self, n: int, mark: Any) -> None:
        self.nodes += n
        if self.nodes > self.max_nodes:
            raise TooBig(None, None, f"the document expands to more than {self.max_nodes} nodes (are aliases "
                                     "repeating large anchors?): a stack file is far smaller", mark)

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            anchored = self.anchors.get(event.anchor)
            if anchored is not None:
                size = self.sizes.get(id(anchored))
                if size is None:
                    raise yaml.composer.ComposerError(
                        None, None, f"alias *{event.anchor[:40]} is inside its own anchor: a recursive "
                        "structure is not allowed", event.start_mark)
                self._count(size, event.start_mark)
            return super().compose_node(parent, index)
        self._count(1, event.start_mark)
        plain = isinstance(event, yaml.ScalarEvent) and event.tag is None and event.style is None
        node = super().compose_node(parent, index)
        if plain:
            self.plain.add(id(node))
        if isinstance(node, ScalarNode):
            self.sizes[id(node)] = 1
        elif isinstance(node, SequenceNode):
            self.sizes[id(node)] = 1 + sum(self.sizes.get(id(c), 1) for c in node.value)
        elif isinstance(node, MappingNode):
            self.sizes[id(node)] = 1 + sum(self.sizes.get(id(k), 1) + self.sizes.get(id(v), 1) for k, v in node.value)
        return node

    def construct_yaml_int(self, node: ScalarNode) -> int:  # type: ignore[override]
        value = core_value(self.construct_scalar(node))
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConstructorError(None, None, f"{clip(str(node.value))} is not an integer", node.start_mark)

    def construct_yaml_float(self, node: ScalarNode) -> float:  # type: ignore[override]
        value = core_value(self.construct_scalar(node))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConstructorError(None, None, f"{clip(str(node.value))} is not a number", node.start_mark)

    def construct_yaml_bool(self, node: ScalarNode) -> bool:  # type: ignore[override]
        value = core_value(self.construct_scalar(node))
        if isinstance(value, bool):
            return value
        raise ConstructorError(None, None, f"{clip(str(node.value))} is not a boolean (true or false)",
                               node.start_mark)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        if not isinstance(node, MappingNode):  # pragma: no cover - PyYAML only calls this with mappings
            raise ConstructorError(None, None, f"expected a mapping node, but found {node.id}", node.start_mark)
        # Duplicates among the mapping's own keys; keys merged in by '<<' may be overridden by them.
        own: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE and "<<" in own:
                raise ConstructorError(None, None, "a second merge key '<<' in one mapping: merge several "
                                       "anchors with '<<: [*a, *b]'", key_node.start_mark)
            key = "<<" if key_node.tag == MERGE else self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise ConstructorError(None, None, "a mapping key must be a plain value", key_node.start_mark) from None
            if key in own:
                raise ConstructorError(None, None, f"duplicate key {clip(key) if isinstance(key, str) else repr(key)}",
                                       key_node.start_mark)
            own[key] = key_node
        self.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            out[self.construct_object(key_node, deep=deep)] = self.construct_object(value_node, deep=deep)
        return out

    def construct_yaml_map(self, node: MappingNode) -> Iterator[dict]:  # type: ignore[override]
        data: dict = {}
        yield data
        data.update(self.construct_mapping(node))


StackLoader.add_constructor(INT, StackLoader.construct_yaml_int)
StackLoader.add_constructor(FLOAT, StackLoader.construct_yaml_float)
StackLoader.add_constructor(BOOL, StackLoader.construct_yaml_bool)
StackLoader.add_constructor(BaseResolver.DEFAULT_MAPPING_TAG, StackLoader.construct_yaml_map)


# --------------------------------------------------------------------------- readings that differ


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {clip(value, 24)}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"the {'integer' if isinstance(value, int) else 'number'} {value!r}"


def ambiguity(text: str) -> str | None:
    """Why a plain scalar is unsafe (go-yaml v3 and YAML 1.2 read it differently), or None."""
    go, core = go_yaml_value(text), core_value(text)
    if _same(go, core):
        return None
    return (f"{clip(text, 24)} is read differently by YAML parsers: Pulumi (go-yaml) reads {_describe(go)}, "
            f"YAML 1.2 {_describe(core)}: quote a string, write a number in plain decimal (no leading 0, no '_')")


def ambiguous_scalars(loader: StackLoader, node: Node, path: tuple[str, ...],
                      seen: set[int] | None = None) -> Iterator[tuple[tuple[str, ...], str]]:
    """``(key path, why)`` for each plain scalar under ``node`` that Pulumi and YAML 1.2 read differently.

    The walk follows aliases (a value repeated through an alias is reported once, at its first use);
    :class:`StackLoader` has bounded the expanded size already.
    """
    seen = set() if seen is None else seen
    stack: list[tuple[Node, tuple[str, ...]]] = [(node, path)]
    while stack:
        n, where = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, ScalarNode):
            if id(n) in loader.plain and n.tag != MERGE:
                why = ambiguity(n.value)
                if why:
                    yield where, why
        elif isinstance(n, SequenceNode):
            stack.extend((c, (*where, str(i))) for i, c in reversed(list(enumerate(n.value))))
        elif isinstance(n, MappingNode):
            for k, v in reversed(n.value):
                key = k.value if isinstance(k, ScalarNode) else "?"
                stack.append((v, (*where, key)))
                if isinstance(k, ScalarNode):
                    stack.append((k, (*where, key)))
