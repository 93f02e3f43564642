"""The gateway -> GPU hop in the plan: trtllm-serve's backend port (127.0.0.1), the TLS terminator's
port, the heads' FQDNs the gateway verifies, and the one client identity the terminators admit.

* ``serving.backend_port`` (default 8001) reaches the role as ``llmcluster_serving_plan.backend_port``;
* ``llmcluster_gateway.upstreams[].fqdn`` is a DNS SAN of that head's host certificate;
* ``llmcluster_gateway.upstream_client_cn`` is the gateway-upstream certificate's CN (PKI plan);
* rule ``serving.backend-port`` refuses a backend port equal to serving.port, one a flow opens to the
  serving pool, or one a GPU node already uses.
"""

from __future__ import annotations

import json

import pytest

from llmcluster.errors import SpecError
from llmcluster.inventory import build_inventory
from tests.conftest import STACK_NAMES, load_plan, load_spec


def test_backend_port_defaults_to_8001_and_reaches_the_role():
    plan = load_plan("lab")
    sp = plan.serving.to_vars()
    assert (sp["port"], sp["backend_port"]) == (8000, 8001)
    assert plan.serving.to_dict()["backend_port"] == 8001
    inv = build_inventory(plan)
    assert inv["all"]["vars"]["llmcluster_serving_plan"]["backend_port"] == 8001
    other = load_plan("lab", ("serving.backend_port=9123",))
    assert other.serving.to_vars()["backend_port"] == 9123
    assert build_inventory(other)["all"]["vars"]["llmcluster_serving_plan"]["backend_port"] == 9123


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_upstreams_carry_the_fqdn_of_the_heads_host_certificate(stack):
    plan = load_plan(stack)
    gw = plan.serving.gateway
    assert gw is not None, stack
    assert [u["name"] for u in gw.upstreams] == list(plan.serving.heads)
    for u in gw.upstreams:
        h = plan.ip.host(u["name"])
        assert set(u) == {"name", "address", "port", "fqdn"}
        assert u["fqdn"] == h.fqdn and u["port"] == plan.serving.port
        leaf = plan.pki.leaf(f"host-{h.name}")
        assert u["fqdn"] in leaf.dns_names and u["address"] in leaf.ip_addresses
    # The only client the terminators admit: the gateway-upstream certificate (a client certificate).
    up = plan.pki.leaf("gateway-upstream")
    assert gw.upstream_client_cn == up.common_name == f"gateway.{plan.spec.site.domain}"
    assert up.kind == "client"
    # ... and no other certificate of the PKI plan has that CN.
    assert [c.name for c in plan.pki.leaves if c.common_name == gw.upstream_client_cn] == ["gateway-upstream"]
    inv = build_inventory(plan)["all"]["vars"]["llmcluster_gateway"]
    assert inv["upstream_client_cn"] == up.common_name
    assert [u["fqdn"] for u in inv["upstreams"]] == [u["fqdn"] for u in gw.upstreams]


def test_the_serving_plan_is_deterministic():
    a, b = load_plan("prod-baremetal"), load_plan("prod-baremetal")
    assert json.dumps(a.serving.to_dict(), sort_keys=True) == json.dumps(b.serving.to_dict(), sort_keys=True)
    assert json.dumps(build_inventory(a), sort_keys=True) == json.dumps(build_inventory(b), sort_keys=True)


@pytest.mark.parametrize(("override", "message"), [
    ("serving.backend_port=8000", "equals serving.port"),
    ("serving.backend_port=22", "by flow 'ssh-gpu'"),
    ("serving.backend_port=9400", "by flow 'metrics-gpu'"),
    ("serving.backend_port=29505", "by flow 'nccl'"),
    ("serving.backend_port=5555", "DCGM host engine"),
])
def test_backend_port_rule_refuses(override, message):
    with pytest.raises(SpecError) as ei:
        load_spec("lab", (override,))
    problems = [p for p in ei.value.problems if p.path == "serving.backend_port"]
    assert len(problems) == 1, ei.value.problems
    assert message in problems[0].message
    assert ei.value.rules[problems[0]] == "serving.backend-port"


@pytest.mark.parametrize("value", ["'8001'", "0", "65536", "true", "8001.0"])
def test_backend_port_field_is_a_strict_port(value):
    with pytest.raises(SpecError) as ei:
        load_spec("lab", (f"serving.backend_port={value}",))
    assert any(p.path == "serving.backend_port" for p in ei.value.problems), ei.value.problems


def test_a_free_backend_port_is_accepted():
    spec = load_spec("lab", ("serving.backend_port=18001",))
    assert spec.serving.backend_port == 18001
