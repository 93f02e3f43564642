"""What the host roles deploy, rendered per host: the nftables ruleset and the tc script.

The ``firewall`` and ``network`` roles never re-derive policy: they copy these renderings to
the host. How a host meets the fabric (network mode, interface names, whether the platform
owns the links) is a plan fact, :mod:`llmcluster.plan.hostnet`; this module only renders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmcluster.plan.hostnet import interface_names
from llmcluster.render.nftables import render_host_nftables
from llmcluster.render.tc import render_host_tc

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.plan.build import Plan


def host_artifacts(plan: Plan, host_name: str, mode: str | None = None) -> dict[str, Any]:
    """The rendered files of one host: ``nftables`` (``nft -f`` text), ``tc`` (sh script), ``interfaces``.

    ``mode`` renders for another network mode than the plan gives the host (``plan --out`` writes
    the production, tagged, tc scripts whatever the stack's mode)."""
    interfaces = (interface_names(plan.ip, host_name, mode) if mode is not None
                  else plan.hostnet.host(host_name).interfaces)
    return {
        "nftables": render_host_nftables(host_name, plan.firewall, plan.qos),
        "tc": render_host_tc(host_name, plan.ip, plan.qos, interfaces),
        "interfaces": dict(interfaces),
    }


def artifact_hostvars(plan: Plan, host_name: str) -> dict[str, Any]:
    """The host variables the ``network`` and ``firewall`` roles read (merged into the inventory).

    Where the hosts own their links (bare metal): the network mode and interface names from
    :mod:`llmcluster.plan.hostnet`, the ruleset and the tc script. Elsewhere (AWS) the platform
    owns interfaces, MTU and queues: only the ruleset (it matches addresses, not interface names).
    """
    if not plan.hostnet.hosts_own_links:
        return {"llmcluster_nftables_ruleset": render_host_nftables(host_name, plan.firewall, plan.qos)}
    a = host_artifacts(plan, host_name)
    return {
        "llmcluster_network_mode": plan.hostnet.mode(host_name),
        "llmcluster_interface_names": a["interfaces"],
        "llmcluster_nftables_ruleset": a["nftables"],
        "llmcluster_tc_script": a["tc"],
    }
