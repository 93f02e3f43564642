"""The rule registry: what a rule is, how it is registered, the layers and their order."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from llmcluster.errors import Problem

#: The layers, in the order they run. ``field``: the typed models and the stack file's shape
#: (:mod:`llmcluster.spec`); ``spec``: whole-spec rules over the typed spec; ``plan``: rules that
#: need a planner's output (IP plan, capacity sizing, the switch planner's ports); ``preflight``:
#: the target environment (hosts over SSH, the AWS API), only on request.
FIELD, SPEC, PLAN, PREFLIGHT = "field", "spec", "plan", "preflight"
LAYERS = (FIELD, SPEC, PLAN, PREFLIGHT)

#: The domains (one module of this package each), in run order within a layer. The order matters
#: only where a rule is skipped by what rules before it found (``requires``, ``unless``).
DOMAINS = ("fields", "fabric", "qos", "pools", "aws", "baremetal", "zones", "storage", "pki", "serving", "access",
           "lab", "switches", "nvidia", "addresses", "kubernetes", "monitoring")

#: ``<domain>.<name>``: lower case words joined by hyphens, the domain is the rule's module.
RULE_ID = re.compile(r"^[a-z]+\.[a-z0-9]+(-[a-z0-9]+)*$")

Check = Callable[..., Iterable[Problem]]


@dataclass(frozen=True)
class Rule:
    """One validation rule.

    ``check`` takes what its layer provides (``spec``: the :class:`~llmcluster.spec.models.Spec`;
    ``plan``: :class:`~llmcluster.validate.runner.PlanFacts`; ``preflight``:
    :class:`~llmcluster.validate.preflight.Target`; ``field`` rules are run by the loader itself)
    and returns or yields Problems whose paths are the spec keys to change.
    """

    id: str
    domain: str
    layer: str
    summary: str
    check: Check
    #: Rule ids that must run earlier and find nothing, else this rule is skipped.
    requires: tuple[str, ...] = ()
    #: Key-path prefixes: the rule is skipped when a problem found earlier sits under one of them.
    unless: tuple[str, ...] = ()


RULES: list[Rule] = []


def rule(rule_id: str, *, layer: str = SPEC, requires: Iterable[str] = (),
         unless: Iterable[str] = ()) -> Callable[[Check], Check]:
    """Register the decorated function as rule ``rule_id`` (its domain is the module's name)."""

    def register(check: Check) -> Check:
        domain = check.__module__.rpartition(".")[2]
        if not RULE_ID.match(rule_id) or rule_id.partition(".")[0] != domain:
            raise ValueError(f"rule id {rule_id!r}: write '{domain}.<words-with-hyphens>' (rules of module {domain})")
        if domain not in DOMAINS:
            raise ValueError(f"rule {rule_id}: add its module's domain {domain!r} to DOMAINS")
        if layer not in LAYERS:
            raise ValueError(f"rule {rule_id}: unknown layer {layer!r} (one of {', '.join(LAYERS)})")
        if any(r.id == rule_id for r in RULES):
            raise ValueError(f"rule {rule_id} is registered twice")
        summary = (check.__doc__ or "").strip().split("\n\n")[0].replace("``", "")
        RULES.append(Rule(rule_id, domain, layer, " ".join(summary.split()), check, tuple(requires),
                          tuple(unless)))
        return check

    return register


def rules(layer: str | None = None, domain: str | None = None) -> list[Rule]:
    """The registered rules in run order: by layer, then domain (:data:`DOMAINS`), then as defined."""
    found = [r for r in RULES if (layer is None or r.layer == layer) and (domain is None or r.domain == domain)]
    return sorted(found, key=lambda r: (LAYERS.index(r.layer), DOMAINS.index(r.domain)))


def get(rule_id: str) -> Rule:
    for r in RULES:
        if r.id == rule_id:
            return r
    raise KeyError(rule_id)
