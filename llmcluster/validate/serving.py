"""Serving rules: what is served from which pools; plan-aware: the model fits the pool (capacity sizing)."""

from __future__ import annotations

from collections.abc import Iterator

from llmcluster.errors import InfeasibleError, Problem
from llmcluster.plan.capacity import size_deployment
from llmcluster.plan.catalog import GPUS, MODELS, PRECISIONS
from llmcluster.spec.loader import did_you_mean
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import PLAN, rule
from llmcluster.validate.runner import PlanFacts


@rule("serving.pool")
def pool(spec: Spec) -> Iterator[Problem]:
    """serving.pool is a declared 'gpu' pool on the inference VLAN."""
    s = spec.serving
    p = spec.pools.get(s.pool)
    if p is None:
        yield Problem("serving.pool", f"unknown pool '{s.pool}'{did_you_mean(s.pool, spec.pools)}")
    elif p.role != "gpu":
        yield Problem("serving.pool", f"pool '{s.pool}' has role '{p.role}': serve from a 'gpu' pool")
    elif "inference" not in p.vlans:
        yield Problem(f"pools.{s.pool}.vlans", "serving nodes must be on the inference VLAN")


@rule("serving.model-known")
def model_known(spec: Spec) -> Iterator[Problem]:
    """serving.model is in the model catalog."""
    model = spec.serving.model
    if model not in MODELS:
        yield Problem("serving.model",
                      f"unknown model '{model}'{did_you_mean(model, MODELS)} (known: {', '.join(sorted(MODELS))})")


@rule("serving.precision-known")
def precision_known(spec: Spec) -> Iterator[Problem]:
    """serving.precision, when set, is a known precision."""
    precision = spec.serving.precision
    if precision is not None and precision not in PRECISIONS:
        yield Problem("serving.precision",
                      f"unknown precision '{precision}'{did_you_mean(precision, PRECISIONS)} "
                      f"(known: {', '.join(PRECISIONS)})")


@rule("serving.gateway-pool")
def gateway_pool(spec: Spec) -> Iterator[Problem]:
    """serving.gateway.pool is a declared 'gateway' pool on the inference VLAN."""
    gateway = spec.serving.gateway
    if gateway is None:
        return
    gw = spec.pools.get(gateway.pool)
    if gw is None:
        yield Problem("serving.gateway.pool",
                      f"unknown pool '{gateway.pool}'{did_you_mean(gateway.pool, spec.pools)}")
    elif gw.role != "gateway":
        yield Problem("serving.gateway.pool", f"pool '{gateway.pool}' has role '{gw.role}', not 'gateway'")
    elif "inference" not in gw.vlans:
        yield Problem(f"pools.{gateway.pool}.vlans", "gateway nodes must be on the inference VLAN")


@rule("serving.inference-vlan")
def inference_vlan(spec: Spec) -> Iterator[Problem]:
    """fabric.vlans declares the inference VLAN."""
    if spec.fabric.vlans.inference is None:
        yield Problem("fabric.vlans.inference", "missing: serving needs an inference VLAN")


def _allows_tcp(ports: tuple[str, ...], port: int) -> bool:
    """Whether port specs (``tcp/443``, ``tcp/6800-7300``) allow TCP ``port``."""
    for spec in ports:
        proto, _, rng = spec.partition("/")
        if proto != "tcp":
            continue
        lo, _, hi = rng.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def _zone_of(spec: Spec, pool_name: str) -> str | None:
    return next((z for z, zone in spec.zones.items() if pool_name in zone.pools), None)


@rule("serving.ports-reachable", requires=("serving.pool", "serving.gateway-pool", "serving.inference-vlan"))
def ports_reachable(spec: Spec) -> Iterator[Problem]:
    """The API is reachable: a flow on the inference VLAN allows serving.gateway.port from some zone to the
    gateway pool's zone, and serving.port from the gateway's zone to the serving pool's zone (without a
    gateway: serving.port from some zone to the serving pool's zone)."""
    s = spec.serving
    serve_zone = _zone_of(spec, s.pool)
    if serve_zone is None:
        return  # zones.every-pool-zoned
    flows = [(i, f) for i, f in enumerate(spec.flows) if f.vlan == "inference"]
    if s.gateway is None:
        if not any(f.to == serve_zone and _allows_tcp(f.ports, s.port) for _, f in flows):
            yield Problem("serving.port", f"tcp/{s.port} reaches zone '{serve_zone}' (pool {s.pool}) from no zone: "
                                          "no flow on the inference VLAN allows it, so the API is unreachable; "
                                          "add it to a flow's ports or change the port")
        return
    gw = s.gateway
    gw_zone = _zone_of(spec, gw.pool)
    if gw_zone is None:
        return
    if not any(f.to == gw_zone and _allows_tcp(f.ports, gw.port) for _, f in flows):
        seen = sorted({p for _, f in flows if f.to == gw_zone for p in f.ports})
        have = f" (flows to it allow {', '.join(seen)})" if seen else ""
        yield Problem("serving.gateway.port",
                      f"tcp/{gw.port} reaches zone '{gw_zone}' (pool {gw.pool}) from no zone on the inference VLAN"
                      f"{have}: the API would be unreachable; allow tcp/{gw.port} in a flow to '{gw_zone}' or "
                      "change the port")
    if not any(f.from_ == gw_zone and f.to == serve_zone and _allows_tcp(f.ports, s.port) for _, f in flows):
        yield Problem("serving.port",
                      f"tcp/{s.port}: no flow from zone '{gw_zone}' (the gateway) to zone '{serve_zone}' (pool "
                      f"{s.pool}) on the inference VLAN allows it: the gateway could not reach the model servers; "
                      f"allow tcp/{s.port} in that flow or change the port")


