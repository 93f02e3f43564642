"""API access rules: the gateway admits only named clients, under policies that can match; its connection
limits are sane; its audit log is kept long enough and can leave the gateway.

The domain covers ``llmcluster:access`` (named clients, policies) and what the gateway does with it
(``serving.gateway``'s limits and ``audit``): :mod:`llmcluster.plan.access` says how a request is matched.

Every named client must be admitted by some policy (``access.clients-covered``): this is an error, not a
warning. A client no policy admits holds a certificate that can do nothing, which is almost always a typo
in a policy's ``roles`` or ``clients``; a client to be shut out is removed from ``access.clients`` (and its
certificate revoked), never left behind without a policy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import get_args

import netaddr

from llmcluster.errors import PlanError, Problem
from llmcluster.plan.access import API_PATHS
from llmcluster.plan.serving import GATEWAY_MAXCONN
from llmcluster.spec.loader import did_you_mean
from llmcluster.spec.models import PoolRole, Spec, url_host_port
from llmcluster.validate.registry import PLAN, rule
from llmcluster.validate.runner import PlanFacts

#: The least retention the audit log may have without ``serving.gateway.audit.allow_short_retention``.
MIN_RETENTION_DAYS = 180
#: Organisational units the PKI plan gives certificates that are not API clients: the host roles (host
#: certificates), ``operators`` (admin) and ``llmcluster`` (the CAs). A client role may not be one of them.
HOST_ROLES: tuple[str, ...] = get_args(PoolRole)
RESERVED_ROLES: tuple[str, ...] = (*HOST_ROLES, "operators", "llmcluster")


def _zone_of(spec: Spec, pool_name: str) -> str | None:
    return next((z for z, zone in spec.zones.items() if pool_name in zone.pools), None)


def _allows_tcp(ports: tuple[str, ...], port: int) -> bool:
    for spec in ports:
        proto, _, rng = spec.partition("/")
        if proto != "tcp":
            continue
        lo, _, hi = rng.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


@rule("access.required-with-gateway")
def required_with_gateway(spec: Spec) -> Iterator[Problem]:
    """With serving.gateway, access names at least one API client: the gateway admits only named clients
    (host certificates are refused), so without any it would admit nobody."""
    if spec.serving.gateway is None:
        return
    why = ("the gateway admits only the API clients named in access.clients (host and operator certificates "
           "get 403), so it would admit nobody; name each client with its role "
           "(access.clients.<name>: {role: app}) and the policies that admit them")
    if spec.access is None:
        yield Problem("access", f"missing while serving.gateway is set: {why}")
    elif not spec.access.clients:
        yield Problem("access.clients", f"empty: {why}")


@rule("access.needs-gateway")
def needs_gateway(spec: Spec) -> Iterator[Problem]:
    """access is set only with serving.gateway: the gateway is what enforces it."""
    if spec.access is not None and spec.serving.gateway is None:
        yield Problem("access", "is set but serving.gateway is not: nothing would enforce it (the model servers "
                                "do not check client identities); add serving.gateway or remove access")


@rule("access.client-role-reserved")
def client_role_reserved(spec: Spec) -> Iterator[Problem]:
    """A client's role is not an organisational unit the PKI gives non-client certificates (the host roles
    gpu, storage, gateway, control; operators; llmcluster)."""
    if spec.access is None:
        return
    for name, client in spec.access.clients.items():
        if client.role in RESERVED_ROLES:
            kind = "host" if client.role in HOST_ROLES else "non-client"
            yield Problem(f"access.clients.{name}.role",
                          f"'{client.role}' is the unit (OU) of {kind} certificates, which never call the model: "
                          "pick a role of its own (e.g. 'app', 'analyst')")


@rule("access.policy-names-unique")
def policy_names_unique(spec: Spec) -> Iterator[Problem]:
    """Policy names are unique (the access log names the policy that admitted a request)."""
    if spec.access is None:
        return
    names = Counter(p.name for p in spec.access.policies)
    for i, p in enumerate(spec.access.policies):
        if names[p.name] > 1:
            yield Problem(f"access.policies.{i}.name", f"policy name '{p.name}' is used more than once")


@rule("access.policy-subjects-known")
def policy_subjects_known(spec: Spec) -> Iterator[Problem]:
    """A policy's clients are named clients and its roles are roles some client has."""
    if spec.access is None:
        return
    clients = spec.access.clients
    roles = sorted({c.role for c in clients.values()})
    have = f" (roles: {', '.join(roles)})" if roles else " (no client is named)"
    for i, p in enumerate(spec.access.policies):
        for j, c in enumerate(p.clients):
            if c not in clients:
                yield Problem(f"access.policies.{i}.clients.{j}",
                              f"unknown client '{c}'{did_you_mean(c, clients)}: name it in access.clients")
        for j, r in enumerate(p.roles):
            if r not in roles:
                yield Problem(f"access.policies.{i}.roles.{j}",
                              f"no client has role '{r}'{did_you_mean(r, roles)}{have}")


