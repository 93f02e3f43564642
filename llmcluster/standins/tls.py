"""Stand-in for the pulumi-tls provider: real key material and certificates (``cryptography``).

Outputs are computed from the resources' inputs, keyed by the Pulumi property names, as the
provider would: ECDSA/RSA/Ed25519 keys, self-signed and locally signed certificates with the
requested lifetimes, key usages and SANs, CSRs. So a test can run ``openssl verify`` on the
chain the program's PKI component built.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any


class TlsStandin:
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
        # OpenSSH encodings (what the provider computes too): the LWS workers' sshd keys use them
        ossh_pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        ossh_priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                      serialization.NoEncryption())
        return {"privateKeyPem": pem.decode(), "publicKeyPem": pub.decode(),
                "publicKeyFingerprintSha256": hashlib.sha256(pub).hexdigest(),
                "publicKeyOpenssh": ossh_pub.decode() + "\n", "privateKeyOpenssh": ossh_priv.decode()}

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
