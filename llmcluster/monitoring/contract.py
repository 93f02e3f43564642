"""The metrics contract: one versioned table of every metric the alert rules and dashboards use.

The table is data (``contract.yaml`` beside this module); this module loads it, checks that a
PromQL expression only uses listed metrics (parsed with ``promql-parser``, never with regular
expressions) and reports **gaps**: metrics the plan's rules use whose contract range does not
contain the exporter version the stack pins (for example trtllm-serve 1.0.0, before its Prometheus
collector).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

CONTRACT_FILE = Path(__file__).with_name("contract.yaml")


@dataclass(frozen=True)
class Metric:
    name: str
    exporter: str
    type: str
    since: str
    until: str | None = None
    labels: tuple[str, ...] = ()
    source: str = ""
    verified: bool = True

    def covers(self, version: str) -> bool:
        v = version_key(version)
        return version_key(self.since) <= v and (self.until is None or v < version_key(self.until))


@dataclass(frozen=True)
class Contract:
    version: int
    exporters: dict[str, dict[str, Any]]
    metrics: dict[str, Metric]

    def get(self, name: str) -> Metric | None:
        return self.metrics.get(name)


def version_key(text: str) -> tuple[int, ...]:
    """``'4.1.3'`` -> ``(4, 1, 3)``; pre-release suffixes (``1.1.0rc5``) compare as their release."""
    parts = []
    for p in str(text).split("."):
        m = re.match(r"\d+", p)
        parts.append(int(m.group()) if m else 0)
    return tuple(parts)


@cache
def load_contract(path: Path = CONTRACT_FILE) -> Contract:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    exporters = dict(doc["exporters"])
    metrics: dict[str, Metric] = {}
    for m in doc["metrics"]:
        if m["name"] in metrics:
            raise ValueError(f"{path.name}: metric {m['name']} listed twice")
        if m["exporter"] not in exporters:
            raise ValueError(f"{path.name}: metric {m['name']}: unknown exporter {m['exporter']}")
        metrics[m["name"]] = Metric(
            name=m["name"], exporter=m["exporter"], type=m["type"], since=str(m["since"]),
            until=None if m.get("until") is None else str(m["until"]), labels=tuple(m.get("labels") or ()),
            source=m.get("source", ""), verified=bool(m.get("verified", True)))
    return Contract(version=int(doc["version"]), exporters=exporters, metrics=metrics)


def metric_names(expr: str) -> set[str]:
    """Every metric name an expression selects (parsed by promql-parser)."""
    import promql_parser

    names: set[str] = set()

    def walk(node: Any) -> None:
        if node is None:
            return
        kind = type(node).__name__
        if kind == "VectorSelector":
            if node.name:
                names.add(node.name)
            else:  # {__name__="..."}
                for m in node.matchers.matchers:
                    if m.name == "__name__":
                        names.add(m.value)
            return
        if kind == "MatrixSelector":
            walk(node.vector_selector)
            return
        for attr in ("expr", "lhs", "rhs", "param"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, (str, int, float)):
                walk(child)
        for arg in getattr(node, "args", None) or ():
            walk(arg)

    walk(promql_parser.parse(expr))
    return names


def unknown_metrics(expr: str, contract: Contract | None = None) -> set[str]:
    contract = contract or load_contract()
    return {n for n in metric_names(expr) if n not in contract.metrics}


def gaps(exprs: Iterable[str], versions: dict[str, str], contract: Contract | None = None) -> list[str]:
    """Metrics used by ``exprs`` whose contract range excludes the pinned exporter version."""
    contract = contract or load_contract()
    out = set()
    for expr in exprs:
        for n in metric_names(expr):
            m = contract.get(n)
            if m is None:
                continue
            v = versions.get(m.exporter)
            if v is not None and not m.covers(v):
                until = f", until {m.until}" if m.until else ""
                out.add(f"{n}: {m.exporter} {v} is outside the contract's range (since {m.since}{until})")
    return sorted(out)
