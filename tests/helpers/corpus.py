"""The malformed-stack corpus (``tests/unit/malformed``): its files and what each one expects.

Each file starts with ``# expect: <key.path>`` (``<root>`` for the top level), optionally
``# message: <text>`` and ``# rule: <rule id>`` (the validation rule that must report it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "unit" / "malformed"
FILES = sorted(CORPUS.glob("*.yaml"))
NAME = re.compile(r"^\d{3}-[a-z0-9]+(-[a-z0-9]+)*\.yaml$")
ROOT = "<root>"


@dataclass(frozen=True)
class Expectation:
    path: str
    message: str | None
    rule: str | None = None


def expectation(path: Path) -> Expectation:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines and lines[0].startswith("# expect:"), f"{path.name}: first line must be '# expect: <key.path>'"
    want = lines[0].removeprefix("# expect:").strip()
    assert want, f"{path.name}: '# expect:' needs a key path (or {ROOT})"
    message = None
    if len(lines) > 1 and lines[1].startswith("# message:"):
        message = lines[1].removeprefix("# message:").strip() or None
    header = lines[: next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))]
    rule = next((line.removeprefix("# rule:").strip() for line in header if line.startswith("# rule:")), None)
    return Expectation("" if want == ROOT else want, message, rule or None)
