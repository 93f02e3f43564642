"""Grafana dashboards as provisioning JSON (GPU fleet, serving, gateway, storage).

No Grafana server can be installed here: the files are built from the monitoring plan, shipped in
``dashboards/`` (import them, or point a Grafana file provider at that folder), and the tests parse
every expression with ``promql-parser`` and check its metrics against the contract.
Regenerate after a change: ``python -m llmcluster.monitoring.dashboards``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).with_name("dashboards")

PANELS: dict[str, list[tuple[str, str, str]]] = {
    "gpu-fleet": [
        ("GPUs per host", "count by (host) (DCGM_FI_DEV_GPU_TEMP)", "short"),
        ("GPU utilisation", "avg by (host, gpu) (DCGM_FI_DEV_GPU_UTIL)", "percent"),
        ("GPU memory used", "max by (host, gpu) (DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE))",
         "percentunit"),
        ("Temperature", "max by (host, gpu) (DCGM_FI_DEV_GPU_TEMP)", "celsius"),
        ("Power", "sum by (host) (DCGM_FI_DEV_POWER_USAGE)", "watt"),
        ("Last XID", "max by (host, gpu) (DCGM_FI_DEV_XID_ERRORS)", "short"),
        ("Throttling (thermal, power)", "sum by (host) (rate(DCGM_FI_DEV_THERMAL_VIOLATION[5m])) + "
         "sum by (host) (rate(DCGM_FI_DEV_POWER_VIOLATION[5m]))", "µs"),
        ("NVLink errors", "sum by (host) (increase(DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL[10m]))", "short"),
        ("NVLink traffic", "sum by (host) (rate(DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL[5m]))", "short"),
    ],
    "serving": [
        ("TTFT P99", "histogram_quantile(0.99, sum by (le, host) "
         "(rate(trtllm_time_to_first_token_seconds_bucket[5m])))", "s"),
        ("Latency P99", "histogram_quantile(0.99, sum by (le, host) "
         "(rate(trtllm_e2e_request_latency_seconds_bucket[5m])))", "s"),
        ("Time per output token P50", "histogram_quantile(0.5, sum by (le, host) "
         "(rate(trtllm_time_per_output_token_seconds_bucket[5m])))", "s"),
        ("Requests running / waiting", "sum by (host) (trtllm_num_requests_running) or "
         "sum by (host) (trtllm_num_requests_waiting)", "short"),
        ("KV cache used", "max by (host) (trtllm_kv_cache_utilization)", "percentunit"),
        ("Tokens generated /s", "sum by (host) (rate(trtllm_generation_tokens_total[5m]))", "short"),
        ("Requests answered /s", "sum by (host) (rate(trtllm_request_success_total[5m]))", "reqps"),
        ("Replica heads up", 'sum(up{job="trtllm"})', "short"),
    ],
    "gateway": [
        ("Requests /s", 'sum by (host) (rate(haproxy_frontend_http_requests_total{proxy="api"}[5m]))', "reqps"),
        ("Answers by class", 'sum by (code) (rate(haproxy_frontend_http_responses_total{proxy="api"}[5m]))', "reqps"),
        ("5xx ratio", 'sum(rate(haproxy_frontend_http_responses_total{proxy="api", code="5xx"}[5m])) / '
         'sum(rate(haproxy_frontend_http_requests_total{proxy="api"}[5m]))', "percentunit"),
        ("Upstreams up", 'max by (host) (haproxy_backend_active_servers{proxy="inference"})', "short"),
        ("Upstream state", 'max by (server) (haproxy_server_status{proxy="inference", state="UP"})', "short"),
        ("Open sessions", 'sum by (host) (haproxy_frontend_current_sessions{proxy="api"})', "short"),
        ("Upstream response time", 'max by (host) (haproxy_backend_response_time_average_seconds{proxy="inference"})',
         "s"),
        ("Audit store: last line age", "time() - max(llmcluster_audit_last_entry_timestamp_seconds)", "s"),
    ],
    "storage": [
        ("Ceph health (0 OK, 1 WARN, 2 ERR)", "max(ceph_health_status)", "short"),
        ("OSDs up / in", "sum(ceph_osd_up) or sum(ceph_osd_in)", "short"),
        ("Pool use", "max by (pool_id) (ceph_pool_percent_used)", "percentunit"),
        ("md arrays: failed disks", 'sum by (host, device) (node_md_disks{state="failed"})', "short"),
        ("Filesystem free", 'min by (host, mountpoint) (node_filesystem_avail_bytes{fstype!~"tmpfs|overlay"} / '
         "node_filesystem_size_bytes)", "percentunit"),
        ("Read-only filesystems", "sum by (host) (node_filesystem_readonly)", "short"),
        ("Certificates: days left",
         "min by (host, path) (llmcluster_cert_not_after_timestamp_seconds - time()) / 86400", "d"),
        ("Audit store size", "max(llmcluster_audit_store_bytes)", "bytes"),
    ],
}
TITLES = {"gpu-fleet": "llmcluster / GPU fleet", "serving": "llmcluster / serving", "gateway": "llmcluster / gateway",
          "storage": "llmcluster / storage"}


def build_dashboards(mp=None) -> dict[str, dict[str, Any]]:
    """name -> Grafana dashboard JSON (schema 39, a ``DS_PROMETHEUS`` datasource variable)."""
    out = {}
    for name, panels in PANELS.items():
        items = []
        for i, (title, expr, unit) in enumerate(panels):
            items.append({
                "id": i + 1, "type": "timeseries", "title": title,
                "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"refId": "A", "expr": expr,
                             "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}}],
            })
        out[name] = {
            "uid": f"llmcluster-{name}", "title": TITLES[name], "schemaVersion": 39, "version": 1,
            "tags": ["llmcluster"], "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
            "templating": {"list": [{"name": "DS_PROMETHEUS", "type": "datasource", "query": "prometheus"}]},
            "panels": items,
        }
    return out


def expressions(doc: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def write(directory: Path = DASHBOARD_DIR) -> None:
    directory.mkdir(exist_ok=True)
    for name, doc in build_dashboards().items():
        (directory / f"{name}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else DASHBOARD_DIR)
