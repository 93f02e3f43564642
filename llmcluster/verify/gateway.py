"""Gateway checks with real clients: curl and ``openssl s_client`` against the mTLS API front.

Shared by the verification suite (``tests/verify/test_gateway.py``, against the lab or a real
inventory, run from a client-zone source) and the local loopback test of the rendered
configuration (``tests/roles/test_mtls_gateway_local.py``). Each function returns the argv to
run and each judge returns a list of problems (empty: the check passed), so the same logic
holds wherever the command runs.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

#: The body every chat request sends (the lab stand-in echoes which node answered).
CHAT_BODY = json.dumps({"model": "deepseek-r1", "messages": [{"role": "user", "content": "ping"}],
                        "max_tokens": 4})
_MARK = "\n__HTTP_CODE__="


@dataclass(frozen=True)
class ClientCert:
    cert: str
    key: str


def curl_argv(hostname: str, address: str, port: int, cacert: str, *, client: ClientCert | None = None,
              path: str = "/v1/chat/completions", data: str | None = CHAT_BODY, tls_max: str | None = None,
              timeout: float = 10) -> list[str]:
    argv = ["curl", "-sS", "--max-time", str(timeout), "--cacert", cacert,
            "--resolve", f"{hostname}:{port}:{address}", "-w", _MARK.replace("\n", "\\n") + "%{http_code}"]
    if client is not None:
        argv += ["--cert", client.cert, "--key", client.key]
    if tls_max:
        argv += ["--tls-max", tls_max]
    if data is not None:
        argv += ["-H", "Content-Type: application/json", "--data-binary", data]
    return [*argv, f"https://{hostname}:{port}{path}"]


@dataclass(frozen=True)
class CurlResult:
    rc: int
    status: int  # 0: no HTTP response
    body: str
    stderr: str

    def describe(self) -> str:
        if self.status:
            return f"HTTP {self.status} {self.body.strip()[:160]!r}"
        return f"no HTTP response (curl exit {self.rc}: {self.stderr.strip()[-200:]})"


def parse_curl(rc: int, stdout: str, stderr: str) -> CurlResult:
    body, _, code = stdout.rpartition(_MARK)
    try:
        status = int(code.strip() or 0)
    except ValueError:
        status = 0
    return CurlResult(rc, status, body, stderr)


def expect_ok(res: CurlResult, what: str) -> list[str]:
    if res.rc == 0 and res.status == 200:
        return []
    return [f"{what}: expected HTTP 200 through the gateway, got {res.describe()}"]


def expect_rejected(res: CurlResult, what: str) -> list[str]:
    """Rejected at the TLS layer: no HTTP response at all (an HTTP error would mean it got in)."""
    if res.rc != 0 and res.status == 0:
        return []
    return [f"{what}: expected the TLS handshake to be refused, got {res.describe()}"]


def upstream_of(res: CurlResult) -> str | None:
    """The node that answered: the lab stand-in says ``llmcluster_upstream``; the lab's simulated
    trtllm-serve sets ``system_fingerprint`` to ``llmcluster-sim:<host>``."""
    try:
        body = json.loads(res.body)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    fp = str(body.get("system_fingerprint") or "")
    return body.get("llmcluster_upstream") or (fp.split(":", 1)[1] if fp.startswith("llmcluster-sim:") else None)


def s_client_argv(hostname: str, address: str, port: int, cacert: str, version: str,
                  client: ClientCert | None = None) -> list[str]:
    """``openssl s_client`` with exactly one protocol version (``tls1_2`` / ``tls1_3``)."""
    argv = ["openssl", "s_client", "-connect", f"{address}:{port}", "-servername", hostname,
            "-CAfile", cacert, f"-{version}", "-verify_return_error", "-brief"]
    if client is not None:
        argv += ["-cert", client.cert, "-key", client.key]
    return argv


def expect_handshake_fails(rc: int, out: str, what: str) -> list[str]:
    if rc != 0 and "CONNECTION ESTABLISHED" not in out:
        return []
    return [f"{what}: the handshake succeeded: {out.strip()[-200:]}"]


def expect_tls13_p256(rc: int, out: str, what: str) -> list[str]:
    problems = []
    if rc != 0 or "CONNECTION ESTABLISHED" not in out:
        return [f"{what}: TLS 1.3 handshake failed (exit {rc}): {out.strip()[-200:]}"]
    if "Protocol version: TLSv1.3" not in out:
        problems.append(f"{what}: not TLS 1.3: {out.strip()[-200:]}")
    if "Signature type: ECDSA" not in out:
        problems.append(f"{what}: the server certificate is not ECDSA: {out.strip()[-200:]}")
    if "prime256v1" not in out and "P-256" not in out:
        problems.append(f"{what}: the key exchange is not on P-256: {out.strip()[-200:]}")
    return problems


# --------------------------------------------------------------------------- test material


def other_ca_client(directory: Path, cn: str = "intruder.example.internal") -> ClientCert:
    """A client certificate from a self-made CA that the cluster does not trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some Other CA")])
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "other-ca-client.crt", directory / "other-ca-client.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ClientCert(str(cert_path), str(key_path))


