"""Monitoring plan: scrape targets, alert thresholds and the audit store's budget (pure, no I/O).

Derived once here from the spec and the other plans; the rule generator
(:mod:`llmcluster.monitoring.rules`), the Prometheus/Alertmanager roles (inventory
``llmcluster_monitoring``), the verification checks and the Kubernetes layer read it.

* **Who scrapes**: the hosts of ``monitoring.pool`` (role ``monitor``), over the **mgmt VLAN only**:
  every target address is the target host's mgmt address. The zone policy must admit the monitor
  zone to each target port on mgmt (validation rule ``monitoring.flows``).
* **What**: node_exporter on every host; dcgm-exporter on GPU hosts; trtllm-serve's Prometheus
  metrics on each replica head (through its TLS terminator's metrics frontend: trtllm-serve itself
  listens on loopback); HAProxy's built-in exporter on the gateways; Ceph's mgr exporter on the
  storage hosts of the Ceph pool.
* **Where the serving runs** (``serving.runtime``, :mod:`llmcluster.plan.runtime`): with
  ``kubernetes`` the replica heads and gateways are pods, scraped by the cluster's Prometheus through the
  layer's ServiceMonitors; their jobs (``trtllm``, ``haproxy``) leave the host targets and their alerts (they
  could never be silent: ``up`` is absent) and are kept in ``cluster_targets`` for the PrometheusRule only.
* **TLS where the target supports it**: node_exporter and dcgm-exporter (exporter-toolkit web config),
  HAProxy (``bind ... ssl``) and the serving TLS terminator are scraped over mTLS with the monitor host's
  certificate; Ceph 16's mgr module is plain HTTP (see docs/observability.md for why).
* **Thresholds that are SLOs** come from ``monitoring.slo``; the GPU count per host from the pool;
  the certificate renewal window from the PKI policy.
* **Audit store**: retention >= 180 days and a size cap sized from the expected request rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from llmcluster.plan.runtime import gateway_on_hosts, units_on_hosts
from llmcluster.spec.models import Spec

NODE_EXPORTER_PORT = 9100
DCGM_EXPORTER_PORT = 9400
#: The serving TLS terminator's metrics frontend (mgmt address; forwards /metrics to trtllm-serve on loopback).
TRTLLM_METRICS_PORT = 9401
HAPROXY_EXPORTER_PORT = 8405
CEPH_MGR_EXPORTER_PORT = 9283
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
AUDIT_STORE_PORT = 19532

#: Versions the contract is checked against where the spec pins none (Debian 12's packages).
NODE_EXPORTER_VERSION = "1.5.0"
HAPROXY_VERSION = "2.6.12"
CEPH_VERSION = "16.2.15"
PROMETHEUS_VERSION = "2.42.0"
ALERTMANAGER_VERSION = "0.25.0"

#: Measured cost of one chained audit line on disk (JSON, the raw HAProxy line and the chain hashes).
AUDIT_BYTES_PER_LINE = 1200
#: Headroom over the expected volume before the size cap deletes the oldest day.
AUDIT_HEADROOM = 2.0
MIN_AUDIT_RETENTION_DAYS = 180


@dataclass(frozen=True)
class Job:
    """One scrape job: how its targets are reached."""

    name: str
    exporter: str  # a key of the metrics contract's exporters
    port: int
    path: str
    tls: bool
    #: the systemd unit behind it (verify checks, runbooks)
    unit: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "exporter": self.exporter, "port": self.port, "path": self.path,
                "scheme": "https" if self.tls else "http", "tls": self.tls, "unit": self.unit}


@dataclass(frozen=True)
class Target:
    job: str
    host: str
    pool: str
    address: str  # the host's mgmt address

    @property
    def instance(self) -> str:
        return self.host

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "host": self.host, "pool": self.pool, "address": self.address}


@dataclass(frozen=True)
class Thresholds:
    ttft_p99_s: float
    latency_p99_s: float
    error_ratio: float
    queue_depth: int
    kv_cache_ratio: float
    gpu_memory_ratio: float
    #: pool -> GPUs each of its hosts must show
    gpus_per_host: dict[str, int]
    #: the shortest certificate renewal window: alert when less than this remains before notAfter
    cert_renew_window_s: int
    #: the audit pipeline is stalled when no line was chained for this long
    audit_stall_s: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class AuditStorePlan:
    retention_days: int
    requests_per_s: float
    max_bytes: int
    port: int = AUDIT_STORE_PORT
    #: the certificate CNs admitted to ship logs: the gateways' host certificates (their FQDNs)
    client_cns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"retention_days": self.retention_days, "requests_per_s": self.requests_per_s,
                "max_bytes": self.max_bytes, "max_use": f"{math.ceil(self.max_bytes / 2**20)}M",
                "port": self.port, "client_cns": list(self.client_cns)}


@dataclass(frozen=True)
class MonitoringPlan:
    servers: tuple[str, ...]
    server_addresses: tuple[str, ...]
    scrape_interval_s: int
    evaluation_interval_s: int
    retention_days: int
    webhooks: tuple[str, ...]
    jobs: tuple[Job, ...]
    targets: tuple[Target, ...]
    thresholds: Thresholds
    audit: AuditStorePlan
    #: exporter -> the version the contract is checked against
    versions: dict[str, str] = field(default_factory=dict)
    #: the monitor hosts' FQDNs: their host certificates' CNs, what the exporters' mTLS frontends admit
    server_fqdns: tuple[str, ...] = ()
    #: where trtllm-serve serves Prometheus text (behind the TLS terminator's metrics frontend)
    trtllm_backend_path: str = "/prometheus/metrics"
    #: jobs whose exporters run in the Kubernetes cluster (``serving.runtime: kubernetes``), with the hosts they
    #: stand for: scraped by the cluster's ServiceMonitors, not by the host Prometheus (not in ``jobs``/``targets``)
    cluster_jobs: tuple[Job, ...] = ()
    cluster_targets: tuple[Target, ...] = ()
    #: the gateway hosts run audit_log and ship their access log to the audit store (the systemd gateway only)
    audit_shipped: bool = True

    def job(self, name: str) -> Job:
        return next(j for j in self.jobs if j.name == name)

    def targets_of(self, job: str) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if t.job == job)

    @property
    def all_jobs(self) -> tuple[Job, ...]:
        """Host and cluster jobs in the canonical order (what the rules can be written for)."""
        names = {j.name for j in (*self.jobs, *self.cluster_jobs)}
        return tuple(j for j in _JOBS if j.name in names)

    def any_target_of(self, job: str) -> Target:
        """A target of ``job``, host or cluster (the rules' promtool fixtures name it)."""
        return next(t for t in (*self.targets, *self.cluster_targets) if t.job == job)

    def ports_by_pool(self) -> dict[str, set[int]]:
        """pool -> the ports the monitor hosts must reach on its hosts' mgmt addresses."""
        out: dict[str, set[int]] = {}
        for t in self.targets:
            if t.host not in self.servers:
                out.setdefault(t.pool, set()).add(self.job(t.job).port)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"servers": list(self.servers), "server_addresses": list(self.server_addresses),
                "scrape_interval_s": self.scrape_interval_s, "evaluation_interval_s": self.evaluation_interval_s,
                "retention_days": self.retention_days, "webhooks": list(self.webhooks),
                "prometheus_port": PROMETHEUS_PORT, "alertmanager_port": ALERTMANAGER_PORT,
                "jobs": [j.to_dict() for j in self.jobs], "targets": [t.to_dict() for t in self.targets],
                "thresholds": self.thresholds.to_dict(), "audit": self.audit.to_dict(),
                "versions": dict(self.versions), "trtllm_backend_path": self.trtllm_backend_path,
                "server_fqdns": list(self.server_fqdns),
                # only on Kubernetes-runtime stacks (a systemd stack's document stays as it was)
                **({"cluster_jobs": [j.name for j in self.cluster_jobs],
                    "cluster_targets": [t.to_dict() for t in self.cluster_targets]} if self.cluster_jobs else {}),
                **({} if self.audit_shipped else {"audit_shipped": False})}


