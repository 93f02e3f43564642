"""The gateway's audit trail (role audit_log; judges in llmcluster/verify/audit.py), per gateway
host and check:

* ``journald-settings``: the journald configuration in force (``systemd-analyze cat-config``) is
  persistent, sealed, keeps entries at least the planned retention within the planned size, and
  journald was (re)started after it was written;
* ``access-log``: a marker request through the gateway (from the ``api`` flow's client zone, the
  lab's probe namespace) is in the *persistent* journal (``journalctl -D /var/log/journal -t
  haproxy``) with the client certificate's subject and serial;
* ``survives-restarts`` (lab inventories only: it restarts HAProxy and journald): a marker logged
  before ``systemctl restart haproxy`` and ``systemctl restart systemd-journald`` is still there
  after, and a marker sent after them is logged too;
* ``sealed``: the host's archived journal files, copied to this machine, pass ``journalctl
  --verify --verify-key`` with the key the role saved on the controller (the key never goes to the
  host: it is the seed of every sealing key), every file since sealing began is sealed; a file that
  fails only as a reboot's seam (systemd issue 17833: the early-boot file the role's
  ``llmcluster-journal-seal.service`` closes; no access log entry, first of its boot, continued by a
  verified file) is reported (property ``explained_seams``), not counted;
* ``tamper-detected``: the same check fails on one of those copies with a byte flipped inside an
  entry's data (the host's journal is only read);
* ``forwarded``: a collector at the plan's ``audit.forward_to`` address receives the marker's
  line. In the lab it runs here, in the probe namespace that holds that address (zone ``logs``):
  HAProxy terminating mTLS (client certificate required against the cluster CA chain, the CRL
  when the export has one) in front of ``systemd-journal-remote`` on loopback — Debian's
  journal-remote cannot check client certificates itself (built without GnuTLS). Its server
  certificate is issued here by the cluster intermediate, whose key only the lab's export holds
  (``lab-tests/intermediate-ca.key``).

Checks skip with the reason when the inventory has no gateway, no client material, no collector
or no probe for it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from llmcluster.verify import audit as A
from llmcluster.verify import gateway as G
from llmcluster.verify.remote import LocalHost

pytestmark = pytest.mark.xdist_group("lab")

AUDIT_CHECKS = ("journald-settings", "access-log", "survives-restarts", "sealed", "tamper-detected", "forwarded")
UPLOAD_UNIT = "systemd-journal-upload.service"
LAB_INTERMEDIATE_KEY = "intermediate-ca.key"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from llmcluster.verify.suite.plugin import _collect

    if "audit_check" in metafunc.fixturenames:
        c = _collect(metafunc.config)
        cases = G.gateway_host_checks(c.plan, c.hostvars, AUDIT_CHECKS)
        metafunc.parametrize("audit_check", cases or [None], ids=[x.id for x in cases] or ["no-gateway"])


@pytest.fixture(scope="session")
def audit_env(verify_target, tmp_path_factory):
    """What the checks share: the plan's expectation, the key folder, the client source (or why none)."""
    plan = verify_target.plan
    if plan.serving.gateway is None:
        pytest.skip("the stack has no serving.gateway")
    gvars = plan.serving.gateway.to_dict()
    pki = verify_target.inventory.group_var("llmcluster_pki_dir")
    key_dir = verify_target.inventory.group_var("audit_log_key_dir") or (A.default_key_dir(pki) if pki else None)
    src = G.client_source(plan, gvars, pki, verify_target.c.probes)
    return {"gw": gvars, "exp": A.expectation(gvars), "pki": src.pki, "key_dir": key_dir,
            "tmp": tmp_path_factory.mktemp("audit"), "no_source": src.missing, "fetched": {},
            "source": LocalHost(f"probe-{src.zone}", src.netns) if src.netns else None}


def _marker_request(env, address: str, marker: str) -> G.CurlResult:
    """One request for the marker path through the gateway (refused there: logged all the same)."""
    pki = env["pki"]
    argv = G.curl_argv(env["gw"]["hostname"], address, env["gw"]["port"], str(pki / "root-ca.pem"),
                       client=G.ClientCert(str(pki / "certs" / "admin.pem"), str(pki / "private" / "admin.key")),
                       path=A.MARKER_PATH.format(marker=marker), data=None)
    r = env["source"].run(argv, timeout=30)
    return G.parse_curl(r.rc, r.stdout, r.stderr)


