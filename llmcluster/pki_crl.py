"""Revocation for the cluster PKI: the CRLs, ``revoked.json``, and ``llmcluster pki revoke`` / ``pki crl``.

What an export folder (:mod:`llmcluster.pki_export`) holds for revocation:

* ``crl.pem`` — two CRLs, concatenated:

  1. the **intermediate CA's CRL** (v2, SHA-256, ``thisUpdate`` now, ``nextUpdate`` now +
     ``pki.crl_validity_days``, a CRL number and the authority key identifier): every revoked
     leaf, with its reason. It is re-signed by ``pki revoke`` (CRL number + 1) and by ``pki crl``
     (a new ``nextUpdate``: run it well before the old one, see below);
  2. the **root CA's CRL**: empty and valid as long as the root (the program signs it with the
     root key, which never leaves Pulumi: stack output ``pkiRootCrlPem``). It is there because
     OpenSSL consumers that check the *whole* chain — HAProxy's ``crl-file`` sets
     ``X509_V_FLAG_CRL_CHECK_ALL`` — refuse every client ("unknown ca") unless they hold a CRL for
     each CA certificate of the chain, the intermediate included. An intermediate is never
     revoked by a CRL here: a compromised intermediate means a new hierarchy.

* ``revoked.json`` — what was revoked, for people and tools: a JSON list of
  ``{"serial": "<HEX>", "name": "<leaf>", "reason": "<reason>", "revoked_at": "<ISO 8601 UTC>"}``.
  The CRL is derived from it: an entry of the CRL that ``revoked.json`` lacks is an error (a
  revocation is never dropped), an entry of ``revoked.json`` missing from the CRL (a crash between
  the two renames) is signed into the next CRL.

The signing key: a **Pulumi-sourced** export is signed with the intermediate key read from the
stack's secret output (``pulumi stack output --json --show-secrets``, ``--stack S``), held in memory
only; an **offline (lab)** export is signed with ``lab-tests/intermediate-ca.key`` (0600), written
by the offline export only, because each offline evaluation issues a new hierarchy.

**An expired CRL fails closed**: once ``nextUpdate`` has passed, OpenSSL (HAProxy) refuses every
client certificate ("CRL has expired"). Re-sign it (``llmcluster pki crl``) from cron or CI well
before — at the latest half-way through its validity — and push it (converge with the mtls and
gateway tags); the mtls role refuses to push a CRL that has expired.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmcluster.errors import LLMClusterError, Problem, SpecError

CRL_FILE = "crl.pem"
REVOKED_FILE = "revoked.json"
#: Offline (lab) exports only: the intermediate's key, to sign later CRLs (0600).
LAB_INTERMEDIATE_KEY = "lab-tests/intermediate-ca.key"
#: The CRL reasons ``pki revoke --reason`` accepts (RFC 5280 names).
REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation")
DEFAULT_REASON = "unspecified"
MIN_VALIDITY_DAYS, MAX_VALIDITY_DAYS = 1, 30
#: Names that are the CAs themselves: refused by ``pki revoke`` (rotate the hierarchy instead).
CA_NAMES = ("root", "intermediate", "root-ca", "ca-chain", "intermediate-ca")
#: The most serial digits (RFC 5280: at most 20 octets).
MAX_SERIAL_HEX = 40
LEAF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
_CRL_PEM = re.compile(r"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----\s*", re.S)
#: The next step after a change of the CRL: push it (the mtls role installs it, the gateway reloads).
PUSH_TAGS = "mtls_configure,mtls_run,gateway_configure,gateway_run"


class RevocationError(LLMClusterError):
    """The signing key cannot be obtained (Pulumi CLI missing, stack output missing)."""


def _reason_flag(name: str):
    from cryptography import x509

    return {"unspecified": x509.ReasonFlags.unspecified, "keyCompromise": x509.ReasonFlags.key_compromise,
            "affiliationChanged": x509.ReasonFlags.affiliation_changed,
            "superseded": x509.ReasonFlags.superseded,
            "cessationOfOperation": x509.ReasonFlags.cessation_of_operation}[name]


def _reason_name(flag) -> str:
    for name in REASONS:
        if _reason_flag(name) == flag:
            return name
    return "unspecified"


# --------------------------------------------------------------------------- serials and records


def serial_hex(serial: int) -> str:
    """A serial as ``openssl x509 -serial`` prints it: upper-case hex, an even number of digits."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def parse_serial(text: str) -> int:
    """A serial given by a person: hex digits, optionally ``0x`` or ``:``-separated; ValueError else."""
    t = text.strip()
    if t.lower().startswith("0x"):
        t = t[2:]
    t = t.replace(":", "")
    if not t or len(t) > MAX_SERIAL_HEX or not re.fullmatch(r"[0-9A-Fa-f]+", t):
        raise ValueError(f"{text[:60]!r} is not a certificate serial number (hex digits, at most "
                         f"{MAX_SERIAL_HEX}, as `openssl x509 -noout -serial` prints it)")
    value = int(t, 16)
    if value <= 0:
        raise ValueError(f"{text[:60]!r} is not a certificate serial number (serials are positive)")
    return value