def audit_max_bytes(requests_per_s: float, retention_days: int) -> int:
    """The audit store's size cap: expected lines x bytes per line x headroom (at least 1 GiB)."""
    expected = requests_per_s * 86400 * retention_days * AUDIT_BYTES_PER_LINE * AUDIT_HEADROOM
    return max(2**30, int(math.ceil(expected / 2**20)) * 2**20)


_JOBS = (
    Job("node", "node_exporter", NODE_EXPORTER_PORT, "/metrics", True, "prometheus-node-exporter.service"),
    Job("dcgm", "dcgm-exporter", DCGM_EXPORTER_PORT, "/metrics", True, "nvidia-dcgm-exporter.service"),
    Job("trtllm", "trtllm-serve", TRTLLM_METRICS_PORT, "/metrics", True, "trtllm-serve.service"),
    Job("haproxy", "haproxy", HAPROXY_EXPORTER_PORT, "/metrics", True, "haproxy.service"),
    Job("ceph", "ceph-mgr", CEPH_MGR_EXPORTER_PORT, "/metrics", False, "ceph-mgr.target"),
)


def _jobs(spec: Spec) -> tuple[Job, ...]:
    return _JOBS


def serving_jobs_on_hosts(spec: Spec) -> dict[str, bool]:
    """The serving jobs of ``spec`` -> whether their exporters run on the hosts (``True``: the host Prometheus
    scrapes them) or in the Kubernetes cluster (``False``): ``trtllm`` always, ``haproxy`` with a gateway. The one
    place the monitoring plan, the validation of the monitor flows and the rules learn it (from the serving
    serving plan's rule, :mod:`llmcluster.plan.runtime`)."""
    runtime = spec.serving.runtime
    out = {"trtllm": units_on_hosts(runtime)}
    if spec.serving.gateway is not None:
        out["haproxy"] = gateway_on_hosts(runtime, True)
    return out


