"""The serving plan: what the model servers run and where (pure, no I/O).

Derived once from the spec, the IP plan and the capacity plan; the inventory
(``all.vars.llmcluster_serving_plan``, per-host ``llmcluster_serving``), the ``tensorrt_llm``
role's inputs, the gateway's upstreams, the verification suite and the Kubernetes serving layer
all read this object and never recompute it:

* **model facts** — checkpoint path, precision, KV dtype, backend, TP/PP/EP, nodes per replica,
  the ``trtllm-serve`` arguments and the extra LLM-API options file (the engine configuration,
  :mod:`llmcluster.plan.engine`: NVIDIA's nearest published recipe adapted to the workload; the
  role templates exactly this file and the flags agree with it);
* **replica layout** — the serving pool's hosts taken in order, ``capacity.nodes`` per replica;
  hosts beyond ``serving.replicas`` replicas serve nothing (spares). Each member knows its
  replica, its rank, the replica's head (rank 0, the host that serves HTTP and that the gateway
  balances over) and the replica's hosts for ``mpirun -H``;
* **the gateway -> GPU hop** — ``trtllm-serve`` listens on 127.0.0.1 at ``backend_port`` only; on
  each head a TLS terminator (role ``serving_tls``) listens on the inference address at ``port``
  with the host certificate (whose SANs hold the head's FQDN, ``upstreams[].fqdn``, the name the
  gateway verifies) and admits only the gateway-upstream client certificate
  (``gateway.upstream_client_cn``): no prompt crosses a network in clear;
* **model store** — where the verifier (``model-verify``, the llmcluster.hosts collection's
  ``model_manifest`` module) is installed on the serving hosts and where the model's manifest lies
  (:data:`MODEL_VERIFIER`, :func:`model_manifest_path`): the ``model_store`` role installs both and
  stages the checkpoint into ``model_path``, the ``tensorrt_llm`` role's unit verifies it before
  every start (``ExecStartPre``) and the verification suite runs the same command;
* **engine cache key** — the fields whose change makes a TensorRT engine unusable. The plan
  knows the model side (:func:`engine_key_plan_fields`); the GPU SM, TensorRT-LLM, CUDA and
  driver versions are what the host reports. :func:`engine_key` combines both; the role
  receives the plan side in ``llmcluster_serving_plan.engine_key`` and adds only what it probes,
  so the set of fields is written here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from llmcluster.plan.access import AccessPlan, build_access_plan
from llmcluster.plan.capacity import CapacityPlan
from llmcluster.plan.catalog import lookup_model
from llmcluster.plan.engine import EngineConfig, engine_config
from llmcluster.plan.ipam import HostPlan, IpPlan
from llmcluster.plan.pki import upstream_client_cn
from llmcluster.plan.runtime import gateway_on_hosts, units_on_hosts
from llmcluster.spec.models import Spec

#: The host-reported fields of the engine cache key (what the host's tools print).
ENGINE_KEY_HOST_FIELDS = ("gpu_sm", "trtllm_version", "cuda_version", "driver_version")
#: The ``trtllm-serve`` arguments the serving plan carries (the rest of ``capacity.trtllm_args``
#: are derived flags).
SERVE_ARGS = ("max_batch_size", "max_num_tokens", "max_seq_len", "kv_cache_free_gpu_memory_fraction")

#: The model verifier on the serving hosts (the llmcluster.hosts collection's model_manifest module,
#: installed by the model_store role; run by trtllm-serve's ExecStartPre and the verification suite).
MODEL_VERIFIER = "/usr/local/libexec/llmcluster/model-verify"
#: Where the manifests of the models live on the serving hosts: outside the model directory (whose
#: verification refuses any file the manifest does not list), root-owned, world-readable (hashes only).
MODEL_MANIFEST_DIR = "/etc/llmcluster/models"


def model_manifest_path(model: str) -> str:
    """The manifest of ``model`` (the spec's ``serving.model`` name) on a serving host."""
    return f"{MODEL_MANIFEST_DIR}/{model}.json"


#: The gateway's process-wide connection limit (HAProxy ``maxconn``, the gateway role's
#: ``gateway_maxconn``): ``serving.gateway.max_conn_per_source`` may not exceed it (access.gateway-limits).
GATEWAY_MAXCONN = 4096

# The request body limit derived from the context (serving.gateway.max_body_bytes unset). A prompt
# can hold at most ``serving.context`` tokens (the server refuses more), so its body is bounded by:
#   * BODY_BYTES_PER_TOKEN = 16 bytes per context token: a token is ~4 characters of English (4-5 bytes
#     of UTF-8) or 1-2 CJK characters (3 bytes each in UTF-8, 6 each as a JSON '\uXXXX' escape, as
#     Python's json.dumps writes non-ASCII by default: up to 12 bytes); quotes, backslashes and newlines
#     double when escaped; the remainder covers the per-message JSON of a multi-turn chat
#     ('{"role":"user","content":""}', ~30 bytes a turn);
#   * plus BODY_OVERHEAD_BYTES = 64 KiB for the request's other fields (sampling parameters, stop
#     sequences, tools, response_format);
#   * rounded up to a whole KiB.
# 32768 tokens -> 576 KiB; 16384 -> 320 KiB; the largest context (1 Mi tokens) -> 16 MiB + 64 KiB.
BODY_BYTES_PER_TOKEN = 16
BODY_OVERHEAD_BYTES = 64 * 1024


def derived_max_body_bytes(context: int) -> int:
    """The gateway's request body limit for a model served with ``context`` tokens (see above)."""
    raw = BODY_BYTES_PER_TOKEN * context + BODY_OVERHEAD_BYTES
    return -(-raw // 1024) * 1024


@dataclass(frozen=True)
class ReplicaMember:
    """One host of a replica, as ``mpirun -H`` needs it."""

    name: str
    address: str
    slots: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "slots": self.slots}


@dataclass(frozen=True)
class Replica:
    index: int
    members: tuple[ReplicaMember, ...]

    @property
    def head(self) -> ReplicaMember:
        """Rank 0: serves the HTTP API; the other ranks are MPI workers."""
        return self.members[0]


@dataclass(frozen=True)
class HostServing:
    """One serving host's place in its replica (``llmcluster_serving`` of the inventory)."""

    replica: int
    node_rank: int
    nodes: int
    head: str
    head_address: str
    hosts: tuple[ReplicaMember, ...]

    @property
    def is_head(self) -> bool:
        return self.node_rank == 0

    def to_dict(self) -> dict[str, Any]:
        return {"replica": self.replica, "node_rank": self.node_rank, "nodes": self.nodes, "head": self.head,
                "head_address": self.head_address, "hosts": [m.to_dict() for m in self.hosts]}


@dataclass(frozen=True)
class EngineKey:
    """The engine cache key of one build (docs/gpu-stack.md, "Engine cache")."""

    fields: dict[str, Any]

    @property
    def digest(self) -> str:
        """First 16 hex digits of SHA-256 over the fields as JSON with sorted keys."""
        blob = json.dumps(self.fields, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AuditPlan:
    """The gateway's access log as an audit trail (serving.gateway.audit)."""

    retention_days: int = 180
    max_use: str = "20G"
    forward_to: tuple[str, ...] = ()
    #: serving.gateway.audit.allow_short_retention: the explicit consent to keep it < 180 days
    allow_short_retention: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"retention_days": self.retention_days, "max_use": self.max_use, "forward_to": list(self.forward_to),
                "allow_short_retention": self.allow_short_retention}


@dataclass(frozen=True)
class GatewayPlan:
    """The API gateway in front of the replicas: one upstream per replica head, its connection limits,
    whom it admits (:mod:`llmcluster.plan.access`) and its audit log (``llmcluster_gateway`` of the
    inventory is :meth:`to_dict`).

    ``upstreams``: ``{name, address, port, fqdn}`` of each head: its TLS terminator at the inference
    address and serving port, and the FQDN its host certificate carries (what the gateway verifies)."""

    pool: str
    port: int
    hostname: str
    vip: str | None
    rate_limit_rps: int
    request_timeout_s: int
    upstreams: tuple[dict[str, Any], ...]
    handshake_timeout_s: int = 10
    idle_timeout_s: int = 60
    max_conn_per_source: int = 64
    max_conn_rate_per_source: int = 200
    #: serving.gateway.max_body_bytes, else :func:`derived_max_body_bytes` of serving.context
    max_body_bytes: int = BODY_OVERHEAD_BYTES
    #: CN of the ``gateway-upstream`` client certificate (what the model servers' TLS terminators admit)
    upstream_client_cn: str = ""
    access: AccessPlan = AccessPlan()
    audit: AuditPlan = AuditPlan()

    def to_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "port": self.port, "hostname": self.hostname, "vip": self.vip,
                "rate_limit_rps": self.rate_limit_rps, "request_timeout_s": self.request_timeout_s,
                "handshake_timeout_s": self.handshake_timeout_s, "idle_timeout_s": self.idle_timeout_s,
                "max_conn_per_source": self.max_conn_per_source,
                "max_conn_rate_per_source": self.max_conn_rate_per_source,
                "max_body_bytes": self.max_body_bytes, "upstream_client_cn": self.upstream_client_cn,
                "upstreams": [dict(u) for u in self.upstreams], "access": self.access.to_dict(),
                "audit": self.audit.to_dict()}


