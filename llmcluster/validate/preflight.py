"""The preflight layer: checks against the target environment (optional; needs the target).

* ``baremetal``: every planned host answers on its management address (SSH port)
  (``baremetal.hosts-reachable``); then, with ``facts`` (what ``llmcluster validate --preflight``
  runs), it is logged in to over SSH and its GPUs, NVMe drives and OS release are compared with
  its pool's spec (``baremetal.host-facts``, :mod:`llmcluster.validate.hostfacts`).
* ``aws``: every pool's instance type is offered in the chosen availability zone
  (``aws.instance-types-offered``: ``ec2:DescribeInstanceTypeOfferings``; needs AWS credentials
  and ``boto3``).

The rules are registered in their domains' modules with ``layer=PREFLIGHT``; the functions here
run those of the stack's platform (its domain) in registry order over one :class:`Target`.
Checks return problems with key paths like the other layers; they never change anything.
The network probe is injectable so tests can point planned addresses at loopback
listeners (this project never sends test traffic anywhere else).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmcluster.errors import Problem
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import PREFLIGHT, rules
from llmcluster.validate.runner import Finding, run_rules

Probe = Callable[[str, int, float], bool]


def tcp_reachable(address: str, port: int, timeout: float) -> bool:
    """True when a TCP connection to address:port completes within ``timeout`` seconds."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class Target:
    """What the preflight rules of one run share: the spec, the caller's options, what earlier rules found."""

    spec: Spec
    timeout: float = 3.0
    probe: Probe = tcp_reachable
    port: int = 22
    max_workers: int = 32
    #: Log in to reachable hosts and compare their facts (``baremetal.host-facts``).
    facts: bool = False
    #: For :func:`llmcluster.validate.hostfacts.check_host_facts`: key file, host-key policy, GPU probe.
    facts_options: dict[str, Any] = field(default_factory=dict)
    #: An EC2 client (boto3 or an emulator); default: one for ``aws.region``.
    ec2_client: Any = None
    #: Host names that answered (set by ``baremetal.hosts-reachable``).
    reachable: list[str] | None = None


def run_preflight(target: Target) -> list[Finding]:
    """The preflight rules of the target's platform, in registry order."""
    return run_rules(rules(PREFLIGHT, domain=target.spec.platform), lambda r: target)


def preflight_baremetal(spec: Spec, *, timeout: float = 3.0, probe: Probe = tcp_reachable,
                        port: int = 22, max_workers: int = 32, facts: bool = False,
                        **facts_kwargs) -> list[Problem]:
    """Reachability of every host; with ``facts`` also its hardware and OS over SSH.

    ``facts_kwargs`` go to :func:`llmcluster.validate.hostfacts.check_host_facts` (key file,
    host-key policy, an injected GPU probe).
    """
    target = Target(spec, timeout=timeout, probe=probe, port=port, max_workers=max_workers, facts=facts,
                    facts_options=facts_kwargs)
    return [f.problem for f in run_preflight(target)]


def preflight_aws(spec: Spec, *, ec2_client=None) -> list[Problem]:
    return [f.problem for f in run_preflight(Target(spec, ec2_client=ec2_client))]


def preflight_findings(spec: Spec, *, timeout: float = 3.0, **kwargs) -> list[Finding]:
    """The preflight layer for the stack's platform, each problem with its rule id.

    Bare metal: reachability, then each host's facts over SSH (``facts=False`` skips those);
    ``kwargs`` as for :func:`preflight_baremetal` / :func:`preflight_aws`.
    """
    if spec.platform == "aws":
        return run_preflight(Target(spec, **kwargs))
    facts = kwargs.pop("facts", True)
    options = {k: kwargs.pop(k) for k in ("probe", "port", "max_workers") if k in kwargs}
    return run_preflight(Target(spec, timeout=timeout, facts=facts, facts_options=kwargs, **options))


def preflight(spec: Spec, *, timeout: float = 3.0, **kwargs) -> list[Problem]:
    """The preflight layer for the stack's platform (bare metal: reachability, then each host's facts)."""
    return [f.problem for f in preflight_findings(spec, timeout=timeout, **kwargs)]