def _utc(t: dt.datetime) -> dt.datetime:
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)


def _iso(t: dt.datetime) -> str:
    return _utc(t).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Revocation:
    """One revoked certificate: what ``revoked.json`` records and the CRL carries."""

    serial: int
    name: str
    reason: str
    revoked_at: dt.datetime

    def to_dict(self) -> dict[str, str]:
        return {"serial": serial_hex(self.serial), "name": self.name, "reason": self.reason,
                "revoked_at": _iso(self.revoked_at)}


def dump_revoked(revoked: Iterable[Revocation]) -> str:
    rows = sorted(revoked, key=lambda r: (_utc(r.revoked_at), r.serial))
    return json.dumps([r.to_dict() for r in rows], indent=1) + "\n"


def load_revoked(text: str, where: str) -> list[Revocation]:
    """Parse ``revoked.json``; a :class:`SpecError` ``<where>: [i].<field>: <message>`` for each problem."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise SpecError(Problem(where, f"not JSON ({exc.msg} at line {exc.lineno}): restore it from a backup; "
                                       "a revocation is never dropped")) from None
    if not isinstance(doc, list):
        raise SpecError(Problem(where, "must be a JSON list of revocations ({serial, name, reason, revoked_at})"))
    problems: list[Problem] = []
    out: list[Revocation] = []
    seen: set[int] = set()
    for i, row in enumerate(doc):
        at = f"[{i}]"
        if not isinstance(row, dict):
            problems.append(Problem(at, "must be an object {serial, name, reason, revoked_at}"))
            continue
        unknown = sorted(set(row) - {"serial", "name", "reason", "revoked_at"})
        if unknown:
            problems.append(Problem(f"{at}.{unknown[0]}"[:120], "unknown key"))
        try:
            serial = parse_serial(row.get("serial")) if isinstance(row.get("serial"), str) else None
        except ValueError as exc:
            problems.append(Problem(f"{at}.serial", str(exc)))
            continue
        if serial is None:
            problems.append(Problem(f"{at}.serial", "missing (a hex string)"))
            continue
        name, reason, when = row.get("name", ""), row.get("reason"), row.get("revoked_at")
        if not isinstance(name, str) or (name and not LEAF_NAME.match(name)):
            problems.append(Problem(f"{at}.name", "must be a certificate name (or empty)"))
            continue
        if reason not in REASONS:
            problems.append(Problem(f"{at}.reason", f"{str(reason)[:40]!r} is not one of {', '.join(REASONS)}"))
            continue
        try:
            t = dt.datetime.fromisoformat(when) if isinstance(when, str) else None
        except ValueError:
            t = None
        if t is None:
            problems.append(Problem(f"{at}.revoked_at", "must be an ISO 8601 time (2026-01-31T12:00:00Z)"))
            continue
        if serial in seen:
            problems.append(Problem(f"{at}.serial", f"{serial_hex(serial)} is listed twice"))
            continue
        seen.add(serial)
        out.append(Revocation(serial, name, reason, _utc(t)))
    if problems:
        raise SpecError(problems[:20], source=where)
    return out


# --------------------------------------------------------------------------- signing


def _hash_for(key):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        return hashes.SHA256()
    raise ValueError(f"a {type(key).__name__} cannot sign the cluster's CRLs (ECDSA or RSA keys only)")


def _aki(issuer):
    from cryptography import x509

    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())


def sign_crl(issuer, key, revoked: Sequence[Revocation], *, number: int, this_update: dt.datetime,
             next_update: dt.datetime, deterministic: bool = False):
    """A v2 CRL of ``issuer`` (a certificate) signed with ``key``: SHA-256, the CRL number, the
    authority key identifier, one entry per revocation (with its reason unless ``unspecified``)."""
    from cryptography import x509

    b = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
         .last_update(_utc(this_update)).next_update(_utc(next_update))
         .add_extension(x509.CRLNumber(number), critical=False)
         .add_extension(_aki(issuer), critical=False))
    for r in sorted(revoked, key=lambda r: r.serial):
        e = x509.RevokedCertificateBuilder().serial_number(r.serial).revocation_date(_utc(r.revoked_at))
        if r.reason != "unspecified":
            e = e.add_extension(x509.CRLReason(_reason_flag(r.reason)), critical=False)
        b = b.add_revoked_certificate(e.build())
    from cryptography.hazmat.primitives.asymmetric import ec

    # RFC 6979 for ECDSA; RSA PKCS#1 v1.5 signatures are deterministic already.
    deterministic_ec = True if deterministic and isinstance(key, ec.EllipticCurvePrivateKey) else None
    return b.sign(key, _hash_for(key), ecdsa_deterministic=deterministic_ec)


def crl_pem(crl) -> str:
    from cryptography.hazmat.primitives import serialization

    return crl.public_bytes(serialization.Encoding.PEM).decode()


def ca_lifetime_crl_pem(ca_key_pem: str, ca_cert_pem: str, revoked: Sequence[Revocation] = ()) -> str:
    """A CRL of the CA ``ca_cert_pem`` from its notBefore to its notAfter, CRL number 1, signed
    deterministically (the same CA and revocations give the same bytes: ``pulumi up`` shows no change)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    ca = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    if not key_matches(key, ca):
        raise ValueError(f"the key does not match the CA {ca.subject.rfc4514_string()}: it cannot sign its CRL")
    return crl_pem(sign_crl(ca, key, revoked, number=1, this_update=ca.not_valid_before_utc,
                            next_update=ca.not_valid_after_utc, deterministic=True))


