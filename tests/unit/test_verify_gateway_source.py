"""The verification suite's gateway cases and client source (llmcluster/verify/gateway.py), shared by
the gateway and audit checks: which host/check pairs exist, where requests start, and why none can."""

from __future__ import annotations

from llmcluster.verify import gateway as G
from tests.conftest import load_plan


def test_cases_are_every_check_of_every_gateway_host_the_inventory_has():
    plan = load_plan("lab")
    hosts = [h.name for h in plan.ip.hosts_in_pool(plan.spec.serving.gateway.pool)]
    assert hosts
    cases = G.gateway_host_checks(plan, dict.fromkeys(hosts, {}), ("a", "b"))
    assert [c.id for c in cases] == [f"{h}-{n}" for h in hosts for n in ("a", "b")]
    assert G.gateway_host_checks(plan, {}, ("a",)) == []  # hosts the inventory lacks are no case


def test_client_source_from_the_api_flow_and_the_probes(tmp_path):
    plan = load_plan("lab")
    gvars = plan.serving.gateway.to_dict()
    (tmp_path / "private").mkdir()
    missing = G.client_source(plan, gvars, str(tmp_path), {"clients": {"netns": "probe-clients"}})
    assert missing.netns is None and "no client key material" in missing.missing
    assert "no client key material" in G.client_source(plan, gvars, None, {}).missing
    (tmp_path / "private" / "admin.key").write_text("key")
    src = G.client_source(plan, gvars, str(tmp_path), {"clients": {"netns": "probe-clients"}})
    assert (src.pki, src.zone, src.netns, src.missing) == (tmp_path, "clients", "probe-clients", None)
    none = G.client_source(plan, gvars, str(tmp_path), {"logs": {"netns": "probe-logs"}})
    assert none.netns is None and none.missing == "no client source in zone 'clients' (llmcluster_verify_probes)"
