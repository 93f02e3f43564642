"""The lab: real Linux hosts, as network namespaces, on one machine.

The lab stack (``stacks/Pulumi.lab.yaml``) is brought to life here as a small rack of real,
isolated Linux hosts on the local machine: each host is a network namespace with an overlay
root filesystem over a cached Debian bookworm image and its own ``sshd``; each VLAN of the
plan is a Linux bridge; hosts get the plan's addresses and MTUs on one untagged interface per
VLAN. Ansible and the verify suite reach them over SSH exactly as they would reach servers.

What is *not* real: there are no GPUs, NVMe drives or NICs behind these hosts. GPUs and the
NVIDIA packages are simulated (later, under this package, and labelled as simulations). This
is a lab for testing the roles and checks end to end, **not production**, and nothing here is
meant to run on a production machine (it needs root and changes the machine's networking,
inside namespaces and a guard table that it removes again).

Modules: :mod:`~llmcluster.lab.image` (base image and lab SSH key),
:mod:`~llmcluster.lab.network` (bridges, veths, the forward guard),
:mod:`~llmcluster.lab.hosts` (namespaces, overlay roots, sshd),
:mod:`~llmcluster.lab.nspawn` (hosts that boot systemd under systemd-nspawn),
:mod:`~llmcluster.lab.vm` and :mod:`~llmcluster.lab.vm_image` (VM hosts: qemu guests with their own
kernel for md RAID, device-mapper and 802.1Q, and the VM leaf switch),
:mod:`~llmcluster.lab.state` (the state file that makes ``down`` exact) and
:mod:`~llmcluster.lab.runtime` (:class:`LabRuntime`: ``up``, ``down``, ``status``, inventory).
"""

from __future__ import annotations

from typing import Any

from llmcluster.lab._sys import LabError

__all__ = ["HostStatus", "LabError", "LabRuntime", "UpReport", "default_state_dir", "lab_down", "rich_progress"]

_FROM_RUNTIME = frozenset(__all__) - {"LabError"}


def __getattr__(name: str) -> Any:
    # The runtime (and with it pydantic, rich, the planners) loads on first use, not with the package:
    # `make lab` builds the base image with the machine's own python3 beside setup's pip install
    # (python3 -m llmcluster.lab.image; llmcluster.lab._sys and .image need only the standard library).
    if name in _FROM_RUNTIME:
        from llmcluster.lab import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
