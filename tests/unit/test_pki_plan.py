"""PKI plan: hierarchy, subjects, SANs from the IP plan, lifetimes and renewal at 2/3."""

from __future__ import annotations

import pytest

from llmcluster.errors import SpecError
from llmcluster.plan.ipam import build_ip_plan
from llmcluster.plan.pki import CertPlan, build_pki_plan, check_sans
from llmcluster.validate import load_stack_file
from tests.conftest import STACKS, load_spec


def _plan(stack="lab", overrides=()):
    spec = load_spec(stack, tuple(overrides))
    ip = build_ip_plan(spec)
    return spec, ip, build_pki_plan(spec, ip)


def test_hierarchy_and_defaults():
    _, _, pki = _plan()
    assert (pki.algorithm, pki.ecdsa_curve, pki.min_tls_version) == ("ECDSA", "P256", "1.3")
    assert pki.root.is_ca and pki.root.max_path_length == 1
    assert pki.intermediate.is_ca and pki.intermediate.max_path_length == 0
    assert "cert_signing" in pki.root.allowed_uses and "cert_signing" in pki.intermediate.allowed_uses
    assert all(not c.is_ca and "cert_signing" not in c.allowed_uses for c in pki.leaves)


def test_renewal_at_two_thirds_of_each_lifetime():
    _, _, pki = _plan()
    # lab: leaf 30 days = 720 h -> renew after 480 h, early renewal 240 h.
    leaf = pki.leaf("host-gpu-01")
    assert (leaf.validity_hours, leaf.early_renewal_hours, leaf.renew_after_hours) == (720, 240, 480)
    # root 3650 d = 87600 h -> early renewal 29200 h; intermediate 1825 d = 43800 h -> 14600 h.
    assert pki.root.early_renewal_hours == 29200
    assert pki.intermediate.early_renewal_hours == 14600


def test_host_certificates_carry_every_planned_address_and_name():
    _, ip, pki = _plan()
    for h in ip.hosts:
        c = pki.leaf(f"host-{h.name}")
        assert c.common_name == h.fqdn
        assert set(c.dns_names) == {h.fqdn, h.name}
        assert set(c.ip_addresses) == set(h.addresses.values())
        assert set(c.allowed_uses) == {"digital_signature", "server_auth", "client_auth"}


def test_gateway_api_certificate_covers_the_vip_and_gateways():
    _, ip, pki = _plan("prod-baremetal")
    api = pki.leaf("gateway-api")
    assert api.common_name == "api.ai.dc1.example.internal"
    assert ip.vips["api"] in api.ip_addresses
    assert {"gw-01.ai.dc1.example.internal", "gw-02.ai.dc1.example.internal"} <= set(api.dns_names)
    assert "client_auth" not in api.allowed_uses
    assert "server_auth" not in pki.leaf("gateway-upstream").allowed_uses


def test_sans_inside_the_plan_pass_and_outside_fail():
    spec, ip, pki = _plan()
    assert check_sans(pki, ip, spec.site.domain) == []
    rogue = CertPlan(name="rogue", kind="server", common_name="x", organization="o", organizational_unit="u",
                     dns_names=("www.example.com",), ip_addresses=("192.0.2.7",), allowed_uses=("server_auth",),
                     validity_hours=24, early_renewal_hours=8)
    bad = type(pki)(**{**pki.__dict__, "leaves": (*pki.leaves, rogue)})
    problems = check_sans(bad, ip, spec.site.domain)
    assert {p.path for p in problems} == {"pki.certificates.rogue.dns_names", "pki.certificates.rogue.ip_addresses"}


@pytest.mark.parametrize("override,path", [
    ("pki.algorithm=RSA", "pki.algorithm"),
    ("pki.min_tls_version=1.2", "pki.min_tls_version"),
    ("pki.leaf_validity_days=365", "pki.leaf_validity_days"),
    ("pki.ecdsa_curve=P224", "pki.ecdsa_curve"),
    ("pki.renew_at_fraction=0.95", "pki.renew_at_fraction"),
])
def test_loosening_a_security_default_needs_an_explicit_setting(override, path):
    with pytest.raises(SpecError) as ei:
        load_stack_file(STACKS / "Pulumi.prod-baremetal.yaml", [override, "pki.intermediate_validity_days=300"]
                        if "leaf" in override else [override])
    assert path in {p.path for p in ei.value.problems}


def test_explicit_settings_allow_rsa_and_tls12():
    spec = load_stack_file(STACKS / "Pulumi.lab.yaml", ["pki.algorithm=RSA", "pki.allow_rsa=true",
                                                        "pki.min_tls_version=1.2", "pki.allow_tls12=true"])
    assert spec.pki.algorithm == "RSA" and spec.pki.min_tls_version == "1.2"
