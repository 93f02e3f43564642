"""The human report of a verification run: summary first, then the failures with what was observed.

* **summary**: the totals (:func:`llmcluster.verify.run.summary`), then a host x check-group
  matrix of ``passed/failed/skipped`` counts (a check's group: its name before ``[``, e.g.
  ``firewall`` of ``firewall[tcp/6800-7300]``); where the matrix is wider than the terminal, each
  host on a line of its own with its groups' counts indented below it;
* **failures**: every failed check with its observed value (the check's message); ``show_all``:
  every row (passed ones with what they measured, skipped ones with the reason).

Names are never split: rows are laid out for ``width`` (the terminal's; ``None``: no limit, for a
pipe or a CI log) in the *wide* layout (``FAIL host check message``, the message wrapped at word
boundaries in its own column) or, where the message column would be too narrow, the *compact*
layout (the check on its own line, the message indented below it). Long tokens are never broken:
a token longer than the line stays whole on a line of its own.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

#: How each outcome is shown in a row.
LABELS = {"passed": "pass", "failed": "FAIL", "skipped": "skip"}
#: The message column of the wide layout is never narrower than this (else: compact layout).
MIN_MESSAGE_WIDTH = 32
COMPACT_INDENT = 6


def check_group(check: str) -> str:
    """``firewall[tcp/6800-7300]`` -> ``firewall``; a name without brackets is its own group."""
    return check.split("[", 1)[0] or check


def group_counts(results: Sequence[dict[str, Any]]) -> tuple[list[str], list[str], dict[tuple[str, str], Counter]]:
    """(hosts, groups, counts per (host, group)) in first-seen order (the suite's order)."""
    hosts: dict[str, None] = {}
    groups: dict[str, None] = {}
    counts: dict[tuple[str, str], Counter] = {}
    for r in results:
        host, group = r.get("host") or "-", check_group(r["check"])
        hosts.setdefault(host)
        groups.setdefault(group)
        counts.setdefault((host, group), Counter())[r["outcome"]] += 1
    return list(hosts), list(groups), counts


def _cell(c: Counter | None) -> str:
    if not c:
        return "-"
    return f"{c.get('passed', 0)}/{c.get('failed', 0)}/{c.get('skipped', 0)}"


def _fits(lines: Iterable[str], width: int | None) -> bool:
    return width is None or all(len(line) <= width for line in lines)


def summary_lines(results: Sequence[dict[str, Any]], width: int | None) -> list[str]:
    hosts, groups, counts = group_counts(results)
    if not hosts:
        return ["no checks ran"]
    hw = max(len("host"), *(len(h) for h in hosts))
    widths = [max(len(g), *(len(_cell(counts.get((h, g)))) for h in hosts)) for g in groups]
    matrix = ["counts: passed/failed/skipped per host and check group",
              "  ".join([f"{'host':<{hw}}", *(f"{g:>{w}}" for g, w in zip(groups, widths, strict=True))]).rstrip()]
    for h in hosts:
        cells = [f"{_cell(counts.get((h, g))):>{w}}" for g, w in zip(groups, widths, strict=True)]
        matrix.append("  ".join([f"{h:<{hw}}", *cells]).rstrip())
    if _fits(matrix, width):
        return matrix
    # too wide for the terminal: each host on a line of its own, its groups indented below it
    gw = max(len(g) for g in groups)
    out = [matrix[0]]
    for h in hosts:
        out.append(h)
        out.extend(f"  {g:<{gw}}  {_cell(counts[(h, g)])}" for g in groups if counts.get((h, g)))
    return out


def _wrap(text: str, width: int | None) -> list[str]:
    """``text`` in lines of at most ``width`` (``None``: one line), broken at spaces only."""
    text = " ".join(text.split())
    if width is None or not text:
        return [text]
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def row_lines(rows: Sequence[dict[str, Any]], width: int | None) -> list[str]:
    """One block per result: wide layout when the message column is wide enough, else compact."""
    if not rows:
        return []
    hw = max(len(r.get("host") or "-") for r in rows)
    cw = max(len(r["check"]) for r in rows)
    lead = 4 + 2 + hw + 2 + cw + 2  # "FAIL  host  check  "
    wide = width is None or width - lead >= MIN_MESSAGE_WIDTH
    out: list[str] = []
    for r in rows:
        label = LABELS.get(r["outcome"], r["outcome"])
        text = (r.get("message") or "") if r["outcome"] != "passed" else (r.get("detail") or "")
        host = r.get("host") or "-"
        if wide:
            msg = _wrap(text, None if width is None else width - lead)
            out.append(f"{label:<4}  {host:<{hw}}  {r['check']:<{cw}}  {msg[0]}".rstrip())
            out.extend(" " * lead + m for m in msg[1:])
        else:
            head = f"{label:<4}  {host}  {r['check']}"
            if len(head) > width:  # the check on its own line: never split
                out.extend([f"{label:<4}  {host}", f"{'':<{COMPACT_INDENT}}{r['check']}"])
            else:
                out.append(head)
            if text:
                out.extend(" " * COMPACT_INDENT + m
                           for m in _wrap(text, max(width - COMPACT_INDENT, MIN_MESSAGE_WIDTH // 2)))
    return out


def report_lines(report: Any, *, width: int | None, show_all: bool = False) -> list[str]:
    """The whole human report: totals, the summary matrix, then the failures (``show_all``: every row)."""
    from llmcluster.verify.run import summary

    lines = [*_wrap(summary(report), width), ""]
    summary_block = summary_lines(report.results, width)
    lines += [*_wrap(summary_block[0], width), *summary_block[1:]]
    failures = report.failures
    if show_all:
        lines += ["", f"all {len(report.results)} checks:"]
        lines += row_lines(report.results, width)
    elif failures:
        lines += ["", *_wrap(f"{len(failures)} failed check(s), with what was observed (--all for every "
                             "check):", width)]
        lines += row_lines(failures, width)
    return lines


def print_report(console: Any, report: Any, *, show_all: bool = False) -> None:
    """Print :func:`report_lines` on a rich console: laid out for its width on a terminal, unwrapped
    plain text elsewhere (a pipe, a CI log); outcomes coloured on a terminal only."""
    from rich.text import Text

    width = console.width if console.is_terminal else None
    for line in report_lines(report, width=width, show_all=show_all):
        text = Text(line)
        if console.is_terminal:
            text.highlight_regex(r"^FAIL\b", "bold red")
            text.highlight_regex(r"^pass\b", "green")
            text.highlight_regex(r"^skip\b", "yellow")
        console.print(text, soft_wrap=True, highlight=False)
