"""What the roles deploy per host (``llmcluster.render.hostfiles``): the renderings, in the host's mode."""

from __future__ import annotations

import pytest

from llmcluster.plan.hostnet import ACCESS_IFNAMES
from llmcluster.render.hostfiles import artifact_hostvars, host_artifacts
from llmcluster.render.nftables import render_host_nftables
from llmcluster.render.tc import render_host_tc
from tests.conftest import load_plan

BAREMETAL = ("lab", "prod-baremetal")


@pytest.mark.parametrize("stack", BAREMETAL)
@pytest.mark.parametrize("mode", ["tagged", "access"])
def test_artifacts_are_the_renderers_output(stack, mode):
    plan = load_plan(stack)
    for h in plan.ip.hosts:
        a = host_artifacts(plan, h.name, mode)
        assert set(a["interfaces"]) == set(h.addresses)
        assert a["nftables"] == render_host_nftables(h.name, plan.firewall, plan.qos)
        assert a["tc"] == render_host_tc(h.name, plan.ip, plan.qos, a["interfaces"])
        for role, ifname in a["interfaces"].items():
            want = f"vlan{plan.ip.vlans[role].id}" if mode == "tagged" else ACCESS_IFNAMES[role]
            assert ifname == want
            assert f"\nllmcluster_qos {ifname}\n" in a["tc"], f"{h.name}: the tc script shapes {ifname}"


def test_hostvars_carry_the_mode_and_the_renderings():
    plan = load_plan("lab")
    hv = artifact_hostvars(plan, "gpu-01")
    assert hv["llmcluster_network_mode"] == "access"
    assert hv["llmcluster_interface_names"] == {"mgmt": "mgmt", "inference": "inference",
                                                "storage_public": "stor-pub", "rdma": "rdma"}
    assert hv["llmcluster_nftables_ruleset"].startswith("#!/usr/sbin/nft -f\n")
    assert hv["llmcluster_tc_script"].startswith("#!/bin/sh\n")


def test_hostvars_follow_the_plans_mode():
    """The renderings use the interface names plan.hostnet gives the host, in either mode."""
    plan = load_plan("prod-baremetal")
    name = plan.ip.hosts[0].name
    hv = artifact_hostvars(plan, name)
    assert hv["llmcluster_network_mode"] == "tagged"
    assert set(hv["llmcluster_interface_names"].values()) == {f"vlan{plan.ip.vlans[r].id}"
                                                             for r in plan.ip.host(name).addresses}
    lab = artifact_hostvars(plan.in_lab(), name)
    assert lab["llmcluster_network_mode"] == "access"
    assert lab["llmcluster_interface_names"]["mgmt"] == "mgmt"
    assert "llmcluster_qos mgmt\n" in lab["llmcluster_tc_script"]


def test_cloud_hosts_get_only_the_ruleset():
    plan = load_plan("prod-aws")
    hv = artifact_hostvars(plan, plan.ip.hosts[0].name)
    assert set(hv) == {"llmcluster_nftables_ruleset"}
