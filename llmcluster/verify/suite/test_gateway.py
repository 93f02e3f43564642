"""The mTLS gateway with real clients (curl, openssl s_client), per gateway host and check, plus
the lifetime of the certificates installed on every host (llmcluster/verify/gateway.py).

Requests start from a source in the zone the ``api`` flow admits (the lab's ``clients`` probe
namespace from ``llmcluster_verify_probes``). Client material comes from the exported PKI the
inventory names (``llmcluster_pki_dir``): ``admin`` is the valid client; the expired
certificate is the lab export's ``lab-tests/expired-client`` (issued by the real intermediate:
only the offline lab export can make one); the other-CA certificate is made here. Upstreams are the
replica heads' ``trtllm-serve`` units the tensorrt_llm role runs (in the lab: the SIMULATED
TensorRT-LLM server of llmcluster/lab/nvidia_sim, a real systemd unit answering the OpenAI API).
trtllm-serve listens on 127.0.0.1 at ``serving.backend_port``; the gateway reaches it through the
head's TLS terminator (role ``serving_tls``, HAProxy on the inference address at ``serving.port``).
Where a lab serving node runs no such unit (hosts without systemd), the labelled stand-in
upstream (``llmcluster/lab/upstream_standin.py``) is started for these checks instead, where
trtllm-serve would listen, with the terminator's rendered configuration started by hand in front
of it. The failover check stops one upstream, so it runs on lab inventories only.

``upstream-tls`` (llmcluster/verify/upstream.py): from the gateway host, a plain HTTP request to
each upstream's inference address and serving port gets no HTTP response; a capture on the
upstream's inference interface (llmcluster/verify/capture.py, an AF_PACKET socket, root) while a
marked request passes through the gateway sees TLS records and neither cleartext HTTP nor the
marker. Checks skip with the reason when the inventory has no gateway or no client material.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import pytest

from llmcluster.verify import gateway as G
from llmcluster.verify import upstream as U
from llmcluster.verify.checks import interface_names
from llmcluster.verify.remote import LocalHost

pytestmark = pytest.mark.xdist_group("lab")

GATEWAY_CHECKS = ("valid-client", "no-client-cert", "other-ca", "expired-cert", "tls12", "upstream-down",
                  "upstream-tls", "host-cert", "operator-cert", "api-paths-only", "no-tls-closed", "revoked-client")
STANDIN = Path(__file__).resolve().parents[2] / "lab" / "upstream_standin.py"  # llmcluster/lab
STANDIN_PIDFILE = "/run/llmcluster-lab-standin.pid"
TRTLLM_UNIT = "trtllm-serve.service"
#: The serving_tls role's configuration, started by hand in front of a stand-in (hosts without systemd).
TERMINATOR_CONFIG = "/etc/haproxy/serving-tls.cfg"
TERMINATOR_PIDFILE = "/run/llmcluster-lab-serving-tls.pid"
CAPTURE_OUT = "/run/llmcluster-verify-capture.json"


def _stop_standin(h) -> None:
    h.run(["sh", "-c", f"for f in {STANDIN_PIDFILE} {TERMINATOR_PIDFILE}; do test -f $f && kill $(cat $f); "
                       "rm -f $f; done"])


def _start_standin(h, u: dict, backend_port: int, script: str):
    """The stand-in where trtllm-serve listens (127.0.0.1:<backend_port>), behind the terminator's
    own configuration (LAB STAND-IN: hosts without systemd run no serving-tls.service)."""
    res = h.run(["python3", "-c", script, "127.0.0.1", str(backend_port), u["name"], STANDIN_PIDFILE])
    if res.rc != 0:
        return res
    return h.run(["haproxy", "-D", "-f", TERMINATOR_CONFIG, "-p", TERMINATOR_PIDFILE])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from llmcluster.verify.suite.plugin import _collect

    if "gateway_check" in metafunc.fixturenames:
        c = _collect(metafunc.config)
        cases = G.gateway_host_checks(c.plan, c.hostvars, GATEWAY_CHECKS)
        metafunc.parametrize("gateway_check", cases or [None], ids=[x.id for x in cases] or ["no-gateway"])
    if "cert_host" in metafunc.fixturenames:
        c = _collect(metafunc.config)
        hosts = sorted(c.hostvars)
        metafunc.parametrize("cert_host", hosts, ids=hosts)


@pytest.fixture(scope="session")
def gateway_env(verify_target, tmp_path_factory):
    """Client source, material and (in the lab) the stand-in upstreams, started once."""
    plan = verify_target.plan
    gvars = plan.serving.gateway.to_dict() if plan.serving.gateway is not None else None
    if not gvars:
        pytest.skip("the stack has no serving.gateway")
    src = G.client_source(plan, gvars, verify_target.inventory.group_var("llmcluster_pki_dir"),
                          verify_target.c.probes)
    if src.missing:
        pytest.skip(src.missing)
    pki, source = src.pki, LocalHost(f"probe-{src.zone}", src.netns)
    lab = all("llmcluster_lab_kind" in verify_target.c.hostvars.get(u["name"], {}) for u in gvars["upstreams"])
    started = []
    units = lab and all(verify_target.host(u["name"]).run(["systemctl", "is-active", "--quiet", TRTLLM_UNIT]).rc == 0
                        for u in gvars["upstreams"])
    backend_port = plan.serving.backend_port
    if lab and not units:  # LAB STAND-IN upstreams (a simulation of trtllm-serve's HTTP API)
        script = STANDIN.read_text()
        for u in gvars["upstreams"]:
            h = verify_target.host(u["name"])
            _stop_standin(h)
            res = _start_standin(h, u, backend_port, script)
            assert res.rc == 0, f"{u['name']}: starting the lab stand-in upstream failed: {res.stderr}"
            started.append(u)
    env = {"gw": gvars, "pki": pki, "source": source, "lab": lab, "tmp": tmp_path_factory.mktemp("gw-clients"),
           "script": STANDIN.read_text(), "units": units, "backend_port": backend_port}
    yield env
    for u in started:
        _stop_standin(verify_target.host(u["name"]))


def _curl(env, address: str, client: G.ClientCert | None, **kw) -> G.CurlResult:
    argv = G.curl_argv(env["gw"]["hostname"], address, env["gw"]["port"], str(env["pki"] / "root-ca.pem"),
                       client=client, **kw)
    r = env["source"].run(argv, timeout=30)
    return G.parse_curl(r.rc, r.stdout, r.stderr)


def _admin(env) -> G.ClientCert:
    return G.ClientCert(str(env["pki"] / "certs" / "admin.pem"), str(env["pki"] / "private" / "admin.key"))


def _ok_within(env, address: str, seconds: float) -> G.CurlResult:
    end = time.monotonic() + seconds
    while True:
        res = _curl(env, address, _api_client(env))
        if res.status == 200 or time.monotonic() > end:
            return res
        time.sleep(0.5)


def test_gateway(gateway_check, verify_target, record_property) -> None:
    if gateway_check is None:
        pytest.skip("the inventory has no gateway host")
    record_property("host", gateway_check.host)
    record_property("check", f"gateway[{gateway_check.name}]")
    env = gateway_env_value(verify_target)
    address = verify_target.c.hostvars[gateway_check.host]["llmcluster_addresses"]["inference"]
    name, pki = gateway_check.name, env["pki"]
    what = f"{gateway_check.host} {address}:{env['gw']['port']} {name}"
    if name == "valid-client":
        problems = G.expect_ok(_ok_within(env, address, 20), what)
    elif name == "no-client-cert":
        problems = G.expect_rejected(_curl(env, address, None), what)
    elif name == "other-ca":
        problems = G.expect_rejected(_curl(env, address, G.other_ca_client(env["tmp"])), what)
    elif name == "expired-cert":
        crt = pki / "lab-tests" / "expired-client.crt"
        if not crt.is_file():
            pytest.skip("no expired client certificate: only the lab's offline export can issue one "
                        "(a Pulumi export never writes the intermediate's key); covered by other-ca")
        problems = G.expect_rejected(_curl(env, address, G.ClientCert(str(crt), str(crt.with_suffix(".key")))), what)
    elif name == "upstream-tls":
        problems = _upstream_tls(env, verify_target, gateway_check.host, address, what)
    elif name in ("host-cert", "operator-cert"):
        problems = _not_an_api_client(env, verify_target, address, what, name)
    elif name == "api-paths-only":
        problems = _api_paths_only(env, address, what)
    elif name == "no-tls-closed":
        problems = _no_tls_closed(env, address, what)
    elif name == "revoked-client":
        problems = _revoked_client(env, verify_target, gateway_check.host, address, what)
    elif name == "tls12":
        argv = G.s_client_argv(env["gw"]["hostname"], address, env["gw"]["port"], str(pki / "root-ca.pem"), "tls1_2",
                               _api_client(env))
        r = env["source"].run(["sh", "-c", " ".join(shlex.quote(a) for a in argv) + " </dev/null"])
        problems = G.expect_handshake_fails(r.rc, r.stdout + r.stderr, what)
    else:
        problems = _failover(env, verify_target, gateway_check.host, address, what)
    assert not problems, "; ".join(problems)


def _failover(env, verify_target, gw_host: str, address: str, what: str) -> list[str]:
    ups = env["gw"]["upstreams"]
    if not env["lab"]:
        pytest.skip("stops an upstream: runs on lab inventories only (the stand-in upstreams)")
    if len(ups) < 2:
        pytest.skip("needs two upstreams")
    if _ok_within(env, address, 20).status != 200:
        return [f"{what}: the gateway does not answer 200 before the test"]
    # Every upstream in the pool first (bounded): an upstream still starting (its unit's model
    # verification, the engine load) would leave the failover nowhere to go, and the check would
    # blame the gateway for it.
    serving = _upstreams_serving(env, address, {u["name"] for u in ups}, 90)
    if serving != {u["name"] for u in ups}:
        missing = sorted({u["name"] for u in ups} - serving)
        return [f"{what}: {', '.join(missing)} served no request through the gateway within 90 s before the "
                "test (not in the pool: is its trtllm-serve up?)"]
    down = ups[0]
    h = verify_target.host(down["name"])
    if env["units"]:
        h.run(["systemctl", "stop", TRTLLM_UNIT])
    else:
        _stop_standin(h)
    try:
        time.sleep(2 * 2 + 3 + 1)  # fall x interval + check timeout (role defaults) + margin
        problems, seen = [], []
        for _ in range(6):
            time.sleep(0.3)  # under the per-certificate rate limit
            res = _curl(env, address, _api_client(env))
            seen.append(G.upstream_of(res))
            problems += G.expect_ok(res, f"{what} with {down['name']} down")
        if down["name"] in seen:
            problems.append(f"{what}: {down['name']} is down but still got requests: {seen}")
        if problems:  # what the gateway itself thought of its servers, for the report
            problems.append(f"{what}: the gateway's server states: {_server_states(verify_target.host(gw_host))}")
        return problems
    finally:
        if env["units"]:
            h.run(["systemctl", "start", TRTLLM_UNIT])
            # Back in the pool only when /health answers again (the gateway's readiness rule); on the
            # host itself, over loopback: trtllm-serve listens on 127.0.0.1 only.
            h.run(["sh", "-c", f"for i in $(seq 120); do curl -fsS -o /dev/null http://127.0.0.1:{env['backend_port']}"
                               "/health && exit 0; sleep 0.5; done; exit 1"], timeout=90)
        else:
            _start_standin(h, down, env["backend_port"], env["script"])


#: The gateway role's admin socket (roles/gateway/vars/main.yml ``_gateway_stats_socket``).
GATEWAY_STATS_SOCKET = "/run/haproxy/admin.sock"


def _server_states(gw) -> str:
    """``show servers state inference`` from the gateway's admin socket, one ``name:state`` per
    server (HAProxy's srv_op_state: 0 stopped, 2 running; the check status next to it), or why not."""
    code = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); "
            "s.sendall(b'show servers state inference\\n'); d=b''\n"
            "while True:\n c=s.recv(65536)\n if not c: break\n d+=c\nprint(d.decode())")
    r = gw.run(["python3", "-c", code, GATEWAY_STATS_SOCKET], timeout=15)
    if r.rc != 0:
        return f"unreadable ({(r.stderr or r.stdout).strip()[-200:]})"
    rows = [line.split() for line in r.stdout.splitlines() if not line.startswith("#")]
    # columns: be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight
    # srv_time_since_last_change srv_check_status srv_check_result ...
    states = [f"{c[3]}: op_state {c[5]} check_status {c[10]} check_result {c[11]}" for c in rows if len(c) > 11]
    return ", ".join(states) or r.stdout.strip()[-300:]


