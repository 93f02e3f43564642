"""Snapshots of a folder tree, to assert that a command wrote (or deleted) nothing there."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (not following symlinks): relative path -> (kind, mode, content digest
    or link target). Two equal snapshots: nothing was created, deleted, rewritten or re-moded."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
    return out


def changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    """What differs between two snapshots, as ``+ path`` / ``- path`` / ``~ path`` lines."""
    return ([f"+ {p}" for p in sorted(after.keys() - before.keys())]
            + [f"- {p}" for p in sorted(before.keys() - after.keys())]
            + [f"~ {p}" for p in sorted(k for k in before.keys() & after.keys() if before[k] != after[k])])
