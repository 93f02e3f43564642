"""Where the serving runs (``serving.runtime``): the one place that decides what the hosts run.

Pure and import-free, so that the serving plan (``ServingPlan.units_on_hosts``, ``gateway_on_hosts``; the
inventory and ``ansible/site.yml`` read those) and the monitoring plan (its host targets, the monitor flows)
share the rule without importing each other.
"""

from __future__ import annotations


def units_on_hosts(runtime: str) -> bool:
    """Whether the hosts run the serving units (roles tensorrt_llm, serving_tls): only with ``systemd``; with
    ``kubernetes`` the pods serve."""
    return runtime == "systemd"


def gateway_on_hosts(runtime: str, has_gateway: bool) -> bool:
    """Whether the gateway pool's hosts run the HAProxy gateway (roles gateway, audit_log): a gateway, and the
    units on the hosts (on Kubernetes the gateway is a Deployment)."""
    return has_gateway and units_on_hosts(runtime)
