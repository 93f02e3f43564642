"""Prometheus and Alertmanager configuration rendered from the monitoring plan (pure).

The roles ``prometheus`` and ``alertmanager`` write these documents (inventory
``llmcluster_monitoring_files``); ``promtool check config`` and ``amtool check-config`` check them
in the tests. :func:`scrape_targets` is the plain-data view the Kubernetes layer can wrap in
ServiceMonitors.
"""

from __future__ import annotations

from typing import Any

from llmcluster.plan.monitoring import ALERTMANAGER_PORT, MonitoringPlan

RULE_FILE = "/etc/prometheus/rules/llmcluster-rules.yml"
PKI_DIR = "/etc/llmcluster/pki"
#: Where the monitor host's key is readable by the prometheus user (the role copies it there).
PROMETHEUS_TLS_DIR = "/etc/prometheus/tls"


def scrape_targets(mp: MonitoringPlan) -> list[dict[str, Any]]:
    """Every target as data: job, host, pool, address:port, scheme, path."""
    out = []
    for t in mp.targets:
        j = mp.job(t.job)
        out.append({"job": t.job, "host": t.host, "pool": t.pool, "address": f"{t.address}:{j.port}",
                    "scheme": "https" if j.tls else "http", "path": j.path})
    return out


def prometheus_config(mp: MonitoringPlan, stack: str, tls_dir: str = PROMETHEUS_TLS_DIR) -> dict[str, Any]:
    scrape = []
    for j in mp.jobs:
        cfg: dict[str, Any] = {"job_name": j.name, "scheme": "https" if j.tls else "http", "metrics_path": j.path}
        if j.tls:
            cfg["tls_config"] = {"ca_file": f"{tls_dir}/ca-chain.pem", "cert_file": f"{tls_dir}/client.crt",
                                 "key_file": f"{tls_dir}/client.key", "min_version": "TLS13"}
        cfg["static_configs"] = [{"targets": [f"{t.address}:{j.port}"], "labels": {"host": t.host, "pool": t.pool}}
                                 for t in mp.targets_of(j.name)]
        # instance = the host's name, not its address: alerts and dashboards name hosts.
        cfg["relabel_configs"] = [{"source_labels": ["host"], "target_label": "instance"}]
        scrape.append(cfg)
    return {
        "global": {"scrape_interval": f"{mp.scrape_interval_s}s", "evaluation_interval": f"{mp.evaluation_interval_s}s",
                   "external_labels": {"stack": stack}},
        "rule_files": [RULE_FILE],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"{a}:{ALERTMANAGER_PORT}" for a in mp.server_addresses]
             or [f"127.0.0.1:{ALERTMANAGER_PORT}"]}]}]},
        "scrape_configs": scrape,
    }


def alertmanager_config(mp: MonitoringPlan) -> dict[str, Any]:
    receivers: list[dict[str, Any]] = [{"name": "null"}]
    route: dict[str, Any] = {"receiver": "null", "group_by": ["alertname", "host"],
                             "group_wait": "10s", "group_interval": "1m", "repeat_interval": "4h"}
    if mp.webhooks:
        receivers.append({"name": "webhooks", "webhook_configs": [
            {"url": u, "send_resolved": True} for u in mp.webhooks]})
        route["receiver"] = "webhooks"
    return {"route": route, "receivers": receivers,
            # a critical alert of a host silences its warnings (one page per fault)
            "inhibit_rules": [{"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
                               "equal": ["host"]}]}


def kubernetes_data(plan) -> dict[str, Any]:
    """What the Kubernetes layer wraps (PrometheusRule ``spec.groups``, one ServiceMonitor per job): plain data,
    ``{}`` without monitoring. Built here so that the rules and targets stay those of the plan."""
    from llmcluster.monitoring.rules import rule_groups
    from llmcluster.plan.monitoring import monitoring_plan

    mp = monitoring_plan(plan)
    if mp is None:
        return {}
    return {"rule_groups": rule_groups(mp), "jobs": [j.to_dict() for j in mp.jobs],
            "scrape_targets": scrape_targets(mp), "alertmanager": alertmanager_config(mp)}
