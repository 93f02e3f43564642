"""Host nftables ruleset: firewall plan (INPUT rules) + QoS plan (DSCP marking) -> ``nft -f`` text.

The ruleset owns one table, ``inet llmcluster``, and replaces it atomically
(``table inet llmcluster {}`` / ``delete table inet llmcluster`` / the table, in one
``nft -f`` transaction) without flushing other tables. Chains: ``input`` and ``forward``
(policy drop), ``output`` (policy accept) and ``postrouting`` (mangle priority) setting the
DSCP of kernel-path traffic per the QoS marking rules, matched on this host's source
addresses of the marking rule's VLAN.
"""

from __future__ import annotations

from functools import lru_cache

import jinja2

from llmcluster.plan.firewall import FirewallPlan, FirewallRule, HostFirewall
from llmcluster.plan.qos import MarkingRule, QosPlan
from llmcluster.render import template_environment

TEMPLATE = "host-firewall.nft.j2"
#: nftables limits comments to 128 bytes.
COMMENT_MAX = 120


def _addr(a: str) -> str:
    return a.removesuffix("/32")


def nft_set(items: tuple[str, ...] | list[str]) -> str:
    """``('10.0.0.1/32', '10.0.1.0/24')`` -> ``{ 10.0.0.1, 10.0.1.0/24 }``; refuses an empty set."""
    if not items:
        raise ValueError("refusing to render an empty nftables set (it would not mean 'nothing')")
    return "{ " + ", ".join(_addr(str(i)) for i in items) + " }"


def _comment(prefix: str, flows: tuple[str, ...]) -> str:
    text = f"{prefix}{', '.join(flows)}"
    if len(text) <= COMMENT_MAX:
        return text
    kept: list[str] = []
    for i, f in enumerate(flows):
        rest = len(flows) - i - 1
        candidate = f"{prefix}{', '.join([*kept, f])} +{rest} more"
        if len(candidate) > COMMENT_MAX:
            break
        kept.append(f)
    return f"{prefix}{', '.join(kept)} +{len(flows) - len(kept)} more"


def nft_comment(rule: FirewallRule) -> str:
    return _comment("flow ", rule.flows)


def mark_comment(m: MarkingRule) -> str:
    return _comment(f"qos {m.class_name}: ", m.flows)


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return template_environment({"nft_set": nft_set, "nft_comment": nft_comment, "mark_comment": mark_comment})


def host_markings(host: HostFirewall, qos: QosPlan) -> list[tuple[MarkingRule, tuple[str, ...]]]:
    """The marking rules that apply to ``host`` with its source addresses on their VLAN."""
    out = []
    for m in qos.markings:
        saddrs = host.local_addresses(m.vlan)
        if saddrs:
            out.append((m, saddrs))
    return out


def render_host_nftables(host_name: str, firewall_plan: FirewallPlan, qos_plan: QosPlan) -> str:
    """The complete ``nft -f`` ruleset of one host."""
    host = firewall_plan.host(host_name)
    for rule in host.rules:  # defence in depth: the plan already refuses these
        if not rule.sources or not rule.destinations:
            raise ValueError(f"{host_name}: rule for flows {rule.flows} has no source or destination")
    return _env().get_template(TEMPLATE).render(
        host=host, fw=firewall_plan, qos=qos_plan, markings=host_markings(host, qos_plan),
    )
