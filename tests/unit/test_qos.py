"""QoS planner: RoCEv2 defaults, vendor CNP priority, custom classes and host marking rules."""

from __future__ import annotations

import functools
import json

import pytest

from llmcluster.errors import PlanError
from llmcluster.plan.qos import build_qos_plan, dscp_name
from llmcluster.spec import parse_stack_file
from tests.conftest import STACKS


@functools.cache
def spec_of(stack: str, overrides: tuple[str, ...] = ()):
    return parse_stack_file(STACKS / f"Pulumi.{stack}.yaml", list(overrides))


def test_defaults_roce_lossless_on_priority_3():
    plan = build_qos_plan(spec_of("lab"))
    assert plan.defaults_used
    roce = plan.by_traffic("roce")
    assert (roce.dscp, roce.pcp, roce.queue, roce.lossless, roce.ecn) == (26, 3, 3, True, True)
    assert plan.dscp_to_pcp[26] == 3
    assert plan.pfc_priorities == (3,)
    assert plan.trust == "dscp"
    assert plan.roce_tos == 106  # 26 << 2 | ECT(0)


def test_cnp_priority_depends_on_nic_vendor():
    nvidia = build_qos_plan(spec_of("lab"))
    broadcom = build_qos_plan(spec_of("lab", ("fabric.qos.nic_vendor=broadcom",)))
    assert (nvidia.by_traffic("cnp").dscp, nvidia.by_traffic("cnp").pcp) == (48, 6)
    assert (broadcom.by_traffic("cnp").dscp, broadcom.by_traffic("cnp").pcp) == (48, 7)
    assert nvidia.dscp_to_pcp[48] == 6 and broadcom.dscp_to_pcp[48] == 7
    for plan in (nvidia, broadcom):
        cnp = plan.by_traffic("cnp")
        assert cnp.strict and not cnp.lossless


def test_default_classes_and_shares():
    plan = build_qos_plan(spec_of("prod-baremetal"))
    assert [(c.name, c.dscp, c.pcp, c.queue, c.bandwidth_percent) for c in plan.classes] == [
        ("roce", 26, 3, 3, 50),
        ("cnp", 48, 6, 6, 0),
        ("inference", 34, 4, 4, 20),
        ("storage", 10, 1, 1, 20),
        ("mgmt", 16, 2, 2, 5),
        ("default", 0, 0, 0, 5),
    ]
    assert sum(c.bandwidth_percent for c in plan.classes) <= 100
    assert plan.by_traffic("inference").pcp > plan.by_traffic("storage").pcp
    assert plan.dscp_to_pcp == {0: 0, 10: 1, 16: 2, 26: 3, 34: 4, 48: 6}
    assert [(e.class_name, e.queue, e.min_kb, e.max_kb) for e in plan.ecn] == [
        ("roce", 3, 150, 1500), ("storage", 1, 150, 1500),
    ]
    assert plan.default_class.name == "default"


def test_dscp_names():
    assert [dscp_name(d) for d in (34, 10, 16, 26, 48, 0, 46, 5)] == [
        "af41", "af11", "cs2", "af31", "cs6", "cs0", "ef", "5"]


def test_marking_rules_follow_flow_vlans():
    plan = build_qos_plan(spec_of("prod-baremetal"))
    got = [(m.vlan, m.class_name, m.dscp, m.proto, m.port_strings) for m in plan.markings]
    assert got == [
        ("mgmt", "mgmt", 16, "tcp", ("22", "8000", "9100", "9283", "9400", "19532")),  # 19532: audit-forward
        ("inference", "inference", 34, "tcp", ("443", "8000")),
        ("storage_public", "storage", 10, "tcp", ("3300", "6789", "6800-7300")),
        ("storage_cluster", "storage", 10, "tcp", ("6800-7300",)),
    ]
    # RDMA flows are not marked by the host: the NIC marks RoCE; TCP must not enter the
    # lossless queue.
    assert all(m.vlan != "rdma" for m in plan.markings)
    inference = plan.markings[1]
    assert inference.flows == ("api", "serve")


def test_custom_classes_replace_the_defaults():
    classes = (
        "fabric.qos.classes=["
        "{name: rdma, traffic: roce, dscp: 24, pcp: 3, queue: 3, lossless: true, ecn: true, bandwidth_percent: 60},"
        "{name: cn, traffic: cnp, dscp: 46, pcp: 6, queue: 6},"
        "{name: api, traffic: inference, dscp: 36, pcp: 5, queue: 5, bandwidth_percent: 30},"
        "{name: be, traffic: default, dscp: 0, pcp: 0, queue: 0, bandwidth_percent: 10}]"
    )
    plan = build_qos_plan(spec_of("lab", (classes,)))
    assert not plan.defaults_used
    assert plan.dscp_to_pcp == {0: 0, 24: 3, 36: 5, 46: 6}
    assert plan.by_traffic("cnp").strict
    assert plan.by_traffic("storage") is None
    # No storage/mgmt class: only inference flows are marked.
    assert [(m.vlan, m.class_name, m.dscp) for m in plan.markings] == [("inference", "api", 36)]


def test_oversubscribed_custom_classes_are_a_plan_error():
    classes = (
        "fabric.qos.classes=[{name: a, traffic: inference, dscp: 34, pcp: 4, queue: 4, bandwidth_percent: 70},"
        "{name: b, traffic: default, dscp: 0, pcp: 0, queue: 0, bandwidth_percent: 40}]"
    )
    with pytest.raises(PlanError, match="adds up to 110"):
        build_qos_plan(spec_of("lab", (classes,)))


def test_to_dict_keys_and_json():
    d = build_qos_plan(spec_of("lab")).to_dict()
    json.dumps(d)
    assert set(d) == {"nic_vendor", "trust", "defaults_used", "classes", "dscp_to_pcp", "pfc_priorities", "ecn",
                      "default_class", "nic", "markings"}
    assert d["nic"] == {"roce_dscp": 26, "roce_pcp": 3, "roce_tos": 106, "cnp_dscp": 48, "cnp_pcp": 6}
    assert d["dscp_to_pcp"][0] == {"dscp": 0, "pcp": 0}
