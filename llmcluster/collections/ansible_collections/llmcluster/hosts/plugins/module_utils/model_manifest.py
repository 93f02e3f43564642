#!/usr/bin/python3
"""Model weight manifests, and verifying a model tree against one at disk speed (standard library only).

A model (DeepSeek-R1 FP8: ~700 GB of ``.safetensors`` shards) is proven before it is served: the
safetensors format carries no checksum, so a silently corrupted shard would serve wrong answers.
This one file is both

* a library (``build_manifest``, ``load_manifest``, ``verify``), imported by ``llmcluster model``
  (``llmcluster/modelstore.py``) as
  ``llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.model_manifest``;
* a script, copied to the GPU nodes as ``/usr/local/libexec/llmcluster/model-verify`` (the
  ``model_store`` role) and run by the trtllm-serve unit as ``ExecStartPre``::

      model-verify manifest DIR [--model NAME] [--version V] [--workers N] [--out FILE [--force]]
      model-verify verify --manifest FILE DIR [--workers N] [--json]

  ``verify`` exits 0 when DIR matches the manifest (last stdout line ``verified N files, B bytes
  in S s (X GB/s)``; ``--json``: one JSON object ``files, bytes, seconds, gbps, problems, ok``),
  1 on any mismatch (one ``<relative path>: <what is wrong>`` line per problem on stderr), 2 on a
  usage error or an unreadable manifest (one line, never a traceback).

It runs on Python >= 3.9 (the nodes' python3) and imports nothing outside the standard library.

The manifest (``llmcluster-model-manifest/1``, JSON, keys sorted, UTF-8)::

    {"format": "llmcluster-model-manifest/1", "model": "deepseek-r1", "version": "main" | null,
     "created": "2026-01-01T00:00:00Z", "total_bytes": 688586727753,
     "files": [{"path": "model-00001-of-000163.safetensors", "size": 5234139343, "sha256": "<hex>",
                "safetensors": {"header_bytes": 27840, "data_bytes": 5234111503}}, ...]}

``files`` are sorted by path (relative, POSIX, normalised: no absolute path, no ``..``/``.``/empty
component, no duplicates, no path that is also a folder of another). ``safetensors`` is recorded
for (and only for) ``.safetensors`` files: ``header_bytes`` is the 8-byte length plus the JSON
header, ``data_bytes`` the tensor data after it, their sum the file's size.

What ``verify`` refuses (one problem line each, naming the file):

* a missing file; an extra file (a file the manifest does not list);
* a size mismatch (truncation, or growth) -- found by ``stat`` before any byte is hashed;
* a sha256 mismatch (a flipped bit anywhere: header or tensor data);
* a bad safetensors header (a zeroed header, a length past the end, not a JSON object, tensor
  offsets outside the data section or overlapping or leaving gaps, a dtype/shape whose byte length
  disagrees with the offsets, tensors that do not end where the data section ends);
* **any** symbolic link or other non-regular file in the tree (a FIFO, a socket, a device), even one
  pointing at the right bytes: the manifest records regular files only, so a swapped link can never
  point a shard at another file, inside the tree or outside it. Trees with symlinks (the Hugging
  Face cache's ``snapshots/`` folders) are copied to real files first (``huggingface-cli download
  --local-dir``, ``cp -L``, or ``llmcluster model stage``).

Files are hashed in parallel across files (one sha256 cannot be split; ``hashlib`` releases the GIL
while hashing), biggest first, each with an 8 MiB ``readinto`` buffer and
``posix_fadvise(SEQUENTIAL)``. The manifest file itself, when it lies inside DIR, is not an extra
file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import stat
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

FORMAT = "llmcluster-model-manifest/1"
#: Read buffer per hashing thread.
BUFFER_BYTES = 8 * 1024 * 1024
#: The safetensors format's own limit on the JSON header (the reference implementation's MAX_HEADER_SIZE).
MAX_HEADER_BYTES = 100_000_000
#: A manifest larger than this is refused unread (a million files fit in far less).
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
MAX_WORKERS = 256
SAFETENSORS_SUFFIX = ".safetensors"
EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2

#: Bits per element of the safetensors dtypes (F4/F6: packed; the byte length must be whole).
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TOP_KEYS = {"format", "model", "version", "created", "files", "total_bytes"}
_ENTRY_KEYS = {"path", "size", "sha256", "safetensors"}


def default_workers() -> int:
    return max(1, min(16, os.cpu_count() or 1))


# --------------------------------------------------------------------------- errors


class ModelStoreError(Exception):
    """A usage error or a refused input: one or more ``<where>: <what is wrong>`` lines."""

    def __init__(self, where: str, message: str, more: list[tuple[str, str]] | None = None):
        self.problems = [(where, message), *(more or [])]
        super().__init__(self.lines()[0])

    def lines(self) -> list[str]:
        return [f"{w}: {m}" if w else m for w, m in self.problems]


class ManifestError(ModelStoreError):
    """The manifest cannot be read or is not a valid ``llmcluster-model-manifest/1``."""


class HeaderError(ValueError):
    """A safetensors header that breaks the format."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Entry:
    path: str
    size: int
    sha256: str
    header_bytes: int | None = None
    data_bytes: int | None = None

    def to_dict(self) -> dict:
        d: dict = {"path": self.path, "size": self.size, "sha256": self.sha256}
        if self.header_bytes is not None:
            d["safetensors"] = {"header_bytes": self.header_bytes, "data_bytes": self.data_bytes}
        return d


