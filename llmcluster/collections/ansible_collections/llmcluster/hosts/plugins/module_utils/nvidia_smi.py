"""``nvidia-smi`` output (pure functions, standard library only): the per-GPU query CSV, the
``Fabric`` sections of ``nvidia-smi -q`` and the link speeds of ``nvidia-smi nvlink -s``."""

from __future__ import annotations

import re
from typing import Any

from ._text import lines

_GPU_SECTION = re.compile(r"^GPU [0-9A-Fa-f:.]+\s*$")


def nvidia_smi_query(output: Any, fields: Any) -> list[dict[str, str]]:
    """``nvidia-smi --query-gpu=<fields> --format=csv,noheader[,nounits]`` as one
    ``{field: value}`` per GPU, in nvidia-smi's order. ``fields``: the query's field list (a list
    or the comma-separated text given to ``--query-gpu``). Lines with another number of columns
    (an error message, a warning) are no GPU."""
    names = [f.strip() for f in (fields.split(",") if isinstance(fields, str) else fields or []) if f.strip()]
    rows = []
    for line in lines(output):
        values = [v.strip() for v in line.split(",")]
        if names and len(values) == len(names) and line.strip():
            rows.append(dict(zip(names, values, strict=True)))
    return rows


def nvidia_smi_fabric(output: Any) -> list[dict[str, str]]:
    """Per GPU (one per ``GPU <bus id>`` section of ``nvidia-smi -q``, in order) its ``Fabric``
    section: ``{"State": ..., "Status": ..., ...}``; ``{}`` for a GPU that has none."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] | None = None
    indent = -1
    for line in lines(output):
        if _GPU_SECTION.match(line):
            out.append({})
            cur = None
            continue
        stripped = line.strip()
        lead = len(line) - len(line.lstrip())
        if stripped == "Fabric" and out:
            cur, indent = out[-1], lead
            continue
        if cur is not None:
            if lead <= indent or not stripped:  # the section ends at a blank or outdented line
                cur = None
                continue
            if ":" in stripped:
                k, v = (s.strip() for s in stripped.split(":", 1))
                cur.setdefault(k, v)
    return out


def nvidia_smi_nvlink(output: Any) -> dict[int, dict[int, str]]:
    """``nvidia-smi nvlink -s``: GPU index -> link -> speed text (``26.562 GB/s`` or ``<inactive>``)."""
    out: dict[int, dict[int, str]] = {}
    gpu = None
    for line in lines(output):
        m = re.match(r"^GPU (\d+):", line)
        if m:
            gpu = int(m.group(1))
            out[gpu] = {}
            continue
        m = re.match(r"^\s+Link (\d+):\s*(.+?)\s*$", line)
        if m and gpu is not None:
            out[gpu][int(m.group(1))] = m.group(2)
    return out
