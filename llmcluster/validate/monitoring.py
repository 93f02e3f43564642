"""Monitoring rules (docs/observability.md): the monitor pool exists and the zone policy lets it scrape."""

from __future__ import annotations

from collections.abc import Iterator

from llmcluster.errors import Problem
from llmcluster.plan.monitoring import AUDIT_STORE_PORT, required_ports
from llmcluster.spec.models import Spec
from llmcluster.validate.access import _allows_tcp, _zone_of
from llmcluster.validate.registry import rule


@rule("monitoring.pool")
def monitor_pool(spec: Spec) -> Iterator[Problem]:
    """monitoring.pool names a pool of role monitor with at least one host."""
    mon = spec.monitoring
    if mon is None:
        return
    pool = spec.pools.get(mon.pool)
    if pool is None:
        yield Problem("monitoring.pool", f"no pool '{mon.pool}': add a pool of role monitor (mgmt VLAN) for "
                                         "Prometheus, Alertmanager and the audit store")
    elif pool.role != "monitor":
        yield Problem("monitoring.pool", f"pool '{mon.pool}' has role {pool.role}: the monitoring host needs a pool "
                                         "of its own, role monitor")
    elif pool.count < 1:
        yield Problem("monitoring.pool", f"pool '{mon.pool}' has no hosts (count 0)")
    elif "mgmt" not in pool.vlans:
        yield Problem(f"pools.{mon.pool}.vlans", "the monitor pool scrapes over the mgmt VLAN: add mgmt")


@rule("monitoring.flows", requires=("monitoring.pool",), unless=("zones", "flows", "pools"))
def scrape_flows(spec: Spec) -> Iterator[Problem]:
    """Every scrape target port is admitted by a flow from the monitor pool's zone on the mgmt VLAN."""
    mon = spec.monitoring
    if mon is None:
        return
    mzone = _zone_of(spec, mon.pool)
    if mzone is None:
        yield Problem("zones", f"no zone holds the monitor pool '{mon.pool}' (monitoring.pool): add one, e.g. "
                               f"monitor: {{pools: [{mon.pool}]}}")
        return
    for pool, ports in sorted(required_ports(spec).items()):
        zone = _zone_of(spec, pool)
        if zone is None:
            continue  # zones.every-pool-zoned
        flows = [f for f in spec.flows if f.from_ == mzone and f.to == zone and f.vlan == "mgmt"]
        for port, job in sorted(ports.items()):
            if not any(_allows_tcp(f.ports, port) for f in flows):
                yield Problem("flows", f"no flow from zone '{mzone}' (monitoring.pool {mon.pool}) admits tcp/{port} "
                                       f"on mgmt to zone '{zone}' (pool {pool}): Prometheus could not scrape {job}; "
                                       f"add a flow {{from: {mzone}, to: {zone}, ports: [tcp/{port}], vlan: mgmt}}")


@rule("monitoring.audit-store-flow", requires=("monitoring.pool",), unless=("zones", "flows", "pools"))
def audit_store_flow(spec: Spec) -> Iterator[Problem]:
    """When the gateways ship to the monitor host's audit store (serving.gateway.audit.forward_to empty), a flow
    from the gateway's zone to the monitor zone admits the store's port on mgmt."""
    mon, gw = spec.monitoring, spec.serving.gateway
    if mon is None or gw is None or gw.audit.forward_to:
        return
    gzone, mzone = _zone_of(spec, gw.pool), _zone_of(spec, mon.pool)
    if gzone is None or mzone is None:
        return  # zones.every-pool-zoned, monitoring.flows
    if not any(f.from_ == gzone and f.to == mzone and f.vlan == "mgmt" and _allows_tcp(f.ports, AUDIT_STORE_PORT)
               for f in spec.flows):
        yield Problem("flows", f"no flow from zone '{gzone}' (the gateway) to '{mzone}' (monitoring.pool) admits "
                               f"tcp/{AUDIT_STORE_PORT} on mgmt: the audit trail could not reach the audit store; add "
                               f"{{from: {gzone}, to: {mzone}, ports: [tcp/{AUDIT_STORE_PORT}], vlan: mgmt}}")

