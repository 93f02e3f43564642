"""The model_store role's object-store sources, run by Ansible on this machine (connection local, every
path in a temporary folder) -- no lab.

* ``s3://bucket/prefix``: the llmcluster.hosts collection's ``model_stage`` module signs GetObject with
  SigV4 itself (standard library; the nodes have no boto3), against a moto server on 127.0.0.1 that
  CHECKS signatures (``INITIAL_NO_AUTH_ACTION_COUNT``: after the IAM user is made, every request must
  be signed with its keys). The lab model fixture is uploaded, staged and verified; a second run
  changes nothing and fetches nothing; check mode writes nothing; a corrupted object is refused naming
  the file and both digests, nothing of it left in the model folder or the download folder; wrong
  keys fail naming the source, never echoing a key; credentials from the environment and from an
  IMDSv2 stand-in on 127.0.0.1 work too.
* ``rados://pool/prefix`` and ``model_store_publish``: against a TEST DOUBLE of the ``rados`` CLI
  (tests/helpers/rados_test_double/rados, objects as files); the real rados runs in the lab test
  tests/lab/test_model_store_rados.py.
* The preflight: malformed s3:// and rados:// forms refused with what is wrong.
* The SigV4 signer against AWS's published test vector and against botocore's signer.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import s3_sigv4 as S
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.model_source import (
    model_source_problem,
)
from llmcluster.lab.model_fixture import ensure_lab_model
from llmcluster.plan.catalog import lookup_model
from tests.helpers.aws_local import MotoAws
from tests.helpers.role_local import free_port
from tests.helpers.model_store_local import SERVING, converge, each_case, same_tree

MODEL = "deepseek-r1"
HF_REPO = lookup_model(MODEL).hf_repo
RADOS_DOUBLE = Path(__file__).resolve().parents[1] / "helpers" / "rados_test_double"
BUCKET, PREFIX = "llmcluster-weights", "deepseek-r1/lab-fixture-1"
SHARD = "model-00002-of-00003.safetensors"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """No proxy, no AWS settings of this machine; the role's environment is the test's."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "AWS_PROFILE",
                "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _plan(tmp: Path) -> dict:
    return {"model": MODEL, "hf_repo": HF_REPO, "model_path": str(tmp / "models" / HF_REPO),
            "model_manifest": str(tmp / "etc" / "models" / f"{MODEL}.json"),
            "model_verifier": str(tmp / "libexec" / "model-verify")}


def _vars(tmp: Path, source: str, manifest: Path, **extra) -> dict:
    return {"llmcluster_serving": SERVING, "llmcluster_serving_plan": _plan(tmp),
            "llmcluster_model_dir": str(tmp / "models"), "model_store_manifest_src": str(manifest),
            "model_store_source": source, "model_store_group": "root", **extra}


def _run(d: Path, variables: dict, *args: str, env: dict | None = None):
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        return converge(d, variables, *args)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return ensure_lab_model(tmp_path_factory.mktemp("lab-model-cache"), MODEL)


# --------------------------------------------------------------------------- S3 (moto checking signatures)


class Moto(MotoAws):
    """The shared moto server (tests/helpers/aws_local.py), its user allowed S3 only, with an S3 client."""

    def __init__(self, tmp: Path):
        super().__init__(tmp, user="model-reader", action="s3:*", policy_name="s3")
        self.s3 = self.client("s3")

    def upload(self, bucket: str, prefix: str, tree: Path, corrupt: str | None = None) -> None:
        self.s3.create_bucket(Bucket=bucket)
        for p in sorted(tree.rglob("*")):
            if p.is_file():
                rel = p.relative_to(tree).as_posix()
                body = p.read_bytes()
                if rel == corrupt:
                    body = body[:200] + bytes([body[200] ^ 1]) + body[201:]
                self.s3.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=body)

    def gets(self) -> list[str]:
        self.log.flush()
        return [line for line in (Path(self.log.name).read_text().splitlines()) if '"GET /' in line]


@pytest.fixture(scope="module")
def moto(fixture, tmp_path_factory):
    m = Moto(tmp_path_factory.mktemp("moto"))
    m.upload(BUCKET, PREFIX, fixture.source)
    m.upload("llmcluster-corrupt", PREFIX, fixture.source, corrupt=SHARD)
    yield m
    m.close()


def _s3_vars(tmp: Path, moto: Moto, fixture, bucket: str = BUCKET, **extra) -> dict:
    keys = {"model_store_s3_endpoint": moto.endpoint, "model_store_s3_access_key": moto.access_key,
            "model_store_s3_secret_key": moto.secret_key}
    return _vars(tmp, f"s3://{bucket}/{PREFIX}/", fixture.manifest, **{**keys, **extra})


