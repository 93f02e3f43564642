"""``llmcluster rollback --stack S [--to N]``: render an earlier pin of the Kubernetes serving layer.

The stack keeps its pins (model name, revision, manifest sha256, image digest) newest first in
``kubernetes.pins`` (at most ``kubernetes.keep_pins``), and ``kubernetes.active`` says which one the
program renders (0: the newest). Rolling back rewrites that one key and nothing else: every other byte of
the stack file stays as it was (comments, order, quoting), so the next ``pulumi up`` renders exactly the
objects of the earlier pin. ``--to N`` picks pin N; without it, the pin after the active one (one step
older). Rolling forward is ``--to 0``.

Safety: the file must load and validate before (a broken stack is not touched) and after the edit, the
edited spec must equal the old one but for ``kubernetes.active``, and the file is replaced atomically
(a temporary file in the same folder, fsync, rename) with its mode kept. Errors are one
``key.path: message`` line and write nothing.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llmcluster.errors import Problem, SpecError

_SECTION = re.compile(r"^(?P<indent>[ ]*)(?P<q>['\"]?)llmcluster:kubernetes(?P=q):[ ]*(?P<rest>[^\n]*)$", re.M)
_ACTIVE = re.compile(r"^(?P<lead>[ ]*active:[ ]*)(?P<n>[0-9]+)(?P<tail>[ ]*(#[^\n]*)?)$")


@dataclass(frozen=True)
class Rollback:
    path: Path
    before: int
    after: int
    pin: dict[str, str]


def _fail(path: str, message: str) -> SpecError:
    return SpecError(Problem(path, message))


def set_active_text(text: str, n: int) -> str:
    """The stack text with ``kubernetes.active`` set to ``n`` (a line changed or one inserted)."""
    matches = list(_SECTION.finditer(text))
    if len(matches) != 1:
        raise _fail("kubernetes", "no llmcluster:kubernetes section in the stack file" if not matches
                    else "the llmcluster:kubernetes section appears twice")
    m = matches[0]
    rest = m.group("rest").split("#", 1)[0].strip()
    if rest:
        raise _fail("kubernetes", "written inline ({...}): rollback edits a block section; write it as a block "
                                  "(one key per line)")
    base = len(m.group("indent"))
    lines = text[m.end() + 1:].split("\n") if m.end() < len(text) else []
    child: int | None = None
    offset = m.end() + 1
    for line in lines:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            ind = len(line) - len(line.lstrip(" "))
            if ind <= base:
                break
            if child is None:
                child = ind
            if ind == child:
                am = _ACTIVE.match(line)
                if am:
                    new = f"{am.group('lead')}{n}{am.group('tail')}"
                    return text[:offset] + new + text[offset + len(line):]
        offset += len(line) + 1
    if child is None:
        raise _fail("kubernetes", "the section is empty")
    insert_at = m.end() + 1
    return text[:insert_at] + " " * child + f"active: {n}\n" + text[insert_at:]


def _atomic_write(path: Path, text: str) -> None:
    st = path.stat()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def rollback(path: Path, to: int | None = None) -> Rollback:
    """Point ``kubernetes.active`` of the stack file ``path`` at pin ``to`` (default: one older)."""
    from llmcluster.validate import load_stack_file

    spec = load_stack_file(path)  # SpecError if the stack is invalid: nothing is touched
    k = spec.kubernetes
    if k is None or spec.serving.runtime != "kubernetes":
        raise _fail("serving.runtime", "rollback renders an earlier pin of the Kubernetes serving layer: this stack "
                                       "runs systemd (no kubernetes section)")
    target = k.active + 1 if to is None else to
    if not 0 <= target < len(k.pins):
        raise _fail("--to", f"{target}: the stack keeps pins 0..{len(k.pins) - 1} (0 is the newest)"
                    + ("; the active pin is already the oldest" if to is None else ""))
    if target == k.active:
        raise _fail("--to", f"{target} is already the active pin")
    text = path.read_text(encoding="utf-8")
    new_text = set_active_text(text, target)
    tmp_dir = tempfile.mkdtemp(prefix="llmcluster-rollback-")
    try:
        probe = Path(tmp_dir) / path.name
        probe.write_text(new_text, encoding="utf-8")
        after = load_stack_file(probe)
    finally:
        for p in Path(tmp_dir).iterdir():
            p.unlink()
        os.rmdir(tmp_dir)
    if after.kubernetes is None or after.kubernetes.active != target:
        raise _fail("kubernetes.active", "the edit did not take (is the key written twice?): nothing written")
    old_doc = spec.model_dump(mode="json")
    new_doc = after.model_dump(mode="json")
    old_doc["kubernetes"].pop("active")
    new_doc["kubernetes"].pop("active")
    if old_doc != new_doc:
        raise _fail("kubernetes.active", "the edit changed more than the active pin: nothing written")
    _atomic_write(path, new_text)
    return Rollback(path=path, before=k.active, after=target, pin=after.kubernetes.pin.model_dump(mode="json"))