def gateway_address(gw: GatewayPlan, ip: Any) -> str:
    """Where API clients connect to the gateway (``ip``: the plan's IpPlan): its VIP, else the first
    gateway host's inference address (its mgmt address where it has none), else its hostname (DNS).
    Clients still send SNI and ``Host`` as :attr:`GatewayPlan.hostname` (what its certificate names)."""
    if gw.vip:
        return gw.vip
    hosts = ip.hosts_in_pool(gw.pool)
    return hosts[0].addresses.get("inference", hosts[0].mgmt_ip) if hosts else gw.hostname


@dataclass(frozen=True)
class ServingPlan:
    model: str
    hf_repo: str
    model_type: str
    model_path: str
    revision: str
    precision: str
    kv_dtype: str
    backend: str
    tp: int
    pp: int
    ep: int
    nodes: int
    gpus_per_node: int
    #: the TLS terminator's port on the inference address (the gateway's upstream port)
    port: int
    pool: str
    args: dict[str, Any]
    extra_llm_api_options: dict[str, Any]
    replicas: tuple[Replica, ...] = field(default=())
    #: where the options come from (nearest published recipe, departures); the plan document's
    engine: EngineConfig | None = None
    #: the API gateway (``serving.gateway``), None without one
    gateway: GatewayPlan | None = None
    #: where trtllm-serve listens: 127.0.0.1 at this port (behind the TLS terminator)
    backend_port: int = 8001
    #: ``serving.runtime``: systemd units on the hosts, or pods on Kubernetes (docs/kubernetes.md)
    runtime: str = "systemd"

    @property
    def units_on_hosts(self) -> bool:
        """The hosts run the serving units (roles tensorrt_llm, serving_tls): only with the systemd runtime.
        On Kubernetes the pods serve; the hosts keep drivers, fabric manager, firewall and storage."""
        return units_on_hosts(self.runtime)

    @property
    def gateway_on_hosts(self) -> bool:
        """The gateway pool's hosts run the HAProxy gateway (roles gateway, audit_log): only with a gateway and
        the systemd runtime (on Kubernetes the gateway is a Deployment)."""
        return gateway_on_hosts(self.runtime, self.gateway is not None)

    @cached_property
    def layout(self) -> dict[str, HostServing]:
        """Serving host -> its place (spares and other pools absent)."""
        out: dict[str, HostServing] = {}
        for r in self.replicas:
            for rank, m in enumerate(r.members):
                out[m.name] = HostServing(replica=r.index, node_rank=rank, nodes=len(r.members), head=r.head.name,
                                          head_address=r.head.address, hosts=r.members)
        return out

    @property
    def heads(self) -> tuple[str, ...]:
        """The replica heads, in replica order (the gateway's upstreams)."""
        return tuple(r.head.name for r in self.replicas)

    def to_vars(self) -> dict[str, Any]:
        """``all.vars.llmcluster_serving_plan``: what the tensorrt_llm role serves."""
        out = {
            "model": self.model, "hf_repo": self.hf_repo, "model_type": self.model_type,
            "model_path": self.model_path, "revision": self.revision, "precision": self.precision,
            "kv_dtype": self.kv_dtype, "backend": self.backend, "tp": self.tp, "pp": self.pp, "ep": self.ep,
            "nodes": self.nodes, "gpus_per_node": self.gpus_per_node, "port": self.port,
            "backend_port": self.backend_port, "args": dict(self.args),
            "extra_llm_api_options": self.extra_llm_api_options,
            # the model store (roles model_store, tensorrt_llm; the verification suite's model check)
            "model_manifest": model_manifest_path(self.model), "model_verifier": MODEL_VERIFIER,
        }
        out["engine_key"] = engine_key_plan_fields(out)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The plan document's ``serving`` section: the role inputs plus the replica layout."""
        return {**self.to_vars(), "pool": self.pool, "runtime": self.runtime,
                "units_on_hosts": self.units_on_hosts, "gateway_on_hosts": self.gateway_on_hosts,
                "engine": self.engine.to_dict() if self.engine is not None else None,
                "replicas": [{"index": r.index, "head": r.head.name, "hosts": [m.name for m in r.members]}
                             for r in self.replicas],
                "gateway": self.gateway.to_dict() if self.gateway is not None else None}


