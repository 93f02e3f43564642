"""PKI plan: the certificate hierarchy, subjects, SANs, lifetimes and renewal points.

root CA (self-signed, path length 1) -> intermediate CA (path length 0) -> leaves:

* ``host-<name>``: one per node, server + client auth (node-to-node mTLS), SANs = the
  host's FQDN, short name and every address the IP plan gives it;
* ``gateway-api``: the API front's server certificate (``<gateway.hostname>.<domain>``,
  the gateways' FQDNs, the API VIP and the gateways' inference addresses);
* ``gateway-upstream``: the client certificate the gateway presents to serving nodes (the only
  client their TLS terminators admit, by its CN :func:`upstream_client_cn`);
* ``admin``: an operator client certificate (OU ``operators``);
* ``client-<name>``: one client certificate per named API client of ``llmcluster:access``
  (CN ``<name>.clients.<domain>``, OU the client's role, client auth only). These are for the
  API clients, not for any host: the export folder holds them, the inventory installs none.
  The gateway admits only these; host certificates (OU = the host's role), ``gateway-upstream``
  and ``admin`` are no named client, so the gateway answers them 403.

Lifetimes come from the spec; every certificate is renewed when ``renew_at_fraction`` of
its lifetime has passed (2/3 by default, i.e. ``early_renewal_hours`` = 1/3 of the
lifetime — the same point cert-manager's default ``renewBefore`` picks).
"""

from __future__ import annotations

from dataclasses import dataclass

import netaddr

from llmcluster.errors import Problem
from llmcluster.plan.access import client_cert_name, client_common_name
from llmcluster.plan.ipam import IpPlan
from llmcluster.spec.models import Spec

CA_USES = ("cert_signing", "crl_signing", "digital_signature")
SERVER_USES = ("digital_signature", "server_auth")
CLIENT_USES = ("digital_signature", "client_auth")
PEER_USES = ("digital_signature", "server_auth", "client_auth")


@dataclass(frozen=True)
class CertPlan:
    name: str
    kind: str  # root | intermediate | server | client | peer
    common_name: str
    organization: str
    organizational_unit: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    allowed_uses: tuple[str, ...]
    validity_hours: int
    early_renewal_hours: int
    is_ca: bool = False
    max_path_length: int = 0
    host: str | None = None

    @property
    def renew_after_hours(self) -> int:
        return self.validity_hours - self.early_renewal_hours

    def to_dict(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "common_name": self.common_name,
            "organization": self.organization, "organizational_unit": self.organizational_unit,
            "dns_names": list(self.dns_names), "ip_addresses": list(self.ip_addresses),
            "allowed_uses": list(self.allowed_uses), "validity_hours": self.validity_hours,
            "early_renewal_hours": self.early_renewal_hours, "renew_after_hours": self.renew_after_hours,
            "is_ca": self.is_ca, "max_path_length": self.max_path_length, "host": self.host,
        }


@dataclass(frozen=True)
class PkiPlan:
    algorithm: str
    ecdsa_curve: str
    rsa_bits: int
    min_tls_version: str
    renew_at_fraction: float
    root: CertPlan
    intermediate: CertPlan
    leaves: tuple[CertPlan, ...]

    def leaf(self, name: str) -> CertPlan:
        for c in self.leaves:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "algorithm": self.algorithm, "ecdsa_curve": self.ecdsa_curve, "rsa_bits": self.rsa_bits,
            "min_tls_version": self.min_tls_version, "renew_at_fraction": round(self.renew_at_fraction, 4),
            "root": self.root.to_dict(), "intermediate": self.intermediate.to_dict(),
            "leaves": [c.to_dict() for c in self.leaves],
        }


def upstream_client_cn(domain: str) -> str:
    """The CN of ``gateway-upstream``, the client certificate the gateway presents to the model servers."""
    return f"gateway.{domain}"


