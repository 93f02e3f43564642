"""Monitoring (docs/observability.md): the metrics contract, the generated alert rules (every rule
fires and stays silent in a real ``promtool test rules`` case), the Prometheus and Alertmanager
configurations (``promtool check config``, ``amtool check-config``), the dashboards, and the
monitoring plan's safety rules. No lab: everything runs locally in seconds."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llmcluster.monitoring import contract as C
from llmcluster.monitoring.render import alertmanager_config, prometheus_config, scrape_targets
from llmcluster.monitoring.rules import build_rules, rule_file, rule_groups, rule_tests
from llmcluster.plan.build import build_plan
from llmcluster.plan.monitoring import MIN_AUDIT_RETENTION_DAYS, audit_max_bytes, monitoring_plan
from llmcluster.validate import load_stack_file

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "stacks" / "Pulumi.lab.yaml"
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
need_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (apt-get install prometheus)")
need_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool missing (apt-get install prometheus-alertmanager)")


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_stack_file(LAB, []))


@pytest.fixture(scope="module")
def mp(plan):
    return monitoring_plan(plan)


def _write_rules(tmp: Path, mp, rules_doc=None) -> tuple[Path, Path]:
    rf = tmp / "llmcluster-rules.yml"
    rf.write_text(yaml.safe_dump(rules_doc or rule_file(mp), sort_keys=False))
    tf = tmp / "tests.yml"
    tf.write_text(yaml.safe_dump(rule_tests(mp, rf.name), sort_keys=False))
    return rf, tf


# ---------------------------------------------------------------- plan


def test_targets_cover_every_host_and_exporter_over_mgmt(plan, mp):
    hosts = {h.name: h for h in plan.ip.hosts}
    assert {t.host for t in mp.targets_of("node")} == set(hosts)
    assert {t.host for t in mp.targets_of("dcgm")} == {"gpu-01", "gpu-02"}
    assert {t.host for t in mp.targets_of("trtllm")} == set(plan.serving.heads)
    assert {t.host for t in mp.targets_of("haproxy")} == {"gw-01"}
    assert {t.host for t in mp.targets_of("ceph")} == set(plan.storage.ceph.mgrs)  # the managers
    for t in mp.targets:  # scraping only over the mgmt VLAN
        assert t.address == hosts[t.host].addresses["mgmt"], t
    assert mp.servers == ("mon-01",)


def test_thresholds_come_from_the_spec(plan):
    spec = plan.spec.model_copy(update={"monitoring": plan.spec.monitoring.model_copy(update={
        "slo": plan.spec.monitoring.slo.model_copy(update={"ttft_p99_s": 0.7, "gpu_memory_ratio": 0.9})})})
    mp2 = monitoring_plan(build_plan(spec))
    exprs = {r.alert: r.expr for r in build_rules(mp2)}
    assert exprs["ServingTtftP99AboveSlo"].endswith("> 0.7")
    assert exprs["GpuMemoryHigh"].endswith("> 0.9")
    assert "< 8" in exprs["GpuCountBelowSpec"]  # the pool's gpu.count


def test_audit_store_cap_is_sized_from_the_request_rate():
    assert audit_max_bytes(0.01, 180) == 2**30  # the floor (0.01 req/s need ~373 MB)
    assert audit_max_bytes(0.1, 180) >= 0.1 * 86400 * 180 * 1200
    big = audit_max_bytes(10, 180)
    assert big >= 10 * 86400 * 180 * 1200  # every line of 180 days fits, with headroom
    assert audit_max_bytes(20, 180) > big


def test_audit_retention_below_180_days_is_rejected(tmp_path):
    text = LAB.read_text().replace("    audit_requests_per_s: 0.1", "    audit_requests_per_s: 0.1\n"
                                   "    audit_retention_days: 90")
    bad = tmp_path / "Pulumi.lab.yaml"
    bad.write_text(text)
    from llmcluster.errors import SpecError

    with pytest.raises(SpecError) as exc:
        load_stack_file(bad, [])
    assert any("monitoring.audit_retention_days" in line for line in exc.value.lines())
    assert MIN_AUDIT_RETENTION_DAYS == 180


def test_a_monitor_pool_that_cannot_reach_a_target_is_rejected(tmp_path):
    """Rule monitoring.flows: each target port must be admitted from the monitor zone on mgmt."""
    text = LAB.read_text().replace("tcp/9100, tcp/9400, tcp/9401]", "tcp/9100, tcp/9400]")
    bad = tmp_path / "Pulumi.lab.yaml"
    bad.write_text(text)
    from llmcluster.errors import SpecError

    with pytest.raises(SpecError) as exc:
        load_stack_file(bad, [])
    lines = exc.value.lines()
    assert any(": flows: " in line and "monitoring.pool" in line and "tcp/9401" in line and "gpu" in line
               for line in lines), lines


# ---------------------------------------------------------------- contract


def test_contract_loads_and_is_versioned():
    c = C.load_contract()
    assert c.version == 1
    assert c.get("DCGM_FI_DEV_XID_ERRORS").exporter == "dcgm-exporter"
    assert C.version_key("1.1.0rc5") == (1, 1, 0)
    m = c.get("trtllm_time_to_first_token_seconds_bucket")
    assert m.covers("1.1.0") and not m.covers("1.0.0")


def test_every_rule_uses_only_contract_metrics(mp):
    for g in rule_groups(mp):
        for r in g["rules"]:
            assert C.unknown_metrics(r["expr"]) == set(), r["alert"]


def test_a_metric_outside_the_contract_is_found():
    assert C.unknown_metrics('rate(DCGM_FI_DEV_XID_ERRORS[5m]) > 0 or nvidia_gpu_made_up_total') == {
        "nvidia_gpu_made_up_total"}
    assert C.unknown_metrics('{__name__="made_up"} or up') == {"made_up"}


def test_gaps_name_metrics_the_pinned_version_lacks(mp):
    exprs = [r["expr"] for g in rule_groups(mp) for r in g["rules"]]
    gaps = C.gaps(exprs, mp.versions)
    # the spec pins trtllm 1.0.0 (before its Prometheus collector): stated, never hidden
    assert mp.versions["trtllm-serve"] == "1.0.0"
    assert any(g.startswith("trtllm_time_to_first_token_seconds_bucket: trtllm-serve 1.0.0") for g in gaps)
    assert not any(g.startswith("DCGM_") for g in gaps)
    assert C.gaps(exprs, {**mp.versions, "trtllm-serve": "1.2.0"}) == []


def test_dcgm_collectors_list_every_field_the_rules_use(mp):
    defaults = yaml.safe_load((ROOT / "roles/dcgm/defaults/main.yml").read_text())
    listed = {row[0] for row in defaults["dcgm_exporter_counters"]}
    used = {n for g in rule_groups(mp) for r in g["rules"] for n in C.metric_names(r["expr"])
            if n.startswith("DCGM_")}
    assert used - listed == set()


# ---------------------------------------------------------------- rules


def test_at_least_25_rules_in_the_issue_groups(mp):
    rules = build_rules(mp)
    assert len(rules) >= 25
    names = {r.alert for r in rules}
    for a in ("GpuCriticalXid", "GpuRowRemapFailure", "GpuRowRemapPending", "GpuUncorrectableEcc",
              "GpuCountBelowSpec", "GpuFellOffTheBus", "GpuThermalThrottling", "GpuNvlinkErrors", "GpuMemoryHigh",
              "FabricManagerDown", "ServingTtftP99AboveSlo", "ServingLatencyP99AboveSlo", "ServingQueueDepthHigh",
              "ServingKvCacheFull", "Gateway5xxRatioHigh", "ServingReplicaDown", "CertificateRenewalOverdue",
              "CephHealthError", "RaidDegraded", "DiskWillFillIn24h", "AuditPipelineStalled"):
        assert a in names
    for job in ("node", "dcgm", "trtllm", "haproxy", "ceph"):  # absent() for every exporter
        assert f"ExporterAbsent{job.capitalize()}" in names
    assert len(names) == len(rules)


def test_every_rule_has_a_firing_and_a_silent_case(mp):
    tests = rule_tests(mp)["tests"]
    for r in build_rules(mp):
        cases = [t for t in tests if t["alert_rule_test"][0]["alertname"] == r.alert]
        fire = [t for t in cases if t["alert_rule_test"][0]["exp_alerts"]]
        silent = [t for t in cases if not t["alert_rule_test"][0]["exp_alerts"]]
        assert len(fire) == 1 and len(silent) == 1, r.alert


@need_promtool
def test_promtool_check_and_test_rules(mp, tmp_path):
    rf, tf = _write_rules(tmp_path, mp)
    out = subprocess.run([PROMTOOL, "check", "rules", str(rf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(build_rules(mp))} rules found" in out.stdout
    out = subprocess.run([PROMTOOL, "test", "rules", str(tf)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


@need_promtool
@pytest.mark.parametrize("alert,broken", [
    ("GpuMemoryHigh", ("> 0.85", "> 0.95")),  # a threshold that no longer fires
    ("ServingReplicaDown", ("== 0", "== 1")),  # a rule that fires when healthy
    ("GpuCriticalXid", (" or DCGM_FI_DEV_XID_ERRORS == 79", "")),  # XID 79 dropped from the set
])
def test_the_promtool_cases_catch_a_broken_rule(mp, tmp_path, alert, broken):
    doc = copy.deepcopy(rule_file(mp))
    rule = next(r for g in doc["groups"] for r in g["rules"] if r["alert"] == alert)
    assert broken[0] in rule["expr"]
    rule["expr"] = rule["expr"].replace(broken[0], broken[1])
    _rf, tf = _write_rules(tmp_path, mp, doc)
    tests = yaml.safe_load(tf.read_text())  # only this rule's two cases: fast
    tests["tests"] = [t for t in tests["tests"] if t["alert_rule_test"][0]["alertname"] == alert]
    tf.write_text(yaml.safe_dump(tests))
    out = subprocess.run([PROMTOOL, "test", "rules", str(tf)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode != 0 and alert in out.stdout + out.stderr


# ---------------------------------------------------------------- configurations


@need_promtool
def test_prometheus_config_checks(plan, mp, tmp_path):
    tls = tmp_path / "tls"
    tls.mkdir()
    # promtool opens the TLS files: real PEM material (a throwaway self-signed pair)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=t", "-days", "1", "-keyout", str(tls / "client.key"),
                    "-out", str(tls / "client.crt")],
                   check=True, capture_output=True)
    shutil.copy(tls / "client.crt", tls / "ca-chain.pem")
    cfg = prometheus_config(mp, plan.spec.stack, str(tls))
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(rule_file(mp)))
    cfg["rule_files"] = [str(rules)]
    f = tmp_path / "prometheus.yml"
    f.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([PROMTOOL, "check", "config", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["node"]["scheme"] == "https" and jobs["dcgm"]["scheme"] == "https"
    # dcgm-exporter is scraped with the monitor host's client certificate, as node_exporter
    assert jobs["dcgm"]["tls_config"] == jobs["node"]["tls_config"]
    assert {j for j, c in jobs.items() if c["scheme"] == "http"} <= {"ceph"}
    n_targets = sum(len(sc["targets"]) for j in cfg["scrape_configs"] for sc in j["static_configs"])
    assert n_targets == len(mp.targets) == len(scrape_targets(mp))


@need_amtool
def test_alertmanager_config_checks(mp, tmp_path):
    f = tmp_path / "alertmanager.yml"
    f.write_text(yaml.safe_dump(alertmanager_config(mp)))
    out = subprocess.run([AMTOOL, "check-config", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert alertmanager_config(mp)["receivers"][1]["webhook_configs"][0]["url"] == "http://10.42.0.1:19093/alerts"


@need_amtool
def test_amtool_rejects_a_broken_config(mp, tmp_path):
    doc = alertmanager_config(mp)
    doc["route"]["receiver"] = "nobody"
    f = tmp_path / "alertmanager.yml"
    f.write_text(yaml.safe_dump(doc))
    out = subprocess.run([AMTOOL, "check-config", str(f)], capture_output=True, text=True)
    assert out.returncode != 0


# ---------------------------------------------------------------- dashboards


def test_dashboards_parse_and_use_only_contract_metrics(mp):
    from llmcluster.monitoring.dashboards import DASHBOARD_DIR, build_dashboards, expressions

    built = build_dashboards(mp)
    assert set(built) == {"gpu-fleet", "serving", "gateway", "storage"}
    for name, doc in built.items():
        exprs = expressions(doc)
        assert exprs, name
        for e in exprs:
            assert C.unknown_metrics(e) == set(), (name, e)
        shipped = json.loads((DASHBOARD_DIR / f"{name}.json").read_text())
        assert shipped == json.loads(json.dumps(doc)), f"{name}.json is stale: regenerate it"


def test_kubernetes_layer_gets_plain_data(plan, mp):
    from llmcluster.monitoring.render import kubernetes_data

    data = kubernetes_data(plan)
    assert data["rule_groups"] == rule_groups(mp)
    assert json.loads(json.dumps(data)) == data  # plain, serialisable
    assert {t["job"] for t in data["scrape_targets"]} == {j["name"] for j in data["jobs"]}


def test_the_gateways_ship_to_the_monitor_host_wherever_it_is_numbered():
    plan4 = build_plan(load_stack_file(LAB, ["pools.gpu.count=4"]))
    mon = plan4.ip.host("mon-01")
    assert plan4.serving.gateway.audit.forward_to == (f"https://{mon.mgmt_ip}:19532",)


def test_shipping_to_the_store_needs_its_flow(tmp_path):
    text = LAB.read_text().replace(
        "    - {name: audit-store, from: gateway, to: monitor, ports: [tcp/19532], vlan: mgmt}\n", "")
    bad = tmp_path / "Pulumi.lab.yaml"
    bad.write_text(text)
    from llmcluster.errors import SpecError

    with pytest.raises(SpecError) as exc:
        load_stack_file(bad, [])
    assert any(": flows: " in line and "tcp/19532" in line and "audit store" in line for line in exc.value.lines())


# ---------------------------------------------------------------- serving.runtime kubernetes: the host Prometheus


@pytest.fixture(scope="module")
def k8s_plan():
    from tests.helpers import k8s

    return build_plan(load_stack_file(LAB, list(k8s.BAREMETAL)))


def _host_rules_read_only_host_jobs(mp, rules) -> list[str]:
    """Rules that read a job the host Prometheus does not scrape (they could never fire, or, for absent(),
    never be silent)."""
    from llmcluster.monitoring.rules import rule_jobs

    jobs = {j.name for j in mp.jobs}
    return [r.alert for r in rules if not rule_jobs(r.expr) <= jobs]


def test_kubernetes_runtime_leaves_the_pod_jobs_to_the_cluster(plan, k8s_plan):
    """With serving.runtime kubernetes the replica heads and gateways are pods: the host Prometheus lists no
    trtllm/haproxy target (site.yml installs no unit there), the cluster's ServiceMonitors scrape them."""
    mp = monitoring_plan(k8s_plan)
    assert not k8s_plan.serving.units_on_hosts and not k8s_plan.serving.gateway_on_hosts
    assert [j.name for j in mp.jobs] == ["node", "dcgm", "ceph"]
    assert not mp.targets_of("trtllm") and not mp.targets_of("haproxy")
    assert {t.host for t in mp.cluster_targets if t.job == "trtllm"} == set(k8s_plan.serving.heads)
    assert {t.host for t in mp.cluster_targets if t.job == "haproxy"} == {"gw-01"}
    cfg = prometheus_config(mp, k8s_plan.spec.stack)
    assert [j["job_name"] for j in cfg["scrape_configs"]] == ["node", "dcgm", "ceph"]
    # the monitor flows the zone policy must admit (rule monitoring.flows): no port of a pod job on the hosts
    from llmcluster.plan.monitoring import HAPROXY_EXPORTER_PORT, TRTLLM_METRICS_PORT, required_ports

    ports = {p for pool in required_ports(k8s_plan.spec).values() for p in pool}
    assert TRTLLM_METRICS_PORT not in ports and HAPROXY_EXPORTER_PORT not in ports
    assert {TRTLLM_METRICS_PORT, HAPROXY_EXPORTER_PORT} <= {p for pool in required_ports(plan.spec).values()
                                                            for p in pool}
    # systemd (the lab): everything on the hosts, as before
    lab = monitoring_plan(plan)
    assert [j.name for j in lab.jobs] == ["node", "dcgm", "trtllm", "haproxy", "ceph"] and not lab.cluster_targets


