"""Writing an output folder safely: ``llmcluster plan --out`` and ``llmcluster pki export --out`` (and
``pki revoke`` / ``pki crl``, which replace two files of an export: :func:`update_files`).

The rules every writer follows:

* **Never delete or overwrite what llmcluster did not write.** A folder is our previous output
  when it holds :data:`MANIFEST` (``.llmcluster-export.json``: the kind of output and every file we
  wrote there; outputs from before the manifest are recognised by their layout, see ``legacy``).
  A non-empty folder that is not ours is refused unless the user passes ``--replace``; even then
  only files of our manifest are replaced or removed, and a file we would write that exists but is
  not ours is refused by name.
* **Atomic.** Every file is written into a fresh temporary folder first. A new folder (or an empty
  one, or one holding only our previous output) is then swapped into place in one step
  (``renameat2(RENAME_EXCHANGE)``; two renames where the file system lacks it); a folder that also
  holds foreign files, or is the current folder, gets each file renamed into place (each file
  atomic), our stale files removed, and the manifest written last. A failure before the swap
  leaves the previous output untouched and nothing behind.
* **Every mistake is a clean error.** Refusals and OS errors raise
  :class:`~llmcluster.errors.SpecError` with one ``<DIR>: <message>`` line (exit 2), checked
  before any work by :func:`inspect`, again when writing, and nothing is left behind.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NoReturn

from llmcluster.errors import Problem, SpecError

#: Our manifest, in every folder we write.
MANIFEST = ".llmcluster-export.json"
#: The longest name of one path component (Linux NAME_MAX, bytes).
NAME_MAX = 255
#: The longest path (Linux PATH_MAX, bytes, with its NUL).
PATH_MAX = 4095

#: ``legacy(folder)``: the files an output written before :data:`MANIFEST` existed holds
#: (relative paths), or None when the folder is not such an output.
Legacy = Callable[[Path], "set[str] | None"]

_REASONS = {
    errno.ENAMETOOLONG: f"a name in this path is too long (at most {NAME_MAX} bytes a name)",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop?)",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted here",
    errno.EROFS: "a read-only file system",
    errno.ENOSPC: "No space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "a folder is in the way",
    errno.EXDEV: "crosses file systems",
}


def refuse(where: Path | str, message: str) -> NoReturn:
    raise SpecError(Problem(os.fspath(where), message))


def os_reason(exc: OSError) -> str:
    """A short, path-free reason for an OSError."""
    return _REASONS.get(exc.errno or 0, exc.strerror or type(exc).__name__)


def _display(path: Path | str) -> str:
    """A path as messages show it: NUL written as \\0, a very long one shortened in the middle."""
    text = os.fspath(path).replace("\0", "\\0")
    return text if len(text) <= 200 else text[:120] + "..." + text[-60:]


@dataclass
class Target:
    """Where an output goes and what is there now (:func:`inspect`)."""

    path: str                    # as the user named it (for messages)
    real: Path                   # absolute, symlinks resolved
    kind: str
    state: str                   # "new" | "empty" | "ours" | "foreign"
    previous: frozenset[str] = frozenset()   # files of our previous output (relative)
    previous_kind: str | None = None
    only_ours: bool = False      # nothing in the folder but our previous output
    created: list[Path] = field(default_factory=list)


def check_path_text(path: Path | str, where: str | None = None) -> None:
    """The path's text alone: not empty, no NUL, no name longer than NAME_MAX, not longer than PATH_MAX."""
    text = os.fspath(path)
    shown = _display(where if where is not None else text)
    if not text:
        refuse(shown or "''", "an empty path: name a file or folder")
    if "\0" in text:
        refuse(shown, "a path cannot contain a NUL character")
    raw = os.fsencode(text)
    if len(raw) > PATH_MAX:
        refuse(shown, f"the path is {len(raw)} bytes long: at most {PATH_MAX}")
    for part in raw.split(b"/"):
        if len(part) > NAME_MAX:
            refuse(shown, f"a name in this path is {len(part)} bytes long: at most {NAME_MAX} bytes a name")


def _safe_rel(rel: object) -> str | None:
    """``rel`` as a normalised relative path inside the folder, or None if it is not one."""
    if not isinstance(rel, str) or not rel or "\0" in rel:
        return None
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("..", ".", "") for part in p.parts) or str(p) != rel or rel == MANIFEST:
        return None
    return rel


