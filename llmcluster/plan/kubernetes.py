"""The Kubernetes serving layer as plain manifests (pure: no Pulumi, no I/O).

Built from the spec's ``kubernetes`` section and the plans other layers already derived: the serving
plan (replica layout, TP/PP/EP, ``trtllm-serve`` arguments), the capacity plan, the storage plan (the
model volume and its load time), the firewall plan (zones, flows, the matrix) and the gateway plan.
Texts that come from files (the gateway and TLS terminator configurations rendered from the roles'
templates, the model verifier's source) are handed in as :class:`Texts` by
:mod:`llmcluster.render.kubernetes`, so this module reads nothing.

What it decides (docs/kubernetes.md):

* **namespace** with Pod Security ``restricted`` enforced (and audited, warned) at the target version;
* **serving workload**: one node per replica -> a ``Deployment``; several -> a ``LeaderWorkerSet``
  whose group size is the plan's nodes per replica; the leader's command bridges the LWS environment
  (``LWS_LEADER_ADDRESS``, ``LWS_GROUP_SIZE``, ``LWS_WORKER_INDEX``) to ``mpirun -H`` and
  ``trtllm-llmapi-launch`` (:func:`leader_script`), workers run sshd and wait;
* every pod: non-root, read-only root filesystem, ``drop: [ALL]``, no privilege escalation, seccomp
  ``RuntimeDefault``, resource requests == limits (GPUs from the plan), anti-affinity across nodes,
  an init container that checks the manifest's sha256 against the pin and verifies the model tree
  with the model store's verifier, startup/readiness/liveness probes on ``/health`` with a startup
  budget from the storage plan's load time; rolling updates ``maxUnavailable 0`` / ``maxSurge 1``;
* **availability**: a group-aware PodDisruptionBudget (:func:`pdb_min_available`), autoscaling on
  queue depth (KEDA ``ScaledObject`` or an HPA), never below one replica;
* **gateway**: the gateway role's HAProxy configuration as a Deployment (certificates as Secrets the
  Pulumi component fills from the PKI), in front of the serving Service;
* **NetworkPolicies** from the same flows as the host firewalls: default deny (ingress and egress),
  then one policy per (destination zone with pods, flow); :func:`netpol_matrix` evaluates the
  policies themselves and :func:`firewall_pod_matrix` the firewall plan, so a test proves them equal.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping
from typing import Any

import netaddr

from llmcluster.plan.capacity import trtllm_serve_command
from llmcluster.plan.firewall import FirewallPlan, Service, parse_port_spec
from llmcluster.plan.serving import model_manifest_path

#: API groups and versions of the objects rendered (kubernetes-validate checks the built-in ones).
LWS_API = "leaderworkerset.x-k8s.io/v1"
KEDA_API = "keda.sh/v1alpha1"
PROMETHEUS_API = "monitoring.coreos.com/v1"
#: Metrics frontends in the pods (the roles' templates, as on hosts) and where the GPU Operator's dcgm-exporter is.
GATEWAY_METRICS_PORT = 8405
SERVING_METRICS_PORT = 9401
TRTLLM_METRICS_PATH = "/prometheus/metrics"
GPU_OPERATOR_NAMESPACE = "gpu-operator"
DCGM_SELECTOR = {"app": "nvidia-dcgm-exporter"}
DCGM_PORT_NAME = "gpu-metrics"
METRICS_SECRET = "metrics-client-tls"
METRICS_FLOW = "platform-metrics"
#: Labels every object carries; the component label selects pods in policies and Services.
APP = "app.kubernetes.io/name"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
ZONE_LABEL = "llmcluster.io/zone"
#: LWS's labels on its pods.
LWS_NAME = "leaderworkerset.sigs.k8s.io/name"
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"
#: Non-root identity of every container (a high UID: no clash with host users, checkov CKV_K8S_40).
UID = 10001
#: Where things are mounted in the serving pods.
VERIFIER_DIR = "/opt/llmcluster/verifier"
VERIFIER_FILE = "model_verify.py"
SERVING_CONFIG_DIR = "/etc/llmcluster/serving"
EXTRA_OPTIONS_FILE = f"{SERVING_CONFIG_DIR}/extra-llm-api-options.yaml"
TLS_DIR = "/etc/haproxy/certs"
CONFIG_DIR = "/etc/haproxy/config"
MPI_DIR = "/etc/llmcluster/mpi"
#: sshd of the LWS workers (non-root, so an unprivileged port), what the leader's mpirun connects to.
MPI_SSH_PORT = 2222
#: Probe settings: the startup budget is at least this, else three load times plus this margin.
STARTUP_PERIOD_S = 10
STARTUP_MIN_S = 600
STARTUP_MARGIN_S = 300
#: Load time assumed when the plan has none (a PVC of unknown bandwidth): 30 minutes.
DEFAULT_LOAD_S = 1800.0
#: Platform flows of the pods (not of the spec): DNS to the cluster's resolver, and the LWS group's own
#: traffic (mpirun's ssh, MPI and NCCL between the pods of one group). Not in the zone matrix.
DNS_FLOW = "platform-dns"
GROUP_FLOW = "platform-lws-group"

#: Queries of the autoscaling metrics (per replica: the scaler divides by the target), ``{sel}`` standing for the
#: label matchers that pick the namespace (:func:`metric_query`). Every metric they use is in the metrics contract
#: (llmcluster/monitoring/contract.yaml; a test fails otherwise). gateway_queue: the requests the gateway has in
#: flight to the serving backend (``inference``) plus those waiting for a slot.
METRIC_QUERIES = {
    "trtllm_num_requests_waiting": 'sum(trtllm_num_requests_waiting{{{sel}}})',
    "gateway_queue": ('sum(haproxy_backend_current_sessions{{{sel},proxy="inference"}})'
                      ' + sum(haproxy_backend_current_queue{{{sel},proxy="inference"}})'),
    "kv_cache_utilization": 'avg(trtllm_kv_cache_utilization{{{sel}}}) * 100',
}
#: The series the metrics adapter discovers each metric by (its ``seriesQuery``): a metric of its query, with the
#: query's fixed matchers.
METRIC_SERIES = {
    "trtllm_num_requests_waiting": ("trtllm_num_requests_waiting", ""),
    "gateway_queue": ("haproxy_backend_current_sessions", 'proxy="inference"'),
    "kv_cache_utilization": ("trtllm_kv_cache_utilization", ""),
}
#: The HPA path (``autoscaling.engine: hpa``): the ConfigMap holding prometheus-adapter's configuration (key
#: ``config.yaml``, ``externalRules``), in the Prometheus namespace, for the adapter's ``--config``.
ADAPTER_CONFIGMAP = "llmcluster-metrics-adapter"
ADAPTER_CONFIG_KEY = "config.yaml"


def metric_query(metric: str, selector: str) -> str:
    """The PromQL of autoscaling metric ``metric`` with ``selector`` as its label matchers: ``namespace="llm"``
    (KEDA's trigger) or prometheus-adapter's ``<<.LabelMatchers>>`` (which carries the HPA's namespace)."""
    return METRIC_QUERIES[metric].format(sel=selector)


def adapter_rule(metric: str) -> dict[str, Any]:
    """prometheus-adapter's external rule for ``metric`` (docs/config.md, docs/externalmetrics.md of the adapter):
    discovery (``seriesQuery``), association (``resources``: the ``namespace`` label is the namespace resource, so
    the adapter adds the HPA's namespace to ``<<.LabelMatchers>>``), naming (``name``: the series renamed to the
    metric the HPA names) and querying (``metricsQuery``: the same query as KEDA's trigger)."""
    series, fixed = METRIC_SERIES[metric]
    matchers = ",".join(m for m in ('namespace!=""', fixed) if m)
    return {"seriesQuery": f"{series}{{{matchers}}}",
            "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
            "name": {"matches": f"^{series}$", "as": metric},
            "metricsQuery": metric_query(metric, "<<.LabelMatchers>>")}


def autoscaling_metric(spec) -> str:
    """The autoscaler's metric: the spec's, else ``gateway_queue`` with a gateway (HAProxy's exporter: the pinned
    trtllm-serve 1.0.0 exports no Prometheus metrics), else ``trtllm_num_requests_waiting``."""
    a = spec.kubernetes.autoscaling
    if a.metric is not None:
        return a.metric
    return "gateway_queue" if spec.serving.gateway is not None else "trtllm_num_requests_waiting"


def autoscaling_metric_gaps(spec) -> list[str]:
    """Metrics of the autoscaler's query that the pinned exporter versions do not serve (the contract's ranges)."""
    from llmcluster.monitoring.contract import gaps
    from llmcluster.plan.monitoring import exporter_versions

    query = metric_query(autoscaling_metric(spec), f'namespace="{spec.kubernetes.namespace}"')
    return gaps([query], exporter_versions(spec))


@dataclass(frozen=True)
class Texts:
    """File-derived texts the manifests carry (rendered by llmcluster.render.kubernetes)."""

    verifier_source: str
    terminator_cfg: str
    gateway_cfg: str | None = None
    clients_map: str | None = None


@dataclass(frozen=True)
class SecretSpec:
    """A Secret the Pulumi component fills (values never leave the program as plain text)."""

    name: str
    keys: tuple[str, ...]
    purpose: str


@dataclass(frozen=True)
class KubernetesPlan:
    namespace: str
    version: str
    workload: str  # "Deployment" | "LeaderWorkerSet"
    group_size: int
    replicas: int
    pin: dict[str, str]
    objects: tuple[dict[str, Any], ...]
    secrets: tuple[SecretSpec, ...]
    warnings: tuple[str, ...] = ()
    #: zone of the pods of each component (serving, gateway)
    pod_zones: dict[str, str] = field(default_factory=dict)
    gpu_operator_values: dict[str, Any] = field(default_factory=dict)
    lws_chart_version: str = ""
    gpu_operator_chart_version: str = ""

    def by_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        raise KeyError(f"{kind}/{name}")

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "version": self.version, "workload": self.workload,
                "group_size": self.group_size, "replicas": self.replicas, "pin": dict(self.pin),
                "secrets": [{"name": s.name, "keys": list(s.keys), "purpose": s.purpose} for s in self.secrets],
                "warnings": list(self.warnings), "objects": [f"{o['kind']}/{o['metadata']['name']}"
                                                              for o in self.objects]}


#: Pod-template annotation: sha256 of the revocation record behind the Secrets' crl.pem. HAProxy (the gateway, the
#: TLS terminator) reads crl-file only when it starts, and a changed Secret is not a changed pod: a new value rolls
#: the pods that mount a CRL (rolling update, maxUnavailable 0), so a revocation takes effect at ``pulumi up``.
CRL_ANNOTATION = "llmcluster.io/crl-revocations-sha256"
#: The Secrets that carry crl.pem (components/kubernetes.py ``_secrets``).
CRL_SECRETS = frozenset({"serving-tls", "gateway-tls"})


def _pod_templates(o: dict[str, Any]) -> list[dict[str, Any]]:
    spec = o.get("spec", {})
    if o["kind"] == "Deployment":
        return [spec["template"]]
    if o["kind"] == "LeaderWorkerSet":
        lwt = spec["leaderWorkerTemplate"]
        return [t for t in (lwt.get("leaderTemplate"), lwt.get("workerTemplate")) if t is not None]
    return []


def with_crl_annotation(o: dict[str, Any], digest: str | None) -> dict[str, Any]:
    """``o`` with :data:`CRL_ANNOTATION` = ``digest`` on every pod template that mounts a CRL Secret (a copy; ``o``
    itself when there is nothing to annotate or no digest)."""
    import copy

    if not digest or not any(v.get("secret", {}).get("secretName") in CRL_SECRETS
                             for t in _pod_templates(o) for v in t["spec"].get("volumes", [])):
        return o
    out = copy.deepcopy(o)
    for t in _pod_templates(out):
        if any(v.get("secret", {}).get("secretName") in CRL_SECRETS for v in t["spec"].get("volumes", [])):
            t["metadata"].setdefault("annotations", {})[CRL_ANNOTATION] = digest
    return out


#: Pod-template annotation: sha256 of the certificate material (leaf certificates and chain, never a key) of the
#: Secrets the template mounts. A changed Secret is not a changed pod, and HAProxy and the engine read their
#: certificates only when they start: a re-issued leaf changes the value and rolls exactly the pods that mount it
#: (rolling update, maxUnavailable 0); the same certificates give the same value, so an unchanged stack does not roll.
CERT_ANNOTATION = "llmcluster.io/tls-certificates-sha256"
#: The Secrets that carry certificates (components/kubernetes.py ``_secrets``); mpi-ssh carries SSH keys only.
CERT_SECRETS = frozenset({"serving-tls", "gateway-tls", METRICS_SECRET})


def certificate_digest(*pems: str) -> str:
    """sha256 (hex) over certificate PEMs, in order: the value of :data:`CERT_ANNOTATION` for one Secret. Callers pass
    certificates only (a new key always comes with a new certificate), so no key material reaches a pod template."""
    import hashlib

    h = hashlib.sha256()
    for pem in pems:
        if "PRIVATE KEY-----" in pem:
            raise ValueError("certificate_digest: a private key is not certificate material")
        h.update(pem.strip().encode() + b"\n")
    return h.hexdigest()


def combined_digest(named: Mapping[str, str]) -> str:
    """:data:`CERT_ANNOTATION` of a template that mounts several certificate Secrets: sha256 of the sorted
    ``secret=digest`` lines (one Secret: its digest itself)."""
    import hashlib

    if len(named) == 1:
        return next(iter(named.values()))
    return hashlib.sha256("".join(f"{n}={d}\n" for n, d in sorted(named.items())).encode()).hexdigest()


def template_secrets(t: dict[str, Any]) -> tuple[str, ...]:
    """The Secrets a pod template mounts (secret volumes and projected secret sources), sorted."""
    names = set()
    for v in t.get("spec", {}).get("volumes", []):
        if "secret" in v:
            names.add(v["secret"]["secretName"])
        for src in v.get("projected", {}).get("sources", []):
            if "secret" in src:
                names.add(src["secret"]["name"])
    return tuple(sorted(names))


def with_template_annotation(o: dict[str, Any], key: str,
                             value_for: Callable[[tuple[str, ...]], Any | None]) -> dict[str, Any]:
    """``o`` with annotation ``key`` = ``value_for(secrets the template mounts)`` on every pod template where that is
    not None (a copy; ``o`` itself when no template gets one). The value may be a Pulumi Output: the plan stays pure,
    the component passes the Outputs."""
    import copy

    values = [value_for(template_secrets(t)) for t in _pod_templates(o)]
    if all(v is None for v in values):
        return o
    out = copy.deepcopy(o)
    for t, v in zip(_pod_templates(out), values, strict=True):
        if v is not None:
            t["metadata"].setdefault("annotations", {})[key] = v
    return out


def metrics_client_cn(namespace: str) -> str:
    """CN of the in-cluster scraper's client certificate (the metrics frontends admit only it)."""
    return f"prometheus.{namespace}.metrics.llmcluster"


def _relabel(job: str, pool: str) -> list[dict[str, Any]]:
    """The labels the host scrape configuration gives every target (job, instance = host, host, pool), so that the
    same rules read the cluster's series."""
    node = ["__meta_kubernetes_pod_node_name"]
    return [{"action": "replace", "targetLabel": "job", "replacement": job},
            {"action": "replace", "sourceLabels": node, "targetLabel": "host"},
            {"action": "replace", "sourceLabels": node, "targetLabel": "instance"},
            {"action": "replace", "targetLabel": "pool", "replacement": pool}]


def _tls_endpoint(job: str, pool: str, server_name: str, interval_s: int, path: str = "/metrics") -> dict[str, Any]:
    sec = {"name": METRICS_SECRET}
    return {"port": "metrics", "scheme": "https", "path": path, "interval": f"{interval_s}s",
            "tlsConfig": {"ca": {"secret": {**sec, "key": "ca-chain.pem"}},
                          "cert": {"secret": {**sec, "key": "tls.crt"}},
                          "keySecret": {**sec, "key": "tls.key"}, "serverName": server_name,
                          "insecureSkipVerify": False},
            "relabelings": _relabel(job, pool)}


def monitoring_objects(plan, ns: str, gateway_pool: str | None, dcgm: bool) -> list[dict[str, Any]]:
    """ServiceMonitors (serving pods, gateway, dcgm-exporter) and the PrometheusRule (the host rules that read what
    the cluster scrapes; none without the spec's monitoring section, whose SLOs set the thresholds)."""
    from llmcluster.monitoring.rules import cluster_rule_groups
    from llmcluster.plan.monitoring import monitoring_plan

    sp = plan.serving
    mp = monitoring_plan(plan)
    interval = mp.scrape_interval_s if mp is not None else 15
    out: list[dict[str, Any]] = []
    jobs = {"trtllm"}
    out.append({"apiVersion": PROMETHEUS_API, "kind": "ServiceMonitor", "metadata": _meta("serving", ns, "serving"),
                "spec": {"selector": {"matchLabels": {APP: "llmcluster", COMPONENT: "serving"}},
                         "endpoints": [_tls_endpoint("trtllm", sp.pool, f"serving.{ns}.svc.cluster.local", interval)]}})
    if gateway_pool is not None:
        jobs.add("haproxy")
        out.append({"apiVersion": PROMETHEUS_API, "kind": "ServiceMonitor", "metadata": _meta("gateway", ns, "gateway"),
                    "spec": {"selector": {"matchLabels": {APP: "llmcluster", COMPONENT: "gateway"}},
                             "endpoints": [_tls_endpoint("haproxy", gateway_pool,
                                                         plan.pki.leaf("gateway-api").dns_names[0], interval)]}})
    if dcgm:
        jobs.add("dcgm")
        out.append({"apiVersion": PROMETHEUS_API, "kind": "ServiceMonitor",
                    "metadata": _meta("dcgm-exporter", ns, "monitoring"),
                    "spec": {"namespaceSelector": {"matchNames": [GPU_OPERATOR_NAMESPACE]},
                             "selector": {"matchLabels": dict(DCGM_SELECTOR)},
                             "endpoints": [{"port": DCGM_PORT_NAME, "scheme": "http", "path": "/metrics",
                                            "interval": f"{interval}s", "relabelings": _relabel("dcgm", sp.pool)}]}})
    if mp is not None:
        groups = cluster_rule_groups(mp, jobs)
        if groups:
            out.append({"apiVersion": PROMETHEUS_API, "kind": "PrometheusRule",
                        "metadata": _meta("llmcluster-rules", ns, "monitoring"), "spec": {"groups": groups}})
    return out


# --------------------------------------------------------------------------- arithmetic


def pdb_min_available(replicas: int, group_size: int) -> int | None:
    """Pods that must stay up: every replica but one, whole groups (``(replicas - 1) x group size``).

    None for one replica: a budget of 0 protects nothing and a budget of 1 blocks every node drain, so
    none is made (with a warning)."""
    if replicas < 1 or group_size < 1:
        raise ValueError(f"replicas {replicas} and group size {group_size} must be at least 1")
    if replicas == 1:
        return None
    return (replicas - 1) * group_size


def startup_budget_s(load_time_s: float | None) -> int:
    """Seconds the startup probe waits: three load times plus a margin, at least STARTUP_MIN_S."""
    load = DEFAULT_LOAD_S if load_time_s is None else load_time_s
    return max(STARTUP_MIN_S, math.ceil(3 * load + STARTUP_MARGIN_S))


def leader_script(*, nodes: int, gpus_per_node: int, ranks: int, serve_argv: list[str]) -> str:
    """The LWS leader's shell command: LWS environment -> mpirun host list -> trtllm-llmapi-launch.

    LWS names the leader ``<set>-<group>`` and its workers ``<set>-<group>-<index>`` (index 1..size-1),
    all under the set's headless Service: ``LWS_LEADER_ADDRESS`` is ``<set>-<group>.<set>.<namespace>``,
    so each worker's address is the leader's first label with ``-<index>`` appended, same domain. The
    script refuses to run anywhere but on the leader (``LWS_WORKER_INDEX`` 0) or with a group size the
    plan did not size for."""
    serve = " ".join(shlex.quote(a) for a in serve_argv)
    return "\n".join([
        "set -eu",
        ': "${LWS_LEADER_ADDRESS:?not set: run by the LeaderWorkerSet controller}"',
        ': "${LWS_GROUP_SIZE:?not set}" "${LWS_WORKER_INDEX:?not set}"',
        'if [ "$LWS_WORKER_INDEX" != 0 ]; then echo "leader command on worker $LWS_WORKER_INDEX" >&2; exit 64; fi',
        f'if [ "$LWS_GROUP_SIZE" != {nodes} ]; then '
        f'echo "LWS_GROUP_SIZE $LWS_GROUP_SIZE: the plan sized {nodes} nodes per replica" >&2; exit 64; fi',
        'pod="${LWS_LEADER_ADDRESS%%.*}"',
        'domain="${LWS_LEADER_ADDRESS#*.}"',
        f'hosts="$LWS_LEADER_ADDRESS:{gpus_per_node}"',
        "i=1",
        'while [ "$i" -lt "$LWS_GROUP_SIZE" ]; do',
        f'  hosts="$hosts,$pod-$i.$domain:{gpus_per_node}"',
        "  i=$((i + 1))",
        "done",
        f"exec mpirun -np {ranks} -H \"$hosts\" --bind-to none "
        f"--mca plm_rsh_args '-p {MPI_SSH_PORT} -i {MPI_DIR}/id_ed25519 -o UserKnownHostsFile={MPI_DIR}/known_hosts' "
        f"-x NCCL_SOCKET_IFNAME -x NCCL_DEBUG trtllm-llmapi-launch {serve}",
    ]) + "\n"


# --------------------------------------------------------------------------- builders


def _meta(name: str, ns: str | None, component: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {APP: "llmcluster", PART_OF: "llmcluster", COMPONENT: component, **(extra or {})}
    m: dict[str, Any] = {"name": name, "labels": labels}
    if ns is not None:
        m["namespace"] = ns
    return m


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "runAsUser": UID, "runAsGroup": UID, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def _pod_security(sysctls: list[dict[str, str]] | None = None) -> dict[str, Any]:
    sc: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                          "seccompProfile": {"type": "RuntimeDefault"}}
    if sysctls:
        sc["sysctls"] = sysctls
    return sc


def _anti_affinity(selector: dict[str, str]) -> dict[str, Any]:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": dict(selector)}, "topologyKey": "kubernetes.io/hostname"}]}}


def _health_probe(port: int, path: str = "/health") -> dict[str, Any]:
    code = (f"import sys,urllib.request;sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{port}{path}',"
            "timeout=3).status==200 else 1)")
    return {"exec": {"command": ["python3", "-c", code]}}


def _limits(cpu: str, memory: str, gpus: int = 0, ephemeral: str = "1Gi") -> dict[str, Any]:
    lim = {"cpu": cpu, "memory": memory, "ephemeral-storage": ephemeral}
    if gpus:
        lim["nvidia.com/gpu"] = str(gpus)
    return {"requests": dict(lim), "limits": dict(lim)}


def _zone_of(spec, pool: str) -> str | None:
    return next((z for z, zone in spec.zones.items() if pool in zone.pools), None)


def build_kubernetes_plan(plan, texts: Texts) -> KubernetesPlan:
    """The manifests of ``plan`` (a :class:`~llmcluster.plan.build.Plan` with ``serving.runtime`` kubernetes)."""
    spec = plan.spec
    k = spec.kubernetes
    if k is None:
        raise ValueError("kubernetes: the spec has no kubernetes section")
    sp, cap = plan.serving, plan.capacity
    ns = k.namespace
    pin = k.pin
    warnings: list[str] = []
    group = sp.nodes
    multi = group > 1
    pool_hosts = len(plan.ip.hosts_in_pool(sp.pool))
    replicas = len(sp.replicas)
    a = k.autoscaling
    min_r = max(1, a.min_replicas if a.min_replicas is not None else replicas)
    max_r = a.max_replicas if a.max_replicas is not None else max(min_r, pool_hosts // group)
    serving_zone = _zone_of(spec, sp.pool) or "serving"
    gw = sp.gateway
    gateway_zone = _zone_of(spec, gw.pool) if gw is not None else None
    objects: list[dict[str, Any]] = []
    secrets: list[SecretSpec] = []

    # --- namespace: Pod Security restricted, enforced at the target version
    pss = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "audit", "warn")}
    pss.update({f"pod-security.kubernetes.io/{m}-version": f"v{k.version}" for m in ("enforce", "audit", "warn")})
    objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, None, "namespace", pss)})

    # --- configuration: the verifier, the LLM-API options, the TLS terminator
    import yaml  # a pure dump, no I/O

    objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("model-verifier", ns, "serving"),
                    "data": {VERIFIER_FILE: texts.verifier_source}})
    objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("serving-config", ns, "serving"),
                    "data": {"extra-llm-api-options.yaml": yaml.safe_dump(sp.extra_llm_api_options, sort_keys=True),
                             "serving-tls.cfg": texts.terminator_cfg}})
    secrets.append(SecretSpec("serving-tls", ("serving-tls.pem", "ca-chain.pem", "crl.pem"),
                              "the serving Service's certificate + key (PKI intermediate), the CA chain, the CRL"))

    # --- the serving pods
    selector = {APP: "llmcluster", COMPONENT: "serving"}
    pod_labels = {**selector, ZONE_LABEL: serving_zone, "llmcluster.io/model": sp.model}
    manifest = model_manifest_path(sp.model)
    model_dir = spec.storage.model_dir.rstrip("/")
    manifest_dir = manifest.rsplit("/", 1)[0]
    volumes: list[dict[str, Any]] = []
    if k.model_volume == "host":
        volumes.append({"name": "models", "hostPath": {"path": model_dir, "type": "Directory"}})
        volumes.append({"name": "manifests", "hostPath": {"path": manifest_dir, "type": "Directory"}})
        manifest_mount = {"name": "manifests", "mountPath": manifest_dir, "readOnly": True}
        load = plan.storage.raid.load_time_s if plan.storage.raid is not None else None
    else:
        size_gib = max(1, math.ceil(cap.weights_bytes * 1.2 / 2**30))
        objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta("models", ns, "serving"),
                        "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": k.storage_class,
                                 "resources": {"requests": {"storage": f"{size_gib}Gi"}}}})
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}})
        manifest_mount = {"name": "models", "mountPath": manifest_dir, "subPath": "manifests", "readOnly": True}
        load = None
        warnings.append("kubernetes: the model volume is a PVC of unknown bandwidth: the startup budget assumes "
                        f"a {int(DEFAULT_LOAD_S)} s load")
    volumes += [
        {"name": "verifier", "configMap": {"name": "model-verifier", "defaultMode": 0o444}},
        {"name": "serving-config", "configMap": {"name": "serving-config", "defaultMode": 0o444}},
        {"name": "serving-tls", "secret": {"secretName": "serving-tls", "defaultMode": 0o440}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}},
        {"name": "haproxy-run", "emptyDir": {"sizeLimit": "16Mi"}},
    ]
    model_mount = {"name": "models", "mountPath": model_dir, "readOnly": True}
    verify_cmd = (f"echo '{pin.manifest_sha256}  {manifest}' | sha256sum -c - && "
                  f"exec python3 {VERIFIER_DIR}/{VERIFIER_FILE} verify {shlex.quote(sp.model_path)} "
                  f"--manifest {shlex.quote(manifest)}")
    init = {"name": "verify-model", "image": pin.image, "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", verify_cmd], "securityContext": _container_security(),
            "resources": _limits("4", "8Gi"),
            "volumeMounts": [model_mount, manifest_mount,
                             {"name": "verifier", "mountPath": VERIFIER_DIR, "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}]}
    serve_argv = trtllm_serve_command(cap, sp.model_path, "127.0.0.1", sp.backend_port, EXTRA_OPTIONS_FILE)
    budget = startup_budget_s(load)
    mem_gib = max(64, math.ceil(cap.weights_bytes / max(1, cap.nodes) * 1.25 / 2**30))
    cpu = str(max(8, 8 * cap.gpus_per_node))
    common_mounts = [model_mount, {"name": "serving-config", "mountPath": SERVING_CONFIG_DIR, "readOnly": True},
                     {"name": "tmp", "mountPath": "/tmp"}, {"name": "shm", "mountPath": "/dev/shm"}]
    probe = _health_probe(sp.backend_port)
    serving_container = {
        "name": "trtllm", "image": pin.image, "imagePullPolicy": "IfNotPresent",
        "securityContext": _container_security(), "resources": _limits(cpu, f"{mem_gib}Gi", cap.gpus_per_node, "8Gi"),
        "volumeMounts": list(common_mounts),
        "env": [{"name": "HOME", "value": "/tmp"}],
        "startupProbe": {**probe, "periodSeconds": STARTUP_PERIOD_S, "timeoutSeconds": 5,
                         "failureThreshold": math.ceil(budget / STARTUP_PERIOD_S)},
        "readinessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3},
    }
    terminator = {
        "name": "serving-tls", "image": k.gateway_image or pin.image, "imagePullPolicy": "IfNotPresent",
        "command": ["haproxy", "-W", "-db", "-f", f"{SERVING_CONFIG_DIR}/serving-tls.cfg"],
        "ports": [{"name": "https", "containerPort": sp.port, "protocol": "TCP"}] + (
            [{"name": "metrics", "containerPort": SERVING_METRICS_PORT, "protocol": "TCP"}]
            if k.prometheus_operator else []),
        "securityContext": _container_security(), "resources": _limits("2", "1Gi"),
        "readinessProbe": {"tcpSocket": {"port": sp.port}, "periodSeconds": 10},
        "livenessProbe": {"tcpSocket": {"port": sp.port}, "periodSeconds": 30},
        "volumeMounts": [{"name": "serving-config", "mountPath": SERVING_CONFIG_DIR, "readOnly": True},
                         {"name": "serving-tls", "mountPath": TLS_DIR, "readOnly": True},
                         {"name": "haproxy-run", "mountPath": "/run/haproxy"}]}
    node_selector = dict(spec.pools[sp.pool].labels) or None
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

    def pod_spec(containers: list[dict[str, Any]], anti: dict[str, str], extra_volumes=()) -> dict[str, Any]:
        ps: dict[str, Any] = {"securityContext": _pod_security(), "automountServiceAccountToken": False,
                              "enableServiceLinks": False, "initContainers": [init], "containers": containers,
                              "volumes": volumes + list(extra_volumes), "affinity": _anti_affinity(anti),
                              "tolerations": tolerations, "terminationGracePeriodSeconds": 120}
        if node_selector:
            ps["nodeSelector"] = node_selector
        return ps

    if not multi:
        workload = "Deployment"
        serving_container["command"] = serve_argv
        objects.append({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("serving", ns, "serving"),
            "spec": {"replicas": min_r, "selector": {"matchLabels": dict(selector)},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                     "template": {"metadata": {"labels": dict(pod_labels)},
                                  "spec": pod_spec([serving_container, terminator], selector)}}})
        scale_ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "serving"}
        pdb_selector = dict(selector)
        service_selector = dict(selector)
    else:
        workload = "LeaderWorkerSet"
        secrets.append(SecretSpec("mpi-ssh", ("id_ed25519", "authorized_keys", "known_hosts", "sshd_config",
                                              "ssh_host_ed25519_key"),
                                  "the leader's mpirun key, the workers' sshd host key and configuration"))
        mpi_vol = {"name": "mpi-ssh", "secret": {"secretName": "mpi-ssh", "defaultMode": 0o400}}
        mpi_mount = {"name": "mpi-ssh", "mountPath": MPI_DIR, "readOnly": True}
        leader_c = {**serving_container, "volumeMounts": common_mounts + [mpi_mount],
                    "command": ["sh", "-c", leader_script(nodes=group, gpus_per_node=cap.gpus_per_node,
                                                          ranks=cap.tp * cap.pp, serve_argv=serve_argv)]}
        worker_c = {k2: v for k2, v in serving_container.items() if not k2.endswith("Probe")}
        worker_c.update({"command": ["/usr/sbin/sshd", "-D", "-e", "-f", f"{MPI_DIR}/sshd_config",
                                     "-p", str(MPI_SSH_PORT)],
                         "ports": [{"name": "mpi-ssh", "containerPort": MPI_SSH_PORT, "protocol": "TCP"}],
                         "volumeMounts": common_mounts + [mpi_mount],
                         "readinessProbe": {"tcpSocket": {"port": MPI_SSH_PORT}, "periodSeconds": 10},
                         "livenessProbe": {"tcpSocket": {"port": MPI_SSH_PORT}, "periodSeconds": 30}})
        lws_selector = {LWS_NAME: "serving"}
        labels = dict(pod_labels)
        objects.append({
            "apiVersion": LWS_API, "kind": "LeaderWorkerSet", "metadata": _meta("serving", ns, "serving"),
            "spec": {"replicas": min_r, "startupPolicy": "LeaderReady",
                     "rolloutStrategy": {"type": "RollingUpdate",
                                         "rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 1}},
                     "networkConfig": {"subdomainPolicy": "Shared"},
                     "leaderWorkerTemplate": {
                         "size": group, "restartPolicy": "RecreateGroupOnPodRestart",
                         "leaderTemplate": {"metadata": {"labels": {**labels, "llmcluster.io/role": "leader"}},
                                            "spec": pod_spec([leader_c, terminator], lws_selector, [mpi_vol])},
                         "workerTemplate": {"metadata": {"labels": {**labels, "llmcluster.io/role": "worker"}},
                                            "spec": pod_spec([worker_c], lws_selector, [mpi_vol])}}}})
        scale_ref = {"apiVersion": LWS_API, "kind": "LeaderWorkerSet", "name": "serving"}
        pdb_selector = dict(lws_selector)
        service_selector = {**selector, LWS_WORKER_INDEX: "0"}

    scrape = k.prometheus_operator
    serving_ports = [{"name": "https", "port": sp.port, "targetPort": sp.port, "protocol": "TCP"}]
    if scrape:
        serving_ports.append({"name": "metrics", "port": SERVING_METRICS_PORT, "targetPort": SERVING_METRICS_PORT,
                              "protocol": "TCP"})
    objects.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta("serving", ns, "serving"),
                    "spec": {"type": "ClusterIP", "selector": service_selector, "ports": serving_ports}})

    # --- availability
    min_avail = pdb_min_available(min_r, group)
    if min_avail is None:
        warnings.append("kubernetes: one serving replica: no PodDisruptionBudget (a drain takes the API down; "
                        "set autoscaling.min_replicas >= 2 to keep it up)")
    else:
        objects.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                        "metadata": _meta("serving", ns, "serving"),
                        "spec": {"minAvailable": min_avail, "selector": {"matchLabels": pdb_selector}}})
    metric = autoscaling_metric(spec)
    query = metric_query(metric, f'namespace="{ns}"')
    if a.engine == "keda":
        objects.append({"apiVersion": KEDA_API, "kind": "ScaledObject", "metadata": _meta("serving", ns, "serving"),
                        "spec": {"scaleTargetRef": scale_ref, "minReplicaCount": min_r, "maxReplicaCount": max_r,
                                 "pollingInterval": 15, "cooldownPeriod": 600,
                                 "triggers": [{"type": "prometheus", "metricType": "AverageValue",
                                               "metadata": {"serverAddress": a.prometheus_url, "query": query,
                                                            "threshold": str(a.target)}}]}})
    else:
        objects.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                        "metadata": _meta("serving", ns, "serving"),
                        "spec": {"scaleTargetRef": scale_ref, "minReplicas": min_r, "maxReplicas": max_r,
                                 "metrics": [{"type": "External", "external": {
                                     "metric": {"name": metric},
                                     "target": {"type": "AverageValue", "averageValue": str(a.target)}}}],
                                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}}}})
        # the External metric exists only through the metrics adapter: its rule, from the same query
        import yaml

        objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": _meta(ADAPTER_CONFIGMAP, k.prometheus_namespace, "monitoring"),
                        "data": {ADAPTER_CONFIG_KEY: yaml.safe_dump({"externalRules": [adapter_rule(metric)]},
                                                                    sort_keys=False)}})

    # --- the gateway
    if gw is not None:
        gw_selector = {APP: "llmcluster", COMPONENT: "gateway"}
        gw_replicas = max(1, len(plan.ip.hosts_in_pool(gw.pool)))
        secrets.append(SecretSpec("gateway-tls", ("api.pem", "upstream.pem", "ca-chain.pem", "crl.pem"),
                                  "gateway-api and gateway-upstream certificates + keys, the CA chain, the CRL"))
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("gateway-config", ns, "gateway"),
                        "data": {"haproxy.cfg": texts.gateway_cfg or "", "llmcluster-clients.map":
                                 texts.clients_map or ""}})
        gw_container = {
            "name": "haproxy", "image": k.gateway_image, "imagePullPolicy": "IfNotPresent",
            "command": ["haproxy", "-W", "-db", "-f", f"{CONFIG_DIR}/haproxy.cfg"],
            "ports": [{"name": "https", "containerPort": gw.port, "protocol": "TCP"}] + (
                [{"name": "metrics", "containerPort": GATEWAY_METRICS_PORT, "protocol": "TCP"}] if scrape else []),
            "securityContext": _container_security(), "resources": _limits("4", "2Gi"),
            "readinessProbe": {"tcpSocket": {"port": gw.port}, "periodSeconds": 5},
            "livenessProbe": {"tcpSocket": {"port": gw.port}, "periodSeconds": 20},
            "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                             {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                             {"name": "run", "mountPath": "/run/haproxy"}]}
        gw_pod = {
            # bind the gateway port (443) without NET_BIND_SERVICE: a safe sysctl (Pod Security allows it)
            "securityContext": _pod_security([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]),
            "automountServiceAccountToken": False, "enableServiceLinks": False,
            "affinity": _anti_affinity(gw_selector), "containers": [gw_container],
            "volumes": [{"name": "config", "configMap": {"name": "gateway-config", "defaultMode": 0o444}},
                        {"name": "tls", "secret": {"secretName": "gateway-tls", "defaultMode": 0o440}},
                        {"name": "run", "emptyDir": {"sizeLimit": "16Mi"}}]}
        objects.append({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("gateway", ns, "gateway"),
            "spec": {"replicas": gw_replicas, "selector": {"matchLabels": dict(gw_selector)},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                     "template": {"metadata": {"labels": {**gw_selector, ZONE_LABEL: gateway_zone or "gateway"}},
                                  "spec": gw_pod}}})
        objects.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta("gateway", ns, "gateway"),
                        "spec": {"type": "ClusterIP", "selector": dict(gw_selector),
                                 "ports": [{"name": "https", "port": gw.port, "targetPort": gw.port,
                                            "protocol": "TCP"}] + (
                                     [{"name": "metrics", "port": GATEWAY_METRICS_PORT,
                                       "targetPort": GATEWAY_METRICS_PORT, "protocol": "TCP"}] if scrape else [])}})
        if gw_replicas > 1:
            objects.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                            "metadata": _meta("gateway", ns, "gateway"),
                            "spec": {"minAvailable": gw_replicas - 1, "selector": {"matchLabels": dict(gw_selector)}}})

    pod_zones = {"serving": serving_zone}
    if gw is not None and gateway_zone is not None:
        pod_zones["gateway"] = gateway_zone
    objects.extend(network_policies(spec, plan.firewall, ns, pod_zones, multi))
    op = k.gpu_operator
    if scrape:
        secrets.append(SecretSpec(METRICS_SECRET, ("ca-chain.pem", "tls.crt", "tls.key"),
                                  "the in-cluster Prometheus's client certificate for the metrics frontends"))
        prom = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": k.prometheus_namespace}}}
        for comp, port in (("serving", SERVING_METRICS_PORT), ("gateway", GATEWAY_METRICS_PORT)):
            if comp in pod_zones:
                objects.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                "metadata": _meta(f"in-metrics-{comp}", ns, "network-policy",
                                                  {"llmcluster.io/flow": METRICS_FLOW}),
                                "spec": {"podSelector": {"matchLabels": {APP: "llmcluster", COMPONENT: comp}},
                                         "policyTypes": ["Ingress"],
                                         "ingress": [{"from": [prom], "ports": [{"protocol": "TCP", "port": port}]}]}})
        objects.extend(monitoring_objects(plan, ns, gw.pool if gw is not None else None, op.dcgm_exporter))

    on_eks = spec.platform == "aws"
    driver = op.driver if op.driver is not None else on_eks
    toolkit = op.toolkit if op.toolkit is not None else on_eks
    return KubernetesPlan(
        namespace=ns, version=k.version, workload=workload, group_size=group, replicas=min_r,
        pin=pin.model_dump(mode="json"), objects=tuple(objects), secrets=tuple(secrets), warnings=tuple(warnings),
        pod_zones=pod_zones,
        gpu_operator_values={"driver": {"enabled": driver}, "toolkit": {"enabled": toolkit},
                             "dcgmExporter": {"enabled": op.dcgm_exporter},
                             "operator": {"defaultRuntime": "containerd"}},
        lws_chart_version=k.lws_chart_version, gpu_operator_chart_version=op.chart_version)


