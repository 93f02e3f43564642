"""Address rules (plan-aware): the IP plan can be built (VLAN subnets fit the supernet without
overlapping, every host gets an address)."""

from __future__ import annotations

from llmcluster.errors import PlanError, Problem
from llmcluster.validate.registry import PLAN, rule
from llmcluster.validate.runner import PlanFacts


@rule("addresses.ip-plan", layer=PLAN, unless=("fabric.vlans", "site.supernet", "pools"))
def ip_plan(facts: PlanFacts) -> list[Problem]:
    """The IP plan can be built: VLAN subnets fit site.supernet without overlapping and each VLAN has an
    address for every host, gateway and VIP. Skipped while VLANs, the supernet or pools have problems."""
    try:
        facts.ip_plan()
    except PlanError as exc:
        return [exc.problem]
    return []
