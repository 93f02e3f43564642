"""The model_store role run by Ansible on this machine with every path in a temporary folder — no lab.

* Stage-in from a folder on the controller, from a folder on the node (``node:/path``) and from an
  HTTP mirror on 127.0.0.1 (``ansible.builtin.get_url`` checks each file's sha256 on arrival): the
  tree matches its source, the serving group reads it and only root writes it, a second run changes
  nothing and fetches nothing, ``--check`` changes nothing (and writes nothing on a fresh host).
* A mirror serving a corrupted file: refused on arrival, nothing of it left behind.
* A missing file is staged again; a file that differs from the manifest fails the play naming it and
  is not overwritten (``model_store_repair`` fetches it again); a symlink is never replaced.
* The verify step (``tasks/service.yml``) refuses each of the six corruption classes naming the file.
* The preflight refuses unsafe manifests (paths leaving the model folder), unknown and malformed sources,
  with nothing written (the s3:// and rados:// sources: test_model_store_objects_local.py).

The verifier is the llmcluster.hosts collection's ``model_manifest`` module, found by the role on the
collections path of ansible/ansible.cfg.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmcluster.lab.model_fixture import VERIFIER
from tests.helpers.model_tree import CORRUPTIONS, MODEL, SHARDS, corrupt, make_tree, write_manifest
from tests.helpers.model_store_local import (
    SERVING,
    converge,
    each_case,
    same_tree,
)

HF_REPO = "org/Lab-Model"

def _plan(tmp: Path, model: str = MODEL) -> dict:
    return {"model": model, "hf_repo": HF_REPO, "model_path": str(tmp / "models" / HF_REPO),
            "model_manifest": str(tmp / "etc" / "models" / f"{model}.json"),
            "model_verifier": str(tmp / "libexec" / "model-verify")}

def _vars(tmp: Path, source: str, manifest_src: Path, **extra) -> dict:
    return {"llmcluster_serving": SERVING, "llmcluster_serving_plan": _plan(tmp),
            "llmcluster_model_dir": str(tmp / "models"), "model_store_manifest_src": str(manifest_src),
            "model_store_source": source, "model_store_group": "root", **extra}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, Path]:
    """The model's source folder and its manifest (the controller's)."""
    d = tmp_path_factory.mktemp("model-source")
    tree = make_tree(d / "tree" / HF_REPO)
    manifest = d / f"{MODEL}.json"
    write_manifest(tree, manifest)
    return tree, manifest


@pytest.fixture(scope="module")
def staged(source, tmp_path_factory) -> dict:
    """Staged from the controller folder once, then converged again and in check mode."""
    tree, manifest = source
    tmp = tmp_path_factory.mktemp("staged")
    v = _vars(tmp, str(tree), manifest)
    return {"tmp": tmp, "vars": v, "first": converge(tmp / "run1", v), "second": converge(tmp / "run2", v),
            "check": converge(tmp / "run3", v, "--check")}


# --------------------------------------------------------------------------- stage-in


def test_stage_from_a_controller_folder(staged, source):
    tree, manifest = source
    tmp, first = staged["tmp"], staged["first"]
    assert first.rc == 0 and first.changed > 0, first
    model = tmp / "models" / HF_REPO
    same_tree(tree, model)
    assert re.search(r"verified 5 files, \d+ bytes in ", first.out), first
    # The serving group reads the model, only root writes it; the manifest and verifier are in place.
    assert stat.S_IMODE(model.stat().st_mode) == 0o750
    assert stat.S_IMODE((model / "config.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((model / "original").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp / "models" / "org").stat().st_mode) == 0o755
    assert json.loads((tmp / "etc" / "models" / f"{MODEL}.json").read_text()) == json.loads(manifest.read_text())
    verifier = tmp / "libexec" / "model-verify"
    assert verifier.read_bytes() == VERIFIER.read_bytes() and verifier.stat().st_mode & 0o111


def test_second_converge_and_check_mode_change_nothing(staged):
    assert staged["second"].rc == 0 and staged["second"].changed == 0, staged["second"]
    assert staged["check"].rc == 0 and staged["check"].changed == 0, staged["check"]
    # check mode verified too (nothing was about to change)
    assert "verified 5 files" in staged["check"].out, staged["check"]


def test_check_mode_on_a_fresh_host_writes_nothing(source, tmp_path):
    tree, manifest = source
    run = converge(tmp_path / "run", _vars(tmp_path, str(tree), manifest), "--check")
    assert run.rc == 0 and run.changed > 0, run
    for d in ("models", "etc", "libexec"):
        assert not (tmp_path / d).exists(), d


def test_stage_from_a_folder_on_the_node(source, tmp_path):
    tree, manifest = source
    v = _vars(tmp_path, f"node:{tree}", manifest)
    first = converge(tmp_path / "run1", v)
    assert first.rc == 0 and first.changed > 0, first
    same_tree(tree, tmp_path / "models" / HF_REPO)
    second = converge(tmp_path / "run2", v)
    assert second.rc == 0 and second.changed == 0, second


class _Mirror:
    """A static HTTP mirror of a folder on 127.0.0.1 that records the paths asked for."""

    def __init__(self, root: Path):
        requests = self.requests = []

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, fmt, *args):
                requests.append(self.path)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mirror"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror_of(tmp_path):
    made = []

    def make(tree: Path) -> _Mirror:
        root = tmp_path / "www"
        shutil.copytree(tree, root / "mirror")
        m = _Mirror(root)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def test_stage_from_an_http_mirror(source, tmp_path, mirror_of):
    tree, manifest = source
    mirror = mirror_of(tree)
    v = _vars(tmp_path, mirror.url + "/", manifest)
    first = converge(tmp_path / "run1", v)
    assert first.rc == 0 and first.changed > 0, first
    same_tree(tree, tmp_path / "models" / HF_REPO)
    assert sorted(mirror.requests) == sorted(f"/mirror/{p}" for p in ("config.json", "tokenizer.json", *SHARDS,
                                                                   "original/params.json")), mirror.requests
    assert list((tmp_path / "models" / ".staging").iterdir()) == []
    mirror.requests.clear()
    second = converge(tmp_path / "run2", v)
    assert second.rc == 0 and second.changed == 0, second
    assert mirror.requests == [], "files already right must not be fetched again"


def test_a_corrupted_mirror_file_is_refused_on_arrival(source, tmp_path, mirror_of):
    tree, manifest = source
    bad = tmp_path / "bad" / "tree"
    shutil.copytree(tree, bad)
    name = corrupt(bad, "flipped-bit")
    mirror = mirror_of(bad)
    run = converge(tmp_path / "run", _vars(tmp_path, mirror.url, manifest))
    assert run.rc != 0 and run.failed == 1, run
    assert name in run.out and re.search(r"checksum", run.out, re.I), run
    model = tmp_path / "models" / HF_REPO
    assert not (model / name).exists(), "a file that failed its checksum must not be left in place"
    assert list((tmp_path / "models" / ".staging").iterdir()) == []


# --------------------------------------------------------------------------- damage after staging


def test_missing_file_is_staged_again_a_changed_one_is_refused_until_repair(source, tmp_path):
    tree, manifest = source
    v = _vars(tmp_path, str(tree), manifest)
    assert converge(tmp_path / "run1", v).rc == 0
    model = tmp_path / "models" / HF_REPO
    corrupt(model, "missing")
    changed = corrupt(model, "flipped-bit")
    damaged = (model / changed).read_bytes()
    run = converge(tmp_path / "run2", v)
    assert run.rc != 0, run
    assert f"{changed}: " in run.out and "model_store_repair" in run.out, run
    assert (model / "config.json").read_bytes() == (tree / "config.json").read_bytes(), "missing: staged again"
    assert (model / changed).read_bytes() == damaged, "a differing file is not overwritten without repair"
    repaired = converge(tmp_path / "run3", {**v, "model_store_repair": True})
    assert repaired.rc == 0 and repaired.changed > 0, repaired
    same_tree(tree, model)
    # A symlink in place of a file is never replaced, not even when repairing: the play names it.
    corrupt(model, "swapped-symlink")
    run = converge(tmp_path / "run4", {**v, "model_store_repair": True})
    assert run.rc != 0 and "tokenizer.json: " in run.out, run
    assert (model / "tokenizer.json").is_symlink()


def test_the_verify_step_refuses_each_corruption_naming_the_file(source, tmp_path):
    tree, manifest = source
    cases, expect = {}, {}
    for kind in ["clean", *CORRUPTIONS]:
        base = tmp_path / kind
        model = base / "models" / HF_REPO
        shutil.copytree(tree, model)
        expect[kind] = corrupt(model, kind) if kind != "clean" else None
        plan = _plan(base)
        Path(plan["model_verifier"]).parent.mkdir(parents=True)
        shutil.copyfile(VERIFIER, plan["model_verifier"])
        Path(plan["model_verifier"]).chmod(0o755)
        Path(plan["model_manifest"]).parent.mkdir(parents=True)
        shutil.copyfile(manifest, plan["model_manifest"])
        cases[kind] = {"serving": SERVING, "plan": plan, "model_dir": str(base / "models"),
                       "manifest_src": str(manifest), "source": ""}
    results = each_case(tmp_path / "play", "service", cases)
    assert results.pop("clean") == "ok"
    for kind, msg in results.items():
        assert "does not match its manifest" in msg and f"{expect[kind]}: " in msg, f"{kind}: {msg}"


# --------------------------------------------------------------------------- preflight


def _bad_manifest(d: Path, manifest: Path, name: str, change) -> str:
    doc = json.loads(manifest.read_text())
    change(doc)
    path = d / f"{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_preflight_refuses_unsafe_manifests_and_sources(source, tmp_path):
    tree, manifest = source
    d = tmp_path / "manifests"
    d.mkdir()

    def path_to(p):
        return lambda doc: doc["files"][0].update(path=p)

    bad = {
        "traversal": (path_to("../../../etc/evil.bin"), "bad paths"),
        "absolute": (path_to("/etc/evil.bin"), "bad paths"),
        "dot-component": (path_to("original/./params.json"), "bad paths"),
        "colon-space": (path_to("a: b.bin"), "bad paths"),
        "duplicate": (lambda doc: doc["files"].append(dict(doc["files"][0])), "unique"),
        "bad-digest": (lambda doc: doc["files"][0].update(sha256="x" * 64), "bad sha256 1"),
        "bad-size": (lambda doc: doc["files"][0].update(size="12"), "bad sizes 1"),
        "format": (lambda doc: doc.update(format="other/1"), "format other/1"),
        "other-model": (lambda doc: doc.update(model="another-model"), "model another-model"),
        "no-files": (lambda doc: doc.update(files=[]), "0 files"),
    }
    cases, want = {}, {}
    base = {"serving": SERVING, "plan": _plan(tmp_path), "model_dir": str(tmp_path / "models"),
            "manifest_src": str(manifest), "source": str(tree)}
    for name, (change, text) in bad.items():
        cases[name] = {**base, "manifest_src": _bad_manifest(d, manifest, name, change)}
        want[name] = ("model_store_manifest_src: ", text)
    for name, src, text in (("s3", "s3://Bucket_1/models", "bucket 'Bucket_1'"),
                            ("ftp", "ftp://mirror/x", "is not a source"), ("relative", "models/x", "is not a source"),
                            ("missing-dir", str(tmp_path / "nope"), "not a folder"),
                            ("missing-node-dir", f"node:{tmp_path / 'nope'}", "not a folder")):
        cases[name] = {**base, "source": src}
        want[name] = ("model_store_source: ", text)
    cases["no-manifest"] = {**base, "manifest_src": ""}
    want["no-manifest"] = ("model_store_manifest_src: (unset)", "llmcluster model manifest")
    cases["outside-model-dir"] = {**base, "plan": {**base["plan"], "model_path": "/srv/elsewhere/x"}}
    want["outside-model-dir"] = ("model_store: ", "below llmcluster_model_dir")
    cases["good"] = base
    results = each_case(tmp_path / "play", "preflight", cases)
    assert results.pop("good") == "ok"
    for name, msg in results.items():
        key, text = want[name]
        assert msg.startswith(key) and text in msg, f"{name}: {msg}"
    assert not (tmp_path / "models").exists()


def test_an_unsafe_manifest_writes_nothing(source, tmp_path):
    tree, manifest = source
    evil = _bad_manifest(tmp_path, manifest, "evil", lambda doc: doc["files"][0].update(path="../../escape.bin"))
    run = converge(tmp_path / "run", _vars(tmp_path, str(tree), Path(evil)))
    assert run.rc != 0 and "model_store_manifest_src: " in run.out and "../../escape.bin" in run.out, run
    for d in ("models", "etc", "libexec", "escape.bin"):
        assert not (tmp_path / d).exists(), d


def test_the_verifier_runs_stdlib_only():
    """The nodes run the collection's module as a script with the system python3: standard library only."""
    r = subprocess.run(["python3", "-I", "-S", str(VERIFIER), "verify", "--help"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0 and "--manifest" in r.stdout, r.stderr
    assert VERIFIER.read_text().startswith(("#!/usr/bin/python3\n", "#!/usr/bin/env python3\n"))

