"""Offline evaluation: run the real Pulumi program under ``pulumi.runtime.set_mocks``.

Used by ``llmcluster plan``, the CI plan diff and the program tests. It records every
registered resource (type, name, parent, inputs) and the stack outputs.

The mocks are faithful where tests depend on provider-computed values: the pulumi-tls
resources produce real key material and certificates (``cryptography``), signed with the
requested lifetimes, usages and SANs, so a test can run ``openssl verify`` on the chain.
Values that vary between runs (keys, certificates, CSRs) are redacted in the recorded
inputs, so the plan document is byte-for-byte deterministic.

Invokes (data sources) must be handled explicitly by :class:`RecordingMocks.call`; an
unhandled invoke raises instead of silently yielding ``None``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pmocks

from llmcluster import outputs
from llmcluster.components import switches as _switches
from llmcluster.plan.build import Plan
from llmcluster.spec.models import Spec

PROJECT = "llmcluster"
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----")
_lock = threading.Lock()


# --------------------------------------------------------------------------- TLS provider stand-in


class _Tls:
    """Real crypto for the pulumi-tls resource types, keyed by the Pulumi property names."""

    def __init__(self, now: dt.datetime):
        self.now = now

    def private_key(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        algo = inputs.get("algorithm")
        if algo == "ECDSA":
            curve = {"P224": ec.SECP224R1, "P256": ec.SECP256R1, "P384": ec.SECP384R1,
                     "P521": ec.SECP521R1}[inputs.get("ecdsaCurve") or "P224"]
            key = ec.generate_private_key(curve())
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        elif algo == "RSA":
            key = rsa.generate_private_key(65537, int(inputs.get("rsaBits") or 2048))
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        elif algo == "ED25519":
            key = ed25519.Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        else:
            raise ValueError(f"tls.PrivateKey: unsupported algorithm {algo!r}")
        pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"privateKeyPem": pem.decode(), "publicKeyPem": pub.decode(),
                "publicKeyFingerprintSha256": hashlib.sha256(pub).hexdigest()}

    @staticmethod
    def _load_key(pem: str):
        from cryptography.hazmat.primitives import serialization

        return serialization.load_pem_private_key(pem.encode(), password=None)

    @staticmethod
    def _name(subject: Mapping[str, Any] | None):
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        subject = subject or {}
        attrs = []
        for key, oid in (("country", NameOID.COUNTRY_NAME), ("province", NameOID.STATE_OR_PROVINCE_NAME),
                         ("locality", NameOID.LOCALITY_NAME), ("organization", NameOID.ORGANIZATION_NAME),
                         ("organizationalUnit", NameOID.ORGANIZATIONAL_UNIT_NAME),
                         ("commonName", NameOID.COMMON_NAME)):
            if subject.get(key):
                attrs.append(x509.NameAttribute(oid, str(subject[key])))
        return x509.Name(attrs)

    @staticmethod
    def _hash(key):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ed25519

        return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()

    def _build(self, *, subject, issuer_name, public_key, signing_key, inputs, issuer_key=None):
        import ipaddress

        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        uses = set(inputs.get("allowedUses") or [])
        hours = int(inputs["validityPeriodHours"])
        is_ca = bool(inputs.get("isCaCertificate"))
        path_len = inputs.get("maxPathLength")
        not_before = self.now
        not_after = self.now + dt.timedelta(hours=hours)
        serial = x509.random_serial_number()
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
             .public_key(public_key).serial_number(serial)
             .not_valid_before(not_before).not_valid_after(not_after))
        b = b.add_extension(x509.BasicConstraints(ca=is_ca, path_length=(int(path_len) if is_ca and path_len
                                                                          is not None and path_len >= 0 else None)),
                            critical=True)
        b = b.add_extension(x509.KeyUsage(
            digital_signature="digital_signature" in uses, content_commitment="content_commitment" in uses,
            key_encipherment="key_encipherment" in uses, data_encipherment="data_encipherment" in uses,
            key_agreement="key_agreement" in uses, key_cert_sign="cert_signing" in uses,
            crl_sign="crl_signing" in uses, encipher_only=False, decipher_only=False), critical=True)
        eku = [oid for name, oid in (("server_auth", ExtendedKeyUsageOID.SERVER_AUTH),
                                     ("client_auth", ExtendedKeyUsageOID.CLIENT_AUTH)) if name in uses]
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in inputs.get("dnsNames") or []]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in inputs.get("ipAddresses") or []]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        if issuer_key is not None:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                critical=False)
        cert = b.sign(signing_key, self._hash(signing_key))
        return cert, not_before, not_after

    def _cert_outputs(self, cert, not_before, not_after, inputs) -> dict[str, Any]:
        from cryptography.hazmat.primitives import serialization

        early = int(inputs.get("earlyRenewalHours") or 0)
        return {
            "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "validityStartTime": not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "validityEndTime": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "readyForRenewal": self.now >= not_after - dt.timedelta(hours=early),
        }

    def self_signed_cert(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        key = self._load_key(inputs["privateKeyPem"])
        name = self._name(inputs.get("subject"))
        cert, nb, na = self._build(subject=name, issuer_name=name, public_key=key.public_key(),
                                   signing_key=key, inputs=inputs, issuer_key=key)
        return self._cert_outputs(cert, nb, na, inputs)

    def cert_request(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        key = self._load_key(inputs["privateKeyPem"])
        b = x509.CertificateSigningRequestBuilder().subject_name(self._name(inputs.get("subject")))
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in inputs.get("dnsNames") or []]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in inputs.get("ipAddresses") or []]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        csr = b.sign(key, self._hash(key))
        return {"certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode()}

    def locally_signed_cert(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        from cryptography import x509

        csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
        ca_cert = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
        ca_key = self._load_key(inputs["caPrivateKeyPem"])
        sans_dns: list[str] = []
        sans_ip: list[str] = []
        try:
            ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            sans_dns = ext.get_values_for_type(x509.DNSName)
            sans_ip = [str(a) for a in ext.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            pass
        merged = {**inputs, "dnsNames": sans_dns, "ipAddresses": sans_ip}
        cert, nb, na = self._build(subject=csr.subject, issuer_name=ca_cert.subject, public_key=csr.public_key(),
                                   signing_key=ca_key, inputs=merged, issuer_key=ca_key)
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        algorithm = "ECDSA" if isinstance(ca_key, ec.EllipticCurvePrivateKey) else (
            "RSA" if isinstance(ca_key, rsa.RSAPrivateKey) else "ED25519")
        return {**self._cert_outputs(cert, nb, na, inputs), "caKeyAlgorithm": algorithm}


# --------------------------------------------------------------------------- recording mocks


@dataclass
class Recorded:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]


def _is_secret(value: Any) -> bool:
    from pulumi.runtime import rpc

    return isinstance(value, Mapping) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def _unsecret(value: Any) -> Any:
    """Mock inputs carry secrets as wrapped maps; providers see the plain value."""
    if _is_secret(value):
        return _unsecret(value.get("value"))
    if isinstance(value, Mapping):
        return {k: _unsecret(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsecret(v) for v in value]
    return value


def _redact(value: Any) -> Any:
    """Replace secrets and run-dependent values (PEM material) by stable placeholders."""
    if _is_secret(value):
        return "<secret>"
    if isinstance(value, str):
        m = _PEM.search(value)
        if m:
            return f"<pem:{m.group(1).lower()}>"
        return value
    if isinstance(value, Mapping):
        return {k: _redact(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    return value


class RecordingMocks(pmocks.Mocks):
    """Mocks that record registrations and compute provider outputs where tests need them."""

    def __init__(self, now: dt.datetime | None = None):
        self.records: list[Recorded] = []
        self.tls = _Tls(now or dt.datetime.now(dt.UTC).replace(microsecond=0))
        self.providers: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "tls:index/privateKey:PrivateKey": self.tls.private_key,
            "tls:index/selfSignedCert:SelfSignedCert": self.tls.self_signed_cert,
            "tls:index/certRequest:CertRequest": self.tls.cert_request,
            "tls:index/locallySignedCert:LocallySignedCert": self.tls.locally_signed_cert,
            # pulumi.dynamic resources reach the mocks as ``pulumi-python:dynamic[/module]:Name``
            # with the serialised provider in ``__provider`` (a secret, so redacted in the
            # document); nothing is contacted: the outputs are the inputs plus what the
            # provider would compute from them.
            _switches.RESOURCE_TYPE: _switches.offline_outputs,
        }
        self.invokes: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {}

    def new_resource(self, args: pmocks.MockResourceArgs):
        compute = self.providers.get(args.typ)
        state = dict(args.inputs)
        if compute is not None:
            state.update(compute(_unsecret(args.inputs)))
        rid = f"{args.name}-id" if args.custom else ""
        return rid, state

    def call(self, args: pmocks.MockCallArgs):
        handler = self.invokes.get(args.token)
        if handler is None:
            raise NotImplementedError(
                f"offline evaluation has no mock for invoke {args.token}: add one to RecordingMocks.invokes"
            )
        return handler(args.args)


class RecordingMonitor(pmocks.MockMonitor):
    """MockMonitor that also records the parent URN and the inputs of each registration."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.recording_mocks = mocks

    def RegisterResource(self, request):
        from pulumi.runtime import rpc

        resp = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.recording_mocks.records.append(Recorded(
                urn=resp.urn, type=request.type, name=request.name, parent=request.parent,
                custom=bool(request.custom), inputs=dict(rpc.deserialize_properties(request.object)),
            ))
        return resp