# --------------------------------------------------------------------------- network policy


def _k8s_ports(port_specs: list[str]) -> list[dict[str, Any]]:
    out = []
    for p in port_specs:
        proto, lo, hi = parse_port_spec(p)
        if proto == "icmp":
            continue  # NetworkPolicy has no ICMP (docs/kubernetes.md)
        entry: dict[str, Any] = {"protocol": proto.upper(), "port": lo}
        if hi is not None and hi != lo:
            entry["endPort"] = hi
        out.append(entry)
    return out


def network_policies(spec, fw: FirewallPlan, ns: str, pod_zones: dict[str, str], multi: bool) -> list[dict]:
    """Default deny, then the spec's flows to and from the pods' zones (and the platform flows)."""
    comp_of_zone: dict[str, list[str]] = {}
    for comp, z in pod_zones.items():
        comp_of_zone.setdefault(z, []).append(comp)

    def pods(comp: str) -> dict[str, Any]:
        return {"podSelector": {"matchLabels": {APP: "llmcluster", COMPONENT: comp}}}

    def peers(zone_name: str, vlan: str) -> list[dict[str, Any]]:
        if zone_name in comp_of_zone:
            return [pods(c) for c in comp_of_zone[zone_name]]
        z = fw.zone(zone_name)
        cidrs = z.cidrs if z.kind == "external" else tuple(
            str(c) for c in netaddr.cidr_merge(list(z.addresses.get(vlan, ()))))
        return [{"ipBlock": {"cidr": c}} for c in cidrs]

    out: list[dict] = [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": _meta("default-deny", ns, "network-policy"),
                        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}]
    for flow in spec.flows:
        ports = _k8s_ports(list(flow.ports))
        if not ports:
            continue
        src_pods = comp_of_zone.get(flow.from_, [])
        dst_pods = comp_of_zone.get(flow.to, [])
        for comp in dst_pods:
            src = peers(flow.from_, flow.vlan)
            if not src:
                continue  # a zone without hosts admits nobody (never "any")
            out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": _meta(f"in-{flow.name}-{comp}", ns, "network-policy", {"llmcluster.io/flow":
                                                                                            flow.name}),
                        "spec": {"podSelector": {"matchLabels": {APP: "llmcluster", COMPONENT: comp}},
                                 "policyTypes": ["Ingress"],
                                 "ingress": [{"from": src, "ports": ports}]}})
        for comp in src_pods:
            dst = peers(flow.to, flow.vlan)
            if not dst:
                continue
            out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": _meta(f"out-{flow.name}-{comp}", ns, "network-policy", {"llmcluster.io/flow":
                                                                                             flow.name}),
                        "spec": {"podSelector": {"matchLabels": {APP: "llmcluster", COMPONENT: comp}},
                                 "policyTypes": ["Egress"],
                                 "egress": [{"to": dst, "ports": ports}]}})
    out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": _meta("out-dns", ns, "network-policy", {"llmcluster.io/flow": DNS_FLOW}),
                "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                         "egress": [{"to": [{"namespaceSelector": {"matchLabels": {
                             "kubernetes.io/metadata.name": "kube-system"}},
                             "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                             "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}})
    if multi:
        group = {"podSelector": {"matchLabels": {LWS_NAME: "serving"}}}
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": _meta("lws-group", ns, "network-policy", {"llmcluster.io/flow": GROUP_FLOW}),
                    "spec": {"podSelector": {"matchLabels": {LWS_NAME: "serving"}},
                             "policyTypes": ["Ingress", "Egress"],
                             "ingress": [{"from": [group]}], "egress": [{"to": [group]}]}})
    return out


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    want = selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in want.items())