def root_crl_pem(root_key_pem: str, root_cert_pem: str) -> str:
    """The root's CRL: empty, valid as long as the root (:func:`ca_lifetime_crl_pem`)."""
    return ca_lifetime_crl_pem(root_key_pem, root_cert_pem)


def program_crl_file(inter_key_pem: str, inter_cert_pem: str, root_crl: str,
                     revoked: Sequence[Revocation] = ()) -> str:
    """``crl.pem`` as the program signs it for consumers it fills itself (the Kubernetes Secrets): the
    intermediate's CRL (``revoked``, valid as long as the intermediate, deterministic), then the root's
    — the order and content of an export's ``crl.pem``, so HAProxy's ``crl-file`` finds a CRL for each
    CA of the chain. ``revoked``: the export folder's record (:func:`program_revocations`)."""
    return ca_lifetime_crl_pem(inter_key_pem, inter_cert_pem, revoked) + root_crl.strip() + "\n"


#: The environment variable naming the export folder: the mtls role reads it (``mtls_pki_dir``) to push crl.pem
#: to the hosts, the program (``pulumi up`` of a ``serving.runtime: kubernetes`` stack) to sign the Secrets' CRL.
PKI_DIR_ENV = "LLMCLUSTER_PKI_DIR"


@dataclass(frozen=True)
class ProgramRevocations:
    """What the program reads from the export folder: the revocations ``pki revoke`` recorded there, and the
    intermediate CA they belong to (checked against the stack's own before signing)."""

    shown: str
    intermediate_pem: str
    revoked: tuple[Revocation, ...]

    @property
    def digest(self) -> str:
        """sha256 of the revocation record (serial, reason, time; sorted): the pod templates that load the CRL
        carry it as an annotation, so a new revocation rolls them (HAProxy reads crl-file only at start)."""
        import hashlib

        rows = sorted((serial_hex(r.serial), r.reason, _iso(r.revoked_at)) for r in self.revoked)
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()

    def for_intermediate(self, inter_cert_pem: str) -> list[Revocation]:
        """The revocations, refused when the export is of another hierarchy than the stack's intermediate."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        def spki(pem: str) -> bytes:
            return x509.load_pem_x509_certificate(pem.encode()).public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

        if spki(inter_cert_pem) != spki(self.intermediate_pem):
            raise RevocationError(f"{PKI_DIR_ENV}={self.shown}: the export's intermediate CA is not this stack's "
                                  "(an export of another hierarchy or stack): export the PKI again "
                                  "(`llmcluster pki export --stack S`), carrying its revocations over")
        return list(self.revoked)


def program_revocations(folder: str | Path | None) -> ProgramRevocations | None:
    """The revocation record of the export folder ``folder`` (``$LLMCLUSTER_PKI_DIR``: the same folder the mtls
    role pushes crl.pem from), None without one. A folder that is not a readable export is an error (a key-path
    message), never an empty list: a revocation is never dropped silently."""
    if folder is None or str(folder) == "":
        return None
    d = open_export(Path(folder), f"{PKI_DIR_ENV}={folder}")
    from cryptography.hazmat.primitives import serialization

    inter = d.intermediate.public_bytes(serialization.Encoding.PEM).decode()
    return ProgramRevocations(d.shown, inter, tuple(sorted(d.revoked, key=lambda r: r.serial)))


def split_crls(text: str) -> list[str]:
    return [m.group(0).strip() + "\n" for m in _CRL_PEM.finditer(text)]


def load_crl(pem: str):
    from cryptography import x509

    return x509.load_pem_x509_crl(pem.encode())


def crl_number(crl) -> int:
    from cryptography import x509

    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def issued_by(crl, issuer) -> bool:
    """``crl`` names ``issuer`` and its signature verifies with ``issuer``'s public key."""
    return crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key())


