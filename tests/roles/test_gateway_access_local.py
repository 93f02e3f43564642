"""The gateway's access control, run for real: the role's rendered HAProxy configuration on
loopback with real curl clients (tests/helpers/gateway_local.py says how it is set up).

Who (only named client certificates: CN in the clients map and OU = its role), what (the API
paths only; the JSON body's model), from where (source CIDRs) and when (UTC weekday and time of
day): each case asserts the status, the short JSON error body, the headers every answer carries
(HSTS, no ``server``/``x-powered-by``) and the decision in the access log line. Also here: the
role's preflight refuses inventories it cannot serve safely (no upstream FQDN, no policies, ...).
"""

from __future__ import annotations

import copy
import http.client
import json
import socket
import ssl
from pathlib import Path

import pytest

from llmcluster.verify import gateway as G
from tests.helpers import gateway_local as L


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> L.Pki:
    return L.lab_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def gateway(pki, tmp_path_factory):
    gw = L.start_gateway(tmp_path_factory.mktemp("gateway"), pki)
    try:
        yield gw
    finally:
        gw.stop()


def _body(model: str | None, **extra) -> str:
    doc: dict = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 4, **extra}
    if model is not None:
        doc["model"] = model
    return json.dumps(doc)


# (id, client, path, data, curl extras, source, status, decision)
CASES = [
    ("named-client", "chat-frontend", "/v1/chat/completions", G.CHAT_BODY, (), None, 200, "allow:apps"),
    ("model-listing-no-body", "chat-frontend", "/v1/models", None, (), None, 200, "allow:apps"),
    ("policy-naming-the-client", "batch-runner", "/v1/completions",
     json.dumps({"model": "deepseek-r1", "prompt": "ping"}), (), None, 200, "allow:batch-by-name"),
    ("inside-its-hours", "daytime", "/v1/chat/completions", G.CHAT_BODY, (), None, 200, "allow:daytime"),
    ("model-last-in-the-body", "chat-frontend", "/v1/chat/completions",
     json.dumps({"messages": [{"role": "user", "content": "x" * 2000}], "model": "deepseek-r1"}), (), None, 200,
     "allow:apps"),
    ("gpu-host-certificate", "host-gpu-01", "/v1/chat/completions", G.CHAT_BODY, (), None, 403,
     "deny:unknown-client"),
    ("storage-host-certificate", "host-storage-01", "/v1/models", None, (), None, 403, "deny:unknown-client"),
    ("operator-admin", "admin", "/v1/chat/completions", G.CHAT_BODY, (), None, 403, "deny:unknown-client"),
    ("named-cn-other-role", "imposter", "/v1/completions", json.dumps({"model": "deepseek-r1", "prompt": "x"}), (),
     None, 403, "deny:role-mismatch"),
    ("path-outside-its-policy", "chat-frontend", "/v1/completions",
     json.dumps({"model": "deepseek-r1", "prompt": "x"}), (), None, 403, "deny:no-policy"),
    ("named-client-other-path", "batch-runner", "/v1/chat/completions", G.CHAT_BODY, (), None, 403,
     "deny:no-policy"),
    ("model-not-in-policy", "chat-frontend", "/v1/chat/completions", _body("gpt-4o"), (), None, 403,
     "deny:no-policy"),
    ("source-outside-its-zones", "chat-frontend", "/v1/chat/completions", G.CHAT_BODY, (), "127.1.0.5", 403,
     "deny:no-policy"),
    ("policy-for-another-zone", "partner", "/v1/chat/completions", G.CHAT_BODY, (), None, 403, "deny:no-policy"),
    ("out-of-hours", "night", "/v1/chat/completions", G.CHAT_BODY, (), None, 403, "deny:no-policy"),
    ("other-days", "offday", "/v1/chat/completions", G.CHAT_BODY, (), None, 403, "deny:no-policy"),
    ("no-model", "chat-frontend", "/v1/chat/completions", _body(None), (), None, 400, "deny:no-model"),
    ("not-json", "chat-frontend", "/v1/chat/completions", "model=deepseek-r1", (), None, 400, "deny:no-model"),
    ("metrics", "chat-frontend", "/metrics", None, (), None, 404, "deny:not-an-api-path"),
    ("version", "chat-frontend", "/version", None, (), None, 404, "deny:not-an-api-path"),
    ("health", "chat-frontend", "/health", None, (), None, 404, "deny:not-an-api-path"),
    ("dot-segments", "chat-frontend", "/v1/models/../../metrics", None, ("--path-as-is",), None, 404,
     "deny:not-an-api-path"),
    ("trailing-slash", "chat-frontend", "/v1/models/", None, (), None, 404, "deny:not-an-api-path"),
    ("get-a-completion", "chat-frontend", "/v1/chat/completions", None, (), None, 405, "deny:method"),
    ("post-the-model-listing", "chat-frontend", "/v1/models", "{}", (), None, 405, "deny:method"),
    ("body-over-the-limit", "chat-frontend", "/v1/chat/completions", _body("deepseek-r1", pad="x" * 5000), (), None,
     413, "deny:body-too-large"),
    ("chunked-without-length", "chat-frontend", "/v1/chat/completions", G.CHAT_BODY,
     ("-H", "Transfer-Encoding: chunked"), None, 411, "deny:length-required"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_access_decision(gateway, case):
    name, who, path, data, extra, source, status, decision = case
    client = gateway.clients.get(who) or gateway.pki.leaf(who)
    sep = "&" if "?" in path else "?"
    res = gateway.curl(client, f"{path}{sep}case={name}", data, source=source, extra=extra)
    assert res.status == status, res.describe()
    # Every answer, the gateway's own included: HSTS, nothing naming the software behind it.
    assert res.headers.get("strict-transport-security") == "max-age=63072000", res.headers
    assert "server" not in res.headers and "x-powered-by" not in res.headers, res.headers
    line = gateway.log_for(f"case={name}")
    assert f"decision={decision} " in line, line
    if status == 200:
        assert " inference/gpu-0" in line, line
        assert res.json()["llmcluster_upstream"] in ("gpu-01", "gpu-02"), res.body
    else:
        assert " api/<NOSRV> " in line, f"a refused request reached a backend: {line}"
        assert set(res.json()) == {"error"}, res.body


def test_the_access_log_names_the_client(gateway):
    gateway.curl(gateway.clients["chat-frontend"], "/v1/models?case=log-fields", None)
    line = gateway.log_for("case=log-fields")
    serial = f"{gateway.serials['chat-frontend']:X}"
    for needle in (f"CN={gateway.pki.client_cn('chat-frontend')}", f"serial={serial}", "decision=allow:apps",
                   "role=app", " 200 ", '"GET /v1/models?case=log-fields HTTP/1.1"'):
        assert needle in line, (needle, line)


def test_clients_map_names_only_the_named_clients(gateway):
    lines = [x for x in gateway.clients_map.splitlines() if x and not x.startswith("#")]
    clients = gateway.vars["llmcluster_gateway"]["access"]["clients"]
    expected = sorted(f"{c['common_name']} {c['role']}" for c in clients)
    assert lines == expected
    assert not any("gpu-01" in x or "admin" in x for x in lines)


def test_status_endpoints_exist_upstream_but_never_pass(gateway, pki, tmp_path):
    """/metrics and /version answer 200 on the upstream itself (as trtllm-serve's do): through the
    gateway they are 404 and the access log shows no backend was chosen."""
    u = gateway.upstreams[0]
    ctx = ssl.create_default_context(cafile=str(pki.dir / "root-ca.pem"))
    upstream = pki.leaf("gateway-upstream")
    ctx.load_cert_chain(upstream.cert, upstream.key)
    for path in ("/metrics", "/version"):
        with socket.create_connection(("127.0.0.1", u.port)) as raw, ctx.wrap_socket(raw, server_hostname=u.fqdn) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {u.fqdn}\r\nConnection: close\r\n\r\n".encode())
            r = http.client.HTTPResponse(s)
            r.begin()
            assert r.status == 200, (path, r.status)
        res = gateway.curl(gateway.clients["chat-frontend"], f"{path}?case=leak{path.replace('/', '-')}", None)
        assert res.status == 404, res.describe()
        line = gateway.log_for(f"case=leak{path.replace('/', '-')}")
        assert " api/<NOSRV> " in line and "deny:not-an-api-path" in line, line


# --------------------------------------------------------------------------- preflight


@pytest.fixture(scope="module")
def preflight_vars(gateway) -> dict:
    return {k: v for k, v in gateway.vars.items() if k != "out"}


def test_preflight_accepts_the_plan(gateway, preflight_vars, tmp_path):
    r = L.preflight(tmp_path, preflight_vars)
    assert r.returncode == 0, r.stdout[-3000:]


def _without_fqdn(v):
    del v["llmcluster_gateway"]["upstreams"][1]["fqdn"]


def _path_outside(v):
    v["llmcluster_gateway"]["access"]["policies"][0]["paths"] = ["/metrics"]


def _no_access(v):
    del v["llmcluster_gateway"]["access"]


def _no_crl(v):
    v["llmcluster_pki"]["crl"] = str(Path(v["llmcluster_pki"]["crl"]).with_name("missing-crl.pem"))


def _bad_source(v):
    v["llmcluster_gateway"]["access"]["policies"][1]["sources"] = ["10.0.0.0/33"]


def _bad_hours(v):
    v["llmcluster_gateway"]["access"]["policies"][0]["hours"] = [875, 1800]


PREFLIGHT_CASES = {
    "upstream-without-fqdn": (_without_fqdn, "llmcluster_gateway.upstreams[1] (gpu-02): no fqdn"),
    "policy-path-not-an-api-path": (_path_outside, "llmcluster_gateway.access.policies[0] (apps)"),
    "inventory-without-access": (_no_access, "predates access control"),
    "no-crl": (_no_crl, "missing-crl.pem (llmcluster_pki.crl) is missing"),
    "bad-source-cidr": (_bad_source, "llmcluster_gateway.access.policies[1] (batch-by-name)"),
    "bad-hours": (_bad_hours, "llmcluster_gateway.access.policies[0] (apps)"),
}


@pytest.mark.parametrize("case", list(PREFLIGHT_CASES))
def test_preflight_refuses(preflight_vars, tmp_path, case):
    change, message = PREFLIGHT_CASES[case]
    v = copy.deepcopy(preflight_vars)
    change(v)
    r = L.preflight(tmp_path, v)
    assert r.returncode != 0, r.stdout[-2000:]
    assert message in " ".join(r.stdout.split()), r.stdout[-3000:]
