"""The types of the backend protocol (:mod:`llmcluster.backends`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.plan.build import Plan
    from llmcluster.spec.secrets import SwitchCredentials


@dataclass(frozen=True)
class ComputeHost:
    """One host as its backend reports it."""

    name: str
    #: where Ansible reaches the host (``ansible_host``): a str, or a ``pulumi.Output[str]``
    #: when the platform assigns it at run time
    address: Any
    #: further host variables the platform sets (connection settings, instance ids; values may be
    #: Outputs), merged into the host's inventory entry
    hostvars: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendInputs:
    """What the program read from the stack config for the backend (secrets stay Outputs)."""

    switch_credentials: SwitchCredentials | None = None


class Compute(Protocol):
    hosts: Mapping[str, ComputeHost]
    exports: Mapping[str, Any]


def planned_hosts(plan: Plan) -> dict[str, ComputeHost]:
    """Every host at its planned mgmt address (platforms whose hosts have no run-time address)."""
    return {h.name: ComputeHost(h.name, h.mgmt_ip) for h in plan.ip.hosts}


@dataclass
class ComputeResult:
    """A plain :class:`Compute` for backends that are not one component."""

    hosts: dict[str, ComputeHost]
    exports: dict[str, Any] = field(default_factory=dict)
    #: the seam of the Kubernetes serving layer: a kubeconfig (an Output) where the backend made a
    #: cluster (AWS with EKS), else None
    kubeconfig: Any = None