def lifetime_problems(pem: str, validity_hours: int, early_renewal_hours: int, what: str,
                      now: dt.datetime | None = None) -> list[str]:
    """The certificate lives at least the policy's lifetime and is not inside its renewal window."""
    from cryptography import x509

    now = now or dt.datetime.now(dt.UTC)
    c = x509.load_pem_x509_certificate(pem.encode())
    problems = []
    life = c.not_valid_after_utc - c.not_valid_before_utc
    if life < dt.timedelta(hours=validity_hours):
        problems.append(f"{what}: lifetime {life} is shorter than the policy's {validity_hours} h")
    if c.not_valid_after_utc < now + dt.timedelta(hours=early_renewal_hours):
        problems.append(f"{what}: expires {c.not_valid_after_utc:%Y-%m-%d %H:%M}Z, inside its renewal window "
                        f"({early_renewal_hours} h before the end): it should have been renewed")
    return problems


def issue_client(pki: Path, directory: Path, common_name: str, role: str, tag: str) -> ClientCert:
    """LAB ONLY: a client certificate for a named client's identity (CN, OU = role) with a fresh
    serial, issued by the intermediate whose key the offline lab export keeps in
    ``lab-tests/intermediate-ca.key`` (a Pulumi export never writes it). For the revocation check."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key((pki / "lab-tests" / "intermediate-ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificates((pki / "ca-chain.pem").read_bytes())[0]
    org = ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([*org, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{tag}-client.crt", directory / f"{tag}-client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ClientCert(str(cert_path), str(key_path))


def serial_of(cert_path: str) -> str:
    """The certificate's serial number in hex (what ``llmcluster pki revoke --serial`` takes)."""
    from cryptography import x509

    return format(x509.load_pem_x509_certificate(Path(cert_path).read_bytes()).serial_number, "x")


def statuses(loop_output: str) -> list[int]:
    """The HTTP status of every request of a loop of :func:`curl_argv` commands (0: no HTTP response)."""
    import re

    return [int(code) for code in re.findall(r"__HTTP_CODE__=(\d{3})", loop_output)]


# --------------------------------------------------------------------------- the suite's cases and client source


@dataclass(frozen=True)
class HostCheck:
    """One check of a gateway host (a case of the verification suite)."""

    host: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.host}-{self.name}"


def gateway_host_checks(plan, hostvars, names) -> list[HostCheck]:
    """Every check in ``names`` for every host of the gateway pool the inventory has."""
    gw = plan.spec.serving.gateway
    hosts = [h.name for h in plan.ip.hosts_in_pool(gw.pool)] if gw else []
    return [HostCheck(h, n) for h in hosts if h in hostvars for n in names]


@dataclass(frozen=True)
class ClientSource:
    """Where the suite's requests to the gateway start from, and with which client material.
    ``missing`` says why none can be sent (then ``netns`` is None)."""

    pki: Path | None  # the `llmcluster pki export` folder the inventory names
    zone: str | None  # the zone the flow to the gateway's port comes from
    netns: str | None  # the probe namespace standing in that zone
    missing: str | None


def api_client_zone(plan, gvars: dict) -> str | None:
    """The zone of the first flow that admits the gateway's port to its pool (the API clients)."""
    return next((f.from_ for f in plan.spec.flows if f"tcp/{gvars['port']}" in [str(p) for p in f.ports]
                 and gvars["pool"] in (plan.spec.zones[f.to].pools or ())), None)


def client_source(plan, gvars: dict, pki_dir: str | None, probes: dict | None) -> ClientSource:
    """The client zone of the flow that admits ``gvars['port']`` to the gateway pool, its probe
    namespace (``llmcluster_verify_probes``) and the exported client material (``admin``'s key)."""
    pki = Path(pki_dir) if pki_dir else None
    if pki is None or not (pki / "private" / "admin.key").is_file():
        return ClientSource(pki, None, None,
                            "no client key material: set llmcluster_pki_dir to a `llmcluster pki export` folder")
    zone = api_client_zone(plan, gvars)
    probe = (probes or {}).get(zone) if zone else None
    if probe is None:
        return ClientSource(pki, zone, None, f"no client source in zone {zone!r} (llmcluster_verify_probes)")
    return ClientSource(pki, zone, probe["netns"], None)