# --------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """The result of one offline run of the program."""

    stack: str
    plan: Plan
    resources: list[Recorded]
    outputs: dict[str, Any] = field(default_factory=dict)

    def by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))

    def document(self) -> dict[str, Any]:
        """Deterministic plan document: resources sorted by URN, run-dependent values redacted."""
        res = sorted(self.resources, key=lambda r: r.urn)
        return {
            "stack": self.stack,
            "project": PROJECT,
            "resource_counts": self.by_type(),
            "resources": [
                {"urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent or None,
                 "custom": r.custom, "inputs": _redact(r.inputs)}
                for r in res
            ],
            "outputs": {k: _redact(v) for k, v in sorted(self.outputs.items()) if k not in outputs.SECRET},
            "plan": self.plan.to_dict(),
        }


def evaluate(spec: Spec, *, now: dt.datetime | None = None, preview: bool = False,
             switch_credentials: Callable[[], Any] | None = None) -> Evaluation:
    """Run the program for ``spec`` under mocks; return what it registered and exported.

    ``switch_credentials`` builds the :class:`~llmcluster.spec.secrets.SwitchCredentials`
    (called inside the mock runtime, as Outputs need it); a stack that pushes to its switches
    gets a secret placeholder by default, since an offline evaluation never connects to one.
    """
    from pulumi.runtime import settings

    from llmcluster import program
    from llmcluster.spec.secrets import needs_switch_credentials, placeholder_credentials

    with _lock:
        mocks = RecordingMocks(now=now)
        monitor = RecordingMonitor(mocks)
        pulumi.runtime.set_all_config({})
        settings.ROOT.set(None)  # each evaluation gets a fresh root stack resource
        pmocks.set_mocks(mocks, project=PROJECT, stack=spec.stack, preview=preview, monitor=monitor)
        holder: dict[str, Any] = {}

        def run() -> pulumi.Output:
            creds = None
            if switch_credentials is not None:
                creds = switch_credentials()
            elif needs_switch_credentials(spec):
                creds = placeholder_credentials()
            plan, exports = program.build(spec, switch_credentials=creds)
            holder["plan"] = plan
            # Only real Outputs go through Output.all: walking big plain values (the inventory)
            # as inputs would cost far more than the resources themselves.
            holder["outputs"] = {k: v for k, v in exports.items() if not isinstance(v, pulumi.Output)}
            keys = [k for k, v in exports.items() if isinstance(v, pulumi.Output)]
            return pulumi.Output.all(*[exports[k] for k in keys]).apply(
                lambda values: holder["outputs"].update(zip(keys, values, strict=True))
            )

        pulumi.runtime.test(run)()
        return Evaluation(stack=spec.stack, plan=holder["plan"], resources=list(mocks.records),
                          outputs=holder.get("outputs", {}))