def test_no_host_rule_reads_a_job_the_host_prometheus_lacks(mp, k8s_plan):
    kmp = monitoring_plan(k8s_plan)
    for m in (mp, kmp):
        assert _host_rules_read_only_host_jobs(m, build_rules(m)) == []
    names = {r.alert for r in build_rules(kmp)}
    for gone in ("ExporterAbsentTrtllm", "ExporterAbsentHaproxy", "ServingReplicaDown", "Gateway5xxRatioHigh",
                 "ServingQueueDepthHigh", "GatewayNoUpstream"):
        assert gone not in names
    # nothing ships to the audit store from a gateway Deployment: its "last line" would be stale for ever
    assert "AuditPipelineStalled" not in names and "AuditPipelineStalled" in {r.alert for r in build_rules(mp)}
    assert "ExporterAbsentDcgm" in names and "TargetDown" in names
    # the check catches the old behaviour (every job's rules on the host Prometheus)
    wide = build_rules(kmp, {j.name for j in kmp.all_jobs})
    assert {"ExporterAbsentTrtllm", "ServingReplicaDown", "GatewayNoUpstream"} <= set(
        _host_rules_read_only_host_jobs(kmp, wide))


def test_kubernetes_runtime_cluster_rules_keep_the_serving_alerts(k8s_plan):
    """The PrometheusRule of the layer still carries the serving rules (its Prometheus scrapes the pods)."""
    from llmcluster.monitoring.rules import cluster_rule_groups

    kmp = monitoring_plan(k8s_plan)
    cluster = {r["alert"] for g in cluster_rule_groups(kmp, {"dcgm", "trtllm", "haproxy"}) for r in g["rules"]}
    assert {"ServingReplicaDown", "Gateway5xxRatioHigh", "ExporterAbsentTrtllm", "ExporterAbsentHaproxy"} <= cluster


@need_promtool
def test_kubernetes_runtime_host_config_and_rules_pass_promtool(k8s_plan, tmp_path):
    kmp = monitoring_plan(k8s_plan)
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=t", "-days", "1", "-keyout", str(tls / "client.key"),
                    "-out", str(tls / "client.crt")], check=True, capture_output=True)
    shutil.copy(tls / "client.crt", tls / "ca-chain.pem")
    rf, tf = _write_rules(tmp_path, kmp)
    cfg = prometheus_config(kmp, k8s_plan.spec.stack, str(tls))
    cfg["rule_files"] = [str(rf)]
    f = tmp_path / "prometheus.yml"
    f.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([PROMTOOL, "check", "config", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([PROMTOOL, "check", "rules", str(rf)], capture_output=True, text=True)
    assert out.returncode == 0 and f"SUCCESS: {len(build_rules(kmp))} rules found" in out.stdout, out.stdout
    out = subprocess.run([PROMTOOL, "test", "rules", str(tf)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