def entries(crl, names: Mapping[int, str] | None = None) -> list[Revocation]:
    """The CRL's entries as revocations (names from ``names``, else empty)."""
    from cryptography import x509

    out = []
    for e in crl:
        try:
            reason = _reason_name(e.extensions.get_extension_for_class(x509.CRLReason).value.reason)
        except x509.ExtensionNotFound:
            reason = "unspecified"
        out.append(Revocation(e.serial_number, (names or {}).get(e.serial_number, ""), reason,
                              e.revocation_date_utc))
    return out


def validity_of(crl) -> int:
    """The CRL's lifetime in whole days (``nextUpdate - thisUpdate``), within the spec's bounds."""
    nxt = crl.next_update_utc
    if nxt is None:
        return 7
    days = round((nxt - crl.last_update_utc).total_seconds() / 86400)
    return max(MIN_VALIDITY_DAYS, min(MAX_VALIDITY_DAYS, days))


def crl_file(inter, key, revoked: Sequence[Revocation], *, number: int, now: dt.datetime, days: int,
             root_crl: str) -> str:
    """The text of ``crl.pem``: the intermediate's CRL, then the root's."""
    now = _utc(now)
    crl = sign_crl(inter, key, revoked, number=number, this_update=now, next_update=now + dt.timedelta(days=days))
    return crl_pem(crl) + root_crl.strip() + "\n"


def key_matches(key, cert) -> bool:
    from cryptography.hazmat.primitives import serialization

    def pub(k):
        return k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    return pub(key.public_key()) == pub(cert.public_key())


def key_id(cert) -> str:
    from cryptography import x509

    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    return ski.hex(":").upper()


# --------------------------------------------------------------------------- carrying revocations over


@dataclass
class Carried:
    """What a new export keeps from the folder it replaces."""

    revoked: list[Revocation] = field(default_factory=list)
    number: int = 0
    notes: list[str] = field(default_factory=list)


