"""The monitoring pipeline for real on loopback (no lab): the SIMULATED dcgm-exporter of the lab
(llmcluster/lab/nvidia_sim), serving mTLS with the lab PKI's host certificate and the dcgm role's web
configuration, scraped with the rendered job's tls_config (the monitor host's client certificate)
-> Prometheus 2.42 with the generated rules -> Alertmanager 0.25 with the generated routing -> a webhook
receiver. An injected XID 79 (the simulation's faults.json) fires GpuFellOffTheBus, the receiver gets it
within a bound, and the repair resolves it.

Timing: the rules keep the lab plan's evaluation interval (5 s); Prometheus scrapes every second;
Alertmanager's group_wait / group_interval are shortened (1 s / 2 s) so the test takes seconds:
the generated values (10 s / 1 min) are checked by amtool in tests/unit/test_monitoring.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llmcluster.lab.nvidia_sim.hardware import hardware_doc, write_hardware
from llmcluster.monitoring.render import alertmanager_config, prometheus_config
from llmcluster.monitoring.rules import rule_file
from llmcluster.plan.build import build_plan
from llmcluster.plan.monitoring import monitoring_plan
from llmcluster.validate import load_stack_file
from llmcluster.verify import monitoring as V
from tests.helpers.role_local import export_lab_pki, free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager")
pytestmark = pytest.mark.skipif(PROMETHEUS is None or ALERTMANAGER is None,
                                reason="prometheus / prometheus-alertmanager missing (apt-get install them)")


def _start(argv, log: Path, env=None) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


@pytest.fixture
def pipeline(tmp_path):
    plan = build_plan(load_stack_file(ROOT / "stacks" / "Pulumi.lab.yaml", []))
    mp = monitoring_plan(plan)
    procs: list[subprocess.Popen] = []
    # the simulated dcgm-exporter of gpu-01
    sim = tmp_path / "sim"
    write_hardware(sim, hardware_doc(plan.spec.pools["gpu"], "gpu-01"))
    (sim / "usr/share/llmcluster-sim").mkdir(parents=True)
    (sim / "usr/share/llmcluster-sim/driver-version").write_text("570.172.08\n")
    faults = sim / "etc/llmcluster-sim/faults.json"
    faults.write_text("{}")
    # mTLS as on the hosts: gpu-01's certificate where the mtls role puts it, the role's web configuration
    _, _, pki = export_lab_pki(tmp_path)
    host_pki = sim / "etc/llmcluster/pki"
    host_pki.mkdir(parents=True)
    shutil.copy(pki / "certs/host-gpu-01.pem", host_pki / "host.crt")
    shutil.copy(pki / "private/host-gpu-01.key", host_pki / "host.key")
    shutil.copy(pki / "ca-chain.pem", host_pki / "ca-chain.pem")
    (sim / "etc/dcgm-exporter").mkdir(parents=True)
    (sim / "etc/dcgm-exporter/web.yml").write_text(
        (ROOT / "roles/dcgm/templates/web-config.yml.j2").read_text().replace("{{ ansible_managed }}", "test")
        .replace("{{ dcgm_exporter_cert_path }}", "/etc/llmcluster/pki/host.crt")
        .replace("{{ dcgm_exporter_key_path }}", "/etc/llmcluster/pki/host.key")
        .replace("{{ dcgm_exporter_ca_path }}", "/etc/llmcluster/pki/ca-chain.pem"))
    # the monitor host's client material, where the prometheus role copies it
    tls = tmp_path / "prom-tls"
    tls.mkdir()
    shutil.copy(pki / "certs/host-mon-01.pem", tls / "client.crt")
    shutil.copy(pki / "private/host-mon-01.key", tls / "client.key")
    shutil.copy(pki / "ca-chain.pem", tls / "ca-chain.pem")
    dcgm_job = next(j for j in prometheus_config(mp, "lab", str(tls))["scrape_configs"] if j["job_name"] == "dcgm")
    assert dcgm_job["scheme"] == "https"
    # the target is 127.0.0.1 here, not gpu-01's mgmt address: name the host its certificate carries
    tls_config = {**dcgm_job["tls_config"], "server_name": next(h.fqdn for h in plan.ip.hosts if h.name == "gpu-01")}
    p_dcgm, p_am, p_prom = free_port(), free_port(), free_port()
    env = {**os.environ, "LLMCLUSTER_SIM_ROOT": str(sim), "PYTHONPATH": str(ROOT)}
    run_sim = ("import sys; from llmcluster.lab.nvidia_sim.tools import dcgm_exporter as d; "
               "sys.exit(d.main(sys.argv[1:]))")
    procs.append(_start([sys.executable, "-c", run_sim, "-a", f"127.0.0.1:{p_dcgm}",
                         "--web-config-file", "/etc/dcgm-exporter/web.yml"], tmp_path / "dcgm.log", env))
    receiver = V.WebhookReceiver()
    receiver.__enter__()
    am = alertmanager_config(mp)
    am["receivers"][1]["webhook_configs"][0]["url"] = f"http://127.0.0.1:{receiver.port}/alerts"
    am["route"].update({"group_wait": "1s", "group_interval": "2s"})
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am))
    procs.append(_start([ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}",
                         f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{p_am}",
                         "--cluster.listen-address="], tmp_path / "am.log"))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rule_file(mp), sort_keys=False))
    prom = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{p_am}"]}]}]},
            "scrape_configs": [{"job_name": "dcgm", "scheme": "https", "tls_config": tls_config, "static_configs": [
                {"targets": [f"127.0.0.1:{p_dcgm}"], "labels": {"host": "gpu-01", "pool": "gpu"}}],
                "relabel_configs": [{"source_labels": ["host"], "target_label": "instance"}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom))
    procs.append(_start([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{p_prom}"],
                        tmp_path / "prom.log"))
    try:
        for port, proc in ((p_dcgm, procs[0]), (p_am, procs[1]), (p_prom, procs[2])):
            wait_port(port, 30, proc)
        yield {"prom": f"http://127.0.0.1:{p_prom}", "faults": faults, "receiver": receiver, "mp": mp,
               "logs": tmp_path}
    finally:
        receiver.__exit__(None, None, None)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_xid_fires_delivers_and_resolves(pipeline):
    prom, rx = pipeline["prom"], pipeline["receiver"]
    # every target of this pipeline up (the verify check's judge), Alertmanager discovered
    assert V.wait_until(lambda: not V.up_problems(V.prometheus_query(prom, "up"), [("dcgm", "gpu-01")]), 30)
    assert V.wait_until(lambda: V.get_json(f"{prom}/api/v1/alertmanagers")["data"]["activeAlertmanagers"], 30)
    assert not rx.received("GpuFellOffTheBus")
    pipeline["faults"].write_text(json.dumps({"xid": {"0": 79}}))
    t0 = time.monotonic()
    fired = V.wait_until(lambda: V.firing(V.get_json(f"{prom}/api/v1/alerts"), "GpuFellOffTheBus",
                                          {"host": "gpu-01", "gpu": "0"}), 30, 0.5)
    assert fired is not None, (pipeline["logs"] / "prom.log").read_text()[-2000:]
    eval_s = pipeline["mp"].evaluation_interval_s
    assert fired <= 1 + 2 * eval_s + 1, f"fired after {fired:.1f} s: more than a scrape and two evaluation intervals"
    delivered = V.wait_until(lambda: rx.received("GpuFellOffTheBus", "firing", {"host": "gpu-01"}), 60, 0.5)
    assert delivered is not None, (pipeline["logs"] / "am.log").read_text()[-2000:]
    assert V.firing(V.get_json(f"{prom}/api/v1/alerts"), "GpuCriticalXid", {"host": "gpu-01", "gpu": "0"})
    total = time.monotonic() - t0
    print(f"XID 79 -> webhook: {total:.1f} s (fired in Prometheus after {fired:.1f} s)")
    # repair: the gauge back to 0 (an exporter restart after the GPU reset): resolved at the receiver
    pipeline["faults"].write_text("{}")
    resolved = V.wait_until(lambda: rx.received("GpuFellOffTheBus", "resolved", {"host": "gpu-01"}), 60, 0.5)
    assert resolved is not None


def test_up_problems_name_missing_and_down_targets():
    q = {"status": "success", "data": {"result": [
        {"metric": {"job": "node", "host": "gpu-01"}, "value": [0, "1"]},
        {"metric": {"job": "dcgm", "host": "gpu-01"}, "value": [0, "0"]}]}}
    assert V.up_problems(q, [("node", "gpu-01"), ("dcgm", "gpu-01"), ("node", "gw-01")]) == [
        "dcgm on gpu-01: up == 0 (the target does not answer the scrape)",
        "node on gw-01: not a target of Prometheus (scrape configuration)"]
    assert V.up_problems(q, [("node", "gpu-01")]) == []


def test_gateway_exporter_serves_only_the_monitor_host(tmp_path):
    """The gateway role's HAProxy with its metrics frontend (rendered by Ansible from the role's template,
    real HAProxy on loopback): the monitor host's certificate scrapes HAProxy's exporter over mTLS,
    another cluster host's certificate gets 403, no certificate no TLS session."""
    from tests.helpers import gateway_local as L
    from tests.helpers.role_local import bundle, haproxy_check, local_config, start_haproxy, stop

    if shutil.which("haproxy") is None or shutil.which("curl") is None:
        pytest.skip("haproxy / curl missing")
    pki = L.lab_pki(tmp_path / "pki")
    d = tmp_path / "gw"
    d.mkdir()
    port, mport = free_port(), free_port()
    ca_chain = pki.dir / "ca-chain.pem"
    crl = d / "crl.pem"
    pki.write_crl(crl)
    variables = {
        "out": str(d / "haproxy.cfg"),
        "llmcluster_gateway": L.gateway_plan(pki, port, L.healthy_upstreams(pki)),
        "llmcluster_addresses": {"inference": "127.0.0.1"},
        "llmcluster_pki": {"ca_chain": str(ca_chain), "root_ca": str(pki.dir / "root-ca.pem"), "crl": str(crl)},
        "gateway_bundle_path": str(bundle(d / "api.pem", pki.dir / "certs" / "gateway-api.pem", ca_chain,
                                          pki.dir / "private" / "gateway-api.key")),
        "gateway_upstream_bundle_path": str(bundle(d / "upstream.pem", pki.dir / "certs" / "gateway-upstream.pem",
                                                   ca_chain, pki.dir / "private" / "gateway-upstream.key")),
        "gateway_crl_install_path": str(crl),
        "gateway_clients_map_path": str(d / "llmcluster-clients.map"),
        "gateway_log_target": "stdout format raw",
        "_gateway_stats_socket": str(d / "admin.sock"),
        "ansible_check_mode": False, "__gateway_dpkg": {"stdout_lines": []},
        # the metrics frontend, as the inventory's llmcluster_monitoring turns it on
        "gateway_metrics_port": mport, "gateway_metrics_address": "127.0.0.1",
        "gateway_metrics_client_cns": [f"mon-01.{pki.domain}"],
        "gateway_metrics_bundle_path": str(bundle(d / "host.pem", pki.dir / "certs" / "host-gw-01.pem", ca_chain,
                                                  pki.dir / "private" / "host-gw-01.key")),
    }
    rendered, _map = L.render(d, variables)
    assert "frontend metrics" in rendered and "prometheus-exporter" in rendered
    haproxy_check(d / "haproxy.cfg")
    (d / "local.cfg").write_text(local_config(rendered))
    proc = start_haproxy(d / "local.cfg", mport, d / "haproxy.log")
    fqdn = f"gw-01.{pki.domain}"

    def scrape(host: str | None) -> subprocess.CompletedProcess:
        cert = ["--cert", str(pki.dir / "certs" / f"host-{host}.pem"), "--key",
                str(pki.dir / "private" / f"host-{host}.key")] if host else []
        return subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", str(pki.dir / "root-ca.pem"), *cert,
                               "--resolve", f"{fqdn}:{mport}:127.0.0.1", "-w", "\n%{http_code}",
                               f"https://{fqdn}:{mport}/metrics"], capture_output=True, text=True)

    try:
        ok = scrape("mon-01")
        assert ok.stdout.rstrip().endswith("200") and "haproxy_frontend_http_requests_total" in ok.stdout, ok
        other = scrape("gpu-01")
        assert other.stdout.rstrip().endswith("403"), other
        assert scrape(None).returncode != 0  # no client certificate: no TLS session
    finally:
        stop(proc)