def _logged(host, marker: str, what: str, seconds: float = 15) -> list[str]:
    end = time.monotonic() + seconds
    while True:
        problems = A.access_log_problems(A.persistent_entries(host), marker, what)
        if not problems or time.monotonic() > end:
            return problems
        time.sleep(0.5)


def _request_logged(env, host, address: str, what: str, seconds: float = 20) -> tuple[str, list[str]]:
    """A marker request (retried until the gateway answers) and whether it was logged."""
    marker = uuid.uuid4().hex
    end = time.monotonic() + seconds
    while True:
        res = _marker_request(env, address, marker)
        if res.status or time.monotonic() > end:
            break
        time.sleep(0.5)
    if not res.status:
        return marker, [f"{what}: the gateway did not answer the marker request: {res.describe()}"]
    return marker, _logged(host, marker, f"{what} ({res.describe()[:40]})")


def _machine_id(host) -> str:
    return host.run(["cat", "/etc/machine-id"]).stdout.strip()


def _fetch(env, name: str, host) -> tuple[Path, dict]:
    """The host's archived journal files, copied here once per session."""
    if name not in env["fetched"]:
        dest = env["tmp"] / name / "journal"
        env["fetched"][name] = (dest, A.fetch_journal(host, dest))
    return env["fetched"][name]


def _key(env, name: str, host) -> str:
    if env["key_dir"] is None:
        pytest.fail("no audit_log_key_dir or llmcluster_pki_dir in the inventory: the sealing verification "
                    "keys are kept on the controller (role audit_log)", pytrace=False)
    path = A.key_path(env["key_dir"], name, _machine_id(host))
    if not path.is_file():
        pytest.fail(f"{name}: no verification key {path}: the audit_log role saves it there when it makes the "
                    "sealing key (was the role applied?)", pytrace=False)
    text = path.read_text().strip()
    if A.parse_verification_key(text) is None:
        pytest.fail(f"{name}: {path} is not a journalctl verification key", pytrace=False)
    return text


def test_audit(audit_check, verify_target, record_property) -> None:
    if audit_check is None:
        pytest.skip("the inventory has no gateway host")
    record_property("host", audit_check.host)
    record_property("check", f"audit[{audit_check.name}]")
    env = _ENV["env"]
    name, check = audit_check.host, audit_check.name
    hv = verify_target.c.hostvars[name]
    host = verify_target.host(name)
    address = hv["llmcluster_addresses"]["inference"]
    systemd = hv.get("llmcluster_manage_services", True) is not False
    what = f"{name} {check}"
    if check == "journald-settings":
        problems = A.journald_check(host, env["exp"], what, systemd)
    elif check in ("access-log", "survives-restarts", "forwarded") and env["source"] is None:
        pytest.skip(env["no_source"])
    elif check == "access-log":
        problems = _request_logged(env, host, address, what)[1]
    elif check == "survives-restarts":
        problems = _restarts(env, host, hv, address, systemd, what)
    elif check in ("sealed", "tamper-detected"):
        if shutil.which("journalctl") is None:
            pytest.skip("journalctl is not installed on this machine (the journal is verified here, not on the host)")
        key = _key(env, name, host)
        copies, info = _fetch(env, name, host)
        if info.get("left_out"):
            record_property("left_out", ", ".join(info["left_out"]))
        if check == "sealed":
            rc, output, headers = A.verify_here(copies, key)
            seams = A.explained_seams(copies, key, output, headers)
            if seams:  # a reboot's seam (systemd issue 17833): reported, not counted as tampering
                record_property("explained_seams", "; ".join(seams.values()))
            problems = A.seal_problems(rc, output, headers, what, seams)
        else:
            problems = A.tamper_check(copies, key, what)
    else:
        problems = _forwarded(env, verify_target, host, address, systemd, what)
    assert not problems, "; ".join(problems)


def _restarts(env, host, hv, address: str, systemd: bool, what: str) -> list[str]:
    if "llmcluster_lab_kind" not in hv:
        pytest.skip("restarts HAProxy and journald: runs on lab inventories only")
    if not systemd:
        pytest.skip("the host runs no systemd (llmcluster_manage_services is false)")
    before, problems = _request_logged(env, host, address, f"{what} before the restarts")
    if problems:
        return problems
    for unit in ("haproxy.service", "systemd-journald.service"):
        r = host.run(["systemctl", "restart", unit], timeout=120)
        if r.rc != 0:
            return [f"{what}: systemctl restart {unit} failed: {r.stderr.strip()[-200:]}"]
    host.run(["sh", "-c", "for i in $(seq 60); do systemctl is-active --quiet haproxy.service && exit 0; "
                          "sleep 0.5; done; exit 1"], timeout=60)
    after, problems = _request_logged(env, host, address, f"{what} after the restarts")
    problems += A.access_log_problems(A.persistent_entries(host), before,
                                      f"{what}: the line logged before the restarts")
    return problems