@dataclass(frozen=True)
class Manifest:
    model: str
    version: str | None
    created: str
    files: tuple[Entry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.files)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "model": self.model, "version": self.version, "created": self.created,
                "files": [e.to_dict() for e in self.files], "total_bytes": self.total_bytes}

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass
class Report:
    """What :func:`verify` found. ``problems``: (relative path, what is wrong), sorted."""

    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def gbps(self) -> float:
        return self.bytes / 1e9 / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        return [f"{p}: {m}" for p, m in self.problems]

    def summary(self) -> str:
        return f"verified {self.files} files, {self.bytes} bytes in {self.seconds:.2f} s ({self.gbps:.2f} GB/s)"

    def to_dict(self) -> dict:
        return {"ok": self.ok, "files": self.files, "bytes": self.bytes, "seconds": round(self.seconds, 4),
                "gbps": round(self.gbps, 4), "problems": [{"path": p, "message": m} for p, m in self.problems]}


# --------------------------------------------------------------------------- paths


def path_problem(rel: object) -> str | None:
    """Why ``rel`` is not a normalised relative POSIX path inside a tree (None when it is one)."""
    if not isinstance(rel, str):
        return "not a string"
    if not rel:
        return "an empty path"
    if "\0" in rel:
        return "contains a NUL character"
    if rel.startswith("/"):
        return "an absolute path: paths are relative to the model folder"
    parts = rel.split("/")
    if ".." in parts:
        return "contains '..': paths stay inside the model folder"
    if "." in parts or "" in parts:
        return "not normalised (an empty or '.' component)"
    if any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        return "a name longer than 255 bytes"
    return None


def _shown(rel: str) -> str:
    text = rel.replace("\0", "\\0").replace("\n", "\\n")
    return text if len(text) <= 200 else text[:120] + "..." + text[-60:]


# --------------------------------------------------------------------------- safetensors