def read_manifest(folder: Path, shown: str | None = None) -> tuple[str, frozenset[str]] | None:
    """(kind, files) of our manifest in ``folder``; None without one; refuses a manifest that is not ours
    (``shown``: the folder as messages name it)."""
    p = folder / MANIFEST
    where = shown or _display(folder)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > 16 * 1024 * 1024:
        refuse(where, f"{MANIFEST} is not a file llmcluster wrote: move it away or choose another folder")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        kind, files = doc["kind"], doc["files"]
        rels = [_safe_rel(f) for f in files]
        if not isinstance(kind, str) or doc.get("tool") != "llmcluster" or None in rels:
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        refuse(where, f"{MANIFEST} is not a manifest llmcluster wrote: move it away or choose another folder")
    return kind, frozenset(r for r in rels if r)


def _walk_only(folder: Path, ours: frozenset[str]) -> bool:
    """True when ``folder`` holds nothing but ``ours`` (regular files), the manifest and their folders."""
    parents = {str(p) for r in ours for p in PurePosixPath(r).parents} - {"."}
    budget = len(ours) + len(parents) + 2
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        rel_dir = os.path.relpath(dirpath, folder)
        for name in dirnames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel not in parents or os.path.islink(os.path.join(dirpath, name)):
                return False
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel != MANIFEST and rel not in ours:
                return False
            budget -= 1
            if budget < 0:
                return False
    return True


def _cwd_inside(real: Path) -> bool:
    try:
        cwd = Path(os.getcwd()).resolve()
    except OSError:
        return False
    return cwd == real or real in cwd.parents


def inspect(path: Path | str, kind: str, *, replace: bool = False, legacy: Legacy | None = None,
            probe: bool = True) -> Target:
    """What writing ``kind`` output to ``path`` would do; a :class:`SpecError` ``<path>: <why>`` when
    it must not be done. ``probe``: also check that a new folder can be created there (creating
    and removing an empty temporary folder next to it)."""
    check_path_text(path)
    shown = _display(path)
    p = Path(path)
    try:
        lst = os.lstat(p)
    except FileNotFoundError:
        lst = None
    except OSError as exc:
        refuse(shown, os_reason(exc))
    if lst is not None and stat.S_ISLNK(lst.st_mode):
        try:
            os.stat(p)
        except FileNotFoundError:
            refuse(shown, "a symbolic link to nothing: remove it or name another folder")
        except OSError as exc:
            refuse(shown, os_reason(exc))
    try:
        real = Path(os.path.realpath(p, strict=lst is not None))
    except OSError as exc:
        refuse(shown, os_reason(exc))
    if lst is None:
        target = Target(shown, real, kind, "new", only_ours=True)
        if probe:
            _probe_new(target)
        return target
    try:
        st = os.stat(real)
    except OSError as exc:
        refuse(shown, os_reason(exc))
    if not stat.S_ISDIR(st.st_mode):
        refuse(shown, "exists and is not a folder: name a new or empty folder")
    try:
        with os.scandir(real) as it:
            empty = next(it, None) is None
    except OSError as exc:
        refuse(shown, f"cannot read the folder: {os_reason(exc)}")
    if empty:
        return Target(shown, real, kind, "empty", only_ours=True)
    found = read_manifest(real, shown)
    if found is None and legacy is not None:
        files = legacy(real)
        if files is not None:
            found = (kind, frozenset(f for f in files if _safe_rel(f)))
    if found is None:
        if not replace:
            refuse(shown, "is not empty and holds no llmcluster output (no " + MANIFEST + "): name a new or "
                          "empty folder, or pass --replace to write beside its files (none is overwritten)")
        return Target(shown, real, kind, "foreign")
    prev_kind, files = found
    if prev_kind != kind and not replace:
        refuse(shown, f"holds llmcluster {prev_kind} output, not {kind} output: name another folder, or pass "
                      f"--replace to replace it")
    return Target(shown, real, kind, "ours", files, prev_kind, only_ours=_walk_only(real, files))