def exporter_versions(spec: Spec) -> dict[str, str]:
    """Exporter (a key of the metrics contract) -> the version the contract is checked against."""
    return {"dcgm-exporter": spec.nvidia.dcgm_exporter_version, "trtllm-serve": spec.nvidia.trtllm.version,
            "node_exporter": NODE_EXPORTER_VERSION, "haproxy": HAPROXY_VERSION, "ceph-mgr": CEPH_VERSION,
            "llmcluster": "1"}


def build_monitoring_plan(spec: Spec, ip, serving, pki, storage=None) -> MonitoringPlan | None:
    """The plan of ``spec.monitoring`` (None without it). ``ip``/``serving``/``pki``/``storage``: the other plans
    (the Ceph targets are the storage plan's managers; without it, every host of the Ceph pool)."""
    mon = spec.monitoring
    if mon is None:
        return None
    servers = tuple(h.name for h in ip.hosts_in_pool(mon.pool))
    targets: list[Target] = []
    for h in ip.hosts:
        targets.append(Target("node", h.name, h.pool, h.mgmt_ip))
    for h in ip.hosts:
        if spec.pools[h.pool].gpu is not None:
            targets.append(Target("dcgm", h.name, h.pool, h.mgmt_ip))
    on_hosts = serving_jobs_on_hosts(spec)
    cluster_targets: list[Target] = []
    for head in serving.heads:
        h = ip.host(head)
        (targets if on_hosts["trtllm"] else cluster_targets).append(Target("trtllm", h.name, h.pool, h.mgmt_ip))
    gw = spec.serving.gateway
    if gw is not None:
        for h in ip.hosts_in_pool(gw.pool):
            (targets if on_hosts["haproxy"] else cluster_targets).append(Target("haproxy", h.name, h.pool, h.mgmt_ip))
    ceph = spec.storage.ceph
    if ceph is not None:
        mgrs = getattr(getattr(storage, "ceph", None), "mgrs", None)
        for h in ip.hosts_in_pool(ceph.pool):
            if mgrs is None or h.name in mgrs:
                targets.append(Target("ceph", h.name, h.pool, h.mgmt_ip))
    jobs = tuple(j for j in _jobs(spec) if any(t.job == j.name for t in targets))
    slo = mon.slo
    renew = [c.early_renewal_hours for c in pki.leaves] if getattr(pki, "leaves", None) else []
    thresholds = Thresholds(
        ttft_p99_s=float(slo.ttft_p99_s), latency_p99_s=float(slo.latency_p99_s), error_ratio=float(slo.error_ratio),
        queue_depth=slo.queue_depth or 2 * spec.serving.concurrency,
        kv_cache_ratio=float(slo.kv_cache_ratio), gpu_memory_ratio=float(slo.gpu_memory_ratio),
        gpus_per_host={name: p.gpu.count for name, p in spec.pools.items() if p.gpu is not None and p.count > 0},
        cert_renew_window_s=int(min(renew) * 3600) if renew else 30 * 86400,
        audit_stall_s=max(900, 10 * mon.scrape_interval_s),
    )
    audit = AuditStorePlan(retention_days=mon.audit_retention_days, requests_per_s=float(mon.audit_requests_per_s),
                           max_bytes=audit_max_bytes(float(mon.audit_requests_per_s), mon.audit_retention_days),
                           client_cns=tuple(h.fqdn for h in ip.hosts_in_pool(gw.pool)) if gw is not None else ())
    versions = exporter_versions(spec)
    return MonitoringPlan(
        servers=servers, server_addresses=tuple(ip.host(s).mgmt_ip for s in servers),
        scrape_interval_s=mon.scrape_interval_s, evaluation_interval_s=mon.evaluation_interval_s,
        retention_days=mon.retention_days, webhooks=tuple(mon.webhooks), jobs=jobs, targets=tuple(targets),
        thresholds=thresholds, audit=audit, versions=versions,
        trtllm_backend_path=trtllm_metrics_path(spec.nvidia.trtllm.version),
        server_fqdns=tuple(ip.host(s).fqdn for s in servers),
        cluster_jobs=tuple(j for j in _jobs(spec) if any(t.job == j.name for t in cluster_targets)),
        cluster_targets=tuple(cluster_targets), audit_shipped=on_hosts.get("haproxy", False))