def _inference_address(h: HostPlan) -> str:
    return h.addresses.get("inference", h.mgmt_ip)


def audit_store_urls(spec: Spec, ip: IpPlan) -> tuple[str, ...]:
    """Where the gateways ship their audit trail when serving.gateway.audit.forward_to is empty: the audit store
    of the first monitor host (monitoring.pool; docs/observability.md), else nowhere."""
    from llmcluster.plan.monitoring import AUDIT_STORE_PORT

    mon = spec.monitoring
    hosts = ip.hosts_in_pool(mon.pool) if mon is not None and mon.pool in spec.pools else []
    return (f"https://{hosts[0].mgmt_ip}:{AUDIT_STORE_PORT}",) if hosts else ()


def build_serving_plan(spec: Spec, ip: IpPlan, cap: CapacityPlan, access: AccessPlan | None = None) -> ServingPlan:
    """The serving plan; ``access``: the access plan when already built (else it is built here)."""
    s = spec.serving
    m = lookup_model(s.model)
    eng = engine_config(cap)
    pool_hosts = ip.hosts_in_pool(s.pool)
    replicas: list[Replica] = []
    for r in range(s.replicas):
        members = pool_hosts[r * cap.nodes:(r + 1) * cap.nodes]
        if len(members) < cap.nodes:
            break
        replicas.append(Replica(r, tuple(ReplicaMember(h.name, _inference_address(h), cap.gpus_per_node)
                                         for h in members)))
    gateway = None
    gw = s.gateway
    if gw is not None:
        # One upstream per replica: its head (rank 0) serves the API; other ranks are MPI workers.
        heads = {r.head.name for r in replicas}
        gateway = GatewayPlan(
            pool=gw.pool, port=gw.port, hostname=f"{gw.hostname}.{spec.site.domain}", vip=ip.vips.get("api"),
            rate_limit_rps=gw.rate_limit_rps, request_timeout_s=gw.request_timeout_s,
            upstreams=tuple({"name": h.name, "address": h.addresses["inference"], "port": s.port, "fqdn": h.fqdn}
                            for h in pool_hosts if "inference" in h.addresses and h.name in heads),
            handshake_timeout_s=gw.handshake_timeout_s, idle_timeout_s=gw.idle_timeout_s,
            max_conn_per_source=gw.max_conn_per_source, max_conn_rate_per_source=gw.max_conn_rate_per_source,
            max_body_bytes=gw.max_body_bytes if gw.max_body_bytes is not None else derived_max_body_bytes(s.context),
            upstream_client_cn=upstream_client_cn(spec.site.domain),
            access=access if access is not None else build_access_plan(spec, ip),
            audit=AuditPlan(retention_days=gw.audit.retention_days, max_use=gw.audit.max_use,
                            forward_to=tuple(gw.audit.forward_to) or audit_store_urls(spec, ip),
                            allow_short_retention=gw.audit.allow_short_retention))
    return ServingPlan(
        model=s.model, hf_repo=m.hf_repo, model_type=m.family,
        model_path=f"{spec.storage.model_dir.rstrip('/')}/{m.hf_repo}", revision=s.revision,
        precision=cap.precision, kv_dtype=cap.kv_dtype, backend=cap.backend, tp=cap.tp, pp=cap.pp, ep=cap.ep,
        nodes=cap.nodes, gpus_per_node=cap.gpus_per_node, port=s.port, backend_port=s.backend_port, pool=s.pool,
        args=serve_args(eng), extra_llm_api_options=eng.options, engine=eng,
        replicas=tuple(replicas), gateway=gateway, runtime=s.runtime,
    )