@rule("access.clients-covered", requires=("access.policy-subjects-known",))
def clients_covered(spec: Spec) -> Iterator[Problem]:
    """Every named client is admitted by some policy (by its name or its role): an error, not a warning."""
    if spec.access is None:
        return
    for name, client in spec.access.clients.items():
        if not any(name in p.clients or client.role in p.roles for p in spec.access.policies):
            yield Problem(f"access.clients.{name}",
                          f"no policy admits it (by name or role '{client.role}'): its certificate could do "
                          "nothing; add it to a policy's clients or roles, or remove the client")


@rule("access.policy-models", requires=("serving.model-known",))
def policy_models(spec: Spec) -> Iterator[Problem]:
    """A policy's models are the served model (serving.model)."""
    if spec.access is None:
        return
    served = spec.serving.model
    for i, p in enumerate(spec.access.policies):
        for j, m in enumerate(p.models or ()):
            if m != served:
                yield Problem(f"access.policies.{i}.models.{j}",
                              f"'{m}' is not served: this cluster serves '{served}' (serving.model)")


@rule("access.policy-paths")
def policy_paths(spec: Spec) -> Iterator[Problem]:
    """A policy's paths are API paths the gateway passes (llmcluster.plan.access.API_PATHS)."""
    if spec.access is None:
        return
    for i, p in enumerate(spec.access.policies):
        for j, path in enumerate(p.paths):
            if path not in API_PATHS:
                yield Problem(f"access.policies.{i}.paths.{j}",
                              f"'{path}' is not an API path the gateway passes{did_you_mean(path, API_PATHS)} "
                              f"(one of {', '.join(API_PATHS)}; every other path is refused)")


@rule("access.policy-zones-known")
def policy_zones_known(spec: Spec) -> Iterator[Problem]:
    """A policy's zones are declared and have addresses: cidrs, or pools with hosts."""
    if spec.access is None:
        return
    for i, p in enumerate(spec.access.policies):
        for j, z in enumerate(p.zones):
            zone = spec.zones.get(z)
            if zone is None:
                yield Problem(f"access.policies.{i}.zones.{j}", f"unknown zone '{z}'{did_you_mean(z, spec.zones)}")
            elif not zone.cidrs and not any(spec.pools[q].count for q in zone.pools if q in spec.pools):
                yield Problem(f"access.policies.{i}.zones.{j}",
                              f"zone '{z}' has no hosts (its pools have count 0): it admits nobody")


@rule("access.policy-zones-reach-gateway",
      requires=("serving.gateway-pool", "serving.ports-reachable", "access.policy-zones-known"))
def policy_zones_reach_gateway(spec: Spec) -> Iterator[Problem]:
    """A policy's zones reach the gateway: a flow on the inference VLAN allows serving.gateway.port from each
    to the gateway pool's zone (else the policy admits what the firewall drops)."""
    gw = spec.serving.gateway
    if spec.access is None or gw is None:
        return
    gw_zone = _zone_of(spec, gw.pool)
    if gw_zone is None:
        return  # zones.every-pool-zoned
    for i, p in enumerate(spec.access.policies):
        for j, z in enumerate(p.zones):
            if not any(f.from_ == z and f.to == gw_zone and f.vlan == "inference" and _allows_tcp(f.ports, gw.port)
                       for f in spec.flows):
                yield Problem(f"access.policies.{i}.zones.{j}",
                              f"zone '{z}' cannot reach the gateway: no flow on the inference VLAN allows "
                              f"tcp/{gw.port} from '{z}' to '{gw_zone}'; add one or drop the zone")


