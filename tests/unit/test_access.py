"""API access control: the spec models (days, hours, URLs, sizes), the access plan (clients, CIDR resolution,
ISO days, HHMM windows), the gateway plan's new keys and derived body limit, the PKI client leaves, and the
inventory (the client leaves are installed on no host)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from llmcluster.plan.access import (
    API_PATHS,
    ISO_DAYS,
    AccessPolicyPlan,
    build_access_plan,
    client_cert_name,
    client_common_name,
    zone_sources,
)
from llmcluster.plan.build import build_plan
from llmcluster.plan.ipam import build_ip_plan
from llmcluster.plan.pki import CLIENT_USES, build_pki_plan
from llmcluster.plan.serving import BODY_OVERHEAD_BYTES, BODY_BYTES_PER_TOKEN, derived_max_body_bytes
from llmcluster.spec import parse_stack_file
from llmcluster.spec.models import AccessPolicy, Audit, hours_window, size_bytes, url_host_port
from llmcluster.validate import check_spec
from tests.conftest import STACK_NAMES, STACKS, load_plan, load_spec

LAB = STACKS / "Pulumi.lab.yaml"
POLICY = dict(name="p", roles=("app",), paths=("/v1/models",), zones=("clients",))

#: llmcluster_gateway's keys (the contract), less ``fqdn`` of the upstreams (another change adds it).
GATEWAY_KEYS = {"pool", "port", "hostname", "vip", "upstreams", "rate_limit_rps", "request_timeout_s",
                "handshake_timeout_s", "idle_timeout_s", "max_conn_per_source", "max_conn_rate_per_source",
                "max_body_bytes", "upstream_client_cn", "access", "audit"}


def _lab(overrides=()):
    """The lab spec through the field layer only (plan tests build what rules would refuse)."""
    return parse_stack_file(LAB, list(overrides))


# --------------------------------------------------------------------------- models


def test_policy_defaults_every_day_the_whole_day_and_the_served_model():
    p = AccessPolicy(**POLICY)
    assert p.days == ("mon", "tue", "wed", "thu", "fri", "sat", "sun") and p.hours == "00:00-24:00"
    assert p.models is None  # the plan reads it as serving.model


@pytest.mark.parametrize(("text", "window"), [("00:00-24:00", (0, 2400)), ("08:00-18:00", (800, 1800)),
                                              ("07:30-07:31", (730, 731)), ("23:59-24:00", (2359, 2400))])
def test_hours_become_hhmm_numbers(text, window):
    assert AccessPolicy(**POLICY, hours=text).hours == text
    assert hours_window(text) == window


@pytest.mark.parametrize("bad", ["18:00-08:00", "08:00-08:00", "8:00-18:00", "08:00-24:01", "24:00-24:00",
                                 "08:60-09:00", "08:00 - 18:00", "08:00-18:00\n", "０８:00-18:00", "08:00",
                                 "00:00-25:00"])
def test_malformed_hours_are_refused(bad):
    with pytest.raises(ValidationError):
        AccessPolicy(**POLICY, hours=bad)


@pytest.mark.parametrize("bad", [dict(days=()), dict(days=("mon", "mon")), dict(days=("Mon",)),
                                 dict(days=("monday",)), dict(roles=(), clients=()), dict(paths=()),
                                 dict(zones=()), dict(models=()), dict(roles=("app", "app")),
                                 dict(zones=("clients", "clients")), dict(clients=("Not_A_Label",))])
def test_malformed_policies_are_refused(bad):
    with pytest.raises(ValidationError):
        AccessPolicy(**{**POLICY, **bad})


def test_a_policy_may_name_clients_instead_of_roles():
    assert AccessPolicy(**{**POLICY, "roles": (), "clients": ("lab-app",)}).clients == ("lab-app",)


@pytest.mark.parametrize(("url", "host", "port"), [("https://10.42.0.9:19532", "10.42.0.9", 19532),
                                                   ("https://logs.example.internal:443", "logs.example.internal",
                                                    443)])
def test_forward_to_urls(url, host, port):
    assert Audit(forward_to=(url,)).forward_to == (url,)
    assert url_host_port(url) == (host, port)


@pytest.mark.parametrize("bad", ["http://10.42.0.9:19532", "https://10.42.0.9", "https://10.42.0.9:0",
                                 "https://10.42.0.9:65536", "https://10.42.0.300:19532", "https://a_b:1",
                                 "https://10.42.0.9:19532/upload", "https://user@10.42.0.9:19532",
                                 "https://10.42.0.9:19532 ", "https://[::1]:19532", "https://-bad:1"])
def test_malformed_forward_to_urls_are_refused(bad):
    with pytest.raises(ValidationError):
        Audit(forward_to=(bad,))


def test_forward_to_lists_each_collector_once():
    with pytest.raises(ValidationError):
        Audit(forward_to=("https://10.42.0.9:19532", "https://10.42.0.9:19532"))


@pytest.mark.parametrize(("text", "n"), [("256M", 256 << 20), ("20G", 20 << 30), ("1T", 1 << 40),
                                         ("262144K", 256 << 20)])
def test_max_use_sizes(text, n):
    assert Audit(max_use=text).max_use == text and size_bytes(text) == n


@pytest.mark.parametrize("bad", ["255M", "20", "20g", "20GB", "0G", "-1G", "1.5G", "20G\n", "２０G"])
def test_malformed_or_tiny_max_use_is_refused(bad):
    with pytest.raises(ValidationError):
        Audit(max_use=bad)


# --------------------------------------------------------------------------- the access plan


def test_lab_clients_and_policies():
    plan = load_plan("lab")
    access = plan.access
    assert [(c.name, c.role, c.common_name, c.cert) for c in access.clients] == [
        ("lab-analyst", "analyst", "lab-analyst.clients.lab.llmcluster.internal", "client-lab-analyst"),
        ("lab-app", "app", "lab-app.clients.lab.llmcluster.internal", "client-lab-app")]
    apps, analysts = access.policies
    assert apps.paths == API_PATHS
    assert analysts.paths == ("/v1/chat/completions", "/v1/models")
    for p in (apps, analysts):
        assert p.models == ("deepseek-r1",)  # unset in the lab: the served model
        assert p.sources == ("10.42.1.0/29",)  # zone clients
        assert p.days == (1, 2, 3, 4, 5, 6, 7) and p.hours == (0, 2400)
    assert plan.serving.gateway is not None and plan.serving.gateway.access is access


def test_days_become_sorted_iso_numbers_and_clients_their_common_names():
    spec = _lab(["access.policies.1.days=[sun, mon, fri]", "access.policies.1.hours=08:00-18:30",
                 "access.policies.1.clients=[lab-app]"])
    analysts = build_access_plan(spec, build_ip_plan(spec)).policies[1]
    assert analysts.days == (1, 5, 7) and analysts.hours == (800, 1830)
    assert analysts.clients == ("lab-app.clients.lab.llmcluster.internal",)
    assert ISO_DAYS == {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}


def test_sources_resolve_external_zones_to_their_cidrs_and_host_zones_to_planned_addresses():
    spec = _lab(["zones.clients.cidrs=[10.42.1.0/29, 10.8.0.0/16]", "access.policies.0.zones=[clients, gpu]"])
    ip = build_ip_plan(spec)
    assert zone_sources(spec, ip, "clients") == ("10.8.0.0/16", "10.42.1.0/29")  # by address
    gpu = zone_sources(spec, ip, "gpu")
    want = {f"{a}/32" for h in ip.hosts_in_pool("gpu") for a in h.addresses.values()}
    assert set(gpu) == want and len(gpu) == len(want) == 8  # 2 hosts x 4 VLANs, each once
    apps = build_access_plan(spec, ip).policies[0]
    assert set(apps.sources) == want | {"10.8.0.0/16", "10.42.1.0/29"}
    assert list(apps.sources) == sorted(apps.sources, key=lambda c: (int(c.split("/")[0].split(".")[0]),
                                                                     *map(int, c.split("/")[0].split(".")[1:])))


def test_a_zone_of_empty_pools_resolves_to_nothing_and_a_policy_never_means_any():
    spec = _lab(["pools.storage.count=0", "storage.ceph=null"])
    assert zone_sources(spec, build_ip_plan(spec), "storage") == ()
    with pytest.raises(ValueError, match="never anybody"):
        AccessPolicyPlan(name="p", roles=("app",), clients=(), models=("m",), paths=("/v1/models",), sources=(),
                         days=(1,), hours=(0, 2400))
    with pytest.raises(ValueError):
        AccessPolicyPlan(name="p", roles=(), clients=(), models=("m",), paths=("/v1/models",),
                         sources=("10.0.0.0/8",), days=(1,), hours=(0, 2400))


def test_no_access_section_is_an_empty_plan():
    spec = _lab(["access=null", "serving.gateway=null"])
    assert build_access_plan(spec, build_ip_plan(spec)).to_dict() == {
        "api_paths": list(API_PATHS), "clients": [], "policies": []}


# --------------------------------------------------------------------------- the gateway plan


@pytest.mark.parametrize(("context", "limit"), [(512, 72 * 1024), (513, 73 * 1024), (16384, 320 * 1024),
                                                (32768, 576 * 1024), (1_048_576, 16 * 1024 * 1024 + 64 * 1024)])
def test_the_derived_body_limit(context, limit):
    assert derived_max_body_bytes(context) == limit
    assert limit % 1024 == 0 and limit >= BODY_BYTES_PER_TOKEN * context + BODY_OVERHEAD_BYTES


def test_the_body_limit_follows_the_context_unless_set():
    assert load_plan("lab").serving.gateway.max_body_bytes == derived_max_body_bytes(16384) == 327680
    spec = _lab(["serving.context=32768"])
    assert build_plan(spec).serving.gateway.max_body_bytes == 589824
    spec = _lab(["serving.gateway.max_body_bytes=2097152"])
    assert build_plan(spec).serving.gateway.max_body_bytes == 2097152


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_gateway_keys_and_determinism(stack):
    plan = load_plan(stack)
    gw = plan.serving.gateway
    assert gw is not None
    d = gw.to_dict()
    assert set(d) == GATEWAY_KEYS
    spec = plan.spec
    g = spec.serving.gateway
    assert (d["handshake_timeout_s"], d["idle_timeout_s"], d["max_conn_per_source"],
            d["max_conn_rate_per_source"]) == (g.handshake_timeout_s, g.idle_timeout_s, g.max_conn_per_source,
                                               g.max_conn_rate_per_source)
    assert d["upstream_client_cn"] == plan.pki.leaf("gateway-upstream").common_name == f"gateway.{spec.site.domain}"
    assert d["audit"] == {"retention_days": g.audit.retention_days, "max_use": g.audit.max_use,
                          # empty in the spec with monitoring: the monitor host's audit store (plan.serving)
                          "forward_to": list(g.audit.forward_to) or [
                              f"https://{h.mgmt_ip}:19532" for h in (plan.ip.hosts_in_pool(spec.monitoring.pool)[:1]
                                                                    if spec.monitoring else [])],
                          "allow_short_retention": g.audit.allow_short_retention}
    assert d["access"] == plan.access.to_dict() == plan.to_dict()["access"]
    assert set(d["access"]) == {"api_paths", "clients", "policies"}
    for c in d["access"]["clients"]:
        assert set(c) == {"name", "role", "common_name", "cert"}
    for p in d["access"]["policies"]:
        assert set(p) == {"name", "roles", "clients", "models", "paths", "sources", "days", "hours"}
        assert p["sources"] and p["models"] and p["paths"] and p["days"]
    # Deterministic: a fresh build of a freshly loaded spec gives the same document.
    again = build_plan(parse_stack_file(STACKS / f"Pulumi.{stack}.yaml"))
    assert json.dumps(again.serving.gateway.to_dict(), sort_keys=False) == json.dumps(d, sort_keys=False)


def test_prod_baremetal_analysts_are_held_to_office_hours():
    analysts = next(p for p in load_plan("prod-baremetal").access.policies if p.roles == ("analyst",))
    assert analysts.days == (1, 2, 3, 4, 5) and analysts.hours == (600, 1800)
    assert analysts.paths == ("/v1/chat/completions", "/v1/models")
    assert analysts.sources == ("10.0.0.0/12",)


# --------------------------------------------------------------------------- PKI and inventory


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_one_client_leaf_per_named_client(stack):
    spec = load_spec(stack)
    pki = build_pki_plan(spec, build_ip_plan(spec))
    clients = [c for c in pki.leaves if c.name.startswith("client-")]
    assert spec.access is not None
    assert [c.name for c in clients] == [client_cert_name(n) for n in sorted(spec.access.clients)]
    for name, client in spec.access.clients.items():
        c = pki.leaf(client_cert_name(name))
        assert c.kind == "client" and c.allowed_uses == CLIENT_USES and not c.is_ca
        assert c.common_name == client_common_name(name, spec.site.domain)
        assert c.organizational_unit == client.role
        assert c.dns_names == () and c.ip_addresses == () and c.host is None
    # No named client carries the OU of a host, operator or CA certificate.
    others = {c.organizational_unit for c in pki.leaves if not c.name.startswith("client-")}
    assert others.isdisjoint({c.organizational_unit for c in clients})


def test_client_leaves_are_installed_on_no_host():
    """The client certificates are for API clients (the export folder has them): no host holds one, and the
    hosts' certificate lists are what they were (their own; on the gateways also gateway-api and -upstream)."""
    from llmcluster.inventory import pki_certificates

    for stack in STACK_NAMES:
        plan = load_plan(stack)
        gw_pool = plan.spec.serving.gateway.pool
        for h in plan.ip.hosts:
            names = [c["name"] for c in pki_certificates(plan, h.name)]
            assert names == [f"host-{h.name}"] + (["gateway-api", "gateway-upstream"] if h.pool == gw_pool else [])


