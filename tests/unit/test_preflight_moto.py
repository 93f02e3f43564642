"""Preflight (layer 3) against a real moto server on 127.0.0.1, reached the way users reach AWS: the
``llmcluster validate --preflight`` command with the endpoint in ``AWS_ENDPOINT_URL`` and (fake)
credentials in the environment. Placement groups and capacity are not implemented by moto: not tested here.
The S3 stage-in is tested against the same kind of server in test_model_stage.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, STACKS
from tests.helpers.tools import moto_server

PROD_AWS = str(STACKS / "Pulumi.prod-aws.yaml")
FAKE = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


def _env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in ("LLMCLUSTER_DEBUG",)
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(FAKE, AWS_ENDPOINT_URL=endpoint, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               NO_PROXY="127.0.0.1", PYTHONPATH=str(ROOT), **extra)
    return env


def validate(endpoint: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmcluster.cli", "validate", PROD_AWS, "--preflight", *args],
                          capture_output=True, text=True, cwd=ROOT, env=_env(endpoint), timeout=120)


@pytest.fixture(scope="module")
def moto_ec2():
    with moto_server() as endpoint:
        yield endpoint


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_offered_in_the_zone_is_no_problem(moto_ec2):
    r = validate(moto_ec2, "--json")
    assert r.returncode == 0, r.stderr
    assert '"valid": true' in r.stdout


def test_not_offered_is_one_problem_naming_the_pool_and_the_zone(moto_ec2):
    # In moto's offering data (AWS's published one) eu-west-1a has no p5en; the gateways' c7i is offered.
    r = validate(moto_ec2, "--set", "aws.region=eu-west-1", "--set", "aws.availability_zone=eu-west-1a",
                 "--set", "aws.secondary_availability_zones=[eu-west-1b]")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        f"{PROD_AWS}: pools.gpu.aws.instance_type: p5en.48xlarge is not offered in eu-west-1a: pick another "
        "availability_zone or instance type"]


def test_unreachable_endpoint_is_a_clear_problem_not_a_traceback():
    dead = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    r = validate(dead, "--timeout", "2")
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROD_AWS}: aws: cannot query EC2 offerings in us-east-2: "
                                                   "EndpointConnectionError: "), lines
    assert dead in lines[0] and "AWS_ENDPOINT_URL" in lines[0]
    assert time.monotonic() - started < 60


def test_denied_is_a_clear_problem_not_a_traceback(tmp_path):
    """A moto server that enforces authentication (INITIAL_NO_AUTH_ACTION_COUNT=0): unknown keys are refused."""
    port = _free_port()
    env = {**_env("unused"), "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("moto server did not start")
                time.sleep(0.2)
        r = validate(endpoint)
        assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{PROD_AWS}: aws: cannot query EC2 offerings in us-east-2: "
                                                       "ClientError: "), lines
        assert "AuthFailure" in lines[0] or "InvalidClientTokenId" in lines[0], lines
    finally:
        server.terminate()
        server.wait(timeout=10)
