"""Alert rules generated from the monitoring plan, each with a firing and a silent promtool case.

:func:`rule_groups` returns the Prometheus rule groups as plain dicts (the Prometheus role writes
them as a rule file; the Kubernetes layer can wrap the same dicts in a PrometheusRule).
:func:`rule_tests` returns a ``promtool test rules`` document with, for **every** rule, one case
in which it fires (with the exact labels and annotations expected) and one in which it stays
silent. Thresholds a user sets (SLOs) come from ``monitoring.slo`` through the plan.

Labels: every target carries ``job``, ``instance`` (= host), ``host`` and ``pool`` (the scrape
configuration adds them), so rules aggregate ``by (host, pool, ...)`` and alerts name the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmcluster.plan.monitoring import MonitoringPlan

#: XIDs that need an operator (NVIDIA's XID catalogue: 48 DBE, 61/62 internal micro-controller,
#: 63/64 row remapping, 74 NVLink, 79 fell off the bus, 92 high SBE rate, 94/95 contained /
#: uncontained ECC, 109/119/120 GSP / context-switch timeouts, 140 unrecovered ECC).
CRITICAL_XIDS: tuple[int, ...] = (48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 109, 119, 120, 140)
XID_WINDOW = "15m"
RUNBOOK_DOC = "docs/observability.md"


@dataclass
class Rule:
    group: str
    alert: str
    expr: str
    for_: str
    severity: str
    summary: str
    runbook: str
    #: promtool fixtures: input series (series, values) for the firing and the silent case
    fire: list[tuple[str, str]]
    silent: list[tuple[str, str]]
    #: labels of the alert in the firing case (besides alertname and severity)
    fire_labels: list[dict[str, str]]
    eval_time: str = "30m"
    interval: str = "1m"
    extra_labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"alert": self.alert, "expr": self.expr}
        if self.for_ != "0m":
            d["for"] = self.for_
        d["labels"] = {"severity": self.severity, **self.extra_labels}
        d["annotations"] = {"summary": self.summary, "runbook": self.runbook,
                            "runbook_url": f"{RUNBOOK_DOC}#{self.alert.lower()}"}
        return d

    def expected_annotations(self, labels: dict[str, str]) -> dict[str, str]:
        out = {}
        for k, v in self.to_dict()["annotations"].items():
            for lk, lv in labels.items():
                v = v.replace("{{ $labels." + lk + " }}", lv)
            out[k] = v
        return out


def _s(metric: str, **labels: str) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _gpu(host: str, pool: str, gpu: str = "0") -> dict[str, str]:
    return {"job": "dcgm", "instance": host, "host": host, "pool": pool, "gpu": gpu}


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def build_rules(mp: MonitoringPlan, jobs: set[str] | None = None) -> list[Rule]:
    """The rules for a Prometheus that scrapes ``jobs`` (default: the host Prometheus's, ``mp.jobs``; a
    Kubernetes-runtime stack's serving jobs are the cluster's, see :func:`cluster_rule_groups`). A rule that reads a
    job outside ``jobs`` is not written: its series could never exist there, so it would never fire (or, for an
    ``absent()``, never be silent)."""
    th = mp.thresholds
    jobs = {j.name for j in mp.jobs} if jobs is None else set(jobs)
    rules: list[Rule] = []
    gpu_pools = sorted(th.gpus_per_host)
    gpool = gpu_pools[0] if gpu_pools else "gpu"
    gh = next((t.host for t in mp.targets if t.job == "dcgm"), "gpu-01")

    # ------------------------------------------------------------------ GPU
    if "dcgm" in jobs:
        x = "DCGM_FI_DEV_XID_ERRORS"
        crit = " or ".join(f"{x} == {n}" for n in CRITICAL_XIDS)
        lab = _gpu(gh, gpool)
        rules.append(Rule(
            "gpu", "GpuCriticalXid",
            f"max by (host, pool, gpu) (changes({x}[{XID_WINDOW}]) > 0)"
            f" and on (host, gpu) max by (host, pool, gpu) ({crit})",
            "0m", "critical", "GPU {{ $labels.gpu }} of {{ $labels.host }} reported a critical XID",
            "Read the XID with `dcgmi health -c` / `nvidia-smi -q`; drain the node; XID 48/63/64/94/95: "
            "reset the GPU, 79: reseat/RMA. The XID gauge never resets, so this fires for "
            f"{XID_WINDOW} after the value changed.",
            fire=[(_s(x, **lab), "0x5 79x30")], silent=[(_s(x, **lab), "0x5 13x30")],
            fire_labels=[{"host": gh, "pool": gpool, "gpu": "0"}], eval_time="10m"))
        rules.append(Rule(
            "gpu", "GpuFellOffTheBus",
            f"max by (host, pool, gpu) ({x} == 79)", "0m", "critical",
            "GPU {{ $labels.gpu }} of {{ $labels.host }} fell off the bus (XID 79)",
            "The GPU is gone until the node is power-cycled: drain it, power-cycle, check PCIe/NVLink "
            "seating; repeat offenders go to RMA.",
            fire=[(_s(x, **lab), "79x20")], silent=[(_s(x, **lab), "0x20")],
            fire_labels=[{"host": gh, "pool": gpool, "gpu": "0"}], eval_time="5m"))
        rules.append(Rule(
            "gpu", "GpuRowRemapFailure",
            "max by (host, pool, gpu) (DCGM_FI_DEV_ROW_REMAP_FAILURE) > 0", "0m", "critical",
            "GPU {{ $labels.gpu }} of {{ $labels.host }} failed to remap a memory row",
            "The GPU has no spare rows left: drain the node and replace the GPU (RMA).",
            fire=[(_s("DCGM_FI_DEV_ROW_REMAP_FAILURE", **lab), "1x20")],
            silent=[(_s("DCGM_FI_DEV_ROW_REMAP_FAILURE", **lab), "0x20")],
            fire_labels=[{"host": gh, "pool": gpool, "gpu": "0"}], eval_time="5m"))
        rules.append(Rule(
            "gpu", "GpuRowRemapPending",
            "max by (host, pool, gpu) (DCGM_FI_DEV_ROW_REMAP_PENDING) > 0", "15m", "warning",
            "GPU {{ $labels.gpu }} of {{ $labels.host }} has a row remap pending a GPU reset",
            "Drain the node and reset the GPU (`nvidia-smi -r`) or reboot so that the remap takes effect.",
            fire=[(_s("DCGM_FI_DEV_ROW_REMAP_PENDING", **lab), "1x40")],
            silent=[(_s("DCGM_FI_DEV_ROW_REMAP_PENDING", **lab), "0x40")],
            fire_labels=[{"host": gh, "pool": gpool, "gpu": "0"}], eval_time="30m"))
        rules.append(Rule(
            "gpu", "GpuUncorrectableEcc",
            "max by (host, pool, gpu) (increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL[10m])) > 0", "0m", "critical",
            "GPU {{ $labels.gpu }} of {{ $labels.host }} reported uncorrectable (double-bit) ECC errors",
            "Drain the node; check `nvidia-smi -q -d ECC,ROW_REMAPPER`; reset the GPU; replace it if errors recur.",
            fire=[(_s("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", **lab), "0x5 1x20")],
            silent=[(_s("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", **lab), "0x25")],
            fire_labels=[{"host": gh, "pool": gpool, "gpu": "0"}], eval_time="10m"))
        parts = []
        for p in gpu_pools:
            n = th.gpus_per_host[p]
            parts.append(f'(count by (host, pool) (DCGM_FI_DEV_GPU_TEMP{{pool="{p}"}})'
                         f' or on (host, pool) (max by (host, pool) (up{{job="dcgm", pool="{p}"}} == 1) * 0)) < {n}')
        if parts:
            n = th.gpus_per_host[gpool]
            fire = [(_s("up", job="dcgm", instance=gh, host=gh, pool=gpool), "1x20")]
            fire += [(_s("DCGM_FI_DEV_GPU_TEMP", **_gpu(gh, gpool, str(i))), "40x20") for i in range(n - 1)]
            silent = fire[:1] + [(_s("DCGM_FI_DEV_GPU_TEMP", **_gpu(gh, gpool, str(i))), "40x20") for i in range(n)]
            rules.append(Rule(
                "gpu", "GpuCountBelowSpec", " or ".join(parts), "2m", "critical",
                "{{ $labels.host }} shows fewer GPUs than its pool {{ $labels.pool }} has",
                "A GPU is lost (fell off the bus, driver did not attach it): `nvidia-smi -L`, `dmesg | grep -i xid`; "
                "drain and power-cycle the node.",
                fire=fire, silent=silent, fire_labels=[{"host": gh, "pool": gpool}], eval_time="5m"))
        rules.append(Rule(
            "gpu", "GpuThermalThrottling",
            "max by (host, pool, gpu) (rate(DCGM_FI_DEV_THERMAL_VIOLATION[5m])) > 0", "10m", "warning",
            "GPU {{ $labels.gpu }} of {{ $labels.host }} is throttled for temperature",
            "Check the node's fans, inlet temperature and airflow; `nvidia-smi -q -d PERFORMANCE` names the reason.",
            fire=[(_s("DCGM_FI_DEV_THERMAL_VIOLATION", **lab), "0+1000000x40")],
            silent=[(_s("DCGM_FI_DEV_THERMAL_VIOLATION", **lab), "5x40")],
            fire_labels=[{"host": gh, "pool": gpool, "gpu": "0"}]))
        rules.append(Rule(
            "gpu", "GpuPowerThrottling",
            "max by (host, pool, gpu) (rate(DCGM_FI_DEV_POWER_VIOLATION[5m])) > 0", "10m", "warning",
            "GPU {{ $labels.gpu }} of {{ $labels.host }} is capped by its power limit",
            "Check the PSUs and the power limit (`nvidia-smi -q -d POWER`); a sustained cap costs throughput.",
            fire=[(_s("DCGM_FI_DEV_POWER_VIOLATION", **lab), "0+1000000x40")],
            silent=[(_s("DCGM_FI_DEV_POWER_VIOLATION", **lab), "5x40")],
            fire_labels=[{"host": gh, "pool": gpool, "gpu": "0"}]))
        nv = ("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
              "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL")
        rules.append(Rule(
            "gpu", "GpuNvlinkErrors",
            " or ".join(f"max by (host, pool, gpu) (increase({m}[10m])) > 0" for m in nv), "5m", "warning",
            "NVLink errors on GPU {{ $labels.gpu }} of {{ $labels.host }}",
            "`nvidia-smi nvlink -e` names the link; recovery errors or a growing rate: drain and check the "
            "NVSwitch tray / fabric manager log.",
            fire=[(_s(nv[2], **lab), "0+1x40")], silent=[(_s(m, **lab), "0x40") for m in nv],
            fire_labels=[{"host": gh, "pool": gpool, "gpu": "0"}]))
        r = th.gpu_memory_ratio
        rules.append(Rule(
            "gpu", "GpuMemoryHigh",
            "max by (host, pool, gpu) (DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE))"
            f" > {_num(r)}", "5m", "warning",
            f"GPU {{{{ $labels.gpu }}}} of {{{{ $labels.host }}}} uses more than {round(r * 100)} % of its memory",
            "trtllm-serve preallocates its KV cache (kv_cache_free_gpu_memory_fraction): compare with the "
            "engine arguments before acting; otherwise look for a stray process (`nvidia-smi`).",
            fire=[(_s("DCGM_FI_DEV_FB_USED", **lab), "9000x20"), (_s("DCGM_FI_DEV_FB_FREE", **lab), "1000x20")],
            silent=[(_s("DCGM_FI_DEV_FB_USED", **lab), "5000x20"), (_s("DCGM_FI_DEV_FB_FREE", **lab), "5000x20")],
            fire_labels=[{"host": gh, "pool": gpool, "gpu": "0"}], eval_time="10m"))
        rules.append(Rule(
            "gpu", "GpuMetricsMissing",
            "(max by (host, pool) (up{job=\"dcgm\"}) == 1) unless on (host) count by (host) (DCGM_FI_DEV_XID_ERRORS)",
            "5m", "critical",
            "dcgm-exporter on {{ $labels.host }} answers but exports no GPU fields",
            "Every GPU alert of this host is blind: check the collectors file and `dcgmi discovery -l`; restart "
            "nvidia-dcgm-exporter.",
            fire=[(_s("up", job="dcgm", instance=gh, host=gh, pool=gpool), "1x20")],
            silent=[(_s("up", job="dcgm", instance=gh, host=gh, pool=gpool), "1x20"),
                    (_s(x, **lab), "0x20")],
            fire_labels=[{"host": gh, "pool": gpool}], eval_time="10m"))
        if any(t.job == "node" and t.pool in gpu_pools for t in mp.targets):
            fm = 'node_systemd_unit_state{name="nvidia-fabricmanager.service", state="active"}'
            nl = {"job": "node", "instance": gh, "host": gh, "pool": gpool,
                  "name": "nvidia-fabricmanager.service", "state": "active"}
            rules.append(Rule(
                "gpu", "FabricManagerDown",
                f"max by (host, pool) ({fm[:-1]}, pool=~\"{'|'.join(gpu_pools)}\"}}) == 0", "2m", "critical",
                "The NVIDIA fabric manager is not running on {{ $labels.host }}",
                "Without it CUDA fails (error 802) while pods look ready: `systemctl status nvidia-fabricmanager`; "
                "its version must equal the driver's.",
                fire=[(_s("node_systemd_unit_state", **nl), "0x20")],
                silent=[(_s("node_systemd_unit_state", **nl), "1x20")],
                fire_labels=[{"host": gh, "pool": gpool}], eval_time="5m"))

    # ------------------------------------------------------------------ serving
    if "trtllm" in jobs:
        head = mp.any_target_of("trtllm")
        tl = {"job": "trtllm", "instance": head.host, "host": head.host, "pool": head.pool}
        for alert, metric, slo, what in (
                ("ServingTtftP99AboveSlo", "trtllm_time_to_first_token_seconds_bucket", th.ttft_p99_s,
                 "time to first token"),
                ("ServingLatencyP99AboveSlo", "trtllm_e2e_request_latency_seconds_bucket", th.latency_p99_s,
                 "end-to-end latency")):
            hi = slo * 4
            rules.append(Rule(
                "serving", alert,
                f"histogram_quantile(0.99, sum by (le, host, pool) (rate({metric}[5m]))) > {_num(slo)}", "5m",
                "warning", f"P99 {what} of {{{{ $labels.host }}}} is above the SLO of {_num(slo)} s",
                "Check the queue (trtllm_request_queue_time), KV-cache use and concurrency against the plan "
                "(`llmcluster size`); add replicas or lower serving.concurrency.",
                fire=[(_s(metric, **tl, le=_num(slo / 2)), "0x40"), (_s(metric, **tl, le=_num(hi)), "0+10x40"),
                      (_s(metric, **tl, le="+Inf"), "0+10x40")],
                silent=[(_s(metric, **tl, le=_num(slo / 2)), "0+10x40"), (_s(metric, **tl, le=_num(hi)), "0+10x40"),
                        (_s(metric, **tl, le="+Inf"), "0+10x40")],
                fire_labels=[{"host": head.host, "pool": head.pool}], eval_time="20m"))
        q = th.queue_depth
        rules.append(Rule(
            "serving", "ServingQueueDepthHigh",
            f"max by (host, pool) (trtllm_num_requests_waiting) > {q}", "5m", "warning",
            f"More than {q} requests wait on {{{{ $labels.host }}}}",
            "Demand exceeds the replicas: add replicas, or check that every replica head is up (the gateway "
            "sends everything to the survivors).",
            fire=[(_s("trtllm_num_requests_waiting", **tl), f"{q + 5}x20")],
            silent=[(_s("trtllm_num_requests_waiting", **tl), f"{q}x20")],
            fire_labels=[{"host": head.host, "pool": head.pool}], eval_time="10m"))
        k = th.kv_cache_ratio
        rules.append(Rule(
            "serving", "ServingKvCacheFull",
            f"max by (host, pool) (trtllm_kv_cache_utilization) > {_num(k)}", "10m", "warning",
            f"The KV cache of {{{{ $labels.host }}}} is more than {round(k * 100)} % used",
            "Requests are being paused or evicted: lower serving.concurrency or context, or add replicas.",
            fire=[(_s("trtllm_kv_cache_utilization", **tl), "0.99x30")],
            silent=[(_s("trtllm_kv_cache_utilization", **tl), "0.5x30")],
            fire_labels=[{"host": head.host, "pool": head.pool}], eval_time="20m"))
        rules.append(Rule(
            "serving", "ServingReplicaDown",
            'max by (host, pool) (up{job="trtllm"}) == 0', "1m", "critical",
            "The replica head {{ $labels.host }} does not answer (trtllm-serve or its TLS terminator)",
            "`systemctl status trtllm-serve serving-tls` on the head; the gateway keeps serving from the other "
            "replicas meanwhile.",
            fire=[(_s("up", **tl), "0x10")], silent=[(_s("up", **tl), "1x10")],
            fire_labels=[{"host": head.host, "pool": head.pool}], eval_time="5m"))
    if "haproxy" in jobs:
        gw = mp.any_target_of("haproxy")
        hl = {"job": "haproxy", "instance": gw.host, "host": gw.host, "pool": gw.pool}
        e = th.error_ratio
        rules.append(Rule(
            "serving", "Gateway5xxRatioHigh",
            'sum by (host, pool) (rate(haproxy_frontend_http_responses_total{proxy="api", code="5xx"}[5m]))'
            ' / sum by (host, pool) (rate(haproxy_frontend_http_requests_total{proxy="api"}[5m]))'
            f" > {_num(e)}", "5m", "critical",
            f"More than {_num(e * 100)} % of the API answers of {{{{ $labels.host }}}} are 5xx",
            "Look at the gateway's access log (`llmcluster audit --since 1h`) for the failing upstream; check "
            "every replica head.",
            fire=[(_s("haproxy_frontend_http_responses_total", **hl, proxy="api", code="5xx"), "0+5x30"),
                  (_s("haproxy_frontend_http_requests_total", **hl, proxy="api"), "0+10x30")],
            silent=[(_s("haproxy_frontend_http_responses_total", **hl, proxy="api", code="5xx"), "0x30"),
                    (_s("haproxy_frontend_http_requests_total", **hl, proxy="api"), "0+10x30")],
            fire_labels=[{"host": gw.host, "pool": gw.pool}], eval_time="20m"))
        rules.append(Rule(
            "serving", "GatewayNoUpstream",
            'max by (host, pool) (haproxy_backend_active_servers{proxy="inference"}) == 0', "1m", "critical",
            "The gateway {{ $labels.host }} has no replica head left to send requests to",
            "Every upstream failed its health check: the API answers 503. Check the replica heads and the "
            "gateway's upstream certificate.",
            fire=[(_s("haproxy_backend_active_servers", **hl, proxy="inference"), "0x10")],
            silent=[(_s("haproxy_backend_active_servers", **hl, proxy="inference"), "2x10")],
            fire_labels=[{"host": gw.host, "pool": gw.pool}], eval_time="5m"))

    # ------------------------------------------------------------------ exporters
    for j in (j for j in mp.all_jobs if j.name in jobs):
        host = mp.any_target_of(j.name)
        other = "node" if j.name != "node" else "dcgm"
        rules.append(Rule(
            "exporters", f"ExporterAbsent{j.name.capitalize()}", f'absent(up{{job="{j.name}"}})', "5m", "critical",
            f"No {j.exporter} target is scraped (job {j.name}): its alerts are blind",
            f"Check the scrape configuration (/etc/prometheus/prometheus.yml, job {j.name}) and "
            "`promtool check config`; the exporter's alerts cannot fire while this one does.",
            fire=[(_s("up", job=other, instance=host.host, host=host.host, pool=host.pool), "1x20")],
            silent=[(_s("up", job=j.name, instance=host.host, host=host.host, pool=host.pool), "1x20")],
            fire_labels=[{"job": j.name}], eval_time="10m"))
    node = mp.targets_of("node")[0]
    rules.append(Rule(
        "exporters", "TargetDown", 'max by (job, host, pool) (up{job!="trtllm"}) == 0', "2m", "critical",
        "The {{ $labels.job }} exporter on {{ $labels.host }} does not answer",
        "`systemctl status` of the exporter on the host; check the firewall's metrics flow on mgmt "
        "(`llmcluster plan`) and the exporter's certificate.",
        fire=[(_s("up", job="node", instance=node.host, host=node.host, pool=node.pool), "0x10")],
        silent=[(_s("up", job="node", instance=node.host, host=node.host, pool=node.pool), "1x10")],
        fire_labels=[{"job": "node", "host": node.host, "pool": node.pool}], eval_time="5m"))

    # ------------------------------------------------------------------ platform
    nl = {"job": "node", "instance": node.host, "host": node.host, "pool": node.pool}
    w = th.cert_renew_window_s
    rules.append(Rule(
        "platform", "CertificateRenewalOverdue",
        f"min by (host, pool, path) (llmcluster_cert_not_after_timestamp_seconds) - time() < {w}", "10m", "warning",
        "The certificate {{ $labels.path }} of {{ $labels.host }} is inside its renewal window and not renewed",
        "Re-export the PKI (`llmcluster pki export`) and converge the mtls role; the window is the PKI "
        "policy's (renew at renew_at_fraction of the lifetime).",
        fire=[(_s("llmcluster_cert_not_after_timestamp_seconds", **nl, path="/etc/llmcluster/pki/host.crt"),
               f"{w}x40")],
        silent=[(_s("llmcluster_cert_not_after_timestamp_seconds", **nl, path="/etc/llmcluster/pki/host.crt"),
                 f"{w * 3}x40")],
        fire_labels=[{"host": node.host, "pool": node.pool, "path": "/etc/llmcluster/pki/host.crt"}]))
    if "ceph" in jobs:
        ct = mp.targets_of("ceph")[0]
        cl = {"job": "ceph", "instance": ct.host, "host": ct.host, "pool": ct.pool}
        rules.append(Rule(
            "platform", "CephHealthError", "max(ceph_health_status) == 2", "5m", "critical",
            "Ceph reports HEALTH_ERR", "`ceph health detail` on a storage host; data may be unavailable.",
            fire=[(_s("ceph_health_status", **cl), "2x20")], silent=[(_s("ceph_health_status", **cl), "1x20")],
            fire_labels=[{}], eval_time="10m"))
        rules.append(Rule(
            "platform", "CephHealthWarning", "max(ceph_health_status) == 1", "30m", "warning",
            "Ceph reports HEALTH_WARN for 30 minutes", "`ceph health detail`; a warning that lasts is "
            "usually a down OSD, a near-full pool or clock skew.",
            fire=[(_s("ceph_health_status", **cl), "1x60")], silent=[(_s("ceph_health_status", **cl), "0x60")],
            fire_labels=[{}], eval_time="45m"))
        rules.append(Rule(
            "platform", "CephOsdDown", "count(ceph_osd_up == 0) > 0", "5m", "warning",
            "One or more Ceph OSDs are down", "`ceph osd tree down`; restart the OSD unit or replace the drive.",
            fire=[(_s("ceph_osd_up", **cl, ceph_daemon="osd.0"), "0x20"),
                  (_s("ceph_osd_up", **cl, ceph_daemon="osd.1"), "1x20")],
            silent=[(_s("ceph_osd_up", **cl, ceph_daemon="osd.0"), "1x20")],
            fire_labels=[{}], eval_time="10m"))
    rules.append(Rule(
        "platform", "RaidDegraded",
        'max by (host, pool, device) (node_md_disks{state="failed"}) > 0 or max by (host, pool, device) '
        '(node_md_disks_required) > max by (host, pool, device) (node_md_disks{state="active"})', "1m", "critical",
        "The md array {{ $labels.device }} of {{ $labels.host }} is degraded",
        "`mdadm --detail /dev/{{ $labels.device }}`; replace the failed NVMe drive (by-id) and re-add it.",
        fire=[(_s("node_md_disks", **nl, device="md0", state="active"), "3x10"),
              (_s("node_md_disks", **nl, device="md0", state="failed"), "1x10"),
              (_s("node_md_disks_required", **nl, device="md0"), "4x10")],
        silent=[(_s("node_md_disks", **nl, device="md0", state="active"), "4x10"),
                (_s("node_md_disks", **nl, device="md0", state="failed"), "0x10"),
                (_s("node_md_disks_required", **nl, device="md0"), "4x10")],
        fire_labels=[{"host": node.host, "pool": node.pool, "device": "md0"}], eval_time="5m"))
    fs = {**nl, "mountpoint": "/", "fstype": "ext4", "device": "/dev/vda"}
    rules.append(Rule(
        "platform", "DiskWillFillIn24h",
        'max by (host, pool, mountpoint) (predict_linear(node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"}'
        '[1h], 86400)) < 0 and max by (host, pool, mountpoint) (node_filesystem_avail_bytes / '
        'node_filesystem_size_bytes) < 0.25', "30m", "warning",
        "{{ $labels.mountpoint }} of {{ $labels.host }} will be full within a day at this rate",
        "Find what grows (`du -xh --max-depth=2`); journals and engine caches are the usual suspects.",
        fire=[(_s("node_filesystem_avail_bytes", **fs), "200000000-1000000x90"),
              (_s("node_filesystem_size_bytes", **fs), "1000000000x90")],
        silent=[(_s("node_filesystem_avail_bytes", **fs), "200000000x90"),
                (_s("node_filesystem_size_bytes", **fs), "1000000000x90")],
        fire_labels=[{"host": node.host, "pool": node.pool, "mountpoint": "/"}], eval_time="80m"))
    rules.append(Rule(
        "platform", "DiskAlmostFull",
        'max by (host, pool, mountpoint) (node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"} / '
        'node_filesystem_size_bytes) < 0.05', "5m", "critical",
        "{{ $labels.mountpoint }} of {{ $labels.host }} has less than 5 % free",
        "Free space now: services (journald, Prometheus, the audit store) stop writing when it is full.",
        fire=[(_s("node_filesystem_avail_bytes", **fs), "10x20"), (_s("node_filesystem_size_bytes", **fs), "1000x20")],
        silent=[(_s("node_filesystem_avail_bytes", **fs), "500x20"),
                (_s("node_filesystem_size_bytes", **fs), "1000x20")],
        fire_labels=[{"host": node.host, "pool": node.pool, "mountpoint": "/"}], eval_time="10m"))
    srv = mp.servers[0] if mp.servers else node.host
    mon_pool = next((t.pool for t in mp.targets if t.host == srv), node.pool)
    al = {"job": "node", "instance": srv, "host": srv, "pool": mon_pool}
    stall = th.audit_stall_s
    # the store's last line only advances while gateway hosts ship to it (audit_log): without them
    # (no gateway, or the gateway a Deployment) this would fire for ever
    if mp.audit_shipped:
        rules.append(Rule(
            "platform", "AuditPipelineStalled",
            f"time() - max by (host, pool) (llmcluster_audit_last_entry_timestamp_seconds) > {stall}", "5m", "critical",
            f"The audit store on {{{{ $labels.host }}}} chained no access log line for {stall} s",
            "Check systemd-journal-upload on the gateways, the store's journal-remote and its chain timer "
            "(`systemctl status llmcluster-audit-chain.timer`); the gateways keep their sealed journal meanwhile.",
            fire=[(_s("llmcluster_audit_last_entry_timestamp_seconds", **al), "0x60")],
            silent=[(_s("llmcluster_audit_last_entry_timestamp_seconds", **al), "0+60x60")],
            fire_labels=[{"host": srv, "pool": mon_pool}], eval_time="40m"))
    rules.append(Rule(
        "platform", "AuditChainBroken", "min by (host, pool) (llmcluster_audit_chain_ok) == 0", "0m", "critical",
        "The audit store's hash chain on {{ $labels.host }} does not verify",
        "Someone edited or removed stored lines: `llmcluster audit --stack S --since 180d` names the first bad "
        "line; keep a copy of the store before anything else.",
        fire=[(_s("llmcluster_audit_chain_ok", **al), "0x10")],
        silent=[(_s("llmcluster_audit_chain_ok", **al), "1x10")],
        fire_labels=[{"host": srv, "pool": mon_pool}], eval_time="5m"))
    cap = mp.audit.max_bytes
    rules.append(Rule(
        "platform", "AuditStoreNearCap",
        f"max by (host, pool) (llmcluster_audit_store_bytes) > {int(cap * 0.9)}", "1h", "warning",
        "The audit store on {{ $labels.host }} is above 90 % of its size cap",
        "At the cap the oldest days are deleted before the retention ends: raise "
        "monitoring.audit_requests_per_s (it sizes the cap) and converge.",
        fire=[(_s("llmcluster_audit_store_bytes", **al), f"{cap}x90")],
        silent=[(_s("llmcluster_audit_store_bytes", **al), f"{cap // 2}x90")],
        fire_labels=[{"host": srv, "pool": mon_pool}], eval_time="80m"))
    return rules


GROUP_ORDER = ("gpu", "serving", "exporters", "platform")


def rule_groups(mp: MonitoringPlan, jobs: set[str] | None = None) -> list[dict[str, Any]]:
    """The rule groups as dicts (``groups:`` of a Prometheus rule file; PrometheusRule ``spec.groups``) for a
    Prometheus scraping ``jobs`` (default: the host Prometheus's)."""
    rules = build_rules(mp, jobs)
    out = []
    for g in GROUP_ORDER:
        members = [r.to_dict() for r in rules if r.group == g]
        if members:
            out.append({"name": f"llmcluster-{g}", "interval": f"{mp.evaluation_interval_s}s", "rules": members})
    return out


def rule_file(mp: MonitoringPlan, jobs: set[str] | None = None) -> dict[str, Any]:
    return {"groups": rule_groups(mp, jobs)}


def rule_tests(mp: MonitoringPlan, rule_file_name: str = "llmcluster-rules.yml",
               jobs: set[str] | None = None) -> dict[str, Any]:
    """A ``promtool test rules`` document: for every rule a firing and a silent case."""
    tests = []
    for r in build_rules(mp, jobs):
        for case, series in (("fire", r.fire), ("silent", r.silent)):
            exp = []
            if case == "fire":
                for labels in r.fire_labels:
                    full = {**labels, "severity": r.severity, **r.extra_labels}
                    exp.append({"exp_labels": full, "exp_annotations": r.expected_annotations(full)})
            tests.append({
                "name": f"{r.alert} {case}s",
                "interval": r.interval,
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [{"eval_time": r.eval_time, "alertname": r.alert, "exp_alerts": exp}],
            })
    return {"rule_files": [rule_file_name], "evaluation_interval": "1m", "tests": tests}


def rule_jobs(expr: str) -> set[str]:
    """The scrape jobs a rule reads: its ``job="..."`` matchers and the contract's job of each metric it uses
    (``prometheus``'s ``up`` has none of its own)."""
    import re

    from llmcluster.monitoring.contract import load_contract, metric_names

    c = load_contract()
    jobs = set(re.findall(r'\bjob="([A-Za-z0-9_-]+)"', expr))
    for name in metric_names(expr):
        m = c.get(name)
        job = c.exporters.get(m.exporter, {}).get("job") if m is not None else None
        if job and job != "any":
            jobs.add(job)
    return jobs


def cluster_rule_groups(mp: MonitoringPlan, jobs: set[str]) -> list[dict[str, Any]]:
    """The rule groups of :func:`rule_groups` (the same rules, not re-written) restricted to the rules that read only
    ``jobs`` (what a cluster's Prometheus scrapes): a PrometheusRule's ``spec.groups``."""
    out = []
    for g in rule_groups(mp, {j.name for j in mp.all_jobs}):  # the serving jobs may be the cluster's only
        rules = [r for r in g["rules"] if rule_jobs(r["expr"]) and rule_jobs(r["expr"]) <= jobs]
        if rules:
            out.append({**g, "rules": rules})
    return out
