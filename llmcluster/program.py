"""The Pulumi program body: spec -> plan -> components -> outputs.

``__main__.py`` calls :func:`main` under the real CLI; :mod:`llmcluster.offline` calls
:func:`build` under Pulumi's mock runtime. Both run exactly this code.

Seams for the backends that later issues add: the bare-metal (switch fabric, hosts) and
AWS (VPC, instances, EFA) components take the same plan objects and sit beside the PKI
component here, selected by ``spec.platform``; the Kubernetes serving layer is shared.
"""

from __future__ import annotations

from typing import Any

import pulumi

from llmcluster import outputs
from llmcluster.components.pki import Pki, PkiArgs
from llmcluster.inventory import build_inventory
from llmcluster.plan.build import Plan, build_plan
from llmcluster.spec.models import Spec


def build(spec: Spec) -> tuple[Plan, dict[str, Any]]:
    """Register every resource for ``spec``; return the plan and the stack outputs."""
    plan = build_plan(spec)
    pki = Pki("pki", PkiArgs(plan=plan.pki))
    exports: dict[str, Any] = {
        outputs.SPEC_SUMMARY: {
            "stack": spec.stack, "platform": spec.platform, "site": spec.site.name,
            "model": spec.serving.model, "nodes": {n: p.count for n, p in spec.pools.items()},
        },
        outputs.IP_PLAN: plan.ip.to_dict(),
        outputs.CAPACITY: plan.capacity.to_dict(),
        outputs.INVENTORY: build_inventory(plan),
        outputs.PKI_ROOT_CERT: pki.root_cert_pem,
        outputs.PKI_CHAIN: pki.chain_pem,
        outputs.PKI_CERTS: pki.cert_pems,
        outputs.PKI_KEYS: pki.private_key_pems,
    }
    return plan, exports


def main() -> None:
    """Entry point under ``pulumi up``: read config once, build, export."""
    from llmcluster.errors import LLMClusterError
    from llmcluster.spec.loader import load_from_pulumi

    try:
        spec = load_from_pulumi()
        _, exports = build(spec)
    except LLMClusterError as exc:
        # A clean, key-path error instead of a Python traceback; nothing was registered.
        raise pulumi.RunError(f"invalid llmcluster configuration:\n{exc}") from None
    for key, value in exports.items():
        pulumi.export(key, value)
