"""Layer 3: environment preflight (optional; needs the target environment).

* ``baremetal``: every planned host answers on its management address (SSH port); then,
  with ``facts`` (what ``llmcluster validate --preflight`` runs), it is logged in to over
  SSH and its GPUs, NVMe drives and OS release are compared with its pool's spec
  (:mod:`llmcluster.spec.hostfacts`).
* ``aws``: every pool's instance type is offered in the chosen availability zone
  (``ec2:DescribeInstanceTypeOfferings``; needs AWS credentials and ``boto3``).

Checks return problems with key paths like the other layers; they never change anything.
The network probe is injectable so tests can point planned addresses at loopback
listeners (this project never sends test traffic anywhere else).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from llmcluster.errors import Problem
from llmcluster.spec.models import Spec

Probe = Callable[[str, int, float], bool]


def tcp_reachable(address: str, port: int, timeout: float) -> bool:
    """True when a TCP connection to address:port completes within ``timeout`` seconds."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def preflight_baremetal(spec: Spec, *, timeout: float = 3.0, probe: Probe = tcp_reachable,
                        port: int = 22, max_workers: int = 32, facts: bool = False,
                        **facts_kwargs) -> list[Problem]:
    """Reachability of every host; with ``facts`` also its hardware and OS over SSH.

    ``facts_kwargs`` go to :func:`llmcluster.spec.hostfacts.check_host_facts` (key file,
    host-key policy, an injected GPU probe).
    """
    from llmcluster.plan.ipam import build_ip_plan

    ip = build_ip_plan(spec)
    hosts = list(ip.hosts)

    def check(h) -> Problem | None:
        if probe(h.mgmt_ip, port, timeout):
            return None
        return Problem(f"pools.{h.pool}", f"host {h.name} ({h.mgmt_ip}) does not answer on tcp/{port} "
                                          f"within {timeout:g}s: is it racked, powered and on the mgmt VLAN?")

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(hosts) or 1))) as pool:
        found = list(pool.map(check, hosts))
    problems = [p for p in found if p is not None]
    if facts:
        from llmcluster.spec.hostfacts import check_host_facts

        reachable = [h.name for h, p in zip(hosts, found, strict=True) if p is None]
        if reachable:
            problems += check_host_facts(spec, hosts=reachable, timeout=max(timeout, 5.0), **facts_kwargs)
    return problems


def preflight_aws(spec: Spec, *, ec2_client=None) -> list[Problem]:
    assert spec.aws is not None
    if ec2_client is None:
        try:
            import boto3
        except ImportError:
            return [Problem("aws", "preflight needs boto3: pip install boto3")]
        ec2_client = boto3.client("ec2", region_name=spec.aws.region)
    problems: list[Problem] = []
    types = sorted({p.aws.instance_type for p in spec.pools.values() if p.aws is not None})
    try:
        resp = ec2_client.describe_instance_type_offerings(
            LocationType="availability-zone",
            Filters=[{"Name": "location", "Values": [spec.aws.availability_zone]},
                     {"Name": "instance-type", "Values": types}],
        )
    except Exception as exc:  # botocore raises many types: credentials, endpoint, throttling
        return [Problem("aws", f"cannot query EC2 offerings in {spec.aws.region}: {exc.__class__.__name__}: {exc}")]
    offered = {o["InstanceType"] for o in resp.get("InstanceTypeOfferings", [])}
    for name, pool in spec.pools.items():
        if pool.aws is not None and pool.aws.instance_type not in offered:
            problems.append(Problem(f"pools.{name}.aws.instance_type",
                                    f"{pool.aws.instance_type} is not offered in {spec.aws.availability_zone}: "
                                    "pick another availability_zone or instance type"))
    return problems


def preflight(spec: Spec, *, timeout: float = 3.0, **kwargs) -> list[Problem]:
    """Layer 3 for the stack's platform (bare metal: reachability, then each host's facts over SSH)."""
    if spec.platform == "aws":
        return preflight_aws(spec, **kwargs)
    kwargs.setdefault("facts", True)
    return preflight_baremetal(spec, timeout=timeout, **kwargs)
