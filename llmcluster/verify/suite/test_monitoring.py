"""Monitoring and the central audit store on provisioned hosts (docs/observability.md;
llmcluster/verify/monitoring.py, llmcluster/monitoring/audit_chain.py).

* ``targets-up``: Prometheus on each monitor host reports ``up == 1`` for every (job, host) the plan
  scrapes (asked on the monitor host itself, so it works from any controller).
* ``alert-delivery`` (lab only: faults are injected through the GPU SIMULATION's faults.json and the
  webhook receiver runs on the lab controller at ``monitoring.webhooks[0]``): an XID 79, a lost GPU
  and a stopped trtllm-serve unit each fire their alert in Prometheus within the rule's ``for`` plus a
  scrape and two evaluation intervals, Alertmanager delivers each to the receiver (bounded: its
  group_wait plus Prometheus' one-minute resend, since the first notification can be dropped before
  discovery), and each resolves after the repair.
* ``audit-store``: a marker request with the admin client is chained on the monitor host with the
  client's identity, the fetched chain verifies, and an edited or deleted line of a copy is detected.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
import tarfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from llmcluster.monitoring import audit_chain as AC
from llmcluster.monitoring.audit_cli import STORE_DIR
from llmcluster.plan.monitoring import PROMETHEUS_PORT, monitoring_plan
from llmcluster.verify import audit as A
from llmcluster.verify import gateway as G
from llmcluster.verify import monitoring as V
from llmcluster.verify.remote import LocalHost

pytestmark = pytest.mark.xdist_group("lab")
FAULTS = "/etc/llmcluster-sim/faults.json"


@pytest.fixture(scope="session")
def mon(verify_target):
    mp = monitoring_plan(verify_target.plan)
    if mp is None or not mp.servers:
        pytest.skip("the stack has no monitoring (monitoring.pool)")
    # an inventory of part of the cluster (one host, a pool) need not hold the monitor host
    if mp.servers[0] not in verify_target.c.hostvars:
        pytest.skip(f"the inventory has no monitor host ({mp.servers[0]}): Prometheus is not reachable from here")
    return mp


def _query(verify_target, mp, path: str) -> dict:
    h = verify_target.host(mp.servers[0])
    url = f"http://{mp.server_addresses[0]}:{PROMETHEUS_PORT}{path}"
    r = h.run(["curl", "-sS", "--max-time", "5", url], timeout=20)
    if r.rc != 0:
        raise OSError(f"{mp.servers[0]}: curl {url}: {r.stderr.strip()[:200]}")
    return json.loads(r.stdout)


def test_targets_up(verify_target, record_property, mon):
    record_property("host", mon.servers[0])
    record_property("check", "monitoring[targets-up]")
    expected = [(t.job, t.host) for t in mon.targets]
    problems: list[str] = []

    def ok() -> bool:
        problems[:] = V.up_problems(_query(verify_target, mon, "/api/v1/query?query=up"), expected)
        return not problems

    # a fresh Prometheus needs a scrape interval or two
    if V.wait_until(ok, 6 * mon.scrape_interval_s + 30, 2) is None:
        pytest.fail("; ".join(problems), pytrace=False)


def _write_faults(h, faults: dict) -> None:
    h.run(["sh", "-c", f"printf %s {shlex.quote(json.dumps(faults))} > {FAULTS}"])


def _read_faults(h) -> dict:
    r = h.run(["cat", FAULTS])
    try:
        return json.loads(r.stdout) if r.rc == 0 and r.stdout.strip() else {}
    except ValueError:
        return {}


def test_alert_delivery(verify_target, record_property, mon):
    record_property("host", mon.servers[0])
    record_property("check", "monitoring[alert-delivery]")
    if verify_target.c.inventory_path is not None:
        pytest.skip("fault injection uses the lab's GPU simulation: lab only")
    if not mon.webhooks:
        pytest.skip("no monitoring.webhooks: nothing to deliver to")
    hook = urlsplit(mon.webhooks[0])
    gpu_host = next(t.host for t in mon.targets if t.job == "dcgm")
    head = next((t.host for t in mon.targets if t.job == "trtllm"), None)
    h = verify_target.host(gpu_host)
    before = _read_faults(h)
    ev, sc = mon.evaluation_interval_s, mon.scrape_interval_s
    deliver_bound = 10 + 60 + 2 * ev  # group_wait, Prometheus' resend after a dropped first notification
    report: list[str] = []
    with V.WebhookReceiver(hook.hostname, hook.port or 80) as rx:
        assert V.wait_until(lambda: _query(verify_target, mon, "/api/v1/alertmanagers")["data"]["activeAlertmanagers"],
                            60, 2) is not None, "Prometheus discovered no Alertmanager"
        cases = [("GpuFellOffTheBus", 0, lambda: _write_faults(h, {**before, "xid": {"0": 79}}), {"host": gpu_host}),
                 ("GpuCountBelowSpec", 120, lambda: _write_faults(h, {**before, "missing_gpus": [7]}),
                  {"host": gpu_host})]
        if head is not None:
            hh = verify_target.host(head)
            cases.append(("ServingReplicaDown", 60, lambda: hh.run(["systemctl", "stop", "trtllm-serve.service"]),
                          {"host": head}))
        try:
            for alert, for_s, inject, labels in cases:
                t0 = time.monotonic()
                inject()
                fired = V.wait_until(lambda a=alert, lab=labels: V.firing(_query(verify_target, mon, "/api/v1/alerts"),
                                                                          a, lab), for_s + sc + 2 * ev + 15, 1)
                assert fired is not None, f"{alert} did not fire within {for_s + sc + 2 * ev + 15} s"
                got = V.wait_until(lambda a=alert, lab=labels: rx.received(a, "firing", lab), deliver_bound, 1)
                assert got is not None, f"{alert} fired but did not reach the webhook within {deliver_bound} s"
                report.append(f"{alert}: fired {fired:.0f} s, delivered {time.monotonic() - t0:.0f} s after the fault")
        finally:
            _write_faults(h, before)
            if head is not None:
                verify_target.host(head).run(["systemctl", "start", "trtllm-serve.service"])
        for alert, _for_s, _inject, labels in cases:
            res = V.wait_until(lambda a=alert, lab=labels: rx.received(a, "resolved", lab), 180, 2)
            assert res is not None, f"{alert} did not resolve at the webhook after the repair"
    print("; ".join(report))


@pytest.fixture(scope="session")
def admin_source(verify_target):
    plan = verify_target.plan
    if plan.serving.gateway is None:
        pytest.skip("the stack has no serving.gateway")
    gvars = plan.serving.gateway.to_dict()
    pki = verify_target.inventory.group_var("llmcluster_pki_dir")
    src = G.client_source(plan, gvars, pki, verify_target.c.probes)
    if src.missing:
        pytest.skip(src.missing)
    return gvars, src.pki, LocalHost(f"probe-{src.zone}", src.netns) if src.netns else None


def _fetch_store(h, dest: Path) -> Path:
    parent, name = STORE_DIR.rsplit("/", 1)
    r = h.run(["sh", "-c", f"tar -C {parent} -cf - {name} | base64 -w0"], timeout=120)
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(r.stdout))) as tar:
        tar.extractall(dest, filter="data")
    return dest / name


def test_audit_store(verify_target, record_property, mon, admin_source, tmp_path_factory):
    record_property("host", mon.servers[0])
    record_property("check", "monitoring[audit-store]")
    gvars, pki, source = admin_source
    if source is None:
        pytest.skip("no client source namespace for the api flow")
    marker = uuid.uuid4().hex
    gw_host = next(h for h in verify_target.plan.ip.hosts if h.pool == gvars["pool"])
    argv = G.curl_argv(gvars["hostname"], gw_host.addresses["inference"], gvars["port"], str(pki / "root-ca.pem"),
                       client=G.ClientCert(str(pki / "certs" / "admin.pem"), str(pki / "private" / "admin.key")),
                       path=A.MARKER_PATH.format(marker=marker), data=None)
    r = source.run(argv, timeout=30)
    res = G.parse_curl(r.rc, r.stdout, r.stderr)
    assert res.status, f"the gateway did not answer: {res.describe()}"
    h = verify_target.host(mon.servers[0])
    found = None

    def chained() -> bool:
        nonlocal found
        h.run(["systemctl", "start", "llmcluster-audit-chain.service"], timeout=60)
        store = _fetch_store(h, tmp_path_factory.mktemp("store"))
        found = store
        return any(line and marker in line.get("message", "") for _p, _n, line in AC.read_lines(store))

    assert V.wait_until(chained, 90, 3) is not None, "the marker request never reached the audit store"
    problems, head = AC.verify(found)
    assert problems == [], problems
    rows = [line for _p, _n, line in AC.read_lines(found) if line and marker in line.get("message", "")]
    # the identity: the admin client certificate's subject and serial
    assert "CN=" in rows[0].get("client", "") and rows[0].get("serial"), \
        f"the chained line lacks the client's identity (not parsed as HAProxy's access log?): {rows[0]}"
    # tamper evidence on a copy: an edited line and a deleted line are both named
    f, lines = AC.chain_files(found)[-1], AC.chain_files(found)[-1].read_text().splitlines()
    doc = json.loads(lines[-1])
    doc["status"] = 200 if doc.get("status") != 200 else 201
    f.write_text("\n".join(lines[:-1] + [json.dumps(doc, sort_keys=True)]) + "\n")
    assert any("hash mismatch" in p for p in AC.verify(found)[0])
    if len(lines) >= 3:
        f.write_text("\n".join(lines[:-2] + lines[-1:]) + "\n")
        assert any("does not follow" in p for p in AC.verify(found)[0])
