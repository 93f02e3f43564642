"""Writing one output file atomically (``diff --save``/``--markdown``, ``diagram -o``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from llmcluster.errors import Problem, SpecError


def write_atomic(path: Path, data: bytes, *, replace: bool = False, option: str = "--out") -> None:
    """Write ``data`` to ``path`` through a temporary file in its folder; refuse an existing file unless
    ``replace`` (never a folder or a symlink)."""
    from llmcluster.outdir import check_path_text, os_reason

    check_path_text(path, where=option)
    if os.path.lexists(path) and (not replace or os.path.islink(path) or not os.path.isfile(path)):
        raise SpecError(Problem(option, f"{path}: exists" + ("" if replace else " (pass --replace to replace it)")
                                + (": not a plain file" if replace else "")))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise SpecError(Problem(option, f"{folder}: no such folder"))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise SpecError(Problem(option, f"{path}: {os_reason(exc)}")) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise SpecError(Problem(option, f"{path}: {os_reason(exc)}")) from None
    except BaseException:
        os.unlink(tmp)
        raise
