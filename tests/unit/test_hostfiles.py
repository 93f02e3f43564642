"""What the roles deploy per host (``llmcluster.render.hostfiles``): the same renderings, named interfaces."""

from __future__ import annotations

import re

import pytest

from llmcluster.render.hostfiles import (
    ACCESS_IFNAMES,
    artifact_hostvars,
    host_artifacts,
    host_interfaces,
    network_mode,
)
from llmcluster.render.nftables import render_host_nftables
from llmcluster.render.tc import render_host_tc
from llmcluster.spec.models import VLAN_ROLES
from tests.conftest import load_plan, load_spec

BAREMETAL = ("lab", "prod-baremetal")


def test_access_names_cover_every_vlan_role_and_fit_the_kernel():
    assert set(ACCESS_IFNAMES) == set(VLAN_ROLES)
    assert len(set(ACCESS_IFNAMES.values())) == len(ACCESS_IFNAMES)
    for name in ACCESS_IFNAMES.values():
        assert re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", name), name


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
    hv = artifact_hostvars(plan, "gpu-01", "access")
    assert hv["llmcluster_network_mode"] == "access"
    assert hv["llmcluster_interface_names"] == {"mgmt": "mgmt", "inference": "inference",
                                                "storage_public": "stor-pub", "rdma": "rdma"}
    assert hv["llmcluster_nftables_ruleset"].startswith("#!/usr/sbin/nft -f\n")
    assert hv["llmcluster_tc_script"].startswith("#!/bin/sh\n")


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="tagged, access"):
        host_interfaces(load_plan("lab"), "gpu-01", "trunk")


def test_network_mode_of_the_stacks():
    assert network_mode(load_spec("lab")) == "access"
    assert network_mode(load_spec("prod-baremetal")) == "tagged"
