"""The model manifest and its verification (``model_manifest``: the ``llmcluster.hosts`` module_utils
that is also the nodes' ``model-verify`` script).

Every corruption class is created for real in a hand-written model tree (real safetensors files)
and must be refused with exit 1 naming the file; the script is run with ``python3 -I`` (isolated:
no site-packages, no PYTHONPATH), which proves it needs nothing but the standard library.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import (
    model_manifest as MM,
)
from tests.helpers.fs import changes, snapshot
from tests.helpers.models import (
    SCRIPT,
    data_offset,
    flip_bit,
    header_of,
    make_model,
    raw_safetensors,
    safetensors_bytes,
    write_manifest,
)

SHARD = "model-00002-of-00003.safetensors"
PYTHON3 = shutil.which("python3") or "/usr/bin/python3"


def script(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The file as the nodes run it: ``python3 -I model-verify ...`` (no site-packages, no PYTHONPATH)."""
    return subprocess.run([PYTHON3, "-I", str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, check=False)


@pytest.fixture
def model(tmp_path) -> tuple[Path, Path]:
    root = make_model(tmp_path / "deepseek")
    manifest = tmp_path / "manifest.json"
    write_manifest(root, manifest, model="deepseek-r1", version="main")
    return root, manifest


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# --------------------------------------------------------------------------- round trip


def test_manifest_round_trip(model, tmp_path):
    root, _ = model
    out = tmp_path / "m2.json"
    r = script("manifest", str(root), "--model", "deepseek-r1", "--version", "v1", "--workers", "2",
               "--out", str(out))
    assert r.returncode == 0, r.stderr
    raw = out.read_bytes()
    doc = json.loads(raw.decode("utf-8"))
    assert raw.decode() == json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"  # keys sorted
    assert doc["format"] == "llmcluster-model-manifest/1"
    assert (doc["model"], doc["version"]) == ("deepseek-r1", "v1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["created"])
    paths = [f["path"] for f in doc["files"]]
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert paths == on_disk == sorted(paths)
    assert "tokenizer/tokenizer.json" in paths
    for f in doc["files"]:
        body = (root / f["path"]).read_bytes()
        assert f["size"] == len(body) and f["sha256"] == hashlib.sha256(body).hexdigest()
        if f["path"].endswith(".safetensors"):
            n = struct.unpack("<Q", body[:8])[0]
            assert f["safetensors"] == {"header_bytes": 8 + n, "data_bytes": len(body) - 8 - n}
        else:
            assert "safetensors" not in f
    assert doc["total_bytes"] == sum(f["size"] for f in doc["files"])
    loaded = MM.load_manifest(str(out))
    assert loaded.to_dict() == doc
    # stdout form equals the file form but for the creation time
    r = script("manifest", str(root), "--model", "deepseek-r1", "--version", "v1")
    assert r.returncode == 0
    again = json.loads(r.stdout)
    assert {**again, "created": doc["created"]} == doc


def test_verify_passes_and_reports_throughput(model):
    root, manifest = model
    r = script("verify", "--manifest", str(manifest), str(root), "--workers", "3")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    total = MM.load_manifest(str(manifest)).total_bytes
    last = r.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"verified (\d+) files, (\d+) bytes in ([\d.]+) s \(([\d.]+) GB/s\)", last)
    assert m, last
    assert int(m.group(1)) == 6 and int(m.group(2)) == total


def test_verify_json(model):
    root, manifest = model
    r = script("verify", "--manifest", str(manifest), str(root), "--json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["problems"] == [] and doc["files"] == 6
    assert doc["bytes"] == MM.load_manifest(str(manifest)).total_bytes
    assert set(doc) >= {"files", "bytes", "seconds", "gbps", "problems"}
    flip_bit(root / SHARD, data_offset(root / SHARD) + 5)
    r = script("verify", "--manifest", str(manifest), str(root), "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and [p["path"] for p in doc["problems"]] == [SHARD]
    assert "sha256 mismatch" in doc["problems"][0]["message"]


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_the_workers_do_not_change_the_result(model, workers):
    root, manifest = model
    m = MM.load_manifest(str(manifest))
    assert MM.verify(str(root), m, workers).ok
    (root / "tokenizer" / "tokenizer.json").write_text('{"version": "1.1"}\n')
    (root / SHARD).write_bytes((root / SHARD).read_bytes()[:-1])
    report = MM.verify(str(root), m, workers)
    assert [p for p, _ in report.problems] == [SHARD, "tokenizer/tokenizer.json"]


def test_hash_fd_is_sha256(tmp_path):
    p = tmp_path / "big"
    body = os.urandom(MM.BUFFER_BYTES + 12345)  # more than one read buffer
    p.write_bytes(body)
    fd = os.open(p, os.O_RDONLY)
    try:
        assert MM.hash_fd(fd) == (hashlib.sha256(body).hexdigest(), len(body))
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the corruption classes


def _truncate(root: Path) -> str:
    p = root / SHARD
    p.write_bytes(p.read_bytes()[:-100])
    return "size mismatch, truncated"


def _flip_data(root: Path) -> str:
    p = root / SHARD
    flip_bit(p, data_offset(p) + 1000, bit=3)
    return "sha256 mismatch"


def _flip_last(root: Path) -> str:
    p = root / SHARD
    flip_bit(p, p.stat().st_size - 1, bit=7)
    return "sha256 mismatch"


def _flip_header_text(root: Path) -> str:
    """A bit inside the JSON that keeps it valid JSON (a tensor name's letter): only sha256 can tell."""
    p = root / SHARD
    body = p.read_bytes()
    i = body.index(b"mlp.weight_scale_inv") + 4     # the 'w' of weight
    flip_bit(p, i, bit=5)                            # 'w' -> 'W'
    return "sha256 mismatch"


def _zero_header(root: Path) -> str:
    p = root / SHARD
    body = bytearray(p.read_bytes())
    body[: data_offset(p)] = bytes(data_offset(p))
    p.write_bytes(bytes(body))
    return "bad safetensors header: the header length is 0"


def _zero_header_json(root: Path) -> str:
    p = root / SHARD
    body = bytearray(p.read_bytes())
    body[8: data_offset(p)] = bytes(data_offset(p) - 8)
    p.write_bytes(bytes(body))
    return "bad safetensors header: the header is not a JSON object"


def _missing(root: Path) -> str:
    (root / SHARD).unlink()
    return "missing"


def _extra(root: Path) -> str:
    (root / "model-00004-of-00003.safetensors").write_bytes(safetensors_bytes({"x": ("U8", [4])}))
    return "an extra file: not in the manifest"


def _swap_symlink_inside(root: Path) -> str:
    (root / SHARD).unlink()
    os.symlink("model-00001-of-00003.safetensors", root / SHARD)
    return "a symbolic link (-> model-00001-of-00003.safetensors)"


def _swap_symlink_same_bytes(root: Path) -> str:
    """Even a link to a copy with exactly the recorded bytes: links are refused, whatever they point at."""
    outside = root.parent / "elsewhere.safetensors"
    shutil.move(root / SHARD, outside)
    os.symlink(outside, root / SHARD)
    return "a symbolic link"


def _swap_symlink_outside(root: Path) -> str:
    (root / SHARD).unlink()
    os.symlink("/etc/hostname", root / SHARD)
    return "a symbolic link (-> /etc/hostname)"


def _symlinked_folder(root: Path) -> str:
    real = root.parent / "tok-real"
    shutil.move(root / "tokenizer", real)
    os.symlink(real, root / "tokenizer")
    return "a symbolic link"


CORRUPTIONS = {
    "truncation": (_truncate, SHARD),
    "flipped-bit-in-data": (_flip_data, SHARD),
    "flipped-last-bit": (_flip_last, SHARD),
    "flipped-bit-in-header-json": (_flip_header_text, SHARD),
    "zeroed-header": (_zero_header, SHARD),
    "zeroed-header-json": (_zero_header_json, SHARD),
    "missing-file": (_missing, SHARD),
    "extra-file": (_extra, "model-00004-of-00003.safetensors"),
    "symlink-to-another-shard": (_swap_symlink_inside, SHARD),
    "symlink-to-identical-bytes": (_swap_symlink_same_bytes, SHARD),
    "symlink-out-of-the-tree": (_swap_symlink_outside, SHARD),
    "symlinked-folder": (_symlinked_folder, "tokenizer"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_is_refused_naming_the_file(model, name):
    root, manifest = model
    corrupt, rel = CORRUPTIONS[name]
    expected = corrupt(root)
    r = script("verify", "--manifest", str(manifest), str(root))
    assert r.returncode == 1, (r.stdout, r.stderr)
    no_traceback(r.stderr)
    lines = r.stderr.strip().splitlines()
    assert any(line.startswith(f"{rel}: {expected}") for line in lines), lines
    assert all(re.match(r"^[\w./-]+: \S", line) for line in lines), lines
    assert "verified" not in r.stdout


def test_the_symlinked_folder_also_reports_its_files_missing(model):
    root, manifest = model
    _symlinked_folder(root)
    report = MM.verify(str(root), MM.load_manifest(str(manifest)))
    assert ("tokenizer/tokenizer.json", "missing") in report.problems


def test_truncation_fails_before_any_hashing(model, monkeypatch):
    root, manifest = model
    m = MM.load_manifest(str(manifest))
    for e in m.files:
        p = root / e.path
        p.write_bytes(p.read_bytes()[:-1])
    hashed = []
    monkeypatch.setattr(MM, "hash_fd", lambda fd: hashed.append(fd) or ("0" * 64, 0))
    report = MM.verify(str(root), m, 2)
    assert len(report.problems) == len(m.files) and not hashed


def test_every_problem_is_reported_not_only_the_first(model):
    root, manifest = model
    _missing(root)
    _extra(root)
    flip_bit(root / "config.json", 3)
    r = script("verify", "--manifest", str(manifest), str(root))
    assert r.returncode == 1
    named = sorted(line.split(":")[0] for line in r.stderr.splitlines())
    assert named == ["config.json", SHARD, "model-00004-of-00003.safetensors"]


def test_a_fifo_is_refused(model):
    root, manifest = model
    os.mkfifo(root / "tokenizer" / "pipe")
    r = script("verify", "--manifest", str(manifest), str(root))
    assert r.returncode == 1
    assert "tokenizer/pipe: a FIFO" in r.stderr


def test_the_manifest_inside_the_tree_is_not_an_extra_file(tmp_path):
    root = make_model(tmp_path / "m")
    r = script("manifest", str(root), "--out", str(root / "MANIFEST.json"))
    assert r.returncode == 0, r.stderr
    assert "MANIFEST.json" not in [e.path for e in MM.load_manifest(str(root / "MANIFEST.json")).files]
    r = script("verify", "--manifest", str(root / "MANIFEST.json"), str(root))
    assert r.returncode == 0, r.stderr
    (root / "other.json").write_text("{}")
    r = script("verify", "--manifest", str(root / "MANIFEST.json"), str(root))
    assert r.returncode == 1 and "other.json: an extra file" in r.stderr


# --------------------------------------------------------------------------- building refuses


def test_manifest_refuses_a_tree_with_symlinks(tmp_path):
    root = make_model(tmp_path / "m")
    os.symlink("config.json", root / "alias.json")
    r = script("manifest", str(root))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("alias.json: a symbolic link (-> config.json)"), r.stderr
    no_traceback(r.stderr)


def test_manifest_refuses_a_broken_safetensors_file(tmp_path):
    root = make_model(tmp_path / "m")
    (root / "broken.safetensors").write_bytes(raw_safetensors(b"[1, 2]", b""))
    r = script("manifest", str(root), "--out", str(tmp_path / "x.json"))
    assert r.returncode == 2
    assert r.stderr.startswith("broken.safetensors: bad safetensors header: the header is not a JSON object")
    assert not (tmp_path / "x.json").exists()


def test_manifest_refuses_an_empty_tree(tmp_path):
    (tmp_path / "empty").mkdir()
    r = script("manifest", str(tmp_path / "empty"))
    assert r.returncode == 2 and "holds no files" in r.stderr


def test_manifest_out_never_overwrites_without_force(model, tmp_path):
    root, _ = model
    out = tmp_path / "existing.json"
    out.write_text("someone's file\n")
    before = snapshot(tmp_path)
    r = script("manifest", str(root), "--out", str(out))
    assert r.returncode == 2
    assert r.stderr.strip() == f"--out: {out}: exists: pass --force to replace it"
    assert changes(before, snapshot(tmp_path)) == []
    r = script("manifest", str(root), "--out", str(out), "--force")
    assert r.returncode == 0
    assert MM.load_manifest(str(out)).files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".existing.json.")]  # no temp file left


def test_manifest_out_refuses_a_folder_and_a_missing_parent(model, tmp_path):
    root, _ = model
    (tmp_path / "adir").mkdir()
    for out, message in ((tmp_path / "adir", "exists and is not a regular file"),
                         (tmp_path / "nope" / "m.json", "does not exist")):
        r = script("manifest", str(root), "--out", str(out), "--force")
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_write_manifest_is_atomic(model, tmp_path, monkeypatch):
    """A failure while writing leaves neither a partial manifest nor a temporary file."""
    root, _ = model
    m = MM.build_manifest(str(root))
    out = tmp_path / "out" / "m.json"
    out.parent.mkdir()

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MM.os, "fsync", boom)
    with pytest.raises(MM.ModelStoreError, match="No space left on device"):
        MM.write_manifest(m, str(out))
    assert list(out.parent.iterdir()) == []


# --------------------------------------------------------------------------- safetensors headers


def _layout(tmp_path: Path, body: bytes):
    p = tmp_path / "t.safetensors"
    p.write_bytes(body)
    fd = os.open(p, os.O_RDONLY)
    try:
        return MM.safetensors_layout(fd, len(body))
    finally:
        os.close(fd)


def test_good_headers(tmp_path):
    body = safetensors_bytes({"a": ("F32", [2, 3]), "b": ("BF16", [4]), "c": ("U8", [0])}, metadata={"k": "v"})
    n = struct.unpack("<Q", body[:8])[0]
    assert _layout(tmp_path, body) == (8 + n, 24 + 8)
    # unpadded header, no tensors at all, and an empty data section
    assert _layout(tmp_path, raw_safetensors(b"{}", b"", pad=False)) == (10, 0)
    # an unknown dtype: offsets checked, size not
    assert _layout(tmp_path, header_of({"x": {"dtype": "Q7", "shape": [3], "data_offsets": [0, 5]}}, 5))[1] == 5
    # F4: two elements a byte
    assert _layout(tmp_path, header_of({"x": {"dtype": "F4", "shape": [6], "data_offsets": [0, 3]}}, 3))[1] == 3


def _t(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


BAD_HEADERS = {
    "shorter-than-8": (b"\x01\x00\x00", "shorter than the 8-byte header length"),
    "zero-length": (struct.pack("<Q", 0) + b"{}", "the header length is 0"),
    "over-100MB": (struct.pack("<Q", 100_000_001) + b"{}", "exceeds the format's limit of 100000000"),
    "past-the-end": (struct.pack("<Q", 64) + b'{"a": 1}', "runs past the end of the file"),
    "not-utf8": (raw_safetensors(b"\xff\xfe{}", b""), "not UTF-8"),
    "zeroed-json": (raw_safetensors(bytes(16), b""), "not a JSON object"),
    "json-array": (raw_safetensors(b"[]", b""), "not a JSON object"),
    "bad-json": (raw_safetensors(b'{"a": ', b""), "not valid JSON"),
    "duplicate-key": (raw_safetensors(b'{"a": {}, "a": {}}', b""), "names 'a' twice"),
    "tensor-not-object": (header_of({"a": 3}, 0), "tensor 'a' is not an object"),
    "no-dtype": (header_of({"a": {"shape": [1], "data_offsets": [0, 4]}}, 4), "no dtype"),
    "negative-shape": (header_of({"a": _t(shape=(-2,))}, 8), "shape is not a list of non-negative"),
    "bool-shape": (header_of({"a": _t(shape=(True,), offsets=(0, 4))}, 4), "shape is not a list"),
    "offsets-not-pair": (header_of({"a": _t(offsets=(0,))}, 8), "data_offsets is not [begin, end]"),
    "offsets-reversed": (header_of({"a": _t(offsets=(8, 0))}, 8), "outside the data section"),
    "offsets-past-data": (header_of({"a": _t(offsets=(0, 8))}, 4), "outside the data section"),
    "dtype-size-mismatch": (header_of({"a": _t(dtype="BF16", shape=(3,), offsets=(0, 8))}, 8),
                            "BF16 [3] is 6 bytes, its data_offsets span 8"),
    "f4-half-byte": (header_of({"a": _t(dtype="F4", shape=(3,), offsets=(0, 2))}, 2), "F4 [3] is 1.5 bytes"),
    "overlap": (header_of({"a": _t(offsets=(0, 8)), "b": _t(offsets=(4, 12))}, 12), "overlaps the tensor"),
    "gap": (header_of({"a": _t(offsets=(0, 8)), "b": _t(offsets=(12, 20))}, 20), "leaves a gap of 4 bytes"),
    "data-longer-than-tensors": (header_of({"a": _t()}, 12), "the tensors end at byte 8 of the data section, "
                                                             "which holds 12"),
    "metadata-not-strings": (header_of({"__metadata__": {"k": 1}}, 0), "__metadata__ is not an object of strings"),
}


@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_bad_headers_are_refused(tmp_path, name):
    body, message = BAD_HEADERS[name]
    with pytest.raises(MM.HeaderError, match=re.escape(message)):
        _layout(tmp_path, body)


@pytest.mark.parametrize("name", ["zeroed-json", "gap", "dtype-size-mismatch", "over-100MB"])
def test_a_bad_header_fails_verify_even_with_a_matching_sha256(tmp_path, name):
    """A manifest made elsewhere (or by hand) for a broken file: the header check still refuses it."""
    root = tmp_path / "m"
    root.mkdir()
    body = BAD_HEADERS[name][0]
    (root / "w.safetensors").write_bytes(body)
    doc = {"format": MM.FORMAT, "model": "m", "version": None, "created": "2026-01-01T00:00:00Z",
           "files": [{"path": "w.safetensors", "size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                      "safetensors": {"header_bytes": 9, "data_bytes": len(body) - 9}}],
           "total_bytes": len(body)}
    (tmp_path / "m.json").write_text(json.dumps(doc))
    r = script("verify", "--manifest", str(tmp_path / "m.json"), str(root))
    assert r.returncode == 1
    assert r.stderr.startswith("w.safetensors: bad safetensors header: "), r.stderr


def test_a_recorded_layout_mismatch_is_refused(model):
    root, manifest = model
    doc = json.loads(manifest.read_text())
    entry = next(f for f in doc["files"] if f["path"] == SHARD)
    entry["safetensors"] = {"header_bytes": entry["safetensors"]["header_bytes"] + 8,
                            "data_bytes": entry["safetensors"]["data_bytes"] - 8}
    manifest.write_text(json.dumps(doc))
    report = MM.verify(str(root), MM.load_manifest(str(manifest)))
    assert [p for p, _ in report.problems] == [SHARD]
    assert "safetensors layout mismatch" in report.problems[0][1]


# --------------------------------------------------------------------------- bad manifests


def _doc(**changes) -> dict:
    files = changes.pop("files") if "files" in changes else [
        {"path": "a.safetensors", "size": 20, "sha256": "a" * 64, "safetensors": {"header_bytes": 16,
                                                                                  "data_bytes": 4}},
        {"path": "sub/b.json", "size": 3, "sha256": "b" * 64}]
    doc = {"format": MM.FORMAT, "model": "m", "version": "1", "created": "2026-01-01T00:00:00Z", "files": files,
           "total_bytes": sum(f.get("size", 0) for f in files if isinstance(f, dict)
                              and isinstance(f.get("size"), int))}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v != "DROP"}


def _f(path="x.json", size=3, sha="c" * 64, **extra) -> dict:
    return {"path": path, "size": size, "sha256": sha, **extra}


BAD_MANIFESTS = {
    "not-an-object": ([], "not a JSON object"),
    "wrong-format": (_doc(format="llmcluster-model-manifest/2"), "format: "),
    "no-format": (_doc(format="DROP"), "format: "),
    "unknown-key": (_doc(extra=1), "extra: unknown key"),
    "missing-model": (_doc(model="DROP"), "model: missing"),
    "empty-model": (_doc(model=" "), "model: not a non-empty string"),
    "version-number": (_doc(version=3), "version: not a string or null"),
    "files-empty": (_doc(files=[], total_bytes=0), "files: not a non-empty list"),
    "file-not-object": (_doc(files=["a"]), "files[0]: not an object"),
    "absolute-path": (_doc(files=[_f("/etc/passwd")]), "files[0].path: '/etc/passwd': an absolute path"),
    "dotdot": (_doc(files=[_f("a/../../x.json")]), "files[0].path: 'a/../../x.json': contains '..'"),
    "leading-dotdot": (_doc(files=[_f("../x.json")]), "contains '..'"),
    "dot": (_doc(files=[_f("./x.json")]), "not normalised"),
    "double-slash": (_doc(files=[_f("a//x.json")]), "not normalised"),
    "trailing-slash": (_doc(files=[_f("a/")]), "not normalised"),
    "empty-path": (_doc(files=[_f("")]), "an empty path"),
    "nul": (_doc(files=[_f("a\0b")]), "NUL"),
    "path-not-string": (_doc(files=[_f(7)]), "files[0].path: '7': not a string"),
    "duplicate": (_doc(files=[_f("x.json"), _f("x.json")], total_bytes=6), "files[1].path: 'x.json' is listed twice"),
    "file-and-folder": (_doc(files=[_f("a"), _f("a/b")], total_bytes=6), "'a' is a file and a folder of 'a/b'"),
    "size-negative": (_doc(files=[_f(size=-1)], total_bytes=-1), "files[0].size: not a non-negative integer"),
    "size-bool": (_doc(files=[_f(size=True)], total_bytes=1), "files[0].size: not a non-negative integer"),
    "size-string": (_doc(files=[_f(size="3")], total_bytes=3), "files[0].size"),
    "sha-short": (_doc(files=[_f(sha="abc")]), "files[0].sha256: not 64 lowercase hex digits"),
    "sha-upper": (_doc(files=[_f(sha="A" * 64)]), "files[0].sha256"),
    "sha-missing": (_doc(files=[{"path": "x.json", "size": 3}]), "files[0].sha256: missing"),
    "entry-unknown-key": (_doc(files=[_f(mode=420)]), "files[0].mode: unknown key"),
    "safetensors-missing": (_doc(files=[_f("w.safetensors")]), "files[0].safetensors: missing"),
    "safetensors-on-json": (_doc(files=[_f(safetensors={"header_bytes": 9, "data_bytes": 0})]),
                            "only .safetensors files carry"),
    "safetensors-sum": (_doc(files=[_f("w.safetensors", size=20, safetensors={"header_bytes": 16,
                                                                              "data_bytes": 5})], total_bytes=20),
                        "header_bytes (>= 9) + data_bytes (>= 0) must be the file's size"),
    "total-wrong": (_doc(total_bytes=22), "total_bytes: 22 is not the sum of the files' sizes (23)"),
}


@pytest.mark.parametrize("name", sorted(BAD_MANIFESTS))
def test_bad_manifests_are_refused(tmp_path, name):
    doc, message = BAD_MANIFESTS[name]
    p = tmp_path / "m.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(MM.ManifestError) as info:
        MM.load_manifest(str(p))
    assert message in str(info.value), str(info.value)
    assert str(info.value).startswith(f"{p}: ")


def test_the_good_reference_document_is_accepted():
    """The base of the bad cases is itself valid (else every case above would prove nothing)."""
    m = MM.parse_manifest(_doc())
    assert [e.path for e in m.files] == ["a.safetensors", "sub/b.json"] and m.total_bytes == 23


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe\x00", "not UTF-8 text"),
    (b"", "not JSON"),
    (b"[" * 100000 + b"]" * 100000, "not JSON"),
])
def test_unreadable_manifests_exit_2_in_one_line(model, content, message):
    root, manifest = model
    manifest.write_bytes(content)
    r = script("verify", "--manifest", str(manifest), str(root))
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(f"{manifest}: {message}"), r.stderr
    no_traceback(r.stderr)


def test_usage_errors_exit_2_in_one_line(model, tmp_path):
    root, manifest = model
    cases = [
        ((), "model-verify: "),
        (("verify", str(root)), "the following arguments are required: --manifest"),
        (("verify", "--manifest", str(tmp_path / "nope.json"), str(root)), "nope.json: no such file"),
        (("verify", "--manifest", str(root), str(root)), f"{root}: not a file"),
        (("verify", "--manifest", str(manifest), str(tmp_path / "nodir")), "DIR: "),
        (("verify", "--manifest", str(manifest), str(manifest)), "not a folder"),
        (("verify", "--manifest", str(manifest), str(root), "--workers", "0"), "out of range 1..256"),
        (("verify", "--manifest", str(manifest), str(root), "--workers", "x"), "is not an integer"),
        (("manifest", str(tmp_path / "nodir")), "no such folder"),
        (("frobnicate",), "invalid choice"),
    ]
    for args, message in cases:
        r = script(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and message in r.stderr, (args, r.stderr)
        no_traceback(r.stderr)


def test_help_exits_0():
    r = script("verify", "--help")
    assert r.returncode == 0 and "--manifest" in r.stdout


# --------------------------------------------------------------------------- the script's portability


def test_the_module_is_python39_and_stdlib_only():
    """The nodes run it with their python3 (>= 3.9): 3.9 grammar, no 3.10+ library call, stdlib imports."""
    import sys

    source = SCRIPT.read_text()
    tree = ast.parse(source, feature_version=(3, 9))
    newer = {"removeprefix": None, "bit_count": "3.10", "file_digest": "3.11", "tomllib": "3.11", "UTC": "3.11",
             "pairwise": "3.10", "aiter": "3.10", "anext": "3.10"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                assert kw.arg not in ("strict", "slots", "kw_only"), f"line {node.lineno}: {kw.arg}= needs 3.10"
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if name in newer and newer[name]:
            raise AssertionError(f"line {node.lineno}: {name} needs Python {newer[name]}")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for mod in mods:
                assert node.__class__ is ast.Import or node.level == 0
                assert mod.split(".")[0] in sys.stdlib_module_names or mod == "__future__", mod
    assert source.startswith("#!/usr/bin/python3\n")
    assert 'if __name__ == "__main__":' in source
    assert os.access(SCRIPT, os.X_OK), "the script file is executable"
