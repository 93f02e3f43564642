"""Shared fixtures: the project root, the stacks, and loaded specs/plans (cached per session)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STACKS = ROOT / "stacks"
STACK_NAMES = sorted(p.name.split(".")[1] for p in STACKS.glob("Pulumi.*.yaml"))


@functools.cache
def load_spec(stack: str, overrides: tuple[str, ...] = ()):
    from llmcluster.spec import load_stack_file

    return load_stack_file(STACKS / f"Pulumi.{stack}.yaml", list(overrides))


@functools.cache
def load_plan(stack: str, overrides: tuple[str, ...] = ()):
    from llmcluster.plan.build import build_plan

    return build_plan(load_spec(stack, overrides))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
