"""PKI rules: weaker algorithms and TLS versions only by explicit opt-in; lifetimes nest."""

from __future__ import annotations

from collections.abc import Iterator

from llmcluster.errors import Problem
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import rule


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
