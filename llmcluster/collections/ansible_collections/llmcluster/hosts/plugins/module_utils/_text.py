"""Shared by the parsers: command output as lines (pure, standard library only)."""

from __future__ import annotations

from typing import Any


def lines(output: Any) -> list[str]:
    """The lines of a command's output: its ``stdout`` text, or ``stdout_lines`` as Ansible
    registers them (a list); ``None`` (a probe that did not run) is no line."""
    if output is None:
        return []
    if isinstance(output, (list, tuple)):
        return [str(line) for line in output]
    return str(output).splitlines()


def text(output: Any) -> str:
    """The whole output as one text (``stdout`` or ``stdout_lines``)."""
    return "\n".join(lines(output))
