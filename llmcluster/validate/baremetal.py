"""Bare-metal rules: no AWS settings; preflight: every host answers, then matches its pool over SSH."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from llmcluster.errors import Problem
from llmcluster.plan.ipam import build_ip_plan
from llmcluster.spec.models import Spec
from llmcluster.validate.preflight import Target
from llmcluster.validate.registry import PREFLIGHT, rule


@rule("baremetal.no-aws-settings")
def no_aws_settings(spec: Spec) -> Iterator[Problem]:
    """Platform 'baremetal' has no llmcluster:aws section and no pool aws settings."""
    if spec.platform == "aws":
        return
    if spec.aws is not None:
        yield Problem("aws", "only valid with platform 'aws' (this stack is 'baremetal')")
    for name, pool in spec.pools.items():
        if pool.aws is not None:
            yield Problem(f"pools.{name}.aws", "only valid with platform 'aws'")


@rule("baremetal.hosts-reachable", layer=PREFLIGHT)
def hosts_reachable(target: Target) -> list[Problem]:
    """Every planned host answers on its management address (the SSH port) within the timeout."""
    hosts = list(build_ip_plan(target.spec).hosts)
    timeout, port = target.timeout, target.port

    def check(h) -> Problem | None:
        if target.probe(h.mgmt_ip, port, timeout):
            return None
        return Problem(f"pools.{h.pool}", f"host {h.name} ({h.mgmt_ip}) does not answer on tcp/{port} "
                                          f"within {timeout:g}s: is it racked, powered and on the mgmt VLAN?")

    with ThreadPoolExecutor(max_workers=max(1, min(target.max_workers, len(hosts) or 1))) as pool:
        found = list(pool.map(check, hosts))
    target.reachable = [h.name for h, p in zip(hosts, found, strict=True) if p is None]
    return [p for p in found if p is not None]


@rule("baremetal.host-facts", layer=PREFLIGHT)
def host_facts(target: Target) -> list[Problem]:
    """Each reachable host, logged in to over SSH, has its pool's GPUs and NVMe drives and runs baremetal.os
    (with ``facts``, as ``llmcluster validate --preflight`` runs it)."""
    from llmcluster.validate.hostfacts import check_host_facts

    if not target.facts or not target.reachable:
        return []
    return check_host_facts(target.spec, hosts=target.reachable, timeout=max(target.timeout, 5.0),
                            **target.facts_options)