def carry_over(folder: Path, shown: str, previous_files: Iterable[str], inter) -> Carried:
    """The revocations recorded in ``folder`` (our previous export, whose files are
    ``previous_files``) that a new export with intermediate ``inter`` keeps: all of them when
    the previous CRL was signed by the same intermediate (same name, same key), else none —
    and a note saying which were not carried over. A damaged record is refused, never dropped."""
    files = set(previous_files)
    if CRL_FILE not in files and REVOKED_FILE not in files:
        return Carried()
    where_crl, where_json = f"{shown}/{CRL_FILE}", f"{shown}/{REVOKED_FILE}"
    try:
        crls = split_crls((folder / CRL_FILE).read_text(encoding="utf-8"))
        prev = load_crl(crls[0]) if crls else None
    except (OSError, ValueError, UnicodeDecodeError):
        prev = None
    if prev is None:
        raise SpecError(Problem(where_crl, "unreadable: restore it (or move the folder away); an export never "
                                           "drops the revocations recorded there"))
    try:
        recorded = load_revoked((folder / REVOKED_FILE).read_text(encoding="utf-8"), where_json)
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(Problem(where_json, f"unreadable ({type(exc).__name__}): restore it (or move the folder "
                                            "away); an export never drops the revocations recorded there")) from None
    names = {r.serial: r.name for r in recorded}
    union = {r.serial: r for r in entries(prev, names)}
    union.update({r.serial: r for r in recorded})
    if prev.issuer == inter.subject and prev.is_signature_valid(inter.public_key()):
        return Carried(sorted(union.values(), key=lambda r: r.serial), crl_number(prev))
    if not union:
        return Carried()
    listed = ", ".join(f"{serial_hex(s)} ({r.name or '?'})" for s, r in sorted(union.items())[:5])
    more = f" and {len(union) - 5} more" if len(union) > 5 else ""
    return Carried(notes=[
        f"{shown}: {len(union)} revocation(s) of the previous intermediate CA ({prev.issuer.rfc4514_string()}) are "
        f"not carried over: the new hierarchy did not issue those certificates, and certificates of the previous "
        f"intermediate no longer pass the new chain's CRL check: {listed}{more}"])


# --------------------------------------------------------------------------- the export folder


@dataclass
class ExportDir:
    """An export folder, read and checked for ``pki revoke`` / ``pki crl``."""

    path: Path
    shown: str
    source: str                  # "pulumi" | "offline"
    stack: str
    root: Any
    intermediate: Any
    crl: Any                     # the intermediate's CRL now in crl.pem
    root_crl: str                # the root's CRL (PEM), carried unchanged
    revoked: list[Revocation]    # revoked.json, plus what the CRL holds and revoked.json lacks (none: refused)
    certs: dict[str, Any]        # leaf name -> certificate (certs/*.pem and lab-tests/*.crt)
    files: frozenset[str]        # our manifest's files

    def by_serial(self) -> dict[int, str]:
        return {c.serial_number: name for name, c in self.certs.items()}


def _read(folder: Path, rel: str, shown: str, limit: int = 4 * 1024 * 1024) -> str:
    import os
    import stat

    from llmcluster.outdir import os_reason

    p = folder / rel
    try:
        st = os.lstat(p)
        if not stat.S_ISREG(st.st_mode):
            raise SpecError(Problem(f"{shown}/{rel}", "not a regular file: export the PKI again"))
        if st.st_size > limit:
            raise SpecError(Problem(f"{shown}/{rel}", f"{st.st_size} bytes: not a file llmcluster wrote"))
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(Problem(f"{shown}/{rel}", "missing: export the PKI again (`llmcluster pki export`)")) from None
    except UnicodeDecodeError:
        raise SpecError(Problem(f"{shown}/{rel}", "not text: export the PKI again")) from None
    except OSError as exc:
        raise SpecError(Problem(f"{shown}/{rel}", os_reason(exc))) from None


def _cert(text: str, where: str):
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(text.encode())
    except ValueError:
        raise SpecError(Problem(where, "not a PEM certificate: export the PKI again")) from None