def _upstreams_serving(env, address: str, names: set[str], seconds: float) -> set[str]:
    """The upstreams that answered requests through the gateway before all of ``names`` did or
    ``seconds`` passed (the balancer takes turns; a server back in the pool gets requests again)."""
    seen: set[str] = set()
    end = time.monotonic() + seconds
    while not names <= seen and time.monotonic() < end:
        res = _curl(env, address, _api_client(env))
        if res.status == 200 and (name := G.upstream_of(res)):
            seen.add(name)
        time.sleep(0.3)  # under the per-certificate rate limit
    return seen


def _api_client(env) -> G.ClientCert:
    """A client the gateway admits: the first named API client with exported material
    (llmcluster_gateway.access.clients), else admin (inventories without an access section)."""
    for c in ((env["gw"].get("access") or {}).get("clients") or []):
        cert, key = env["pki"] / "certs" / f"{c.get('cert')}.pem", env["pki"] / "private" / f"{c.get('cert')}.key"
        if cert.is_file() and key.is_file():
            return G.ClientCert(str(cert), str(key))
    return _admin(env)


def _upstream_tls(env, verify_target, gw_host: str, address: str, what: str) -> list[str]:
    """Plain HTTP to every upstream gets no HTTP response; on each upstream's inference interface a
    capture during a marked request through the gateway shows TLS and no cleartext."""
    problems: list[str] = []
    src = U.capture_source()
    gw = verify_target.host(gw_host)
    plan, hostvars = verify_target.plan, verify_target.c.hostvars
    for u in env["gw"]["upstreams"]:
        hop = f"{what}: {gw_host} -> {u['name']} {u['address']}:{u['port']}"
        r = gw.python(src, *U.probe_args(u["address"], u["port"]), timeout=30)
        problems += U.judge_probe(r.json(f"{gw_host}: plain HTTP probe") if r.rc == 0 else None, hop)
        head = verify_target.host(u["name"])
        iface = interface_names(plan, u["name"], hostvars.get(u["name"])).get("inference")
        marker = U.new_marker()
        start = head.python(src, *U.capture_args(iface, u["address"], u["port"], marker, CAPTURE_OUT), timeout=30)
        started = start.json(f"{u['name']}: starting the capture") if start.rc == 0 else {"error": start.stderr}
        if not started.get("started"):
            problems.append(f"{hop}: the capture did not start: {started.get('error') or start.stderr.strip()[-200:]}")
            continue
        time.sleep(1)
        seen = []
        for _ in range(8):  # until the balancer sends one to this upstream
            res = _curl(env, address, _api_client(env), data=U.chat_body(marker))
            seen.append(G.upstream_of(res))
            if res.status != 200:
                problems.append(f"{hop}: the marked request got {res.describe()}")
                break
            if seen[-1] == u["name"]:
                break
            time.sleep(0.3)  # under the per-certificate rate limit
        r = head.python(src, *U.result_args(CAPTURE_OUT), timeout=U.CAPTURE_SECONDS + U.RESULT_WAIT_S + 10)
        answered = (u["name"] in seen) if any(seen) else None
        problems += U.judge_capture(r.json(f"{u['name']}: the capture") if r.rc == 0 else None, hop, answered)
    return problems