def serve_args(eng: EngineConfig) -> dict[str, Any]:
    """The ``trtllm-serve`` flags of :data:`SERVE_ARGS`, equal to the options file's values (the file
    wins in trtllm-serve; the flags say the same so that nothing depends on which wins)."""
    o = eng.options
    return {"max_batch_size": o["max_batch_size"], "max_num_tokens": o["max_num_tokens"],
            "max_seq_len": o["max_seq_len"],
            "kv_cache_free_gpu_memory_fraction": o["kv_cache_config"]["free_gpu_memory_fraction"]}


def engine_key_plan_fields(serving_plan: Mapping[str, Any]) -> dict[str, Any]:
    """The engine cache key fields the plan decides, from a serving plan as the inventory carries it."""
    sp, a = serving_plan, serving_plan["args"]
    return {
        "model": sp["model"], "revision": sp["revision"], "precision": sp["precision"], "kv_dtype": sp["kv_dtype"],
        "tp": sp["tp"], "pp": sp["pp"], "max_batch_size": a["max_batch_size"],
        "max_num_tokens": a["max_num_tokens"], "max_seq_len": a["max_seq_len"],
    }


def engine_key(serving_plan: Mapping[str, Any], *, gpu_sm: str, trtllm_version: str, cuda_version: str,
               driver_version: str) -> EngineKey:
    """The key of the engine built for ``serving_plan`` on a host reporting these versions."""
    return EngineKey({**engine_key_plan_fields(serving_plan), "gpu_sm": gpu_sm, "trtllm_version": trtllm_version,
                      "cuda_version": cuda_version, "driver_version": driver_version})