def test_stage_from_s3_verified_idempotent_and_check_mode(fixture, moto, tmp_path):
    v = _s3_vars(tmp_path, moto, fixture)
    check = converge(tmp_path / "check", v, "--check")
    assert check.rc == 0 and check.changed > 0, check
    assert not (tmp_path / "models").exists(), "check mode on a fresh host writes nothing"
    before = len(moto.gets())
    first = converge(tmp_path / "run1", v)
    assert first.rc == 0 and first.changed > 0, first
    files = sorted(p.relative_to(fixture.source).as_posix() for p in fixture.source.rglob("*") if p.is_file())
    assert len(moto.gets()) - before == len(files), moto.gets()[before:]
    model = tmp_path / "models" / HF_REPO
    same_tree(fixture.source, model)
    assert f"verified {len(files)} files" in first.out, first
    assert list((tmp_path / "models" / ".staging").iterdir()) == []
    assert oct((model / SHARD).stat().st_mode & 0o777) == "0o640"
    # The secret key never shows, not even with -vvv... kept to the default verbosity plus -v here.
    assert moto.secret_key not in first.out and moto.access_key not in first.out
    second = converge(tmp_path / "run2", v)
    assert second.rc == 0 and second.changed == 0, second
    check = converge(tmp_path / "check2", v, "--check")
    assert check.rc == 0 and check.changed == 0, check
    assert len(moto.gets()) - before == len(files), "files already in place are not fetched again"


def test_a_corrupted_object_is_refused_nothing_put_in_place(fixture, moto, tmp_path):
    run = converge(tmp_path / "run", _s3_vars(tmp_path, moto, fixture, bucket="llmcluster-corrupt"))
    assert run.rc != 0 and run.failed == 1, run
    want = next(f["sha256"] for f in json.loads(fixture.manifest.read_text())["files"] if f["path"] == SHARD)
    bad = bytearray((fixture.source / SHARD).read_bytes())
    bad[200] ^= 1
    got = hashlib.sha256(bad).hexdigest()
    assert f"model_store_source: {SHARD}: sha256 {got}" in run.out and want in run.out, run
    assert f"s3://llmcluster-corrupt/{PREFIX}/{SHARD}" in run.out, run
    assert not (tmp_path / "models" / HF_REPO / SHARD).exists()
    assert list((tmp_path / "models" / ".staging").iterdir()) == []


def test_wrong_credentials_name_the_source_and_never_the_key(fixture, moto, tmp_path):
    v = _s3_vars(tmp_path, moto, fixture, model_store_s3_secret_key="not-the-secret-key-0123456789")
    run = converge(tmp_path / "run", v)
    assert run.rc != 0 and run.failed == 1, run
    assert f"model_store_source: s3://{BUCKET}/{PREFIX}/" in run.out and "HTTP 403" in run.out, run
    assert "SignatureDoesNotMatch" in run.out and "role variables" in run.out, run
    assert "not-the-secret-key" not in run.out and moto.access_key not in run.out, run
    assert not (tmp_path / "models" / HF_REPO / SHARD).exists()
    unknown = converge(tmp_path / "run2", {**v, "model_store_s3_access_key": "AKIAUNKNOWNKEY000000"})
    assert unknown.rc != 0 and "HTTP 403" in unknown.out and "AKIAUNKNOWN" not in unknown.out, unknown


def test_credentials_from_the_environment(fixture, moto, tmp_path):
    v = _vars(tmp_path, f"s3://{BUCKET}/{PREFIX}", fixture.manifest, model_store_s3_endpoint=moto.endpoint)
    run = _run(tmp_path / "run", v, env={"AWS_ACCESS_KEY_ID": moto.access_key,
                                         "AWS_SECRET_ACCESS_KEY": moto.secret_key})
    assert run.rc == 0 and run.changed > 0, run
    same_tree(fixture.source, tmp_path / "models" / HF_REPO)


