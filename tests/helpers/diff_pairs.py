"""Real pairs of plans for the diff tests: a stack of stacks/ and the same stack with one change,
each evaluated offline (the program under Pulumi mocks) at a fixed time, as ``llmcluster diff``
evaluates both revisions. Nothing is committed: the changed stack is a file in a temporary folder."""

from __future__ import annotations

import copy
import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from llmcluster.diff.core import Side, compare, side_from_evaluation
from tests.conftest import STACKS

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _open_port(cfg: dict[str, Any]) -> None:
    for f in cfg["llmcluster:flows"]:
        if f["name"] == "metrics-gpu":
            f["ports"].append("tcp/9401")


def _add_node(cfg: dict[str, Any]) -> None:
    cfg["llmcluster:pools"]["gpu"]["count"] = 3
    cfg["llmcluster:serving"]["replicas"] = 3


def _model(cfg: dict[str, Any]) -> None:
    cfg["llmcluster:serving"]["model"] = "deepseek-v3"


def _cert_lifetime(cfg: dict[str, Any]) -> None:
    cfg["llmcluster:pki"]["leaf_validity_days"] = 14


def _vlan_mtu(cfg: dict[str, Any]) -> None:
    cfg["llmcluster:fabric"]["vlans"]["mgmt"]["mtu"] = 9000


def _instance_type(cfg: dict[str, Any]) -> None:
    cfg["llmcluster:pools"]["gateway"]["aws"]["instance_type"] = "m7i.xlarge"


#: name -> (stack, change)
PAIRS: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "port-opened": ("lab", _open_port),
    "node-added": ("lab", _add_node),
    "model-changed": ("lab", _model),
    "cert-lifetime": ("lab", _cert_lifetime),
    "vlan-mtu": ("lab", _vlan_mtu),
    "aws-instance-type": ("dev-aws", _instance_type),
}


def stack_doc(stack: str) -> dict[str, Any]:
    return yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))


def evaluate_doc(doc: dict[str, Any], folder: Path, stack: str, label: str) -> Side:
    from llmcluster.offline import evaluate
    from llmcluster.validate import load_stack_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return side_from_evaluation(evaluate(load_stack_file(path), now=NOW), label, doc.get("config") or {})


@functools.cache
def base_side(stack: str, tmp: str) -> Side:
    return evaluate_doc(stack_doc(stack), Path(tmp) / "base", stack, "base")


def pair_report(name: str, tmp: Path) -> dict[str, Any]:
    stack, change = PAIRS[name]
    doc = copy.deepcopy(stack_doc(stack))
    change(doc["config"])
    head = evaluate_doc(doc, tmp / name, stack, "head")
    return compare(base_side(stack, str(tmp)), head)