#: Ports GPU nodes already listen on locally whatever the flows say (the DCGM host engine).
_GPU_LOCAL_PORTS = {5555: "the DCGM host engine (nv-hostengine, 127.0.0.1:5555)"}


def _port_specs(ports: tuple[str, ...], port: int) -> list[str]:
    return [p for p in ports if _allows_tcp((p,), port)]


@rule("serving.backend-port")
def backend_port(spec: Spec) -> Iterator[Problem]:
    """serving.backend_port (trtllm-serve on 127.0.0.1, behind the GPU node's TLS terminator) differs from
    serving.port (the terminator on the inference address) and from every port a service on the serving
    hosts already listens on or that is reachable from a network (ports flows open to the serving pool's zone,
    the DCGM host engine)."""
    s = spec.serving
    if s.backend_port == s.port:
        yield Problem("serving.backend_port",
                      f"{s.backend_port} equals serving.port: the TLS terminator listens on the inference address at "
                      "serving.port and forwards to trtllm-serve on 127.0.0.1 at serving.backend_port; give them "
                      "different ports (default 8001)")
        return
    if s.backend_port in _GPU_LOCAL_PORTS:
        yield Problem("serving.backend_port",
                      f"{s.backend_port} is taken on the GPU nodes by {_GPU_LOCAL_PORTS[s.backend_port]}: choose "
                      "another port (default 8001)")
        return
    zone = _zone_of(spec, s.pool)
    if zone is None:
        return  # zones.every-pool-zoned
    for f in spec.flows:
        if f.to == zone:
            taken = _port_specs(f.ports, s.backend_port)
            if taken:
                yield Problem("serving.backend_port",
                              f"{s.backend_port} is opened to zone '{zone}' (pool {s.pool}) by flow '{f.name}' "
                              f"({', '.join(taken)}): the backend port must not be reachable from any network, and a "
                              "service listening there would keep trtllm-serve from binding it; choose a port no flow "
                              "to the serving pool opens")
                return


@rule("serving.capacity", layer=PLAN, requires=("serving.pool", "serving.model-known", "serving.precision-known",
                                                "serving.gateway-pool", "serving.inference-vlan"))
def capacity(facts: PlanFacts) -> list[Problem]:
    """The model fits the serving pool's GPUs (capacity sizing: precision, context, KV cache), the pool has
    the nodes for every replica, and tensor parallelism divides the GPUs per node."""
    spec = facts.spec
    s = spec.serving
    p = spec.pools[s.pool]
    if p.gpu is None or p.gpu.model not in GPUS:  # pools.gpu-section / pools.gpu-model-known
        return []
    try:
        cap = size_deployment(model=s.model, gpu=p.gpu.model, precision=s.precision, context=s.context,
                              concurrency=s.concurrency, gpus_per_node=p.gpu.count, kv_dtype=s.kv_dtype)
    except InfeasibleError as exc:
        return [Problem("serving", str(exc))]
    out: list[Problem] = []
    need = cap.nodes * s.replicas
    if need > p.count:
        out.append(Problem(f"pools.{s.pool}.count",
                           f"{p.count} nodes cannot serve {s.replicas} replica(s) of {s.model} {cap.precision}: "
                           f"each needs {cap.nodes} node(s) of {p.gpu.count}x {p.gpu.model} "
                           f"(tp={cap.tp}, pp={cap.pp}); set count >= {need} or lower serving.replicas/context"))
    if p.gpu.count % cap.tp:
        out.append(Problem("serving", f"tensor parallel size {cap.tp} does not divide pools.{s.pool}.gpu.count "
                                      f"{p.gpu.count}"))
    return out
