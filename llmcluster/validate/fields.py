"""Field layer: the stack file's shape and the typed models (run by the loader, listed here for the registry)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmcluster.spec.loader import parse_raw, raw_from_stack_file
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import FIELD, rule


@rule("fields.stack-file", layer=FIELD)
def stack_file(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The stack file is a regular file of at most 4 MiB, YAML as Pulumi reads it (YAML 1.2; numbers go-yaml
    reads differently refused; no duplicate keys; aliases bounded), a ``config:`` mapping of known
    ``llmcluster:`` sections (a namespace close to ours refused); each ``--set`` override is a key path
    that exists."""
    return raw_from_stack_file(path, overrides)


@rule("fields.models", layer=FIELD)
def models(raw: Mapping[str, Any], stack: str) -> Spec:
    """Every value has its type, range and enum (VLAN 1-4094, CIDRs, ports, versions); unknown keys
    are refused with a 'did you mean'."""
    return parse_raw(raw, stack)