def trtllm_metrics_path(version: str) -> str:
    """trtllm-serve's Prometheus endpoint: ``/prometheus/metrics`` from the release with the collector on;
    earlier releases answer ``/metrics`` with JSON iteration statistics (the lab's simulated server, pinned
    at 1.0.0, serves Prometheus text there)."""
    from llmcluster.monitoring.contract import load_contract, version_key

    since = load_contract().metrics["trtllm_time_to_first_token_seconds_bucket"].since
    return "/prometheus/metrics" if version_key(version) >= version_key(since) else "/metrics"


def monitoring_plan(plan) -> MonitoringPlan | None:
    """The monitoring plan of a built :class:`~llmcluster.plan.build.Plan` (computed once per plan)."""
    cached = plan.__dict__.get("_monitoring")
    if cached is None and "_monitoring" not in plan.__dict__:
        cached = build_monitoring_plan(plan.spec, plan.ip, plan.serving, plan.pki, plan.storage)
        object.__setattr__(plan, "_monitoring", cached)
    return cached


def required_ports(spec: Spec) -> dict[str, dict[int, str]]:
    """pool -> {port: job} the monitor hosts scrape on that pool's mgmt addresses (from the spec alone, so
    that validation can check the zone policy before any other plan exists)."""
    mon = spec.monitoring
    if mon is None:
        return {}
    jobs = {j.name: j for j in _jobs(spec)}
    out: dict[str, dict[int, str]] = {}

    def add(pool: str, job: str) -> None:
        if pool != mon.pool and spec.pools.get(pool) is not None and spec.pools[pool].count > 0:
            out.setdefault(pool, {})[jobs[job].port] = job

    for name, p in spec.pools.items():
        add(name, "node")
        if p.gpu is not None:
            add(name, "dcgm")
    on_hosts = serving_jobs_on_hosts(spec)
    if on_hosts["trtllm"]:
        add(spec.serving.pool, "trtllm")
    if on_hosts.get("haproxy"):
        add(spec.serving.gateway.pool, "haproxy")
    if spec.storage.ceph is not None:
        add(spec.storage.ceph.pool, "ceph")
    return out


#: CloudWatch Logs accepts only these retention periods (days).
CLOUDWATCH_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                             2922, 3288, 3653)


@dataclass(frozen=True)
class AwsAuditPlan:
    """The audit trail on AWS: a CloudWatch log group (KMS, retention >= 180 days) and an S3 archive
    bucket with Object Lock (COMPLIANCE, the same days) that nobody can shorten or delete early."""

    log_group: str
    retention_days: int  # a CloudWatch-valid period >= the spec's retention
    archive_prefix: str
    lock_days: int
    lock_mode: str = "COMPLIANCE"
    # What the gateways' shipper (roles/audit_cloudwatch) needs: the region its requests are signed for,
    # the endpoints (the stack's logs interface endpoint answers the regional name through private DNS;
    # S3 is reached through the gateway endpoint), the archive's key prefix and how often a segment is sealed.
    region: str = ""
    archive_key_prefix: str = "audit/"
    archive_period: str = "hour"

    @property
    def logs_endpoint(self) -> str:
        return f"https://logs.{self.region}.amazonaws.com"

    @property
    def s3_endpoint(self) -> str:
        return f"https://s3.{self.region}.amazonaws.com"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def to_vars(self) -> dict[str, Any]:
        """The inventory's ``llmcluster_aws_audit`` (the archive bucket's name, which AWS completes from the
        prefix, comes from the program as the gateways' ``llmcluster_aws_audit_archive_bucket``)."""
        return {"log_group": self.log_group, "region": self.region, "logs_endpoint": self.logs_endpoint,
                "s3_endpoint": self.s3_endpoint, "archive_key_prefix": self.archive_key_prefix,
                "archive_period": self.archive_period, "lock_days": self.lock_days}


def aws_audit_plan(spec: Spec) -> AwsAuditPlan | None:
    """None unless the stack runs on AWS with a gateway (whose access log is the audit trail)."""
    gw = spec.serving.gateway
    if spec.platform != "aws" or gw is None:
        return None
    days = max(MIN_AUDIT_RETENTION_DAYS, spec.monitoring.audit_retention_days if spec.monitoring else 0,
               gw.audit.retention_days)
    cw = next(d for d in CLOUDWATCH_RETENTION_DAYS if d >= days) if days <= CLOUDWATCH_RETENTION_DAYS[-1] else 3653
    prefix = f"llmcluster-{spec.stack}-audit-".lower().replace("_", "-")[:37]
    return AwsAuditPlan(log_group=f"/llmcluster/{spec.stack}/audit", retention_days=cw, archive_prefix=prefix,
                        lock_days=days, region=spec.aws.region if spec.aws else "")
