"""Stage-in of a model (``llmcluster model stage``) from a folder, a real HTTP mirror (http.server on
127.0.0.1 in a thread) and S3 (a moto server on 127.0.0.1), and the ``llmcluster model`` commands'
bad inputs. Network only to loopback.

What stage must never do is checked with snapshots of the destination: refused runs and failed
fetches leave it exactly as it was (no temporary file, no partial file, no new folder).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llmcluster import modelstore as MS
from llmcluster.cli import main
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import (
    model_manifest as MM,
)
from tests.conftest import ROOT
from tests.helpers.fs import changes, snapshot
from tests.helpers.models import data_offset, flip_bit, make_model, write_manifest
from tests.helpers.tools import moto_server

SHARD = "model-00002-of-00003.safetensors"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """No proxy between the tests and their loopback servers; fake AWS credentials for moto."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy",
                "AWS_PROFILE", "AWS_ENDPOINT_URL", "LLMCLUSTER_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


@pytest.fixture
def src(tmp_path) -> tuple[Path, Path]:
    root = make_model(tmp_path / "src" / "deepseek-r1")
    manifest = tmp_path / "manifest.json"
    write_manifest(root, manifest, model="deepseek-r1", version="main")
    return root, manifest


def run(*argv: str, capsys) -> tuple[int, str, str]:
    code = main(["model", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def tree_ok(dest: Path, manifest: Path) -> bool:
    return MM.verify(str(dest), MM.load_manifest(str(manifest))).ok


def no_temp_files(dest: Path) -> None:
    left = [p for p in dest.rglob("*") if MS.STAGE_SUFFIX in p.name]
    assert not left, left


# --------------------------------------------------------------------------- from a folder


def test_stage_from_a_folder(src, tmp_path, capsys):
    root, manifest = src
    dest = tmp_path / "nvme" / "models" / "deepseek-r1"
    code, out, err = run("stage", "--manifest", str(manifest), "--from", str(root), "--to", str(dest),
                         "--workers", "2", capsys=capsys)
    assert code == 0, err
    assert tree_ok(dest, manifest)
    assert re.search(r"^staged 6 file\(s\), .* from .*; 0 already present$", out, re.M), out
    assert out.strip().splitlines()[-1].startswith("verified 6 files, ")
    assert len(re.findall(r"^fetched ", err, re.M)) == 6
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in dest.rglob("*") if p.is_file())
    no_temp_files(dest)
    # again: everything present, nothing fetched, nothing changed
    before = snapshot(dest)
    code, out, err = run("stage", "--manifest", str(manifest), "--from", str(root), "--to", str(dest), "--json",
                         capsys=capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["fetched"], doc["present"], doc["verify"]["ok"]) == (0, 6, True)
    assert changes(before, snapshot(dest)) == []


def test_a_partly_present_tree_gets_only_the_rest(src, tmp_path):
    root, manifest = src
    dest = tmp_path / "dest"
    dest.mkdir()
    shutil.copy2(root / SHARD, dest / SHARD)
    m = MS.load(manifest)
    report = MS.stage(m, MS.open_source(str(root)), dest)
    assert report.present == [SHARD] and len(report.fetched) == 5 and report.verify.ok


def test_an_existing_wrong_file_is_refused_unless_replace(src, tmp_path, capsys):
    root, manifest = src
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "config.json").write_text('{"someone": "else"}')
    (dest / SHARD).write_bytes((root / SHARD).read_bytes())
    flip_bit(dest / SHARD, data_offset(dest / SHARD) + 2)      # same size, other bytes
    before = snapshot(dest)
    code, out, err = run("stage", "--manifest", str(manifest), "--from", str(root), "--to", str(dest), capsys=capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines == [f"--to: config.json: exists and is not the manifest's file (size 19, expected "
                     f"{(root / 'config.json').stat().st_size}; or another sha256): pass --replace to replace it",
                     f"--to: {SHARD}: exists and is not the manifest's file (size {(root / SHARD).stat().st_size}, "
                     f"expected {(root / SHARD).stat().st_size}; or another sha256): pass --replace to replace it"]
    assert changes(before, snapshot(dest)) == []
    code, out, err = run("stage", "--manifest", str(manifest), "--from", str(root), "--to", str(dest), "--replace",
                         capsys=capsys)
    assert code == 0, err
    assert "2 replaced" in out
    assert tree_ok(dest, manifest)


@pytest.mark.parametrize("what", ["extra-file", "symlink", "symlinked-folder", "folder-in-the-way", "fifo"])
def test_what_stage_must_not_touch_is_refused_before_writing(src, tmp_path, capsys, what):
    root, manifest = src
    dest = tmp_path / "dest"
    dest.mkdir()
    rel = {"extra-file": "notes.txt", "symlink": SHARD, "symlinked-folder": "tokenizer",
           "folder-in-the-way": "config.json", "fifo": "pipe"}[what]
    if what == "extra-file":
        (dest / rel).write_text("mine\n")
    elif what == "symlink":
        os.symlink(root / SHARD, dest / rel)                   # even to the right bytes
    elif what == "symlinked-folder":
        (tmp_path / "elsewhere").mkdir()
        os.symlink(tmp_path / "elsewhere", dest / rel)          # would write outside DIR
    elif what == "folder-in-the-way":
        (dest / rel).mkdir()
    else:
        os.mkfifo(dest / rel)
    before = snapshot(tmp_path)
    code, out, err = run("stage", "--manifest", str(manifest), "--from", str(root), "--to", str(dest), "--replace",
                         capsys=capsys)
    assert code == 2, err
    assert err.startswith(f"--to: {rel}: "), err
    assert len(err.strip().splitlines()) == 1
    assert changes(before, snapshot(tmp_path)) == []


def test_a_source_missing_a_file_leaves_nothing_behind(src, tmp_path, capsys):
    root, manifest = src
    (root / "tokenizer" / "tokenizer.json").unlink()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "config.json").write_bytes((root / "config.json").read_bytes())   # there before: kept
    before = snapshot(dest)
    code, out, err = run("stage", "--manifest", str(manifest), "--from", str(root), "--to", str(dest), capsys=capsys)
    assert code == MS.EXIT_FETCH == 6
    assert f"tokenizer/tokenizer.json: not in the source folder {root}" in err
    assert changes(before, snapshot(dest)) == []


