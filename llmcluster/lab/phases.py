"""make lab's phase table (docs/lab.md "First run: phases"): where one ``make lab`` spends its time.

Two sources, both optional:

- the phases file (``$LLMCLUSTER_PHASES``; the Makefile names it ``$(OUT)/lab-phases.tsv`` and starts it
  afresh with ``scripts/phases.sh start``): a header line, then ``phase<TAB>seconds`` rows, one per step
  of make lab (setup, validate, plan, lab up, converge, verify). A phase ``parent / part`` is a part of
  ``parent`` (setup's apt and pip steps; ``lab up``'s base image, network and host start) and is not
  added to the total again;
- the converge role times (``converge-roles.json`` in the lab state dir, beside the verify report),
  written by every ``llmcluster lab converge`` (:class:`llmcluster.converge.RoleTimes`).

Every write is atomic (a temporary file beside it, renamed over it), and a phases file that does not
start with :data:`PHASES_HEADER` (one this tool did not start) is never written.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The environment variable naming the phases file (set by the Makefile's lab target).
PHASES_ENV = "LLMCLUSTER_PHASES"
#: The first line of a phases file (scripts/phases.sh writes the same line).
PHASES_HEADER = "# llmcluster lab phases v1: phase<TAB>seconds; 'a / b' is a part of phase a"
#: The converge role times in the lab state dir.
CONVERGE_ROLES = "converge-roles.json"
#: A part of a phase: ``parent / part``.
PART = " / "


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def phases_file() -> Path | None:
    value = os.environ.get(PHASES_ENV)
    return Path(value) if value else None


def append_phases(path: Path, rows: list[tuple[str, float]]) -> str | None:
    """Append ``rows`` to the phases file ``path``; the reason when nothing was written (no such file,
    or a file that is not a phases file), else None."""
    if not path.is_file():
        return f"{path}: no such file: the phases file is started by make lab (scripts/phases.sh start)"
    # Another writer may add rows at the same time: a lock on the file's folder (the file itself is
    # replaced by every write; scripts/phases.sh takes the same lock).
    try:
        lock = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
    except OSError as e:
        return f"{path.parent}: {e.strerror or e}: not written"
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = path.read_text()
        except OSError as e:
            return f"{path}: {e.strerror or e}: the phases file is started by make lab (scripts/phases.sh start)"
        if text.split("\n", 1)[0] != PHASES_HEADER:
            return f"{path}: not a phases file that make lab started: not written"
        if text and not text.endswith("\n"):
            text += "\n"
        atomic_write(path, text + "".join(f"{' '.join(name.split())}\t{seconds:.1f}\n" for name, seconds in rows))
        return None
    finally:
        os.close(lock)  # closing the file releases the lock


@dataclass(frozen=True)
class Phases:
    rows: list[tuple[str, float]]  # in file order
    skipped: list[int]  # line numbers of rows that are not phase<TAB>seconds
    error: str = ""  # the file could not be read


def read_phases(path: Path) -> Phases | None:
    """The rows of a phases file; None when there is no such file."""
    try:
        text = path.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        return Phases([], [], error=f"{path}: cannot be read ({e.strerror or e})")
    rows: list[tuple[str, float]] = []
    skipped: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, seconds = line.rpartition("\t")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not name.strip() or not value >= 0 or value == float("inf"):
            skipped.append(n)
            continue
        rows.append((name.strip(), value))
    return Phases(rows, skipped)


def save_role_times(path: Path, times: dict[str, Any], **meta: Any) -> None:
    atomic_write(path, json.dumps({**meta, **times}, indent=2) + "\n")


def load_role_times(path: Path) -> dict[str, float] | None:
    """Seconds per role (the slowest first) from a ``converge-roles.json``; None when there is none or
    it cannot be read."""
    try:
        doc = json.loads(path.read_text())
        roles = doc["roles"]
        out = {str(r): float(s) for r, s in roles.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def _share(seconds: float, total: float) -> str:
    return f"{100 * seconds / total:5.1f}%" if total > 0 else "    -"


def phase_lines(phases: Phases | None, roles: dict[str, float] | None, *, source: Path | None = None,
                top: int = 5) -> list[str]:
    """The compact phase table: phase, seconds, share of the total (the top-level phases' sum), the
    parts of a phase indented under it, and the slowest converge roles; no lines when there is nothing."""
    lines: list[str] = []
    if phases is not None and phases.error:
        lines.append(f"phases    {phases.error}")
    if phases is not None and phases.rows:
        order: list[str] = []
        top_level: dict[str, float] = {}
        parts: dict[str, list[tuple[str, float]]] = {}
        for name, seconds in phases.rows:
            parent, sep, part = name.partition(PART)
            if parent not in order:
                order.append(parent)
            if sep:
                parts.setdefault(parent, []).append((part, seconds))
            else:
                top_level[parent] = top_level.get(parent, 0.0) + seconds
        # a phase known only by its parts counts as their sum
        for parent in order:
            if parent not in top_level:
                top_level[parent] = sum(s for _, s in parts.get(parent, []))
        total = sum(top_level.values())
        width = max(len(n) for n in [*order, *(f"  {p}" for ps in parts.values() for p, _ in ps), "phase"])
        width = min(width, 40)
        lines.append(f"phases    ({'make lab, ' if source is None else f'{source}; '}total {total:.1f} s)")
        lines.append(f"  {'phase':<{width}}  {'seconds':>8}  {'share':>6}")
        for parent in order:
            lines.append(f"  {parent[:width]:<{width}}  {top_level[parent]:8.1f}  {_share(top_level[parent], total)}")
            for part, seconds in parts.get(parent, []):
                lines.append(f"  {('  ' + part)[:width]:<{width}}  {seconds:8.1f}  {_share(seconds, total)}")
        if phases.skipped:
            lines.append(f"  ({len(phases.skipped)} row(s) not 'phase<TAB>seconds' skipped: line(s) "
                         f"{', '.join(map(str, phases.skipped[:5]))})")
    if roles:
        in_tasks = sum(roles.values())
        shown = ", ".join(f"{r} {s:.1f} s ({_share(s, in_tasks).strip()})" for r, s in list(roles.items())[:top])
        lines.append(f"{'  ' if lines else 'converge  '}slowest roles: {shown} (of {in_tasks:.1f} s in tasks)")
    return lines
