"""The API access plan: who may call the model behind the gateway, and under which conditions (pure).

The gateway admits only the **named clients** of ``llmcluster:access`` (each has a client certificate,
leaf ``client-<name>`` of the PKI plan: CN ``<name>.clients.<domain>``, OU its role). Host certificates
(OU the host's role), ``gateway-upstream`` and ``admin`` (OU ``operators``) are no named client, so the
gateway answers them 403: host keys sit on every node, and a host certificate must never call the model.

A request then passes when **some** policy matches all of its attributes (first match allows; no match:
403, with the reason in the access log):

========== ==============================================================================
attribute  matched against
========== ==============================================================================
who        the certificate's CN in the policy's ``clients`` (as CNs), or its OU in ``roles``
model      the JSON body's ``"model"`` in ``models`` (default: the served model, ``serving.model``)
path       the request path in ``paths`` (a subset of :data:`API_PATHS`)
source     the source address inside ``sources``: the CIDRs of the policy's zones (external
           zones) or the planned addresses of their pools' hosts as /32 (host zones)
day        the UTC weekday (ISO 8601: Monday 1 ... Sunday 7) in ``days``
time       the UTC time as HHMM, ``hours[0] <= HHMM < hours[1]`` (whole day: ``[0, 2400]``)
========== ==============================================================================

The gateway role renders exactly this (``llmcluster_gateway.access``); nothing here is re-derived there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import netaddr

from llmcluster.plan.ipam import IpPlan
from llmcluster.spec.models import WEEKDAYS, Spec, hours_window

#: The OpenAI-compatible paths the gateway lets through to the model servers; everything else is
#: refused at the gateway (the GPU nodes' ``/metrics``, ``/version``, ``/health`` never reach a client).
API_PATHS: tuple[str, ...] = ("/v1/chat/completions", "/v1/completions", "/v1/models")

#: Weekday name -> ISO 8601 number (Monday 1 ... Sunday 7).
ISO_DAYS: dict[str, int] = {d: i + 1 for i, d in enumerate(WEEKDAYS)}
#: The whole day as an HHMM window.
WHOLE_DAY: tuple[int, int] = (0, 2400)


def client_common_name(name: str, domain: str) -> str:
    """The CN of client ``name``'s certificate: ``<name>.clients.<domain>``."""
    return f"{name}.clients.{domain}"


def client_cert_name(name: str) -> str:
    """The PKI plan's leaf name of client ``name``'s certificate (the export folder's file name)."""
    return f"client-{name}"


@dataclass(frozen=True)
class AccessClientPlan:
    """A named API client: the identity its certificate carries."""

    name: str
    role: str  # the certificate's OU
    common_name: str
    cert: str  # PKI leaf name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "common_name": self.common_name, "cert": self.cert}


@dataclass(frozen=True)
class AccessPolicyPlan:
    """One normalised allow rule (see the module docstring for how each attribute is matched)."""

    name: str
    roles: tuple[str, ...]
    clients: tuple[str, ...]  # common names
    models: tuple[str, ...]
    paths: tuple[str, ...]
    sources: tuple[str, ...]  # CIDRs, never empty
    days: tuple[int, ...]  # ISO weekday numbers, ascending
    hours: tuple[int, int]  # [start, end) as HHMM

    def __post_init__(self) -> None:
        # An empty list must never mean "any": validation refuses such a policy before it gets here.
        for attr in ("models", "paths", "sources", "days"):
            if not getattr(self, attr):
                raise ValueError(f"policy {self.name}: no {attr} (an empty list would admit nobody, never anybody)")
        if not self.roles and not self.clients:
            raise ValueError(f"policy {self.name}: names neither roles nor clients")
        start, end = self.hours
        if not 0 <= start < end <= 2400:
            raise ValueError(f"policy {self.name}: hours {self.hours} is not a window within one day")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "roles": list(self.roles), "clients": list(self.clients),
                "models": list(self.models), "paths": list(self.paths), "sources": list(self.sources),
                "days": list(self.days), "hours": list(self.hours)}


@dataclass(frozen=True)
class AccessPlan:
    """The named clients and the normalised policies (empty without ``llmcluster:access``)."""

    clients: tuple[AccessClientPlan, ...] = ()
    policies: tuple[AccessPolicyPlan, ...] = ()
    api_paths: tuple[str, ...] = API_PATHS

    def client(self, name: str) -> AccessClientPlan:
        for c in self.clients:
            if c.name == name:
                return c
        raise KeyError(name)

    def caller_of(self, path: str = "/v1/chat/completions") -> str:
        """The PKI leaf whose certificate calls ``path`` (what ``llmcluster chat`` and the lab summary
        use): the first named client (by name) that a policy admits there by its CN or its role;
        ``admin`` (the operators' certificate) where the stack names no client, as the gateway then
        admits any client certificate of the cluster CA."""
        if not self.clients:
            return "admin"
        for c in self.clients:
            if any(path in p.paths and (c.role in p.roles or c.common_name in p.clients) for p in self.policies):
                return c.cert
        return "admin"

    def to_dict(self) -> dict[str, Any]:
        """``llmcluster_gateway.access`` of the inventory (and the plan document's ``access``)."""
        return {"api_paths": list(self.api_paths), "clients": [c.to_dict() for c in self.clients],
                "policies": [p.to_dict() for p in self.policies]}


def _ip_key(cidr: str) -> tuple[int, int]:
    net = netaddr.IPNetwork(cidr)
    return int(net.first), net.prefixlen


def zone_sources(spec: Spec, ip: IpPlan, zone: str) -> tuple[str, ...]:
    """The source CIDRs of ``zone``: its cidrs (external), or every planned address of its pools' hosts
    as /32 (host zones); sorted by address, each once. Empty for a zone of empty pools."""
    z = spec.zones[zone]
    if z.cidrs:
        found = {str(netaddr.IPNetwork(c).cidr) for c in z.cidrs}
    else:
        found = {f"{a}/32" for h in ip.hosts if h.pool in z.pools for a in h.addresses.values()}
    return tuple(sorted(found, key=_ip_key))


def build_access_plan(spec: Spec, ip: IpPlan) -> AccessPlan:
    """The access plan of a validated spec (clients by name; policies in spec order)."""
    access = spec.access
    if access is None:
        return AccessPlan()
    domain = spec.site.domain
    clients = tuple(AccessClientPlan(name=n, role=c.role, common_name=client_common_name(n, domain),
                                     cert=client_cert_name(n))
                    for n, c in sorted(access.clients.items()))
    order = {p: i for i, p in enumerate(API_PATHS)}
    policies = []
    for p in access.policies:
        sources: set[str] = set()
        for zone in p.zones:
            sources.update(zone_sources(spec, ip, zone))
        models = p.models if p.models is not None else (spec.serving.model,)
        policies.append(AccessPolicyPlan(
            name=p.name, roles=tuple(sorted(p.roles)),
            clients=tuple(sorted(client_common_name(c, domain) for c in p.clients)),
            models=tuple(sorted(models)), paths=tuple(sorted(p.paths, key=lambda x: (order.get(x, 99), x))),
            sources=tuple(sorted(sources, key=_ip_key)), days=tuple(sorted(ISO_DAYS[d] for d in p.days)),
            hours=hours_window(p.hours)))
    return AccessPlan(clients=clients, policies=tuple(policies))