def test_a_corrupt_source_file_is_refused_and_the_run_undone(src, tmp_path, capsys):
    root, manifest = src
    flip_bit(root / SHARD, data_offset(root / SHARD) + 77)
    dest = tmp_path / "new" / "dest"
    code, out, err = run("stage", "--manifest", str(manifest), "--from", str(root), "--to", str(dest),
                         "--workers", "1", capsys=capsys)
    assert code == 6
    assert re.search(rf"^{re.escape(SHARD)}: sha256 mismatch from .*: the source is corrupt$", err, re.M), err
    assert not (tmp_path / "new").exists()          # the folders it created are gone too


def test_keep_partial_keeps_the_verified_files_only(src, tmp_path, capsys):
    root, manifest = src
    flip_bit(root / SHARD, data_offset(root / SHARD) + 77)
    dest = tmp_path / "dest"
    code, out, err = run("stage", "--manifest", str(manifest), "--from", str(root), "--to", str(dest),
                         "--workers", "1", "--keep-partial", capsys=capsys)
    assert code == 6
    assert not (dest / SHARD).exists()
    no_temp_files(dest)
    kept = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    m = MM.load_manifest(str(manifest))
    for e in m.files:
        if e.path in kept:
            assert MM.hash_fd(os.open(dest / e.path, os.O_RDONLY))[0] == e.sha256