_ENV: dict = {}


def gateway_env_value(verify_target):
    """The session's gateway_env (fetched lazily so that a skip there skips only these checks)."""
    return _ENV["env"]


@pytest.fixture(autouse=True)
def gateway_env_for_gateway_tests(request):
    # A public name: tests/verify/test_gateway.py re-exports this module with ``import *``.
    if "gateway_check" in request.fixturenames and request.getfixturevalue("gateway_check") is not None:
        _ENV["env"] = request.getfixturevalue("gateway_env")


def test_certificate_lifetimes(cert_host, verify_target, record_property) -> None:
    """Installed certificates live at least the policy's lifetime and are outside their renewal window."""
    record_property("host", cert_host)
    record_property("check", "certificates[lifetime]")
    hv = verify_target.c.hostvars[cert_host]
    certs = (hv.get("llmcluster_pki") or {}).get("certificates") or []
    if not certs:
        pytest.skip("the inventory lists no certificates for this host")
    problems = []
    for c in certs:
        r = verify_target.host(cert_host).run(["cat", c["cert"]])
        if r.rc != 0:
            problems.append(f"{c['cert']}: not installed ({r.stderr.strip()[-120:]})")
            continue
        problems += G.lifetime_problems(r.stdout, c["validity_hours"], c["early_renewal_hours"],
                                        f"{cert_host} {c['cert']}")
    assert not problems, "; ".join(problems)