def open_export(path: Path | str, shown: str | None = None) -> ExportDir:
    """Read and check an export folder; a one-line :class:`SpecError` for anything wrong, before any write."""
    from cryptography import x509

    from llmcluster.outdir import _display, read_manifest

    folder = Path(path)
    shown = shown or _display(path)
    found = read_manifest(folder, shown)
    manifest_doc = None
    try:
        manifest_doc = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    if found is None or found[0] != "pki" or not isinstance(manifest_doc, dict):
        raise SpecError(Problem(shown, "not a PKI export (no manifest of `llmcluster pki export`): name the folder "
                                       "`llmcluster pki export --out` wrote"))
    files = found[1]
    if CRL_FILE not in files or REVOKED_FILE not in files:
        raise SpecError(Problem(shown, f"an export from before revocation existed (no {CRL_FILE}): export it "
                                       "again (`llmcluster pki export`), then revoke"))
    source = manifest_doc.get("source")
    stack = manifest_doc.get("stack")
    if source not in ("pulumi", "offline") or not isinstance(stack, str):
        raise SpecError(Problem(f"{shown}/manifest.json", "names no source and stack: export the PKI again"))
    root = _cert(_read(folder, "root-ca.pem", shown), f"{shown}/root-ca.pem")
    chain_text = _read(folder, "ca-chain.pem", shown)
    inter = _cert(chain_text, f"{shown}/ca-chain.pem")
    if inter.issuer != root.subject or not _verifies(inter, root):
        raise SpecError(Problem(f"{shown}/ca-chain.pem", "its intermediate is not issued by root-ca.pem: export "
                                                         "the PKI again"))
    crls = split_crls(_read(folder, CRL_FILE, shown))
    where_crl = f"{shown}/{CRL_FILE}"
    try:
        parsed = [load_crl(c) for c in crls]
    except ValueError:
        parsed = []
    if not parsed:
        raise SpecError(Problem(where_crl, "holds no readable CRL: export the PKI again"))
    mine = [(c, pem) for c, pem in zip(parsed, crls, strict=True) if c.issuer == inter.subject]
    roots = [pem for c, pem in zip(parsed, crls, strict=True) if issued_by(c, root)]
    if len(mine) != 1 or not issued_by(mine[0][0], inter):
        raise SpecError(Problem(where_crl, f"is not signed by this export's intermediate CA "
                                           f"({inter.subject.rfc4514_string()}): export the PKI again"))
    if not roots:
        raise SpecError(Problem(where_crl, "lacks the root CA's CRL: export the PKI again"))
    crl = mine[0][0]
    revoked = load_revoked(_read(folder, REVOKED_FILE, shown), f"{shown}/{REVOKED_FILE}")
    recorded = {r.serial for r in revoked}
    lost = [serial_hex(e.serial_number) for e in crl if e.serial_number not in recorded]
    if lost:
        raise SpecError(Problem(f"{shown}/{REVOKED_FILE}", f"lacks {len(lost)} serial(s) that {CRL_FILE} revokes "
                                                          f"({', '.join(lost[:5])}): restore it from a backup; a "
                                                          "revocation is never dropped"))
    certs: dict[str, Any] = {}
    for rel in sorted(files):
        name = None
        if rel.startswith("certs/") and rel.endswith(".pem"):
            name = rel[len("certs/"):-len(".pem")]
        elif rel.startswith("lab-tests/") and rel.endswith(".crt"):
            name = rel[len("lab-tests/"):-len(".crt")]
        if name is None or "/" in name:
            continue
        try:
            certs[name] = x509.load_pem_x509_certificate(_read(folder, rel, shown).encode())
        except (ValueError, SpecError):
            continue  # a damaged leaf cannot be revoked by name; the others still can
    return ExportDir(folder, shown, source, stack, root, inter, crl, roots[0], revoked, certs, files)


def _verifies(cert, issuer) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except Exception:  # any failure means "not issued by"
        return False


@contextmanager
def locked(folder: Path | str, shown: str, wait_s: float = 60.0) -> Iterator[None]:
    """Hold an exclusive lock on the export folder (``flock`` on the folder itself: nothing is
    written) so two commands never both read, change and write its revocations — one would
    drop the other's. A folder swapped in place meanwhile (a new export) is locked anew."""
    import fcntl
    import os
    import time

    from llmcluster.outdir import os_reason

    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise SpecError(Problem(shown, os_reason(exc))) from None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise SpecError(Problem(shown, f"another llmcluster command has been writing it for "
                                                       f"{wait_s:.0f} s: wait for it, then run this again")) from None
                    time.sleep(0.1)
            try:
                current = os.stat(folder)
            except OSError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                yield
                return
        finally:
            os.close(fd)  # releases the lock


# --------------------------------------------------------------------------- the signing key


def _load_key(pem: str, where: str):
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise SpecError(Problem(where, "not an unencrypted PEM private key")) from None