def early_renewal_hours(validity_hours: int, fraction: float) -> int:
    """Hours before expiry at which `pulumi up` re-issues a certificate renewed at `fraction` of its life."""
    return int(round(validity_hours * (1.0 - fraction)))


def build_pki_plan(spec: Spec, ip: IpPlan) -> PkiPlan:
    pki, site = spec.pki, spec.site
    org = site.organization
    frac = pki.renew_at_fraction

    def cert(name, kind, cn, days, uses, *, dns=(), ips=(), is_ca=False, path_len=0, host=None, ou="llmcluster"):
        hours = days * 24
        return CertPlan(
            name=name, kind=kind, common_name=cn, organization=org, organizational_unit=ou,
            dns_names=tuple(dns), ip_addresses=tuple(ips), allowed_uses=tuple(uses), validity_hours=hours,
            early_renewal_hours=early_renewal_hours(hours, frac), is_ca=is_ca, max_path_length=path_len, host=host,
        )

    root = cert("root", "root", f"{site.name} llmcluster Root CA", pki.root_validity_days, CA_USES,
                is_ca=True, path_len=1)
    inter = cert("intermediate", "intermediate", f"{site.name} llmcluster Intermediate CA",
                 pki.intermediate_validity_days, CA_USES, is_ca=True, path_len=0)
    leaves: list[CertPlan] = []
    days = pki.leaf_validity_days
    for h in ip.hosts:
        ips = sorted(set(h.addresses.values()), key=lambda a: netaddr.IPAddress(a))
        leaves.append(cert(f"host-{h.name}", "peer", h.fqdn, days, PEER_USES,
                           dns=(h.fqdn, h.name), ips=ips, host=h.name, ou=h.role))
    gw = spec.serving.gateway
    if gw is not None:
        api = f"{gw.hostname}.{site.domain}"
        gw_hosts = ip.hosts_in_pool(gw.pool)
        dns = [api] + [h.fqdn for h in gw_hosts]
        ips = ([ip.vips["api"]] if "api" in ip.vips else []) + [
            h.addresses["inference"] for h in gw_hosts if "inference" in h.addresses
        ]
        leaves.append(cert("gateway-api", "server", api, days, SERVER_USES, dns=dns, ips=ips, ou="gateway"))
        leaves.append(cert("gateway-upstream", "client", upstream_client_cn(site.domain), days, CLIENT_USES,
                           ou="gateway"))
    leaves.append(cert("admin", "client", f"admin.{site.domain}", days, CLIENT_USES, ou="operators"))
    if spec.access is not None:
        for name, client in sorted(spec.access.clients.items()):
            leaves.append(cert(client_cert_name(name), "client", client_common_name(name, site.domain), days,
                               CLIENT_USES, ou=client.role))
    return PkiPlan(
        algorithm=pki.algorithm, ecdsa_curve=pki.ecdsa_curve, rsa_bits=pki.rsa_bits,
        min_tls_version=pki.min_tls_version, renew_at_fraction=frac, root=root, intermediate=inter,
        leaves=tuple(leaves),
    )


def check_sans(plan: PkiPlan, ip: IpPlan, domain: str) -> list[Problem]:
    """Every SAN must belong to the plan: names under the site domain (or a planned short
    host name), addresses that the IP plan assigns. Anything else would let a certificate
    vouch for a machine the cluster does not own."""
    hosts = {h.name for h in ip.hosts}
    planned_ips = {a for h in ip.hosts for a in h.addresses.values()} | set(ip.vips.values())
    problems = []
    for c in plan.leaves:
        for d in c.dns_names:
            if not (d.endswith("." + domain) or d in hosts):
                problems.append(Problem(f"pki.certificates.{c.name}.dns_names",
                                        f"{d} is outside the site domain {domain} and not a planned host"))
        for a in c.ip_addresses:
            if a not in planned_ips:
                problems.append(Problem(f"pki.certificates.{c.name}.ip_addresses",
                                        f"{a} is not an address of the IP plan"))
    return problems