class _Imds:
    """An IMDSv2 stand-in on 127.0.0.1: a token from PUT /latest/api/token is required for the rest."""

    def __init__(self, creds: dict):
        calls = self.calls = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                calls.append(("PUT", self.path))
                ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                self._send(200 if ok else 400, b"tok-123" if ok else b"")

            def do_GET(self):
                calls.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != "tok-123":
                    return self._send(401, b"")
                base = "/latest/meta-data/iam/security-credentials/"
                if self.path == base:
                    return self._send(200, b"gpu-node-role\n")
                if self.path == base + "gpu-node-role":
                    return self._send(200, json.dumps({"Code": "Success", **creds}).encode())
                self._send(404, b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_credentials_from_the_instance_profile_imdsv2(fixture, moto, tmp_path):
    imds = _Imds({"AccessKeyId": moto.access_key, "SecretAccessKey": moto.secret_key, "Token": ""})
    try:
        v = _vars(tmp_path, f"s3://{BUCKET}/{PREFIX}", fixture.manifest, model_store_s3_endpoint=moto.endpoint)
        run = _run(tmp_path / "run", v, env={"AWS_EC2_METADATA_DISABLED": "false",
                                             "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url})
        assert run.rc == 0 and run.changed > 0, run
        assert imds.calls[0] == ("PUT", "/latest/api/token"), imds.calls
        same_tree(fixture.source, tmp_path / "models" / HF_REPO)
    finally:
        imds.close()


def test_imdsv2_without_a_role_is_a_clear_error(tmp_path):
    imds = _Imds({})
    try:
        with pytest.raises(S.S3Error, match="gave no credentials for role gpu-node-role"):
            S.find_credentials(environ={}, imds_endpoint=imds.url)
    finally:
        imds.close()
    with pytest.raises(S.S3Error, match="not reachable"):
        S.find_credentials(environ={}, imds_endpoint=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(S.S3Error, match="go together"):
        S.find_credentials("AKIA", "")


# --------------------------------------------------------------------------- the SigV4 signer


def test_sigv4_matches_aws_published_test_vector():
    """AWS's SigV4 test suite, case get-vanilla (GET / on example.amazonaws.com, service "service")."""
    h = S.sign("GET", "https://example.amazonaws.com/", {}, region="us-east-1", service="service",
               access_key="AKIDEXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
               amz_date="20150830T123600Z")
    assert h["Authorization"] == ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                                  "SignedHeaders=host;x-amz-date, "
                                  "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")


@pytest.mark.parametrize("key", ["m/model-00001-of-00003.safetensors", "a b/c+d=é~.json", "x/original/params.json"])
@pytest.mark.parametrize("addressing", ["path", "virtual"])
def test_sigv4_matches_botocore(key, addressing, monkeypatch):
    import botocore.auth
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = S.object_url("weights", key, region="eu-west-1", addressing=addressing)
    assert url.startswith("https://weights.s3.eu-west-1" if addressing == "virtual" else "https://s3.eu-west-1")
    when = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)  # noqa: UP017
    creds = S.Credentials("AKIAEXAMPLE", "secret/example+key", "session-token")
    ours = S.sign("GET", url, {"x-amz-content-sha256": S.EMPTY_SHA256, "x-amz-security-token": creds.token},
                  region="eu-west-1", service="s3", access_key=creds.access_key, secret_key=creds.secret_key,
                  amz_date=when.strftime("%Y%m%dT%H%M%SZ"))
    req = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": S.EMPTY_SHA256})
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)  # botocore reads the clock here
    auth = S3SigV4Auth(Credentials("AKIAEXAMPLE", "secret/example+key", "session-token"), "s3", "eu-west-1")
    auth.add_auth(req)
    theirs = req.headers["Authorization"]
    assert ours["Authorization"] == theirs, (ours, theirs)


# --------------------------------------------------------------------------- rados (a TEST DOUBLE of the CLI)


@pytest.fixture
def rados_double(tmp_path, monkeypatch):
    store = tmp_path / "rados-objects"
    (store / "models").mkdir(parents=True)
    monkeypatch.setenv("RADOS_TEST_DOUBLE_DIR", str(store))
    monkeypatch.setenv("PATH", f"{RADOS_DOUBLE}{os.pathsep}{os.environ['PATH']}")
    return store


def _calls(store: Path) -> list[str]:
    log = store / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_publish_then_stage_from_rados(fixture, rados_double, tmp_path):
    files = [f["path"] for f in json.loads(fixture.manifest.read_text())["files"]]
    pub = _vars(tmp_path / "a", str(fixture.source), fixture.manifest, model_store_publish="rados://models/t/lab-1")
    first = converge(tmp_path / "pub1", pub)
    assert first.rc == 0 and first.changed > 0, first
    puts = [c for c in _calls(rados_double) if " put " in c]
    assert len(puts) == len(files) and all(c.startswith("--id models -p models --striper put t/lab-1/") for c in puts)
    again = converge(tmp_path / "pub2", pub)
    assert again.rc == 0 and again.changed == 0, again
    assert len([c for c in _calls(rados_double) if " put " in c]) == len(files), "a second converge puts nothing"
    assert len([c for c in _calls(rados_double) if c.endswith(" ls")]) == 2, "one listing per converge"
    # Another node stages from the repository, verified; then again: nothing fetched.
    v = _vars(tmp_path / "b", "rados://models/t/lab-1", fixture.manifest)
    staged = converge(tmp_path / "stage1", v)
    assert staged.rc == 0 and staged.changed > 0, staged
    same_tree(fixture.source, tmp_path / "b" / "models" / HF_REPO)
    gets = len([c for c in _calls(rados_double) if " get " in c])
    assert gets == len(files)
    second = converge(tmp_path / "stage2", v)
    assert second.rc == 0 and second.changed == 0, second
    assert len([c for c in _calls(rados_double) if " get " in c]) == gets
    # An object of another size is put again.
    victim = next(p for p in (rados_double / "models").iterdir() if p.name.endswith("config.json"))
    victim.write_bytes(b"{}")
    third = converge(tmp_path / "pub3", pub)
    assert third.rc == 0 and third.changed == 1, third
    assert victim.read_bytes() == (fixture.source / "config.json").read_bytes()


def test_a_corrupted_rados_object_is_refused(fixture, rados_double, tmp_path):
    assert converge(tmp_path / "pub", _vars(tmp_path / "a", str(fixture.source), fixture.manifest,
                                            model_store_publish="rados://models/t")).rc == 0
    obj = next(p for p in (rados_double / "models").iterdir() if p.name.endswith(SHARD))
    data = bytearray(obj.read_bytes())
    data[300] ^= 0x40
    obj.write_bytes(bytes(data))
    run = converge(tmp_path / "stage", _vars(tmp_path / "b", "rados://models/t", fixture.manifest))
    assert run.rc != 0 and f"model_store_source: {SHARD}: sha256 {hashlib.sha256(data).hexdigest()}" in run.out, run
    assert "rados://models/t/" + SHARD in run.out, run
    assert not (tmp_path / "b" / "models" / HF_REPO / SHARD).exists()
    assert list((tmp_path / "b" / "models" / ".staging").iterdir()) == []
    missing = converge(tmp_path / "stage2", _vars(tmp_path / "c", "rados://models/absent", fixture.manifest))
    assert missing.rc != 0 and "rados://models/absent/" in missing.out and "rados get exited" in missing.out, missing


# --------------------------------------------------------------------------- preflight


def test_preflight_accepts_the_object_forms_and_refuses_malformed_ones(fixture, tmp_path):
    base = {"serving": SERVING, "plan": _plan(tmp_path), "model_dir": str(tmp_path / "models"),
            "manifest_src": str(fixture.manifest)}
    good = ["s3://weights/deepseek-r1/main", "s3://my.bucket-1", "s3://weights/a/b/", "rados://models/deepseek-r1/main",
            "rados://models"]
    bad = {
        "s3://Weights/x": "bucket 'Weights'", "s3://ab/x": "bucket 'ab'", "s3://a..b/x": "no '..'",
        "s3://192.168.1.10/x": "not an IP address", "s3:///x": "bucket ''", "s3://weights//x": "empty",
        "s3://weights/a/../b": "'..'", "rados://.hidden/x": "pool '.hidden'", "rados://models/a//b": "empty",
        "rados://": "pool ''", "ftp://mirror/x": "is not a source",
    }
    cases = {f"good{i}": {**base, "source": s} for i, s in enumerate(good)}
    cases.update({f"bad{i}": {**base, "source": s} for i, s in enumerate(bad)})
    results = each_case(tmp_path / "play", "preflight", cases)
    for i, s in enumerate(good):
        assert results[f"good{i}"] == "ok", (s, results[f"good{i}"])
    for i, (s, text) in enumerate(bad.items()):
        msg = results[f"bad{i}"]
        assert msg.startswith(f"model_store_source: {s}") and text in msg, (s, msg)
    assert not (tmp_path / "models").exists()


def test_the_publish_target_must_be_rados():
    assert model_source_problem("rados://models/x", ["rados"]) == ""
    assert "not rados://pool[/prefix]" in model_source_problem("s3://weights/x", ["rados"])
    assert "empty" in model_source_problem("rados://models/x//y", ["rados"])


def test_the_module_runs_stdlib_only_on_python39_syntax():
    """The modules and their module_utils import nothing outside the standard library (and Ansible's)."""
    root = Path(S.__file__).resolve().parents[1]
    for path in [root / "module_utils" / "s3_sigv4.py", root / "module_utils" / "model_source.py",
                 root / "modules" / "model_stage.py", root / "modules" / "model_publish.py"]:
        r = subprocess.run([sys.executable, "-I", "-c", "import ast,sys; ast.parse(open(sys.argv[1]).read(), "
                            "feature_version=(3, 9))", str(path)], capture_output=True, text=True, check=False)
        assert r.returncode == 0, (path, r.stderr)
        text = path.read_text()
        assert "import boto" not in text and "import requests" not in text, path
    t0 = time.monotonic()
    code = "import sys; sys.path.insert(0, sys.argv[1]); import s3_sigv4, model_source"
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(root / "module_utils")], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0 and time.monotonic() - t0 < 10, r.stderr
