"""The Pulumi program body: spec -> plan -> components -> outputs.

``__main__.py`` calls :func:`main` under the real CLI; :mod:`llmcluster.offline` calls
:func:`build` under Pulumi's mock runtime. Both run exactly this code.

The compute backend comes from a registry by ``spec.platform`` (:mod:`llmcluster.backends`:
bare metal registers the node pools and the switch fabric; AWS the VPC, security groups, instances and
entry point of docs/aws.md) and reports
the hosts; the inventory is built once, here, from the plan and those hosts. Shared layers sit
beside the backend: the PKI, and the Kubernetes serving layer to come (its provider through
``opts``).
"""

from __future__ import annotations

from typing import Any

import pulumi

from llmcluster import outputs
from llmcluster.backends import BackendInputs, get_backend
from llmcluster.components.pki import Pki, PkiArgs
from llmcluster.inventory import build_inventory
from llmcluster.plan.build import Plan, build_plan
from llmcluster.spec.models import Spec
from llmcluster.spec.secrets import SwitchCredentials, missing_credentials_error, needs_switch_credentials


def build(spec: Spec, switch_credentials: SwitchCredentials | None = None,
          kubeconfig: Any = None, pki_dir: str | None = None) -> tuple[Plan, dict[str, Any]]:
    """Register every resource for ``spec``; return the plan and the stack outputs.

    ``switch_credentials`` (secret Outputs) are needed when ``baremetal.switch_apply`` is ``push``.
    ``pki_dir``: the export folder (``$LLMCLUSTER_PKI_DIR``) whose revocations (``pki revoke``) the CRL of the
    Kubernetes Secrets lists; read only for a ``serving.runtime: kubernetes`` stack (the hosts get crl.pem from
    the mtls role).
    """
    if needs_switch_credentials(spec) and switch_credentials is None:
        raise missing_credentials_error()  # before anything is registered
    plan = build_plan(spec)
    revocations = None
    if not plan.serving.units_on_hosts:
        from llmcluster.pki_crl import PKI_DIR_ENV, program_revocations

        revocations = program_revocations(pki_dir)  # a bad folder: a key-path error before anything is registered
        if revocations is None:
            pulumi.log.warn(f"{PKI_DIR_ENV} is not set: the Kubernetes Secrets' crl.pem lists no revocation; set it "
                            "to the `llmcluster pki export` folder (docs/kubernetes.md, Revocation)")
    pki = Pki("pki", PkiArgs(plan=plan.pki, revocations=revocations))
    compute = get_backend(spec.platform)("compute", plan, BackendInputs(switch_credentials=switch_credentials), None)
    inventory = _inventory(plan, {n: h.address for n, h in compute.hosts.items()},
                           {n: dict(h.hostvars) for n, h in compute.hosts.items() if h.hostvars})
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
        outputs.PKI_INTERMEDIATE_KEY: pki.intermediate.private_key_pem,  # a secret: signs the CRL
        outputs.PKI_ROOT_CRL: pki.root_crl_pem,
        outputs.AWS: None, outputs.KUBECONFIG: None,  # the AWS backend's; None elsewhere
        **compute.exports,
    }
    # The Kubernetes serving layer (serving.runtime: kubernetes): provider from EKS or the kubeconfig secret.
    from llmcluster.components.kubernetes import serving_layer

    exports[outputs.KUBERNETES_SERVING] = serving_layer(plan, pki, getattr(compute, "kubeconfig", None), kubeconfig,
                                                        revocations.digest if revocations and revocations.revoked
                                                        else None)
    return plan, exports


def _inventory(plan: Plan, addresses: dict[str, Any], hostvars: dict[str, dict[str, Any]] | None = None) -> Any:
    """The inventory from the plan and the hosts' addresses (an Output when the platform assigns them),
    with the platform's further host variables (connection settings) merged into each host's entry."""
    hostvars = hostvars or {}

    def merged(addrs: dict[str, Any], extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
        inv = build_inventory(plan, addrs)
        for host, hv in extra.items():
            inv["_meta"]["hostvars"][host].update(hv)
        return inv

    if hostvars or any(isinstance(a, pulumi.Output) for a in addresses.values()):
        return pulumi.Output.all(addresses, hostvars).apply(lambda a: merged(a[0], a[1]))
    return build_inventory(plan, addresses)


def main() -> None:
    """Entry point under ``pulumi up``: read config once, build, export."""
    from llmcluster.errors import LLMClusterError
    from llmcluster.validate import load_from_pulumi
    from llmcluster.spec.secrets import switch_credentials_from_pulumi

    try:
        spec = load_from_pulumi()
        kubeconfig = None
        k = spec.kubernetes
        if spec.serving.runtime == "kubernetes" and k is not None and k.kubeconfig_secret:
            ns, _, key = k.kubeconfig_secret.partition(":")
            kubeconfig = pulumi.Config(ns).require_secret(key)
        import os

        from llmcluster.pki_crl import PKI_DIR_ENV

        _, exports = build(spec, switch_credentials=switch_credentials_from_pulumi(spec), kubeconfig=kubeconfig,
                           pki_dir=os.environ.get(PKI_DIR_ENV) or None)
    except LLMClusterError as exc:
        # A clean, key-path error instead of a Python traceback; nothing was registered.
        raise pulumi.RunError(f"invalid llmcluster configuration:\n{exc}") from None
    for key, value in exports.items():
        pulumi.export(key, value)
