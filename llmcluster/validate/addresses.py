"""Address rules (plan-aware): the IP plan can be built (VLAN subnets fit the supernet without
overlapping, every host gets an address; every VLAN that runs out is reported, not only the first)."""

from __future__ import annotations

from llmcluster.errors import PlanError, Problem
from llmcluster.plan.ipam import exhausted_vlans
from llmcluster.validate.registry import PLAN, rule
from llmcluster.validate.runner import PlanFacts


@rule("addresses.ip-plan", layer=PLAN, unless=("fabric.vlans", "site.supernet", "pools"))
def ip_plan(facts: PlanFacts) -> list[Problem]:
    """The IP plan can be built: VLAN subnets fit site.supernet without overlapping and each VLAN has an
    address for every host, gateway and VIP. Skipped while VLANs, the supernet or pools have problems."""
    try:
        facts.ip_plan()
    except PlanError as exc:
        try:
            exhausted = exhausted_vlans(facts.spec)
        except PlanError:
            return [exc.problem]  # the VLANs do not fit the supernet: that one problem
        return [e.problem for e in exhausted] or [exc.problem]
    return []
