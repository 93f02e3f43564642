"""PKI rules: weaker algorithms and TLS versions only by explicit opt-in; lifetimes nest; every name
the PKI plan issues fits X.509 and DNS limits."""

from __future__ import annotations

from collections.abc import Iterator

from llmcluster.errors import PlanError, Problem
from llmcluster.plan.access import client_common_name
from llmcluster.plan.pki import CertPlan, build_pki_plan
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import PLAN, rule
from llmcluster.validate.runner import PlanFacts


@rule("pki.rsa-opt-in")
def rsa_opt_in(spec: Spec) -> Iterator[Problem]:
    """RSA keys only with pki.allow_rsa (the default is ECDSA P-256)."""
    if spec.pki.algorithm == "RSA" and not spec.pki.allow_rsa:
        yield Problem("pki.algorithm",
                      "RSA is not the default (ECDSA P-256): set pki.allow_rsa: true to use it deliberately")


@rule("pki.tls12-opt-in")
def tls12_opt_in(spec: Spec) -> Iterator[Problem]:
    """TLS 1.2 only with pki.allow_tls12 (the default minimum is TLS 1.3)."""
    if spec.pki.min_tls_version == "1.2" and not spec.pki.allow_tls12:
        yield Problem("pki.min_tls_version",
                      "TLS 1.2 is below the TLS 1.3 default: set pki.allow_tls12: true to allow it deliberately")


@rule("pki.validity-nested")
def validity_nested(spec: Spec) -> Iterator[Problem]:
    """Leaf certificates live shorter than the intermediate, the intermediate shorter than the root."""
    pki = spec.pki
    if pki.intermediate_validity_days >= pki.root_validity_days:
        yield Problem("pki.intermediate_validity_days",
                      f"{pki.intermediate_validity_days} must be shorter than root_validity_days "
                      f"{pki.root_validity_days}")
    if pki.leaf_validity_days >= pki.intermediate_validity_days:
        yield Problem("pki.leaf_validity_days",
                      f"{pki.leaf_validity_days} must be shorter than "
                      f"intermediate_validity_days {pki.intermediate_validity_days}")


# --------------------------------------------------------------------------- certificate names

#: X.509 upper bounds (RFC 5280 appendix A: ub-common-name, ub-organization-name,
#: ub-organizational-unit-name) and DNS limits (RFC 1035: a label, a whole name).
UB_NAME = 64
DNS_LABEL_MAX = 63
DNS_NAME_MAX = 253


@rule("pki.certificate-names", layer=PLAN, unless=("fabric.vlans", "site.supernet", "pools"))
def certificate_names(facts: PlanFacts) -> list[Problem]:
    """Every name the PKI plan puts in a certificate fits: common name, organisation and unit at most
    64 characters (X.509), each DNS label at most 63, a DNS name at most 253 (hostname_prefix,
    site.name, site.domain, serving.gateway.hostname, the names in access.clients). Skipped while the IP plan
    cannot be built."""
    try:
        ip = facts.ip_plan()
    except PlanError:
        return []  # addresses.ip-plan reports it
    spec = facts.spec
    pki = build_pki_plan(spec, ip)  # the very names the planner issues
    domain = spec.site.domain
    by_name = {n: h for h in ip.hosts for n in (h.name, h.fqdn)}
    gw = spec.serving.gateway
    api = f"{gw.hostname}.{domain}" if gw is not None else None
    # client certificate CN -> client name (access.clients)
    clients = {client_common_name(n, domain): n for n in (spec.access.clients if spec.access is not None else {})}
    # key path -> (characters that key may have, problem): the tightest limit per key wins.
    found: dict[str, tuple[int, Problem]] = {}

    # The names with nothing but the domain to shorten come first: what the domain must lose for
    # them also shortens every host and API name, which then are not blamed on their prefix.
    certs = sorted((pki.root, pki.intermediate, *pki.leaves),
                   key=lambda c: c.name not in ("gateway-upstream", "admin"))
    domain_excess = 0

    def culprits(name: str, kind: str) -> list[tuple[str, str, str]]:
        """(key path, its value, a note), most specific first, for a name of a ``kind`` certificate."""
        if kind in ("root", "intermediate"):
            return [("site.name", spec.site.name, "")]
        host = by_name.get(name)
        if host is not None:
            note = "" if spec.pools[host.pool].hostname_prefix else \
                f" (it defaults to the pool name '{host.pool}')"
            return [(f"pools.{host.pool}.hostname_prefix", spec.hostname_prefix(host.pool), note),
                    ("site.domain", domain, "")]
        if api is not None and name == api:
            return [("serving.gateway.hostname", gw.hostname, ""), ("site.domain", domain, "")]
        client = clients.get(name)
        if client is not None:
            return [(f"access.clients.{client}", client, ""), ("site.domain", domain, "")]
        return [("site.domain", domain, "")]

    def report(cert: CertPlan, what: str, name: str, limit: int, part: str | None = None) -> None:
        nonlocal domain_excess
        shown = part or name
        over = len(shown) - limit
        options = culprits(name, cert.kind)
        if part is None and len(options) > 1 and over <= domain_excess:
            options = options[-1:]  # shortening the domain as it must be anyway is enough
        key, value, note = next(((k, v, n) for k, v, n in options if len(v) - over >= 1), options[-1])
        if key == "site.domain":
            domain_excess = max(domain_excess, over)
        elif len(options) > 1 and domain_excess:
            over -= domain_excess  # what is left once the domain is as short as it must be anyway
            note += f" once site.domain is at most {len(domain) - domain_excess} characters"
        allowed = max(len(value) - over, 0)
        text = shown if len(shown) <= 80 else shown[:60] + "..." + shown[-15:]
        verb = "set it" if note.startswith(" (it defaults") else "shorten it"
        problem = Problem(key, f"certificate {cert.name}: {what} {text!r} is {len(shown)} characters, over the "
                               f"{limit} allowed: {verb} to at most {allowed} character{'s' if allowed != 1 else ''}"
                               f"{note}")
        if key not in found or allowed < found[key][0]:
            found[key] = (allowed, problem)

    for cert in certs:
        if len(cert.common_name) > UB_NAME:
            report(cert, "the common name", cert.common_name, UB_NAME)
        if len(cert.organization) > UB_NAME:
            found.setdefault("site.organization", (0, Problem(
                "site.organization", f"{len(cert.organization)} characters, over the {UB_NAME} X.509 allows")))
        for name in cert.dns_names:
            if len(name) > DNS_NAME_MAX:
                report(cert, "the DNS name", name, DNS_NAME_MAX)
            longest = max(name.split("."), key=len)
            if len(longest) > DNS_LABEL_MAX:
                report(cert, "the DNS label", name, DNS_LABEL_MAX, part=longest)
    return [p for _, p in sorted(found.values(), key=lambda x: x[1].path)]