def test_gateway_hosts_get_the_access_plan_in_their_inventory():
    from llmcluster.inventory import gateway_vars

    plan = load_plan("lab")
    gw = gateway_vars(plan)["llmcluster_gateway"]
    assert gw["access"]["clients"][0]["cert"] == "client-lab-analyst"
    assert gw["audit"]["forward_to"] == ["https://10.42.0.17:19532"]  # derived: the monitor host's audit store
    assert gw["max_body_bytes"] == 327680


# --------------------------------------------------------------------------- validation beyond the corpus


def test_egress_flows_to_external_zones_are_accepted():
    spec = load_spec("lab")
    flow = next(f for f in spec.flows if f.name == "audit-forward")
    assert (flow.from_, flow.to) == ("gateway", "logs") and spec.zones["logs"].cidrs
    assert not check_spec(spec)


def test_the_lab_collector_is_the_monitor_hosts_audit_store():
    """The gateways ship to the central audit store on the monitor host (docs/observability.md), over
    the audit-store flow; the logs zone's probe (the former collector) stays for the egress-flow checks."""
    plan = load_plan("lab")
    assert plan.spec.serving.gateway.audit.forward_to == ()  # derived by the plan (llmcluster.plan.serving)
    host, port = url_host_port(plan.serving.gateway.audit.forward_to[0])
    mon = plan.ip.host("mon-01")
    assert mon.pool == plan.spec.monitoring.pool and host == mon.mgmt_ip and port == 19532
    flow = next(f for f in plan.spec.flows if f.name == "audit-store")
    assert (flow.from_, flow.to, flow.vlan, flow.ports) == ("gateway", "monitor", "mgmt", ("tcp/19532",))


