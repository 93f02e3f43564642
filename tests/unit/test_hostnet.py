"""Host networking facts (``llmcluster.plan.hostnet``): who owns the links, the mode, the names."""

from __future__ import annotations

import re

import pytest

from llmcluster.plan.hostnet import (
    ACCESS_IFNAMES,
    DEFAULT_OS,
    build_hostnet_plan,
    host_os,
    interface_names,
    stack_network_mode,
)
from llmcluster.spec.models import VLAN_ROLES
from tests.conftest import load_plan, load_spec


def test_access_names_cover_every_vlan_role_and_fit_the_kernel():
    assert set(ACCESS_IFNAMES) == set(VLAN_ROLES)
    assert len(set(ACCESS_IFNAMES.values())) == len(ACCESS_IFNAMES)
    for name in ACCESS_IFNAMES.values():
        assert re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", name), name


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="tagged, access"):
        interface_names(load_plan("lab").ip, "gpu-01", "trunk")


def test_network_mode_of_the_stacks():
    assert stack_network_mode(load_spec("lab")) == "access"
    assert stack_network_mode(load_spec("prod-baremetal")) == "tagged"


def test_network_mode_is_a_spec_field_not_the_stack_name():
    # The lab stack set to tagged is tagged (the stack's name decides nothing) ...
    spec = load_spec("lab", ("baremetal.network_mode=tagged",))
    assert stack_network_mode(spec) == "tagged"
    plan = load_plan("lab", ("baremetal.network_mode=tagged",))
    assert plan.hostnet.mode("gpu-01") == "tagged"
    assert plan.hostnet.host("gpu-01").interfaces["inference"] == "vlan20"
    # ... and a production stack asked for access ports gets them.
    prod = load_plan("prod-baremetal", ("baremetal.network_mode=access",))
    assert {prod.hostnet.mode(h.name) for h in prod.ip.hosts} == {"access"}


def test_network_mode_is_validated():
    from llmcluster.errors import SpecError

    with pytest.raises(SpecError, match="baremetal.network_mode"):
        load_spec("lab", ("baremetal.network_mode=trunk",))


def test_lab_hosts_may_attach_tagged():
    spec = load_spec("lab", ("lab.hosts={gpu-02: {kind: vm, network: tagged}}",))
    plan = load_plan("lab", ("lab.hosts={gpu-02: {kind: vm, network: tagged}}",))
    assert plan.hostnet.mode("gpu-02") == "tagged" and plan.hostnet.mode("gpu-01") == "access"
    assert plan.hostnet.host("gpu-02").interfaces["mgmt"] == "vlan10"
    assert build_hostnet_plan(spec, plan.ip, in_lab=True).mode("gpu-02") == "tagged"


def test_the_lab_realises_production_stacks_in_access_mode():
    plan = load_plan("prod-baremetal")
    assert {plan.hostnet.mode(h.name) for h in plan.ip.hosts} == {"tagged"}
    lab = plan.in_lab()
    assert {lab.hostnet.mode(h.name) for h in lab.ip.hosts} == {"access"}
    assert lab.ip is plan.ip and lab.serving is plan.serving


def test_the_network_roles_default_uplink_is_the_plans():
    import yaml

    from llmcluster.plan.hostnet import DEFAULT_UPLINK
    from tests.conftest import ROOT

    defaults = yaml.safe_load((ROOT / "roles" / "network" / "defaults" / "main.yml").read_text())
    assert defaults["network_uplink"] == f"{{{{ llmcluster_uplink | default('{DEFAULT_UPLINK}') }}}}"


def test_cloud_platforms_own_the_links():
    plan = load_plan("prod-aws")
    assert plan.hostnet.hosts_own_links is False
    assert all(h.interfaces == {} and h.mode is None for h in plan.hostnet.hosts.values())
    assert plan.hostnet.os == DEFAULT_OS == host_os(plan.spec)
    assert load_plan("lab").hostnet.os == "debian-12"
    assert load_plan("lab").hostnet.ssh_user == "root"