def _probe_new(target: Target) -> None:
    """The nearest existing folder above a new target is a folder we can create things in."""
    anc = target.real.parent
    while True:
        try:
            st = os.stat(anc)
            break
        except FileNotFoundError:
            anc = anc.parent
        except OSError as exc:
            refuse(target.path, os_reason(exc))
    if not stat.S_ISDIR(st.st_mode):
        refuse(target.path, f"{_display(anc)} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".llmcluster-probe-", dir=anc))
    except OSError as exc:
        refuse(target.path, f"cannot create a folder in {_display(anc)}: {os_reason(exc)}")


# --------------------------------------------------------------------------- writing


def _write_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _stage(stage: Path, files: Mapping[str, tuple[bytes, int]], kind: str, dir_mode: int,
           manifest_files: Iterable[str]) -> None:
    for rel, (data, mode) in files.items():
        p = stage / rel
        for d in reversed(p.relative_to(stage).parents[:-1]):
            (stage / d).mkdir(mode=dir_mode, exist_ok=True)
        _write_file(p, data, mode)
    _write_file(stage / MANIFEST, manifest_bytes(kind, manifest_files), 0o644)


def manifest_bytes(kind: str, files: Iterable[str]) -> bytes:
    doc = {"tool": "llmcluster", "kind": kind, "files": sorted(set(files)),
           "note": "files llmcluster wrote here; it replaces or removes only these"}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def _remove_ours(folder: Path, files: Iterable[str]) -> None:
    """Remove our files (regular files only) from ``folder``, then the folders they leave empty."""
    dirs: set[Path] = set()
    for rel in files:
        p = folder / rel
        try:
            if stat.S_ISREG(os.lstat(p).st_mode):
                os.unlink(p)
        except FileNotFoundError:
            pass
        dirs.update(q for q in p.relative_to(folder).parents if str(q) != ".")
    for d in sorted(dirs, key=lambda q: len(q.parts), reverse=True):
        try:
            os.rmdir(folder / d)
        except OSError:
            pass  # not empty: something else lives there


def _make_parents(target: Target) -> None:
    missing = []
    anc = target.real.parent
    while not anc.exists():
        missing.append(anc)
        anc = anc.parent
    for d in reversed(missing):
        d.mkdir()
        target.created.append(d)


def _undo_parents(target: Target) -> None:
    for d in reversed(target.created):
        try:
            os.rmdir(d)
        except OSError:
            break


def write_tree(path: Path | str, files: Mapping[str, str | bytes | tuple[str | bytes, int]], kind: str, *,
               replace: bool = False, legacy: Legacy | None = None, dir_mode: int = 0o755,
               file_mode: int = 0o644) -> list[Path]:
    """Write ``files`` (relative path -> text or (text, mode)) as ``kind`` output at ``path``, by the
    rules of this module. Returns the paths written (under ``path`` as given)."""
    norm: dict[str, tuple[bytes, int]] = {}
    for rel, body in files.items():
        if _safe_rel(rel) is None:
            raise ValueError(f"not a relative path inside the folder: {rel!r}")  # a bug, not a user mistake
        data, mode = body if isinstance(body, tuple) else (body, file_mode)
        norm[rel] = (data.encode() if isinstance(data, str) else bytes(data), mode)
    target = inspect(path, kind, replace=replace, legacy=legacy, probe=False)
    try:
        if target.state in ("new", "empty", "ours") and target.only_ours and not _cwd_inside(target.real) \
                and not os.path.ismount(target.real):
            _swap(target, norm, dir_mode)
        else:
            _in_place(target, norm, dir_mode)
    except SpecError:
        raise
    except OSError as exc:
        refuse(target.path, f"cannot write: {os_reason(exc)}")
    return [Path(path) / rel for rel in norm]


def _swap(target: Target, files: Mapping[str, tuple[bytes, int]], dir_mode: int) -> None:
    real = target.real
    stage = None
    try:
        if target.state == "new":
            _make_parents(target)
        stage = Path(tempfile.mkdtemp(prefix=f".{real.name}.llmcluster-", dir=real.parent))
        _stage(stage, files, target.kind, dir_mode, files)
        os.chmod(stage, dir_mode)
        if target.state == "new":
            try:
                os.rename(stage, real)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                    refuse(target.path, "appeared while llmcluster was writing it: run the command again")
                raise
            stage = None
            return
        old = stage
        if not _exchange(stage, real):
            old = Path(tempfile.mkdtemp(prefix=f".{real.name}.llmcluster-old-", dir=real.parent))
            os.rename(real, old)
            try:
                os.rename(stage, real)
            except BaseException:
                os.rename(old, real)
                raise
        stage = None
        # ``old`` holds the previous output: ours, by inspect(); remove exactly our files.
        _remove_ours(old, target.previous | {MANIFEST})
        try:
            os.rmdir(old)
        except OSError:
            pass  # something appeared there meanwhile: never deleted (left beside the output)
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        _undo_parents(target)
        raise


def _in_place(target: Target, files: Mapping[str, tuple[bytes, int]], dir_mode: int) -> None:
    """Each file renamed into the folder; files we did not write are never touched."""
    real, previous = target.real, target.previous
    # Refuse before writing anything: a file we would write that is not ours, or a path through
    # something that is not a plain folder (a symlink could lead outside).
    for rel in files:
        p = real
        for part in PurePosixPath(rel).parts[:-1]:
            p = p / part
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                break
            if not stat.S_ISDIR(st.st_mode):
                refuse(target.path, f"{p.relative_to(real)} is in the way (not a folder): move it away")
        try:
            st = os.lstat(real / rel)
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            continue
        if rel not in previous or not stat.S_ISREG(st.st_mode):
            refuse(target.path, f"{rel} exists and llmcluster did not write it: move it away (it is never "
                                f"overwritten)")
    if (real / MANIFEST).exists() and not os.path.isfile(real / MANIFEST):
        refuse(target.path, f"{MANIFEST} is not a file: move it away")
    stage = Path(tempfile.mkdtemp(prefix=".llmcluster-stage-", dir=real))
    try:
        _stage(stage, files, target.kind, dir_mode, files)
        # The manifest first names both runs' files: a failure below leaves nothing unaccounted.
        os.replace(_staged_manifest(stage, target.kind, previous | set(files)), real / MANIFEST)
        for rel in files:
            dest = real / rel
            for d in reversed(PurePosixPath(rel).parents[:-1]):
                (real / d).mkdir(mode=dir_mode, exist_ok=True)
            os.replace(stage / rel, dest)
        _remove_ours(real, previous - set(files))
        os.replace(stage / MANIFEST, real / MANIFEST)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _staged_manifest(stage: Path, kind: str, files: Iterable[str]) -> Path:
    p = stage / (MANIFEST + ".union")
    _write_file(p, manifest_bytes(kind, files), 0o644)
    return p


def update_files(path: Path | str, kind: str, files: Mapping[str, str | bytes | tuple[str | bytes, int]], *,
                 shown: str | None = None, dir_mode: int = 0o700) -> list[Path]:
    """Replace (or add) a few files of an existing ``kind`` output at ``path``, each atomically
    (written next to it, then renamed over it, in the order given), leaving every other file as it
    is. Refused (a :class:`SpecError`, nothing written) unless ``path`` holds llmcluster ``kind``
    output, and for any file there that llmcluster did not write. New files join the manifest,
    which is written first (naming both the old and the new files)."""
    norm: dict[str, tuple[bytes, int]] = {}
    for rel, body in files.items():
        if _safe_rel(rel) is None:
            raise ValueError(f"not a relative path inside the folder: {rel!r}")  # a bug, not a user mistake
        data, mode = body if isinstance(body, tuple) else (body, 0o644)
        norm[rel] = (data.encode() if isinstance(data, str) else bytes(data), mode)
    target = inspect(path, kind, probe=False)
    where = shown or target.path
    if target.state != "ours" or target.previous_kind not in (None, kind):
        refuse(where, f"holds no llmcluster {kind} output: name the folder llmcluster wrote")
    real, previous = target.real, target.previous
    for rel in norm:
        p = real
        for part in PurePosixPath(rel).parts[:-1]:
            p = p / part
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                break
            except OSError as exc:
                refuse(where, f"{rel}: {os_reason(exc)}")
            if not stat.S_ISDIR(st.st_mode):
                refuse(where, f"{p.relative_to(real)} is in the way (not a folder): move it away")
        try:
            st = os.lstat(real / rel)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            refuse(where, f"{rel}: {os_reason(exc)}")
        if rel not in previous or not stat.S_ISREG(st.st_mode):
            refuse(where, f"{rel} exists and llmcluster did not write it: move it away (it is never overwritten)")
    added = set(norm) - previous
    stage = None
    try:
        stage = Path(tempfile.mkdtemp(prefix=".llmcluster-stage-", dir=real))
        staged = {rel: stage / f"{i}.new" for i, rel in enumerate(norm)}
        for rel, (data, mode) in norm.items():
            _write_file(staged[rel], data, mode)
        if added:
            os.replace(_staged_manifest(stage, kind, previous | added), real / MANIFEST)
        for rel in norm:
            dest = real / rel
            for d in reversed(PurePosixPath(rel).parents[:-1]):
                (real / d).mkdir(mode=dir_mode, exist_ok=True)
            os.replace(staged[rel], dest)
    except OSError as exc:
        refuse(where, f"cannot write: {os_reason(exc)}")
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    return [Path(path) / rel for rel in norm]