# --------------------------------------------------------------------------- access control


def _not_an_api_client(env, verify_target, address: str, what: str, name: str) -> list[str]:
    """A certificate of the cluster CA that names no API client: a host's (its key sits on every
    node of that role) or the operators' ``admin``: the handshake succeeds, the gateway answers 403."""
    if not (env["gw"].get("access") or {}).get("clients"):
        pytest.skip("the inventory names no API client (llmcluster_gateway.access)")
    if name == "operator-cert":
        client = _admin(env)
    else:
        host = next((h for h in sorted(verify_target.c.hostvars)
                     if (env["pki"] / "private" / f"host-{h}.key").is_file()), None)
        if host is None:
            pytest.skip("no host certificate in the PKI export folder")
        client = G.ClientCert(str(env["pki"] / "certs" / f"host-{host}.pem"),
                              str(env["pki"] / "private" / f"host-{host}.key"))
    res = _curl(env, address, client)
    if res.status == 403:
        return []
    return [f"{what}: {Path(client.cert).name} must get 403 (not a named API client), got {res.describe()}"]


def _api_paths_only(env, address: str, what: str) -> list[str]:
    """Only the OpenAI API paths pass: the serving nodes' /metrics, /version and /health do not."""
    problems = []
    for path in ("/metrics", "/version", "/health"):
        res = _curl(env, address, _api_client(env), path=path, data=None)
        if res.status not in (403, 404):
            problems.append(f"{what}: GET {path} through the gateway must be refused (403/404), got {res.describe()}")
    return problems