def check_safetensors_header(header: bytes, data_size: int) -> None:
    """The JSON header of a safetensors file (the bytes after its 8-byte length) against the size of
    its data section; raises :class:`HeaderError` saying what breaks the format."""
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        raise HeaderError("the header is not UTF-8 text (corrupted or zeroed?)") from None
    if not text.startswith("{"):
        raise HeaderError("the header is not a JSON object (corrupted or zeroed?)")

    def pairs(items):
        seen = {}
        for k, v in items:
            if k in seen:
                raise HeaderError(f"the header names {k[:60]!r} twice")
            seen[k] = v
        return seen

    try:
        doc = json.loads(text, object_pairs_hook=pairs)
    except ValueError as exc:
        if isinstance(exc, HeaderError):
            raise
        raise HeaderError(f"the header is not valid JSON ({exc.args[0][:80]})") from None
    if not isinstance(doc, dict):
        raise HeaderError("the header is not a JSON object")
    spans = []
    for name, info in doc.items():
        shown = repr(name[:60])
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise HeaderError("__metadata__ is not an object of strings")
            continue
        if not isinstance(info, dict):
            raise HeaderError(f"tensor {shown} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str):
            raise HeaderError(f"tensor {shown}: no dtype")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise HeaderError(f"tensor {shown}: shape is not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise HeaderError(f"tensor {shown}: data_offsets is not [begin, end]")
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise HeaderError(f"tensor {shown}: data_offsets [{begin}, {end}] outside the data section "
                              f"({data_size} bytes)")
        bits = DTYPE_BITS.get(dtype)
        if bits is not None:
            count = 1
            for d in shape:
                count *= d
            if count * bits % 8 or count * bits // 8 != end - begin:
                raise HeaderError(f"tensor {shown}: {dtype} {shape} is {count * bits / 8:g} bytes, its "
                                  f"data_offsets span {end - begin}")
        spans.append((begin, end, shown))
    at = 0
    for begin, end, shown in sorted(spans):
        if begin != at:
            what = "overlaps the tensor before it" if begin < at else f"leaves a gap of {begin - at} bytes before it"
            raise HeaderError(f"tensor {shown} at [{begin}, {end}] {what}")
        at = end
    if at != data_size:
        raise HeaderError(f"the tensors end at byte {at} of the data section, which holds {data_size} bytes")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = os.pread(fd, n - got, offset + got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def safetensors_layout(fd: int, size: int) -> tuple[int, int]:
    """(header_bytes, data_bytes) of the open safetensors file ``fd`` of ``size`` bytes, its header
    checked (:func:`check_safetensors_header`); raises :class:`HeaderError`."""
    if size < 8:
        raise HeaderError(f"{size} bytes: shorter than the 8-byte header length")
    raw = _pread_exact(fd, 8, 0)
    if len(raw) < 8:
        raise HeaderError("the file ended while reading the header length")
    (n,) = struct.unpack("<Q", raw)
    if n == 0:
        raise HeaderError("the header length is 0 (a zeroed header?)")
    if n > MAX_HEADER_BYTES:
        raise HeaderError(f"the header length {n} exceeds the format's limit of {MAX_HEADER_BYTES} bytes "
                          f"(a corrupted header?)")
    if 8 + n > size:
        raise HeaderError(f"the header length {n} runs past the end of the file ({size} bytes)")
    header = _pread_exact(fd, n, 8)
    if len(header) < n:
        raise HeaderError("the file ended while reading the header")
    check_safetensors_header(header, size - 8 - n)
    return 8 + n, size - 8 - n


# --------------------------------------------------------------------------- the tree


@dataclass
class Tree:
    files: dict = field(default_factory=dict)    # rel -> os.stat_result (regular files)
    others: dict = field(default_factory=dict)   # rel -> what it is (symlink, FIFO, ...)
    errors: list = field(default_factory=list)   # (rel, message)


def _kind(st: os.stat_result) -> str:
    mode = st.st_mode
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def check_root(root: str, where: str = "DIR") -> str:
    """``root`` as an existing folder (following a symlink to it); a :class:`ModelStoreError` otherwise."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise ModelStoreError(where, f"{_shown(root)}: no such folder") from None
    except OSError as exc:
        raise ModelStoreError(where, f"{_shown(root)}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ModelStoreError(where, f"{_shown(root)}: not a folder")
    return root


def walk_tree(root: str) -> Tree:
    """Every entry under ``root`` without following a symlink: regular files (with their lstat),
    everything else that is not a folder, and folders that could not be read."""
    tree = Tree()
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
                entries = list(it)
        except OSError as exc:
            tree.errors.append((rel_dir or ".", f"cannot read the folder: {exc.strerror}"))
            continue
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            try:
                st = e.stat(follow_symlinks=False)
            except OSError as exc:
                tree.errors.append((rel, f"cannot stat: {exc.strerror}"))
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel)
            elif stat.S_ISREG(st.st_mode):
                tree.files[rel] = st
            elif stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(e.path)
                except OSError:
                    target = "?"
                tree.others[rel] = (f"a symbolic link (-> {_shown(target)}): the manifest records regular files "
                                    f"only, never links")
            else:
                tree.others[rel] = f"{_kind(st)}: the manifest records regular files only"
    return tree


def path_within(root: str, path: str | None) -> set[str]:
    """``path``'s relative path inside ``root`` when it lies there (the manifest file itself), else nothing."""
    if not path:
        return set()
    try:
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
    except ValueError:
        return set()
    if rel.startswith(".." + os.sep) or rel == ".." or os.path.isabs(rel):
        return set()
    return {rel.replace(os.sep, "/")}


# --------------------------------------------------------------------------- hashing


_local = threading.local()


def _buffer() -> memoryview:
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = memoryview(bytearray(BUFFER_BYTES))
    return buf


def hash_fd(fd: int) -> tuple[str, int]:
    """(sha256 hex, bytes read) of the open file ``fd`` from its start, read sequentially."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except (AttributeError, OSError):
        pass
    h = hashlib.sha256()
    buf = _buffer()
    total = 0
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(buf[:n])
            total += n
    return h.hexdigest(), total


def _abbrev(digest: str) -> str:
    return digest[:12] + ".."


def _open_regular(root: str, rel: str, expected: os.stat_result | None = None) -> tuple[int, os.stat_result]:
    """Open ``rel`` under ``root`` without following a final symlink; with ``expected`` (the walk's
    lstat) insist it is the same file (nothing swapped in between)."""
    fd = os.open(os.path.join(root, *rel.split("/")), os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelStoreError(rel, "not a regular file")
        if expected is not None and (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
            raise ModelStoreError(rel, "was replaced while being verified")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _check_one(root: str, entry: Entry, st0: os.stat_result) -> tuple[str, int, list[str]]:
    """(path, bytes hashed, problems) of one file the walk found at the manifest's size."""
    count, problems = _check_file(root, entry, st0)
    return entry.path, count, problems


def _check_file(root: str, entry: Entry, st0: os.stat_result) -> tuple[int, list[str]]:
    try:
        fd, st = _open_regular(root, entry.path, st0)
    except ModelStoreError as exc:
        return 0, [exc.problems[0][1]]
    except OSError as exc:
        return 0, [f"cannot open: {exc.strerror}"]
    try:
        if entry.header_bytes is not None or entry.path.endswith(SAFETENSORS_SUFFIX):
            try:
                layout = safetensors_layout(fd, st.st_size)
            except HeaderError as exc:
                return 0, [f"bad safetensors header: {exc}"]
            except OSError as exc:
                return 0, [f"read error: {exc.strerror}"]
            if entry.header_bytes is not None and layout != (entry.header_bytes, entry.data_bytes):
                return 0, [f"safetensors layout mismatch (expected header {entry.header_bytes} + data "
                           f"{entry.data_bytes} bytes, got {layout[0]} + {layout[1]})"]
        try:
            digest, n = hash_fd(fd)
        except OSError as exc:
            return 0, [f"read error: {exc.strerror}"]
    finally:
        os.close(fd)
    if n != entry.size:
        return n, [f"size changed while being read (expected {entry.size} bytes, read {n})"]
    if digest != entry.sha256:
        return n, [f"sha256 mismatch (expected {_abbrev(entry.sha256)}, got {_abbrev(digest)})"]
    return n, []


def _workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if not 1 <= workers <= MAX_WORKERS:
        raise ModelStoreError("--workers", f"{workers}: out of range 1..{MAX_WORKERS}")
    return workers


def _run_parallel(func, items: list, workers: int) -> list:
    if workers == 1 or len(items) <= 1:
        return [func(*i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="model-verify") as pool:
        return list(pool.map(lambda i: func(*i), items))


# --------------------------------------------------------------------------- verify


def verify(root: str, manifest: Manifest, workers: int | None = None, *, exclude: set | frozenset = frozenset()
           ) -> Report:
    """Check the tree at ``root`` against ``manifest``: every problem found (see the module's
    docstring), each file hashed at most once, files in parallel (``workers`` threads), biggest
    first. ``exclude``: relative paths that are not extra files (the manifest inside the tree)."""
    n = _workers(workers)
    check_root(root)
    t0 = time.monotonic()
    tree = walk_tree(root)
    problems: list[tuple[str, str]] = list(tree.errors)
    problems += [(rel, what) for rel, what in tree.others.items()]
    expected = {e.path: e for e in manifest.files}
    problems += [(rel, "an extra file: not in the manifest") for rel in tree.files
                 if rel not in expected and rel not in exclude]
    todo = []
    for e in manifest.files:
        st = tree.files.get(e.path)
        if st is None:
            if e.path not in tree.others:
                problems.append((e.path, "missing"))
        elif st.st_size != e.size:
            what = "truncated" if st.st_size < e.size else "grown"
            problems.append((e.path, f"size mismatch, {what} (expected {e.size} bytes, got {st.st_size})"))
        else:
            todo.append((root, e, st))
    todo.sort(key=lambda t: -t[1].size)
    hashed = 0
    for rel, count, found in _run_parallel(_check_one, todo, n):
        hashed += count
        problems += [(rel, p) for p in found]
    return Report(files=len(manifest.files), bytes=hashed, seconds=time.monotonic() - t0,
                  problems=sorted(set(problems)))


# --------------------------------------------------------------------------- build


def _entry_of(root: str, rel: str, st0: os.stat_result) -> Entry:
    try:
        fd, st = _open_regular(root, rel, st0)
    except OSError as exc:
        raise ModelStoreError(rel, f"cannot open: {exc.strerror}") from None
    try:
        layout = None
        if rel.endswith(SAFETENSORS_SUFFIX):
            try:
                layout = safetensors_layout(fd, st.st_size)
            except HeaderError as exc:
                raise ModelStoreError(rel, f"bad safetensors header: {exc}: no manifest is made of a broken "
                                           f"model") from None
        try:
            digest, n = hash_fd(fd)
        except OSError as exc:
            raise ModelStoreError(rel, f"read error: {exc.strerror}") from None
    finally:
        os.close(fd)
    if n != st0.st_size:
        raise ModelStoreError(rel, "changed while being read: build the manifest of a tree nobody writes to")
    return Entry(rel, n, digest, *(layout or (None, None)))


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def build_manifest(root: str, workers: int | None = None, model: str | None = None, version: str | None = None,
                   *, exclude: set | frozenset = frozenset()) -> Manifest:
    """The manifest of every regular file under ``root`` (hashed in parallel); refuses a tree holding
    a symlink or another non-regular file, an unreadable folder, a broken safetensors header, or no file."""
    n = _workers(workers)
    check_root(root)
    if model is not None and not model.strip():
        raise ModelStoreError("--model", "an empty name")
    tree = walk_tree(root)
    bad = [*tree.errors, *sorted(tree.others.items())]
    if bad:
        raise ModelStoreError(bad[0][0], bad[0][1], bad[1:])
    rels = sorted(r for r in tree.files if r not in exclude)
    if not rels:
        raise ModelStoreError("DIR", f"{_shown(root)}: holds no files")
    for rel in rels:
        why = path_problem(rel)
        if why:
            raise ModelStoreError(_shown(rel), why)
    jobs = sorted(((root, rel, tree.files[rel]) for rel in rels), key=lambda j: -j[2].st_size)
    entries = {e.path: e for e in _run_parallel(_entry_of, jobs, n)}
    name = model if model is not None else os.path.basename(os.path.abspath(root)) or "model"
    return Manifest(model=name, version=version, created=utc_now(), files=tuple(entries[r] for r in rels))


# --------------------------------------------------------------------------- load


def parse_manifest(doc: object, where: str = "manifest") -> Manifest:
    """A manifest document (parsed JSON) validated; :class:`ManifestError` ``<where>: <key>: <what>``."""

    def bad(key: str, message: str):
        return ManifestError(where, f"{key}: {message}")

    if not isinstance(doc, dict):
        raise ManifestError(where, "not a JSON object")
    if doc.get("format") != FORMAT:
        raise bad("format", f"{str(doc.get('format'))[:60]!r} is not {FORMAT!r}")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise bad(unknown[0][:60], f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    for key in _TOP_KEYS - set(doc):
        raise bad(key, "missing")
    model, version, created = doc["model"], doc["version"], doc["created"]
    if not isinstance(model, str) or not model.strip():
        raise bad("model", "not a non-empty string")
    if version is not None and not isinstance(version, str):
        raise bad("version", "not a string or null")
    if not isinstance(created, str):
        raise bad("created", "not a string")
    files = doc["files"]
    if not isinstance(files, list) or not files:
        raise bad("files", "not a non-empty list")
    entries: list[Entry] = []
    seen: set[str] = set()
    for i, f in enumerate(files):
        key = f"files[{i}]"
        if not isinstance(f, dict):
            raise bad(key, "not an object")
        unknown = sorted(set(f) - _ENTRY_KEYS)
        if unknown:
            raise bad(f"{key}.{unknown[0][:60]}", f"unknown key (known: {', '.join(sorted(_ENTRY_KEYS))})")
        for k in ("path", "size", "sha256"):
            if k not in f:
                raise bad(f"{key}.{k}", "missing")
        path, size, digest = f["path"], f["size"], f["sha256"]
        why = path_problem(path)
        if why:
            raise bad(f"{key}.path", f"{_shown(str(path))!r}: {why}")
        if path in seen:
            raise bad(f"{key}.path", f"{_shown(path)!r} is listed twice")
        seen.add(path)
        if not _is_int(size) or size < 0:
            raise bad(f"{key}.size", "not a non-negative integer")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise bad(f"{key}.sha256", "not 64 lowercase hex digits")
        st = f.get("safetensors")
        hb = db = None
        if path.endswith(SAFETENSORS_SUFFIX):
            if not isinstance(st, dict) or set(st) != {"header_bytes", "data_bytes"}:
                raise bad(f"{key}.safetensors", "missing, or not {header_bytes, data_bytes}")
            hb, db = st["header_bytes"], st["data_bytes"]
            if not (_is_int(hb) and _is_int(db) and hb >= 9 and db >= 0 and hb + db == size):
                raise bad(f"{key}.safetensors", "header_bytes (>= 9) + data_bytes (>= 0) must be the file's size")
        elif st is not None:
            raise bad(f"{key}.safetensors", "only .safetensors files carry a safetensors layout")
        entries.append(Entry(path, size, digest, hb, db))
    for e in entries:  # a path that is also a folder of another path
        parts = e.path.split("/")
        for k in range(1, len(parts)):
            if "/".join(parts[:k]) in seen:
                raise bad("files", f"{_shown('/'.join(parts[:k]))!r} is a file and a folder of {_shown(e.path)!r}")
    total = doc["total_bytes"]
    if not _is_int(total) or total != sum(e.size for e in entries):
        raise bad("total_bytes", f"{str(total)[:40]} is not the sum of the files' sizes "
                                 f"({sum(e.size for e in entries)})")
    return Manifest(model=model, version=version, created=created,
                    files=tuple(sorted(entries, key=lambda e: e.path)))


def load_manifest(path: str) -> Manifest:
    """Read and validate a manifest file; :class:`ManifestError` ``<path>: <what is wrong>``."""
    where = _shown(os.fspath(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ManifestError(where, "no such file") from None
    except OSError as exc:
        raise ManifestError(where, f"cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ManifestError(where, "not a file")
        if st.st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(where, f"{st.st_size} bytes: larger than any manifest ({MAX_MANIFEST_BYTES})")
        with open(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(where, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ManifestError(where, "not UTF-8 text") from None
    except ValueError as exc:
        raise ManifestError(where, f"not JSON ({str(exc)[:80]})") from None
    except RecursionError:
        raise ManifestError(where, "not JSON (nested too deeply)") from None
    return parse_manifest(doc, where)


def write_manifest(manifest: Manifest, out: str, force: bool = False, where: str = "--out", flag: str = "--force"
                   ) -> None:
    """Write ``manifest`` to ``out`` atomically (a temporary file beside it, then a rename); an
    existing ``out`` is refused unless ``force`` (and never a folder or a symlink)."""
    shown = _shown(out)
    try:
        lst = os.lstat(out)
    except FileNotFoundError:
        lst = None
    except OSError as exc:
        raise ModelStoreError(where, f"{shown}: {exc.strerror}") from None
    if lst is not None:
        if not stat.S_ISREG(lst.st_mode):
            raise ModelStoreError(where, f"{shown}: exists and is not a regular file")
        if not force:
            raise ModelStoreError(where, f"{shown}: exists: pass {flag} to replace it")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ModelStoreError(where, f"{shown}: the folder {_shown(parent)} does not exist")
    data = manifest.to_json()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(out)}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise ModelStoreError(where, f"{shown}: cannot write there: {exc.strerror}") from None

    def write(fd: int) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    try:
        publish(fd, tmp, out, force, write)
    except FileExistsError:
        raise ModelStoreError(where, f"{shown}: appeared meanwhile: pass {flag} to replace it") from None
    except OSError as exc:
        raise ModelStoreError(where, f"{shown}: cannot write: {exc.strerror}") from None


def publish(fd: int, tmp: str, final: str, replace: bool, write: Callable[[int], None]) -> None:
    """Write ``final`` atomically. ``write(fd)`` fills the temporary file ``tmp`` (open as ``fd``, in
    the folder of ``final``); it is made 0644, fsynced and closed, then becomes ``final``: renamed
    over it (``replace``) or hard-linked (no-clobber: ``FileExistsError`` when ``final`` appeared
    meanwhile; on a file system without hard links, renamed when nothing is there). ``tmp`` is gone
    afterwards whatever happened; ``OSError`` and whatever ``write`` raises reach the caller. Shared
    by the manifest writer and the stage-in (llmcluster.modelstore)."""
    try:
        try:
            write(fd)
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, final)
        else:
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise
            except OSError:
                if os.path.lexists(final):
                    raise
                os.rename(tmp, final)  # a file system without hard links
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------- the script


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _workers_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer") from None
    if not 1 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{n} is out of range 1..{MAX_WORKERS}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="model-verify", description="Manifests of model weight trees, and verifying a tree against one.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    m = sub.add_parser("manifest", help="write the manifest of DIR (stdout, or --out FILE)")
    m.add_argument("dir", metavar="DIR")
    m.add_argument("--model", help="model name (default: DIR's name)")
    m.add_argument("--version", help="model version (revision, tag)")
    m.add_argument("--workers", type=_workers_arg, help="files hashed at once (default: min(16, CPUs))")
    m.add_argument("--out", metavar="FILE", help="write the manifest to FILE (atomically; not over an existing "
                                                 "file unless --force)")
    m.add_argument("--force", action="store_true", help="replace an existing --out FILE")
    v = sub.add_parser("verify", help="verify DIR against a manifest (exit 0 match, 1 mismatch, 2 usage)")
    v.add_argument("dir", metavar="DIR")
    v.add_argument("--manifest", required=True, metavar="FILE")
    v.add_argument("--workers", type=_workers_arg, help="files hashed at once (default: min(16, CPUs))")
    v.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    try:
        if args.command == "manifest":
            check_root(args.dir)
            exclude = path_within(args.dir, args.out) if args.out else set()
            if args.out and os.path.lexists(args.out) and not args.force:
                raise ModelStoreError("--out", f"{_shown(args.out)}: exists: pass --force to replace it")
            manifest = build_manifest(args.dir, args.workers, args.model, args.version, exclude=exclude)
            if args.out:
                write_manifest(manifest, args.out, args.force)
                sys.stdout.write(f"wrote {args.out}: {len(manifest.files)} files, {manifest.total_bytes} bytes\n")
            else:
                sys.stdout.flush()
                sys.stdout.buffer.write(manifest.to_json())
            return EXIT_OK
        manifest = load_manifest(args.manifest)
        report = verify(args.dir, manifest, args.workers, exclude=path_within(args.dir, args.manifest))
    except ModelStoreError as exc:
        for line in exc.lines():
            sys.stderr.write(line + "\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    for line in report.lines():
        sys.stderr.write(line + "\n")
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), sort_keys=True) + "\n")
    elif report.ok:
        sys.stdout.write(report.summary() + "\n")
    return EXIT_OK if report.ok else EXIT_MISMATCH


if __name__ == "__main__":
    sys.exit(main())