def stack_output(stack: str, key: str) -> Any:
    """One output of a Pulumi stack, secrets shown (``pulumi stack output --json --show-secrets``)."""
    import shutil
    import subprocess

    exe = shutil.which("pulumi")
    if exe is None:
        raise RevocationError("the Pulumi CLI is not installed: install it and log in to the stack's backend")
    try:
        p = subprocess.run([exe, "stack", "output", "--json", "--show-secrets", "--stack", stack],
                           capture_output=True, text=True, check=False, timeout=300)
    except subprocess.TimeoutExpired:
        raise RevocationError(f"pulumi stack output --stack {stack} did not answer within 300 s") from None
    if p.returncode != 0:
        raise RevocationError(f"pulumi stack output --stack {stack} failed: {p.stderr.strip()[-400:]}")
    try:
        data = json.loads(p.stdout or "{}")
    except ValueError:
        raise RevocationError(f"pulumi stack output --stack {stack} printed no JSON") from None
    value = data.get(key) if isinstance(data, dict) else None
    if not value:
        raise RevocationError(f"stack {stack} has no output {key}: run `pulumi up` first")
    return value


def signing_key(d: ExportDir, stack: str | None):
    """The intermediate's key for ``d``: the lab file for an offline export, the stack's secret
    output for a Pulumi one (``--stack``); it must be the key of ``d``'s intermediate."""
    from llmcluster import outputs

    if d.source == "offline":
        if stack is not None:
            raise SpecError(Problem("--stack", f"{d.shown} is an offline (lab) export: its CRL is signed with "
                                               f"{d.shown}/{LAB_INTERMEDIATE_KEY}; run without --stack"))
        where = f"{d.shown}/{LAB_INTERMEDIATE_KEY}"
        key = _load_key(_read(d.path, LAB_INTERMEDIATE_KEY, d.shown, 64 * 1024), where)
    else:
        if stack is None:
            raise SpecError(Problem("--stack", f"{d.shown} is an export of stack {d.stack} (Pulumi): give --stack "
                                               f"{d.stack} to sign with its intermediate key (read with `pulumi "
                                               "stack output --show-secrets`, kept in memory)"))
        if stack != d.stack:
            raise SpecError(Problem("--stack", f"{d.shown} is an export of stack {d.stack}, not {stack}"))
        where = "--stack"
        key = _load_key(str(stack_output(stack, outputs.PKI_INTERMEDIATE_KEY)), where)
    if not key_matches(key, d.intermediate):
        raise SpecError(Problem(where, f"the key does not match the intermediate CA of {d.shown} "
                                       f"({d.intermediate.subject.rfc4514_string()}, key id "
                                       f"{key_id(d.intermediate)[:23]}...): the export is of another hierarchy; "
                                       "export the PKI again"))
    return key


# --------------------------------------------------------------------------- revoke and re-sign


@dataclass(frozen=True)
class Target:
    serial: int
    name: str