def test_a_longer_source_file_is_refused(src, tmp_path):
    root, manifest = src
    with open(root / "config.json", "ab") as f:
        f.write(b" ")
    with pytest.raises(MS.StageError, match="holds more than the manifest's"):
        MS.stage(MS.load(manifest), MS.open_source(str(root)), tmp_path / "d")
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- from an HTTP mirror


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    """``serve(folder)`` -> base URL of a real HTTP server on 127.0.0.1 serving that folder."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/models/deepseek-r1"

    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


def _publish(root: Path, tmp_path: Path) -> Path:
    www = tmp_path / "www"
    shutil.copytree(root, www / "models" / "deepseek-r1")
    return www


def test_stage_from_an_http_mirror(src, tmp_path, mirror, capsys):
    root, manifest = src
    (root / "tokenizer" / "special tokens & more.json").write_text("{}")    # a name that needs quoting
    write_manifest(root, manifest, model="deepseek-r1")
    base = mirror(_publish(root, tmp_path))
    dest = tmp_path / "dest"
    code, out, err = run("stage", "--manifest", str(manifest), "--from", base + "/", "--to", str(dest),
                         "--workers", "3", "--json", capsys=capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["fetched"] == 7 and doc["verify"]["ok"] and doc["source"] == base
    assert tree_ok(dest, manifest)


def test_an_http_mirror_serving_a_corrupt_file_is_refused(src, tmp_path, mirror, capsys):
    root, manifest = src
    www = _publish(root, tmp_path)
    flip_bit(www / "models" / "deepseek-r1" / SHARD, data_offset(root / SHARD) + 5)
    base = mirror(www)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "config.json").write_bytes((root / "config.json").read_bytes())    # there before
    before = snapshot(dest)
    code, out, err = run("stage", "--manifest", str(manifest), "--from", base, "--to", str(dest), capsys=capsys)
    assert code == 6
    assert f"{SHARD}: sha256 mismatch from {base}/{SHARD}" in err
    assert changes(before, snapshot(dest)) == []         # nothing left behind but what was there


def test_an_http_mirror_missing_a_file(src, tmp_path, mirror, capsys):
    root, manifest = src
    www = _publish(root, tmp_path)
    (www / "models" / "deepseek-r1" / "config.json").unlink()
    dest = tmp_path / "dest"
    code, out, err = run("stage", "--manifest", str(manifest), "--from", mirror(www), "--to", str(dest),
                         capsys=capsys)
    assert code == 6
    assert re.search(r"^config\.json: HTTP 404 .* from http://127\.0\.0\.1:\d+/models/deepseek-r1/config\.json$",
                     err, re.M), err
    assert not dest.exists()


def test_an_unreachable_mirror(src, tmp_path, capsys):
    root, manifest = src
    import socket

    with socket.socket() as s:          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = run("stage", "--manifest", str(manifest), "--from", f"http://127.0.0.1:{port}/m",
                         "--to", str(tmp_path / "d"), "--timeout", "5", capsys=capsys)
    assert code == 6 and "cannot fetch http://127.0.0.1:" in err and "Connection refused" in err
    assert not (tmp_path / "d").exists()


def test_credentials_in_the_url_are_never_shown(src):
    s = MS.open_source("https://user:secret@mirror.example:8443/models/x/")
    assert s.shown == "https://mirror.example:8443/models/x" and "secret" not in s.where("a")


# --------------------------------------------------------------------------- from S3 (moto on 127.0.0.1)


@pytest.fixture(scope="module")
def moto_s3():
    with moto_server() as endpoint:
        yield endpoint


def _upload(endpoint: str, bucket: str, prefix: str, root: Path, corrupt: str | None = None) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            body = p.read_bytes()
            if rel == corrupt:
                body = body[:100] + bytes([body[100] ^ 1]) + body[101:]
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=body)


def test_stage_from_s3(src, tmp_path, moto_s3, capsys):
    root, manifest = src
    _upload(moto_s3, "weights", "deepseek-r1/main", root)
    dest = tmp_path / "dest"
    code, out, err = run("stage", "--manifest", str(manifest), "--from", "s3://weights/deepseek-r1/main",
                         "--to", str(dest), "--s3-endpoint-url", moto_s3, "--workers", "4", capsys=capsys)
    assert code == 0, err
    assert "from s3://weights/deepseek-r1/main" in out
    assert tree_ok(dest, manifest)


def test_stage_from_s3_reads_aws_endpoint_url(src, tmp_path, moto_s3, capsys, monkeypatch):
    root, manifest = src
    _upload(moto_s3, "weights-env", "m", root)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3)
    code, out, err = run("stage", "--manifest", str(manifest), "--from", "s3://weights-env/m",
                         "--to", str(tmp_path / "dest"), capsys=capsys)
    assert code == 0, err


def test_s3_corrupt_and_missing_objects_are_refused(src, tmp_path, moto_s3, capsys):
    root, manifest = src
    _upload(moto_s3, "weights-bad", "m", root, corrupt=SHARD)
    dest = tmp_path / "dest"
    code, out, err = run("stage", "--manifest", str(manifest), "--from", "s3://weights-bad/m", "--to", str(dest),
                         "--s3-endpoint-url", moto_s3, capsys=capsys)
    assert code == 6
    assert f"{SHARD}: sha256 mismatch from s3://weights-bad/m/{SHARD}" in err
    assert not dest.exists()
    code, out, err = run("stage", "--manifest", str(manifest), "--from", "s3://weights-bad/other-prefix",
                         "--to", str(dest), "--s3-endpoint-url", moto_s3, capsys=capsys)
    assert code == 6 and "not found at s3://weights-bad/other-prefix/" in err
    code, out, err = run("stage", "--manifest", str(manifest), "--from", "s3://no-such-bucket/m",
                         "--to", str(dest), "--s3-endpoint-url", moto_s3, capsys=capsys)
    assert code == 6 and "no such bucket at s3://no-such-bucket/m/" in err
    assert not dest.exists()


# --------------------------------------------------------------------------- llmcluster model manifest / verify


def test_manifest_and_verify_commands(src, tmp_path, capsys):
    root, _ = src
    out = tmp_path / "m.json"
    code, stdout, err = run("manifest", str(root), "--out", str(out), "--model", "deepseek-r1", capsys=capsys)
    assert code == 0, err
    assert MM.load_manifest(str(out)).model == "deepseek-r1"
    code, stdout, err = run("verify", "--manifest", str(out), str(root), capsys=capsys)
    assert code == 0 and stdout.startswith("verified 6 files, ")
    (root / "config.json").write_text("{}")
    code, stdout, err = run("verify", "--manifest", str(out), str(root), capsys=capsys)
    assert code == MS.EXIT_MISMATCH == 5
    assert err.startswith("config.json: size mismatch")
    code, stdout, err = run("manifest", str(root), capsys=capsys)
    assert code == 0 and json.loads(stdout)["format"] == MM.FORMAT


def test_the_console_entry_in_a_real_process(src, tmp_path):
    root, manifest = src
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "llmcluster.cli", "model", "verify", "--manifest", str(manifest),
                        str(root)], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    (root / SHARD).unlink()
    r = subprocess.run([sys.executable, "-m", "llmcluster.cli", "model", "verify", "--manifest", str(manifest),
                        str(root)], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 5 and r.stderr == f"{SHARD}: missing\n"


# --------------------------------------------------------------------------- bad inputs


@pytest.fixture
def play(src, tmp_path) -> Path:
    root, manifest = src
    (tmp_path / "f").write_text("a regular file\n")
    (tmp_path / "notjson.json").write_text("{nope")
    (tmp_path / "dir.json").mkdir()
    os.symlink("nowhere", tmp_path / "dangling")
    return tmp_path


def _bad_cases(t: Path) -> list[tuple[list[str], str]]:
    root, m = str(t / "src" / "deepseek-r1"), str(t / "manifest.json")
    return [
        (["verify", "--manifest", m, str(t / "missing")], "DIR: "),
        (["verify", "--manifest", m, str(t / "f")], "DIR: "),
        (["verify", "--manifest", m, str(t / "dangling")], "DIR: "),
        (["verify", "--manifest", str(t / "notjson.json"), root], f"{t / 'notjson.json'}: not JSON"),
        (["verify", "--manifest", str(t / "dir.json"), root], f"{t / 'dir.json'}: not a file"),
        (["verify", "--manifest", str(t / "none.json"), root], f"{t / 'none.json'}: no such file"),
        (["verify", "--manifest", m, root, "--workers", "0"], "--workers: "),
        (["verify", "--manifest", m, root, "--workers", "999"], "--workers: "),
        (["manifest", str(t / "missing")], "DIR: "),
        (["manifest", str(t / "f")], "DIR: "),
        (["manifest", root, "--out", str(t / "f")], f"--out: {t / 'f'}: exists: pass --replace"),
        (["manifest", root, "--out", str(t / "dir.json"), "--replace"], "--out: "),
        (["manifest", root, "--out", str(t / "f" / "sub.json")], "--out: "),
        (["manifest", root, "--out", str(t / "nope" / "m.json")], "--out: "),
        (["manifest", root, "--out", "x" * 300], "--out: "),
        (["manifest", root, "--out", "a\0b"], "--out: "),
        (["stage", "--manifest", m, "--from", str(t / "missing"), "--to", str(t / "d")], "--from: "),
        (["stage", "--manifest", m, "--from", str(t / "f"), "--to", str(t / "d")], "--from: "),
        (["stage", "--manifest", m, "--from", "ftp://mirror/x", "--to", str(t / "d")], "--from: ftp://"),
        (["stage", "--manifest", m, "--from", "s3:///prefix", "--to", str(t / "d")], "--from: "),
        (["stage", "--manifest", m, "--from", "http://", "--to", str(t / "d")], "--from: "),
        (["stage", "--manifest", m, "--from", "http://h:99999/x", "--to", str(t / "d")], "--from: "),
        (["stage", "--manifest", m, "--from", "http://h/x?a=1", "--to", str(t / "d")], "--from: "),
        (["stage", "--manifest", m, "--from", "s3://b/p", "--s3-endpoint-url", "nonsense", "--to", str(t / "d")],
         "--s3-endpoint-url: "),
        (["stage", "--manifest", m, "--from", root, "--to", str(t / "f")], "--to: "),
        (["stage", "--manifest", m, "--from", root, "--to", str(t / "f" / "sub")], "--to: "),
        (["stage", "--manifest", m, "--from", root, "--to", root], "--to: "),
        (["stage", "--manifest", str(t / "notjson.json"), "--from", root, "--to", str(t / "d")],
         f"{t / 'notjson.json'}: "),
        (["stage", "--manifest", m, "--from", root, "--to", str(t / "d"), "--timeout", "0"], "--timeout: "),
        (["stage", "--manifest", m, "--to", str(t / "d")],
         "llmcluster model stage: the following arguments are required: --from"),
    ]


def test_bad_inputs_are_one_line_errors_and_write_nothing(play, capsys):
    before = snapshot(play)
    cases = _bad_cases(play)
    assert len(cases) >= 25
    for argv, where in cases:
        code, out, err = run(*argv, capsys=capsys)
        assert code == 2, (argv, code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(where), (argv, err)
        assert "Traceback" not in err and "internal error" not in err
        assert changes(before, snapshot(play)) == [], argv