#: Connects and sends nothing; prints how long until the gateway closed the connection.
_SILENT_CLIENT = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(float(sys.argv[3]))
t0 = time.monotonic()
try:
    data = s.recv(1)
except socket.timeout:
    print("open", time.monotonic() - t0)
else:
    print("closed", time.monotonic() - t0)
"""


def _no_tls_closed(env, address: str, what: str) -> list[str]:
    """A connection that never starts TLS is closed within handshake_timeout_s (HAProxy 2.6:
    ``timeout client``, a deadline from accept that a trickled ClientHello does not extend)."""
    bound = float(env["gw"].get("handshake_timeout_s") or 10)
    r = env["source"].run(["python3", "-c", _SILENT_CLIENT, address, str(env["gw"]["port"]), str(bound + 10)],
                          timeout=bound + 30)
    state, _, secs = r.stdout.strip().partition(" ")
    if r.rc != 0 or state not in ("open", "closed"):
        return [f"{what}: the silent client failed: {r.stderr.strip()[-200:]}"]
    if state == "open" or float(secs) > bound + 2:
        return [f"{what}: a connection without TLS was held {float(secs):.1f}s ({state}); the bound is {bound:.0f}s"]
    return []


def _revoked_client(env, verify_target, gw_host: str, address: str, what: str) -> list[str]:
    """``llmcluster pki revoke`` -> the mtls and gateway roles push the CRL and reload HAProxy: the
    revoked client is refused at the handshake while another client keeps getting 200 all through
    the reload. The revoked certificate is issued here for the run (a named client's identity, a
    new serial), by the lab export's intermediate: lab inventories only."""
    import subprocess
    import sys

    key = env["pki"] / "lab-tests" / "intermediate-ca.key"
    inventory = verify_target.c.inventory_path
    if not env["lab"] or not key.is_file() or inventory is None:
        pytest.skip("revokes and re-converges: lab inventories only (needs lab-tests/intermediate-ca.key)")
    clients = (env["gw"].get("access") or {}).get("clients") or []
    if not clients:
        pytest.skip("the inventory names no API client")
    c = clients[0]
    victim = G.issue_client(env["pki"], env["tmp"], c["common_name"], c["role"], "revocable")
    before = _ok_within_as(env, address, victim, 20)
    if before.status != 200:
        return [f"{what}: the freshly issued {c['name']} certificate is not admitted before revocation: "
                f"{before.describe()}"]
    # Another client keeps calling through the reload (under the per-client rate limit), until the
    # revocation has been checked (a stop file on the probe host), at most 150 seconds.
    other = _api_client(env)
    stop = f"/tmp/llmcluster-verify-revoke-{os.getpid()}-{time.monotonic_ns()}.stop"
    loop = ("end=$(($(date +%s)+{secs})); while [ $(date +%s) -lt $end ] && [ ! -e {stop} ]; do "
            "{curl} || true; echo; sleep 0.25; done; rm -f {stop}")
    curl = " ".join(shlex.quote(a) for a in G.curl_argv(env["gw"]["hostname"], address, env["gw"]["port"],
                                                         str(env["pki"] / "root-ca.pem"), client=other))
    import threading

    out: dict = {}

    def run_loop():
        out["r"] = env["source"].run(["sh", "-c", loop.format(secs=150, curl=curl, stop=shlex.quote(stop))],
                                     timeout=200)

    t = threading.Thread(target=run_loop)
    t.start()
    problems = []
    try:
        serial = G.serial_of(victim.cert)
        r = subprocess.run([sys.executable, "-m", "llmcluster.cli", "pki", "revoke", "--pki-dir", str(env["pki"]),
                            "--cert", victim.cert, "--reason", "keyCompromise"], capture_output=True, text=True,
                           timeout=120, check=False)
        if r.returncode != 0:
            return [f"{what}: pki revoke failed: {(r.stdout + r.stderr).strip()[-300:]}"]
        r = subprocess.run([sys.executable, "-m", "llmcluster.cli", "converge", "--inventory", str(inventory),
                            "--limit", gw_host, "--tags", "mtls_configure", "--tags", "mtls_run",
                            "--tags", "gateway_configure", "--tags", "gateway_run"],
                           capture_output=True, text=True, timeout=600, check=False)
        if r.returncode != 0:
            return [f"{what}: pushing the CRL (converge mtls+gateway) failed: {(r.stdout + r.stderr).strip()[-400:]}"]
        res = _curl(env, address, victim)
        problems += G.expect_rejected(res, f"{what}: revoked {c['name']} certificate (serial {serial})")
    finally:
        env["source"].run(["touch", stop], timeout=30)  # the loop ends at its next round
        t.join()
    seen = G.statuses(out["r"].stdout)
    bad = [s for s in seen if s != 200]
    if len(seen) < 20 or bad:
        problems.append(f"{what}: the other client through the reload: {len(seen)} requests, not 200: {bad[:10]}")
    return problems


def _ok_within_as(env, address: str, client: G.ClientCert, seconds: float) -> G.CurlResult:
    end = time.monotonic() + seconds
    while True:
        res = _curl(env, address, client)
        if res.status == 200 or time.monotonic() > end:
            return res
        time.sleep(0.5)