def resolve(d: ExportDir, names: Sequence[str], serials: Sequence[str],
            cert_files: Sequence[str] = ()) -> list[Target]:
    """The certificates to revoke, by leaf name, serial or certificate file (one found on a
    compromised machine, or issued outside the export); refuses the CAs and anything this
    export's intermediate did not issue (a one-line error each)."""
    from llmcluster.spec.loader import did_you_mean

    ca_serials = {d.root.serial_number: "the root CA", d.intermediate.serial_number: "the intermediate CA"}
    rotate = "a CA is not revoked by its own CRL: rotate the hierarchy instead (new keys with `pulumi up " \
             "--replace`, then export and converge)"
    problems: list[Problem] = []
    out: list[Target] = []
    for name in names:
        if name.lower() in CA_NAMES:
            which = "the root" if "root" in name.lower() else "the intermediate"
            problems.append(Problem("--name", f"{name} is {which} CA: {rotate}"))
            continue
        if not LEAF_NAME.match(name):
            problems.append(Problem("--name", f"{name[:60]!r} is not a certificate name"))
            continue
        cert = d.certs.get(name)
        if cert is None:
            known = sorted(d.certs)
            shown = ", ".join(known[:8]) + (f" and {len(known) - 8} more" if len(known) > 8 else "")
            problems.append(Problem("--name", f"no certificate {name!r} in {d.shown}{did_you_mean(name, known)} "
                                              f"(known: {shown or 'none'})"))
            continue
        if cert.issuer != d.intermediate.subject or not _verifies(cert, d.intermediate):
            problems.append(Problem("--name", f"{name} is not issued by the intermediate CA of {d.shown}"))
            continue
        out.append(Target(cert.serial_number, name))
    by_serial = d.by_serial()
    for text in serials:
        try:
            serial = parse_serial(text)
        except ValueError as exc:
            problems.append(Problem("--serial", str(exc)))
            continue
        if serial in ca_serials:
            problems.append(Problem("--serial", f"{serial_hex(serial)} is {ca_serials[serial]}: {rotate}"))
            continue
        name = by_serial.get(serial)
        recorded = {r.serial for r in d.revoked}
        if name is None and serial not in recorded:
            problems.append(Problem("--serial", f"{serial_hex(serial)} is not the serial of a certificate in "
                                                f"{d.shown} issued by its intermediate CA: check it "
                                                "(`openssl x509 -noout -serial -in CERT`) or revoke by --name"))
            continue
        if name is not None and not _verifies(d.certs[name], d.intermediate):
            problems.append(Problem("--serial", f"{serial_hex(serial)} ({name}) is not issued by the intermediate "
                                                f"CA of {d.shown}"))
            continue
        out.append(Target(serial, name or next((r.name for r in d.revoked if r.serial == serial), "")))
    if cert_files:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
    for path in cert_files:
        try:
            data = Path(path).read_bytes()[:1024 * 1024]
            cert = x509.load_pem_x509_certificate(data)
        except (OSError, ValueError) as exc:
            problems.append(Problem("--cert", f"{str(path)[:200]}: not a readable PEM certificate "
                                              f"({type(exc).__name__})"))
            continue
        if cert.serial_number in ca_serials:
            problems.append(Problem("--cert", f"{path} is {ca_serials[cert.serial_number]}: {rotate}"))
            continue
        if cert.issuer != d.intermediate.subject or not _verifies(cert, d.intermediate):
            problems.append(Problem("--cert", f"{path} is not issued by the intermediate CA of {d.shown}"))
            continue
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = by_serial.get(cert.serial_number) or (str(cn[0].value)[:64] if cn else "")
        out.append(Target(cert.serial_number, name))
    if problems:
        raise SpecError(problems)
    unique: dict[int, Target] = {}
    for t in out:
        unique.setdefault(t.serial, t)
    return list(unique.values())


@dataclass
class Outcome:
    """What a revoke or re-sign did (for the CLI to print)."""

    revoked: list[Revocation]        # newly revoked
    already: list[Revocation]        # asked for, but already revoked
    number: int                      # the new CRL number (0: nothing written)
    this_update: dt.datetime | None
    next_update: dt.datetime | None
    written: list[Path]


def _write(d: ExportDir, revoked: Sequence[Revocation], key, now: dt.datetime) -> tuple[int, dt.datetime,
                                                                                          dt.datetime, list[Path]]:
    from llmcluster.outdir import update_files

    number = crl_number(d.crl) + 1
    days = validity_of(d.crl)
    text = crl_file(d.intermediate, key, revoked, number=number, now=now, days=days, root_crl=d.root_crl)
    # revoked.json first: a crash between the two renames leaves a record the next CRL includes.
    written = update_files(d.path, "pki", {REVOKED_FILE: (dump_revoked(revoked), 0o644),
                                           CRL_FILE: (text, 0o644)}, shown=d.shown)
    now = _utc(now)
    return number, now, now + dt.timedelta(days=days), written


def revoke(d: ExportDir, targets: Sequence[Target], reason: str, key_source, now: dt.datetime | None = None) -> Outcome:
    """Add ``targets`` to ``revoked.json`` and re-sign ``crl.pem``. Already revoked targets are
    reported, not changed; when every target is already revoked nothing is written (and
    ``key_source`` is never called: idempotent without the key)."""
    now = _utc(now or dt.datetime.now(dt.UTC))
    recorded = {r.serial: r for r in d.revoked}
    already = [recorded[t.serial] for t in targets if t.serial in recorded]
    new = [Revocation(t.serial, t.name, reason, now) for t in targets if t.serial not in recorded]
    if not new:
        return Outcome([], already, 0, None, None, [])
    key = key_source()
    number, this, nxt, written = _write(d, [*d.revoked, *new], key, now)
    return Outcome(new, already, number, this, nxt, written)


def resign(d: ExportDir, key, now: dt.datetime | None = None) -> Outcome:
    """Re-sign ``crl.pem`` with a new thisUpdate/nextUpdate (CRL number + 1), same entries."""
    now = _utc(now or dt.datetime.now(dt.UTC))
    number, this, nxt, written = _write(d, d.revoked, key, now)
    return Outcome([], [], number, this, nxt, written)