def test_short_retention_only_with_the_opt_in():
    findings = check_spec(_lab(["serving.gateway.audit.retention_days=30"]))
    assert [(f.rule, f.problem.path) for f in findings] == [("access.audit-retention",
                                                             "serving.gateway.audit.retention_days")]
    assert not check_spec(_lab(["serving.gateway.audit.retention_days=30",
                                "serving.gateway.audit.allow_short_retention=true"]))


def test_a_collector_by_name_needs_an_egress_flow_on_its_port():
    ok = _lab(['serving.gateway.audit.forward_to=["https://logs.example.internal:19532"]'])
    assert not check_spec(ok)


def test_a_collector_on_cluster_hosts_is_reached_through_a_flow_to_their_zone():
    storage = load_plan("lab").ip.hosts_in_pool("storage")[0].addresses["mgmt"]
    url = f'serving.gateway.audit.forward_to=["https://{storage}:19532"]'
    found = check_spec(_lab([url]))
    assert [(f.rule, f.problem.path) for f in found] == [("access.audit-forward-reachable",
                                                          "serving.gateway.audit.forward_to.0")]
    assert "'storage'" in found[0].problem.message
    flows = load_spec("lab").flows
    extra = "{name: audit-storage, from: gateway, to: storage, ports: [tcp/19532], vlan: mgmt}"
    with_flow = [url, f"flows={_flows_yaml(flows)[:-1]}, {extra}]", "pools.gateway.vlans=[mgmt, inference]"]
    assert not [f for f in check_spec(_lab(with_flow)) if f.rule == "access.audit-forward-reachable"]


def _flows_yaml(flows) -> str:
    return "[" + ", ".join(f"{{name: {f.name}, from: {f.from_}, to: {f.to}, ports: [{', '.join(f.ports)}], "
                           f"vlan: {f.vlan}}}" for f in flows) + "]"


def test_client_names_blamed_for_an_overlong_certificate_name_and_the_advice_fixes_it():
    import re

    long = "c" * 40
    found = [f for f in check_spec(_lab([f"access.clients.{long}={{role: app}}"]))
             if f.rule == "pki.certificate-names"]
    assert [f.problem.path for f in found] == [f"access.clients.{long}"]
    n = int(re.search(r"at most (\d+) character", found[0].problem.message).group(1))
    assert n == 64 - len(".clients.lab.llmcluster.internal")
    assert not check_spec(_lab([f"access.clients.{'c' * n}={{role: app}}"]))
    assert check_spec(_lab([f"access.clients.{'c' * (n + 1)}={{role: app}}"]))
