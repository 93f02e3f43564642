"""Compute backends: one protocol, chosen from a registry by ``spec.platform``.

A backend turns the plan into the platform's resources for the hosts and what they need
to reach each other (bare metal: node pools and the switch fabric; AWS: VPC, subnets,
security groups, instances) and reports the hosts back. The program then builds the
Ansible inventory **once**, from ``(plan, hosts)``, whatever the platform
(:func:`llmcluster.program.build`). Shared layers sit beside the backend, not inside it:
the PKI today, the Kubernetes serving layer next (it takes its provider through
``pulumi.ResourceOptions(providers=...)``, so it runs on EKS from the AWS backend or on an
existing cluster named by a kubeconfig on bare metal).

The protocol (:class:`ComputeBackend`)::

    backend(name, plan, inputs, opts) -> Compute
        name    component name prefix ("compute" in the program)
        plan    the whole plan; a backend hands each component only the part it needs
        inputs  secrets and settings the program read from the stack config (BackendInputs)
        opts    resource options for the backend's top-level components (providers, parent)
    Compute.hosts    plan host name -> ComputeHost (address Ansible uses: str or pulumi.Output)
    Compute.exports  stack outputs the backend adds (e.g. switchConfigs, switchApplied)

Adding a backend: write ``llmcluster/backends/<platform>.py`` with a ``build`` function of
that shape, add it to :data:`BACKENDS` (and the platform to the spec's ``platform`` enum);
its offline stand-ins for provider-computed values go to :mod:`llmcluster.standins`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from llmcluster.backends.base import BackendInputs, Compute, ComputeHost, ComputeResult

if TYPE_CHECKING:  # pragma: no cover
    import pulumi

    from llmcluster.plan.build import Plan

__all__ = ["BACKENDS", "BackendInputs", "Compute", "ComputeBackend", "ComputeHost", "ComputeResult", "get_backend"]

ComputeBackend = Callable[[str, "Plan", BackendInputs, "pulumi.ResourceOptions | None"], Compute]


def _baremetal(name, plan, inputs, opts):
    from llmcluster.backends.baremetal import build

    return build(name, plan, inputs, opts)


def _aws(name, plan, inputs, opts):
    from llmcluster.backends.aws import build

    return build(name, plan, inputs, opts)


#: platform -> backend (modules import lazily: a stack loads only its own backend's providers).
BACKENDS: dict[str, ComputeBackend] = {"baremetal": _baremetal, "aws": _aws}


def get_backend(platform: str) -> ComputeBackend:
    try:
        return BACKENDS[platform]
    except KeyError:
        raise ValueError(f"no compute backend for platform {platform!r} (have: {', '.join(BACKENDS)})") from None
