#!/usr/bin/python3
"""PLACEHOLDER (branch mstore): a minimal implementation of the model manifest CLI contract, so that
the model_store role and the trtllm-serve gate can be tested. The real module (branch model) replaces
this file at merge; keep the contract below exact.

Standard library only (python3 >= 3.9 on the nodes). As a script (installed on the GPU nodes as
``/usr/local/libexec/llmcluster/model-verify``):

* ``model-verify manifest DIR [--model NAME] [--version V] [--workers N] [--out FILE] [--force]``
* ``model-verify verify --manifest FILE DIR [--workers N] [--json]``: exit 0 when DIR matches; exit 1
  with one line per problem ``<relative path>: <what is wrong>`` on stderr; exit 2 on usage errors or
  an unreadable manifest. Last stdout line on success: ``verified N files, B bytes in S s (X GB/s)``.

Manifest: ``{"format": "llmcluster-model-manifest/1", "model", "version", "created", "files": [{"path",
"size", "sha256", "safetensors"?}], "total_bytes"}``. The tree holds regular files only: a symlink,
a file the manifest does not list, a missing, truncated or altered file, a safetensors header that
does not parse are all refused.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import stat
import struct
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

FORMAT = "llmcluster-model-manifest/1"
BUFFER = 8 * 1024 * 1024
MAX_HEADER = 100 * 1024 * 1024


class ManifestError(Exception):
    """An unreadable or malformed manifest (exit 2)."""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def safetensors_header(path: str, size: int) -> dict:
    """``{header_bytes, data_bytes}`` of a safetensors file, or ValueError saying what is wrong."""
    if size < 8:
        raise ValueError("safetensors file shorter than its 8-byte header length")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n == 0 or n > MAX_HEADER or 8 + n > size:
            raise ValueError(f"safetensors header length {n} does not fit the file ({size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not a JSON object")
    data = size - 8 - n
    end = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        offs = t.get("data_offsets") if isinstance(t, dict) else None
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)
                and 0 <= offs[0] <= offs[1] <= data):
            raise ValueError(f"safetensors tensor {name!r} has data_offsets outside the data section")
        end = max(end, offs[1])
    if end != data:
        raise ValueError(f"safetensors data section is {data} bytes, its tensors end at {end}")
    return {"header_bytes": n, "data_bytes": data}


def _walk(root: str) -> tuple[list[str], list[str]]:
    """Regular files (relative posix paths) and non-regular entries under root."""
    files, odd = [], []
    for base, dirs, names in os.walk(root, followlinks=False):
        for d in list(dirs):
            if os.path.islink(os.path.join(base, d)):
                dirs.remove(d)
                names.append(d)
        for name in names:
            full = os.path.join(base, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            mode = os.lstat(full).st_mode
            (files if stat.S_ISREG(mode) else odd).append(rel)
    return sorted(files), sorted(odd)


def build_manifest(root: str, workers: int = 4, model: str = "", version: str = "") -> dict:
    files, odd = _walk(root)
    if odd:
        raise ManifestError(f"{odd[0]}: not a regular file (symlinks and special files are not recorded)")

    def one(rel: str) -> dict:
        full = os.path.join(root, rel)
        size = os.path.getsize(full)
        entry = {"path": rel, "size": size, "sha256": _sha256(full)}
        if rel.endswith(".safetensors"):
            entry["safetensors"] = safetensors_header(full, size)
        return entry

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        entries = list(pool.map(one, files))
    return {"format": FORMAT, "model": model or os.path.basename(os.path.abspath(root)), "version": version,
            # timezone.utc, not datetime.UTC (3.11+): the nodes run python3 >= 3.9
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),  # noqa: UP017
            "files": entries, "total_bytes": sum(e["size"] for e in entries)}


def load_manifest(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ManifestError(f"{path}: cannot read the manifest: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ManifestError(f"{path}: format is not {FORMAT}")
    files = doc.get("files")
    if not isinstance(files, list):
        raise ManifestError(f"{path}: files is not a list")
    seen = set()
    for i, e in enumerate(files):
        p = e.get("path") if isinstance(e, dict) else None
        if (not isinstance(p, str) or not p or p.startswith("/") or ".." in p.split("/") or p in seen
                or not isinstance(e.get("size"), int) or not isinstance(e.get("sha256"), str)):
            raise ManifestError(f"{path}: files[{i}] is not a relative, unique path with size and sha256")
        seen.add(p)
    return doc


def verify(root: str, manifest: dict, workers: int = 4) -> dict:
    t0 = time.monotonic()
    problems: list[str] = []
    files, odd = _walk(root)
    listed = {e["path"]: e for e in manifest["files"]}
    for rel in odd:
        problems.append(f"{rel}: not a regular file (symlink or special file)")
    for rel in files:
        if rel not in listed:
            problems.append(f"{rel}: not in the manifest (extra file)")
    present = set(files)
    todo = []
    for rel, e in sorted(listed.items()):
        if rel in odd:
            continue
        if rel not in present:
            problems.append(f"{rel}: missing")
            continue
        size = os.path.getsize(os.path.join(root, rel))
        if size != e["size"]:
            problems.append(f"{rel}: size {size}, expected {e['size']} (truncated or replaced)")
            continue
        todo.append(e)

    def one(e: dict) -> list[str]:
        full = os.path.join(root, e["path"])
        out = []
        if e.get("safetensors") is not None:
            try:
                safetensors_header(full, e["size"])
            except ValueError as exc:
                out.append(f"{e['path']}: {exc}")
        got = _sha256(full)
        if got != e["sha256"]:
            out.append(f"{e['path']}: sha256 mismatch (expected {e['sha256'][:12]}.., got {got[:12]}..)")
        return out

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for out in pool.map(one, todo):
            problems.extend(out)
    seconds = time.monotonic() - t0
    nbytes = sum(e["size"] for e in todo)
    return {"files": len(todo), "bytes": nbytes, "seconds": round(seconds, 3),
            "gbps": round(nbytes / seconds / 1e9, 3) if seconds > 0 else 0.0, "problems": sorted(problems)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="model-verify")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("manifest")
    m.add_argument("dir")
    m.add_argument("--model", default="")
    m.add_argument("--version", default="")
    m.add_argument("--workers", type=int, default=4)
    m.add_argument("--out")
    m.add_argument("--force", action="store_true")
    v = sub.add_parser("verify")
    v.add_argument("--manifest", required=True)
    v.add_argument("dir")
    v.add_argument("--workers", type=int, default=4)
    v.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if not os.path.isdir(a.dir):
        print(f"{a.dir}: not a directory", file=sys.stderr)
        return 2
    try:
        if a.cmd == "manifest":
            doc = json.dumps(build_manifest(a.dir, a.workers, a.model, a.version), sort_keys=True, indent=1) + "\n"
            if not a.out:
                sys.stdout.write(doc)
                return 0
            if os.path.exists(a.out) and not a.force:
                print(f"{a.out}: exists (--force to replace it)", file=sys.stderr)
                return 2
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(a.out)), prefix=".manifest.")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(doc)
            os.chmod(tmp, 0o644)
            os.replace(tmp, a.out)
            return 0
        report = verify(a.dir, load_manifest(a.manifest), a.workers)
    except (ManifestError, ValueError, OSError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    for line in report["problems"]:
        print(line, file=sys.stderr)
    if a.json:
        print(json.dumps(report, sort_keys=True))
    elif not report["problems"]:
        print(f"verified {report['files']} files, {report['bytes']} bytes in {report['seconds']:.2f} s "
              f"({report['gbps']:.2f} GB/s)")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
