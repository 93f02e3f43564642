"""The PKI component: an ECDSA P-256 root -> intermediate -> leaf hierarchy with pulumi-tls.

Every key is a ``tls.PrivateKey`` (its PEM is a Pulumi secret), the root is a
``tls.SelfSignedCert``, the intermediate and the leaves are ``tls.CertRequest`` +
``tls.LocallySignedCert`` pairs. ``early_renewal_hours`` makes ``pulumi up`` re-issue a
certificate once it is inside its renewal window, which is how rotation happens.

The root's CRL (empty) is signed here, from the root key in memory; the intermediate's key is a
secret output, so ``llmcluster pki export`` / ``pki revoke`` can sign the intermediate's CRL
(``llmcluster.pki_crl``). For the consumers the program fills itself (the Kubernetes Secrets) the
intermediate's CRL is signed here too (``chain_crl_pem``: intermediate's CRL, then the root's), listing the
revocations ``llmcluster pki revoke`` recorded in the export folder (``PkiArgs.revocations``, read by the program
from ``$LLMCLUSTER_PKI_DIR``; refused when that export is of another intermediate).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from llmcluster.pki_crl import ProgramRevocations, program_crl_file, root_crl_pem
from llmcluster.plan.pki import CertPlan, PkiPlan


@dataclass(frozen=True)
class PkiArgs:
    plan: PkiPlan
    #: the export folder's revocation record (``pki revoke``), for the CRL the program signs; None: none
    revocations: ProgramRevocations | None = None


class IssuedCert:
    """Handles on one issued certificate."""

    def __init__(self, plan: CertPlan, key: tls.PrivateKey, cert_pem: pulumi.Output[str]):
        self.plan = plan
        self.key = key
        self.cert_pem = cert_pem
        self.private_key_pem: pulumi.Output[str] = pulumi.Output.secret(key.private_key_pem)


class Pki(pulumi.ComponentResource):
    TYPE = "llmcluster:pki:Pki"

    def __init__(self, name: str, args: PkiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        self._name = name
        self._plan = args.plan
        child = pulumi.ResourceOptions(parent=self)

        root_key = self._key("root", child)
        root = tls.SelfSignedCert(
            f"{name}-root",
            private_key_pem=root_key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(**self._subject(args.plan.root)),
            is_ca_certificate=True,
            max_path_length=args.plan.root.max_path_length,
            set_subject_key_id=True,
            allowed_uses=list(args.plan.root.allowed_uses),
            validity_period_hours=args.plan.root.validity_hours,
            early_renewal_hours=args.plan.root.early_renewal_hours,
            opts=child,
        )
        self.root = IssuedCert(args.plan.root, root_key, root.cert_pem)
        self.intermediate = self._issue(args.plan.intermediate, self.root, child)
        self.leaves: dict[str, IssuedCert] = {
            leaf.name: self._issue(leaf, self.intermediate, child) for leaf in args.plan.leaves
        }
        self.root_cert_pem: pulumi.Output[str] = root.cert_pem
        # The chain a server presents after its own certificate: intermediate, then root.
        self.chain_pem: pulumi.Output[str] = pulumi.Output.concat(
            self.intermediate.cert_pem, self.root.cert_pem
        )
        self.cert_pems: pulumi.Output[dict] = pulumi.Output.all(
            **{n: c.cert_pem for n, c in self.leaves.items()}
        )
        self.private_key_pems: pulumi.Output[dict] = pulumi.Output.secret(
            pulumi.Output.all(**{n: c.private_key_pem for n, c in self.leaves.items()})
        )
        # The root's CRL (empty, valid as long as the root): consumers that check the CRL of every
        # CA in the chain (HAProxy's crl-file) need it; signed here so the root key stays in Pulumi.
        # Deterministic, so an unchanged root gives an unchanged output; public (nothing secret in it).
        self.root_crl_pem: pulumi.Output[str] = pulumi.Output.unsecret(
            pulumi.Output.all(root_key.private_key_pem, root.cert_pem).apply(lambda a: root_crl_pem(a[0], a[1]))
        )
        # crl.pem for the consumers the program fills itself (the Kubernetes Secrets): the intermediate's CRL
        # (signed here from the intermediate key, valid as long as the intermediate, listing the export's
        # revocations), then the root's.
        rv = args.revocations

        def crl_file(a: list) -> str:
            return program_crl_file(a[0], a[1], a[2], rv.for_intermediate(a[1]) if rv is not None else ())

        self.chain_crl_pem: pulumi.Output[str] = pulumi.Output.unsecret(
            pulumi.Output.all(self.intermediate.key.private_key_pem, self.intermediate.cert_pem,
                              self.root_crl_pem).apply(crl_file)
        )
        self.register_outputs({
            "rootCertPem": self.root_cert_pem,
            "chainPem": self.chain_pem,
            "certificates": self.cert_pems,
            "privateKeys": self.private_key_pems,
            "rootCrlPem": self.root_crl_pem,
            "chainCrlPem": self.chain_crl_pem,
        })

    def _key(self, cert_name: str, opts: pulumi.ResourceOptions) -> tls.PrivateKey:
        p = self._plan
        if p.algorithm == "ECDSA":
            return tls.PrivateKey(f"{self._name}-{cert_name}-key", algorithm="ECDSA",
                                  ecdsa_curve=p.ecdsa_curve, opts=opts)
        return tls.PrivateKey(f"{self._name}-{cert_name}-key", algorithm="RSA", rsa_bits=p.rsa_bits, opts=opts)

    @staticmethod
    def _subject(c: CertPlan) -> dict:
        return {"common_name": c.common_name, "organization": c.organization,
                "organizational_unit": c.organizational_unit}

    def _issue(self, c: CertPlan, issuer: IssuedCert, opts: pulumi.ResourceOptions) -> IssuedCert:
        key = self._key(c.name, opts)
        csr = tls.CertRequest(
            f"{self._name}-{c.name}-csr",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(**self._subject(c)),
            dns_names=list(c.dns_names) or None,
            ip_addresses=list(c.ip_addresses) or None,
            opts=opts,
        )
        cert = tls.LocallySignedCert(
            f"{self._name}-{c.name}",
            cert_request_pem=csr.cert_request_pem,
            ca_private_key_pem=issuer.key.private_key_pem,
            ca_cert_pem=issuer.cert_pem,
            is_ca_certificate=c.is_ca or None,
            max_path_length=c.max_path_length if c.is_ca else None,
            set_subject_key_id=True,
            allowed_uses=list(c.allowed_uses),
            validity_period_hours=c.validity_hours,
            early_renewal_hours=c.early_renewal_hours,
            opts=opts,
        )
        return IssuedCert(c, key, cert.cert_pem)
