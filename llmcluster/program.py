"""The Pulumi program body: spec -> plan -> components -> outputs.

``__main__.py`` calls :func:`main` under the real CLI; :mod:`llmcluster.offline` calls
:func:`build` under Pulumi's mock runtime. Both run exactly this code.

Backends sit beside the PKI component, selected by ``spec.platform``: on bare metal the
switch fabric (:class:`~llmcluster.components.fabric.Fabric`: render-only, or push over SSH)
and the node pools (:class:`~llmcluster.components.baremetal.BaremetalCompute`, which also
gives the inventory); AWS (VPC, instances, EFA) takes the same plan objects; the Kubernetes
serving layer is shared.
"""

from __future__ import annotations

from typing import Any

import pulumi

from llmcluster import outputs
from llmcluster.components.pki import Pki, PkiArgs
from llmcluster.inventory import build_inventory
from llmcluster.plan.build import Plan, build_plan
from llmcluster.spec.models import Spec
from llmcluster.spec.secrets import SwitchCredentials, missing_credentials_error, needs_switch_credentials


def build(spec: Spec, switch_credentials: SwitchCredentials | None = None) -> tuple[Plan, dict[str, Any]]:
    """Register every resource for ``spec``; return the plan and the stack outputs.

    ``switch_credentials`` (secret Outputs) are needed when ``baremetal.switch_apply`` is ``push``.
    """
    if needs_switch_credentials(spec) and switch_credentials is None:
        raise missing_credentials_error()  # before anything is registered
    plan = build_plan(spec)
    pki = Pki("pki", PkiArgs(plan=plan.pki))
    inventory: dict[str, Any] = {}
    switch_configs: dict[str, str] = {}
    switch_applied: Any = {}
    if spec.platform == "baremetal":
        from llmcluster.components.baremetal import BaremetalCompute, BaremetalComputeArgs
        from llmcluster.components.fabric import Fabric, FabricArgs

        compute = BaremetalCompute("compute", BaremetalComputeArgs(plan=plan))
        inventory = compute.inventory
        if plan.switches is not None and spec.baremetal is not None:
            bm = spec.baremetal
            fabric = Fabric("fabric", FabricArgs(plan=plan.switches, apply=bm.switch_apply,
                                                 addresses=dict(bm.switch_mgmt), access=bm.switch_access,
                                                 credentials=switch_credentials))
            switch_configs, switch_applied = fabric.configs, fabric.applied
    else:
        inventory = build_inventory(plan)
    exports: dict[str, Any] = {
        outputs.SPEC_SUMMARY: {
            "stack": spec.stack, "platform": spec.platform, "site": spec.site.name,
            "model": spec.serving.model, "nodes": {n: p.count for n, p in spec.pools.items()},
        },
        outputs.IP_PLAN: plan.ip.to_dict(),
        outputs.CAPACITY: plan.capacity.to_dict(),
        outputs.INVENTORY: inventory,
        outputs.PKI_ROOT_CERT: pki.root_cert_pem,
        outputs.PKI_CHAIN: pki.chain_pem,
        outputs.PKI_CERTS: pki.cert_pems,
        outputs.PKI_KEYS: pki.private_key_pems,
        outputs.SWITCH_CONFIGS: switch_configs,
        outputs.SWITCH_APPLIED: switch_applied,
    }
    return plan, exports


def main() -> None:
    """Entry point under ``pulumi up``: read config once, build, export."""
    from llmcluster.errors import LLMClusterError
    from llmcluster.validate import load_from_pulumi
    from llmcluster.spec.secrets import switch_credentials_from_pulumi

    try:
        spec = load_from_pulumi()
        _, exports = build(spec, switch_credentials=switch_credentials_from_pulumi(spec))
    except LLMClusterError as exc:
        # A clean, key-path error instead of a Python traceback; nothing was registered.
        raise pulumi.RunError(f"invalid llmcluster configuration:\n{exc}") from None
    for key, value in exports.items():
        pulumi.export(key, value)
