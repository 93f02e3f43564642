"""Reverse-path filtering per host (llmcluster.plan.hostsec), as the inventory hands it to the
common role: strict unless a flow admits routed sources on a VLAN other than mgmt."""

from __future__ import annotations

import yaml

from llmcluster.inventory import build_inventory
from llmcluster.plan.hostsec import LOOSE, STRICT, rp_filter
from tests.conftest import load_plan, load_spec


def _modes(plan) -> dict[str, dict]:
    return {h: hv["llmcluster_rp_filter"] for h, hv in build_inventory(plan)["_meta"]["hostvars"].items()}


def test_lab_hosts_filter_strictly():
    """Every lab source lies in the subnet of the VLAN it arrives on (the clients zone is a range
    of the inference VLAN): strict everywhere."""
    modes = _modes(load_plan("lab"))
    assert modes and all(m == {"mode": STRICT, "routed_sources": {}} for m in modes.values()), modes


def test_a_gateway_reached_from_a_routed_zone_filters_loosely():
    """prod-baremetal: clients 10.0.0.0/12 reach the gateways over the inference VLAN, whose subnet
    does not hold them, while the route back is the default route through mgmt."""
    plan = load_plan("prod-baremetal")
    modes = _modes(plan)
    gateways = [h.name for h in plan.ip.hosts if h.role == "gateway"]
    assert gateways
    for name, mode in modes.items():
        if name in gateways:
            assert mode == {"mode": LOOSE, "routed_sources": {"inference": ["10.0.0.0/12"]}}, name
        else:
            assert mode["mode"] == STRICT, (name, mode)


def _with_ops_flow(vlan: str):
    spec = load_spec("lab")
    flows = [f.model_dump(exclude_none=True) for f in spec.flows]
    flows.append({"name": "ops-storage", "from": "ops", "to": "storage", "ports": ["tcp/9283"], "vlan": vlan})
    overrides = ("zones.ops={cidrs: [192.0.2.0/24], description: an operations network routed in}",
                 "flows=" + yaml.safe_dump(flows, default_flow_style=True, width=100000).strip())
    return load_plan("lab", overrides)


def test_a_routed_source_on_a_data_vlan_makes_the_host_loose_and_on_mgmt_does_not():
    plan = _with_ops_flow("storage_public")
    r = rp_filter(plan.firewall, plan.ip, "storage-01")
    assert (r.mode, r.routed_sources) == (LOOSE, {"storage_public": ("192.0.2.0/24",)})
    assert rp_filter(plan.firewall, plan.ip, "gpu-01").mode == STRICT  # the flow does not reach it
    mgmt = _with_ops_flow("mgmt")
    assert rp_filter(mgmt.firewall, mgmt.ip, "storage-01") == rp_filter(mgmt.firewall, mgmt.ip, "gpu-01")
    assert rp_filter(mgmt.firewall, mgmt.ip, "storage-01").mode == STRICT  # the default route covers mgmt