def _port_covers(ports: list[dict[str, Any]] | None, svc: Service) -> bool:
    if not ports:
        return True  # no ports: every port
    for p in ports:
        if p.get("protocol", "TCP").lower() != svc.proto:
            continue
        lo = p.get("port")
        hi = p.get("endPort", lo)
        if lo is None or (svc.lo is not None and lo <= svc.lo and (svc.hi or svc.lo) <= hi):
            return True
    return False


def netpol_matrix(policies: list[dict[str, Any]], fw: FirewallPlan, pod_zones: dict[str, str]) -> set[tuple]:
    """``(source zone, destination zone, service)`` the NetworkPolicies allow, destinations being the zones
    that hold pods, evaluated from the policy objects (ingress at the destination and, for pod sources,
    egress at the source: both must admit). Platform policies (DNS, the LWS group) are left out: they are
    not zone flows. ICMP services are skipped (NetworkPolicy cannot express ICMP)."""
    pols = [p for p in policies if p["kind"] == "NetworkPolicy"
            and p["metadata"]["labels"].get("llmcluster.io/flow") not in (DNS_FLOW, GROUP_FLOW, METRICS_FLOW)]
    comp_labels = {c: {APP: "llmcluster", COMPONENT: c} for c in pod_zones}

    def rules(labels: dict[str, str], kind: str) -> list[dict[str, Any]]:
        out = []
        for p in pols:
            if kind in p["spec"].get("policyTypes", []) and _selects(p["spec"]["podSelector"], labels):
                out.extend(p["spec"].get(kind.lower(), []))
        return out

    def peer_admits(peer: dict[str, Any], src_zone) -> bool:
        if "podSelector" in peer and "ipBlock" not in peer:
            return any(pod_zones[c] == src_zone.name and _selects(peer["podSelector"], comp_labels[c])
                       for c in pod_zones)
        return False

    def ip_admits(peer_list: list[dict[str, Any]], src_zone) -> bool:
        blocks = netaddr.IPSet([p["ipBlock"]["cidr"] for p in peer_list if "ipBlock" in p])
        if src_zone.kind == "external":
            return bool(src_zone.cidrs) and netaddr.IPSet(src_zone.cidrs).issubset(blocks)
        if src_zone.name in pod_zones.values():
            return False
        return any(addrs and netaddr.IPSet(addrs).issubset(blocks) for addrs in src_zone.addresses.values())

    allowed: set[tuple] = set()
    for dst_comp, dst_zone in pod_zones.items():
        ingress = rules(comp_labels[dst_comp], "Ingress")
        for src in fw.zones:
            for svc in fw.services:
                if svc.proto == "icmp":
                    continue
                ok_in = any(_port_covers(r.get("ports"), svc) and (
                    any(peer_admits(p, src) for p in r.get("from", [])) or ip_admits(r.get("from", []), src))
                    for r in ingress)
                if not ok_in:
                    continue
                src_comps = [c for c, z in pod_zones.items() if z == src.name]
                if src_comps:
                    ok_out = all(any(_port_covers(r.get("ports"), svc) and any(
                        _selects(p.get("podSelector", {"matchLabels": {"x": "never"}}), comp_labels[dst_comp])
                        for p in r.get("to", [])) for r in rules(comp_labels[c], "Egress")) for c in src_comps)
                    if not ok_out:
                        continue
                allowed.add((src.name, dst_zone, svc.name))
    return allowed


def firewall_pod_matrix(fw: FirewallPlan, pod_zones: dict[str, str]) -> set[tuple]:
    """The firewall plan's allowed ``(source zone, destination zone, service)`` for the pods' zones (no ICMP)."""
    zones = set(pod_zones.values())
    return {(e.source_zone, e.destination_zone, e.service) for e in fw.matrix()
            if e.allowed and e.destination_zone in zones and not e.service.startswith("icmp")}
