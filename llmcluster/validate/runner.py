"""Run the registered rules: field -> spec -> plan (-> preflight, on request, in :mod:`.preflight`).

* A field-layer failure stops everything: the later layers need a typed spec.
* Every whole-spec rule runs, then every plan-aware rule; all problems are collected into one
  :class:`~llmcluster.errors.SpecError` (each tagged with its rule id in ``SpecError.rules``).
* A rule with ``requires`` is skipped when one of those rules found something; a rule with
  ``unless`` is skipped when a problem found before it sits under one of those key paths (the
  planners behind plan-aware rules assume what those rules check).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from llmcluster.errors import PlanError, Problem, SpecError
from llmcluster.spec.loader import clipped, raw_from_pulumi_config, source_named, stack_name_from_path
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import PLAN, SPEC, Rule, get, rules

T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    """A problem and the id of the rule that found it."""

    rule: str
    problem: Problem

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "path": self.problem.path, "message": self.problem.message}


class PlanFacts:
    """What plan-aware rules read: the spec and planner outputs, each computed once on first use."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self._ip: Any = None

    def ip_plan(self):
        """The IP plan (:func:`llmcluster.plan.ipam.build_ip_plan`); raises its PlanError every time."""
        if self._ip is None:
            from llmcluster.plan.ipam import build_ip_plan

            try:
                self._ip = build_ip_plan(self.spec)
            except PlanError as exc:
                self._ip = exc
        if isinstance(self._ip, PlanError):
            raise self._ip
        return self._ip


def run_rules(selected: Sequence[Rule], argument: Callable[[Rule], Any],
              found: list[Finding] | None = None) -> list[Finding]:
    """Run ``selected`` in order (each gets ``argument(rule)``); ``found``: findings of earlier layers."""
    findings: list[Finding] = list(found or ())
    start = len(findings)
    for r in selected:
        if any(f.rule in r.requires for f in findings):
            continue
        if r.unless and any(f.problem.path.startswith(r.unless) for f in findings):
            continue
        findings.extend(Finding(r.id, p) for p in r.check(argument(r)))
    return findings[start:]


def check_spec(spec: Spec) -> list[Finding]:
    """Every whole-spec rule, then every plan-aware rule, over a typed spec."""
    facts = PlanFacts(spec)
    found = run_rules(rules(SPEC), lambda r: spec)
    return found + run_rules(rules(PLAN), lambda r: facts, found)


def validate_spec(spec: Spec) -> list[Problem]:
    """The problems :func:`check_spec` finds (all of them: it does not stop at the first)."""
    return [f.problem for f in check_spec(spec)]


def raise_findings(findings: Iterable[Finding]) -> None:
    findings = list(findings)
    if findings:
        rule_of: dict[Problem, str] = {}
        for f in findings:
            rule_of.setdefault(f.problem, f.rule)
        raise clipped(SpecError([f.problem for f in findings], rules=rule_of))


def _tagged(rule_id: str, load: Callable[[], T]) -> T:
    """Run a step of the field layer (the loader); tag what it rejects with ``rule_id``."""
    try:
        return load()
    except SpecError as exc:
        raise clipped(exc, rules=dict.fromkeys(exc.problems, rule_id)) from None


def validate_raw(raw: dict[str, Any], stack: str) -> Spec:
    """A raw config mapping (section -> value) through every layer but preflight."""
    spec = _tagged("fields.models", lambda: get("fields.models").check(raw, stack))
    raise_findings(check_spec(spec))
    return spec


def load_stack_file(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Load ``stacks/Pulumi.<stack>.yaml`` and validate it fully; SpecError naming the file otherwise."""
    raw = _tagged("fields.stack-file", lambda: get("fields.stack-file").check(path, overrides))
    with source_named(path):
        return validate_raw(raw, stack_name_from_path(Path(path)))


def load_from_pulumi(overrides: Sequence[str] = ()) -> Spec:
    """Load and validate the spec inside a running Pulumi program (real CLI or mocks)."""
    import pulumi

    from llmcluster.spec.loader import apply_overrides

    raw = _tagged("fields.stack-file", lambda: apply_overrides(raw_from_pulumi_config(), overrides))
    return validate_raw(raw, pulumi.get_stack())
