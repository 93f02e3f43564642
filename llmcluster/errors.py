"""Error types shared by every layer.

User mistakes are reported as :class:`Problem` objects (a dotted key path and a
message that says what is wrong and how to fix it). Layers raise
:class:`SpecError` carrying one or more problems; the CLI prints one line per
problem and exits 2. Nothing in this module imports Pulumi.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One validation finding: ``path`` is a dotted key path (``pools.gpu.count``)."""

    path: str
    message: str

    def __str__(self) -> str:  # pragma: no cover - trivial
        return f"{self.path}: {self.message}" if self.path else self.message


class LLMClusterError(Exception):
    """Base class for every error the CLI turns into a clean message and exit code."""

    exit_code = 2


class SpecError(LLMClusterError):
    """The environment spec (or an override) is invalid. Carries every problem found."""

    def __init__(self, problems: list[Problem] | Problem, source: str | None = None,
                 rules: Mapping[Problem, str] | None = None):
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = sorted(set(problems), key=lambda p: (p.path, p.message))
        self.source = source
        #: The id of the validation rule that found each problem, where known (``llmcluster.validate``).
        self.rules: dict[Problem, str] = {p: rules[p] for p in self.problems if rules and p in rules}
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [f"{prefix}{p}" for p in self.problems]


class InfeasibleError(LLMClusterError):
    """A sizing request that no deployment can satisfy (unknown model, FP8 on Ampere, ...)."""


class PlanError(LLMClusterError):
    """A planner could not produce a plan from a spec (address exhaustion, overlap, ...).

    Planners raise it with a key path so that the message points at the spec key to change.
    """

    def __init__(self, path: str, message: str):
        self.problem = Problem(path, message)
        super().__init__(str(self.problem))