def _forwarded(env, verify_target, host, address: str, systemd: bool, what: str) -> list[str]:
    exp = env["exp"]
    if not exp.forward_to:
        pytest.skip("the plan forwards the audit trail nowhere (serving.gateway.audit.forward_to is empty)")
    collector, port = A.collector_endpoint(exp.forward_to[0])
    probes = (verify_target.c.probes or {}).values()
    probe = next((p for p in probes if collector in (p.get("addresses") or {}).values()), None)
    if probe is None:
        pytest.skip(f"no probe namespace holds the collector address {collector} (a lab zone such as `logs` with "
                    "that address; a real collector is checked where it runs)")
    inter = env["pki"] / "lab-tests" / LAB_INTERMEDIATE_KEY
    if not inter.is_file():
        pytest.skip(f"no {inter.relative_to(env['pki'])} in the PKI export: only the lab's offline export can issue "
                    "the collector's certificate")
    missing = [t for t in ("haproxy", "ip") if shutil.which(t) is None]
    missing += [] if Path(A.JOURNAL_REMOTE).exists() else [A.JOURNAL_REMOTE]
    if missing:
        pytest.skip(f"not installed on this machine: {', '.join(missing)} (systemd-journal-remote, haproxy)")
    if not systemd:
        pytest.skip("the host runs no systemd: no systemd-journal-upload")
    d = env["tmp"] / "collector"
    bundle = A.issue_collector_cert(inter.read_text(), (env["pki"] / "ca-chain.pem").read_text(), collector,
                                    f"collector.{verify_target.plan.spec.site.domain}", d / "tls")
    crl = env["pki"] / "crl.pem"
    plan = A.collector_plan(collector, port, d, bundle, env["pki"] / "ca-chain.pem",
                            crl_file=crl if crl.is_file() else None)
    plan.write()
    netns = ["ip", "netns", "exec", probe["netns"]]
    procs = []
    try:
        for argv, (addr, p) in ((plan.remote_argv, A.COLLECTOR_BACKEND), (plan.terminator_argv, (collector, port))):
            procs.append(subprocess.Popen([*netns, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            up = LocalHost("collector", probe["netns"]).python(
                "import socket,sys,time\nfor _ in range(100):\n    try:\n"
                "        socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close(); sys.exit(0)\n"
                "    except OSError: time.sleep(0.1)\nsys.exit(1)", addr, str(p))
            if up.rc != 0:
                return [f"{what}: the verification collector did not start ({' '.join(argv[:2])})"]
        r = host.run(["systemctl", "restart", UPLOAD_UNIT], timeout=60)
        if r.rc != 0:
            return [f"{what}: systemctl restart {UPLOAD_UNIT} failed: {r.stderr.strip()[-200:]}"]
        marker = uuid.uuid4().hex
        res = _marker_request(env, address, marker)
        hostname = host.run(["hostname"]).stdout.strip() or None
        end, problems = time.monotonic() + 60, ["not read"]
        while problems and time.monotonic() < end:
            time.sleep(1)
            got = subprocess.run(plan.read_argv(), capture_output=True, text=True, check=False)
            problems = A.forwarded_problems(A.parse_json_entries(got.stdout), marker, what, hostname)
        if problems:
            log = host.run(["journalctl", "-u", UPLOAD_UNIT, "-n", "5", "--no-pager", "-o", "cat"])
            problems.append(f"marker request: {res.describe()[:80]}; {UPLOAD_UNIT}: {log.stdout.strip()[-300:]!r}")
        return problems
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


_ENV: dict = {}


@pytest.fixture(autouse=True)
def audit_env_for_audit_tests(request):
    # A public name: tests/verify/test_audit.py re-exports this module with ``import *``.
    if "audit_check" in request.fixturenames and request.getfixturevalue("audit_check") is not None:
        _ENV["env"] = request.getfixturevalue("audit_env")