@rule("access.gateway-limits")
def gateway_limits(spec: Spec) -> Iterator[Problem]:
    """The gateway's limits nest: max_conn_per_source is at most the gateway's maxconn (4096) and
    handshake_timeout_s is shorter than request_timeout_s."""
    gw = spec.serving.gateway
    if gw is None:
        return
    if gw.max_conn_per_source > GATEWAY_MAXCONN:
        yield Problem("serving.gateway.max_conn_per_source",
                      f"{gw.max_conn_per_source} is above the gateway's {GATEWAY_MAXCONN} connections in all: one "
                      f"source could take every connection; set at most {GATEWAY_MAXCONN}")
    if gw.handshake_timeout_s >= gw.request_timeout_s:
        yield Problem("serving.gateway.handshake_timeout_s",
                      f"{gw.handshake_timeout_s} s is not shorter than request_timeout_s {gw.request_timeout_s} s: "
                      "a connection that never sends a request would be held as long as a generation")


@rule("access.audit-retention")
def audit_retention(spec: Spec) -> Iterator[Problem]:
    """The audit log is kept at least 180 days, unless serving.gateway.audit.allow_short_retention."""
    gw = spec.serving.gateway
    if gw is None:
        return
    a = gw.audit
    if a.retention_days < MIN_RETENTION_DAYS and not a.allow_short_retention:
        yield Problem("serving.gateway.audit.retention_days",
                      f"{a.retention_days} days is below the {MIN_RETENTION_DAYS} an audit trail keeps: set at least "
                      f"{MIN_RETENTION_DAYS}, or allow_short_retention: true to shorten it deliberately")


@rule("access.audit-forward-reachable", layer=PLAN, requires=("serving.gateway-pool",),
      unless=("fabric.vlans", "site.supernet", "pools"))
def audit_forward_reachable(facts: PlanFacts) -> list[Problem]:
    """Every serving.gateway.audit.forward_to collector is off the gateway and reachable: a flow from the gateway's
    zone to a zone containing its address (an external zone's cidrs, or a host zone's planned addresses) allows
    its TCP port; for a DNS name, a flow from the gateway's zone to some external zone on that port."""
    spec = facts.spec
    gw = spec.serving.gateway
    if gw is None or not gw.audit.forward_to:
        return []
    gw_zone = _zone_of(spec, gw.pool)
    if gw_zone is None:
        return []  # zones.every-pool-zoned
    try:
        ip = facts.ip_plan()
    except PlanError:
        return []  # addresses.ip-plan reports it
    owner = {a: h for h in ip.hosts for a in h.addresses.values()}
    out: list[Problem] = []
    for i, url in enumerate(gw.audit.forward_to):
        host, port = url_host_port(url)
        key = f"serving.gateway.audit.forward_to.{i}"
        flows_out = [f for f in spec.flows if f.from_ == gw_zone and _allows_tcp(f.ports, port)]
        if not netaddr.valid_ipv4(host):
            external = [z for z, zone in spec.zones.items() if zone.cidrs]
            if not any(f.to in external for f in flows_out):
                out.append(Problem(key, f"no flow from zone '{gw_zone}' (the gateway) allows tcp/{port} to an external "
                                        f"zone, so {host} could not be reached; add the collectors' network as a zone "
                                        f"and a flow to it"))
            continue
        h = owner.get(host)
        if host == ip.vips.get("api"):
            out.append(Problem(key, f"{host} is the API virtual IP, held by a gateway: the audit log must be "
                                    "forwarded off the gateway to a collector elsewhere"))
            continue
        if h is not None and h.pool == gw.pool:
            out.append(Problem(key, f"{host} is {h.name}, a gateway: the audit log must be forwarded off the gateway "
                                    "to a collector elsewhere"))
            continue
        addr = netaddr.IPAddress(host)
        zones = sorted(z for z, zone in spec.zones.items()
                       if (zone.cidrs and any(addr in netaddr.IPNetwork(c) for c in zone.cidrs))
                       or (h is not None and h.pool in zone.pools))
        if not zones:
            out.append(Problem(key, f"no zone contains {host}: add the collector's network as an external zone "
                                    f"(zones.<name>.cidrs) and a flow from '{gw_zone}' to it allowing tcp/{port}"))
        elif not any(f.to in zones for f in flows_out):
            where = " or ".join(repr(z) for z in zones)
            out.append(Problem(key, f"no flow from zone '{gw_zone}' (the gateway) to {where} "
                                    f"allows tcp/{port}: the log could not be forwarded; add a flow "
                                    f"(from: {gw_zone}, to: {zones[0]}, ports: [tcp/{port}])"))
    return out
