"""Export the PKI (certificates *and private keys*) to a controller-side folder for Ansible.

Private keys are Pulumi secrets: they never appear in plain outputs, in ``plan --out`` or
in the inventory. This module is the one explicit path from the secrets to the ``mtls``
role, which reads the folder named by ``mtls_pki_dir`` on the Ansible controller:

* ``from_pulumi(stack)`` — production: ``pulumi stack output --json --show-secrets`` (needs
  the Pulumi CLI, the stack's backend and its secrets provider); the intermediate CA's key (a
  secret output) is used in memory to sign the CRL and never written;
* ``from_offline(spec)`` — **the lab's path**: the program evaluated under Pulumi's mocks,
  whose TLS provider stand-in generates real keys and certificates (``llmcluster.offline``).
  Each evaluation issues a *new* hierarchy: use it for the lab only, never for a real cluster.

Before anything is written the material is checked against the plan (:func:`check_material`):
every planned certificate is present, its key matches it, it chains to the root through the
intermediate, its SANs are exactly the plan's (and the plan's SANs pass
:func:`llmcluster.plan.pki.check_sans`), its lifetime is the policy's and it is not inside its
renewal window. A certificate with a SAN outside the plan stops the export with one
``pki.certificates.<name>...`` line per problem, so nothing reaches a host.

Layout (the folder is 0700, keys 0600, the rest 0644)::

    root-ca.pem                   the root (trust anchor)
    ca-chain.pem                  intermediate + root (what servers send after their leaf)
    crl.pem                       the intermediate's CRL (revoked leaves; nextUpdate = now +
                                  pki.crl_validity_days), then the root's (empty): see
                                  llmcluster.pki_crl
    revoked.json                  what was revoked: [{serial, name, reason, revoked_at}]
    certs/<name>.pem              every leaf certificate of the plan
    private/<name>.key            its private key (0600)
    manifest.json                 stack, source, per-certificate subject/SANs/notAfter/sha256
    .llmcluster-export.json       the files llmcluster wrote here (what a later export replaces)
    lab-tests/                    offline only, lab only: material for the verification
                                  suite's negative checks (an expired client certificate issued
                                  by the real intermediate) and intermediate-ca.key (0600), the
                                  key that signs this lab hierarchy's later CRLs (`pki revoke`,
                                  `pki crl`). The intermediate key is never written for a
                                  Pulumi-sourced export: there `pki revoke --stack S` reads it
                                  from the stack's secret output, in memory only.

A new export into a folder holding an earlier export keeps the revocations recorded there when
the intermediate CA is the same (same name and key; the CRL number goes on), and says which it
does not carry over when the hierarchy is new (those certificates no longer pass the new chain's
CRL check); a damaged revocation record stops the export rather than being dropped.

The folder is written next to its final place and swapped into it, so a failed export leaves
the previous one untouched; files in it that llmcluster did not write are never deleted or
overwritten (:mod:`llmcluster.outdir`; ``.llmcluster-export.json`` names what it wrote).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcluster import outputs
from llmcluster.errors import LLMClusterError, Problem, SpecError
from llmcluster.plan.build import Plan

#: Lab-only negative-test material (see module docstring).
LAB_TESTS = "lab-tests"
EXPIRED_CLIENT = "expired-client"


class PkiExportError(LLMClusterError):
    """The PKI material cannot be exported (missing CLI, missing output)."""


@dataclass(frozen=True)
class Material:
    """PEM text as the program exports it: public certificates and secret keys by leaf name."""

    source: str  # "pulumi" | "offline"
    root_pem: str
    chain_pem: str
    certs: Mapping[str, str]
    keys: Mapping[str, str]
    #: the intermediate's key: signs the CRL (in memory); offline exports also keep it in lab-tests/
    intermediate_key_pem: str | None = None
    #: the root's CRL (stack output pkiRootCrlPem), the second CRL of crl.pem
    root_crl_pem: str | None = None


# --------------------------------------------------------------------------- sources


def from_pulumi(stack: str, cwd: Path | None = None) -> Material:
    exe = shutil.which("pulumi")
    if exe is None:
        raise PkiExportError("the Pulumi CLI is not installed: install it and log in to the stack's backend "
                             "(or, for the lab only, use --offline)")
    p = subprocess.run([exe, "stack", "output", "--json", "--show-secrets", "--stack", stack],
                       capture_output=True, text=True, cwd=cwd, check=False)
    if p.returncode != 0:
        raise PkiExportError(f"pulumi stack output --stack {stack} failed: {p.stderr.strip()[-400:]}")
    data = json.loads(p.stdout or "{}")
    missing = [k for k in (outputs.PKI_ROOT_CERT, outputs.PKI_CHAIN, outputs.PKI_CERTS, outputs.PKI_KEYS,
                           outputs.PKI_INTERMEDIATE_KEY, outputs.PKI_ROOT_CRL) if not data.get(k)]
    if missing:
        raise PkiExportError(f"stack {stack} has no output(s) {', '.join(missing)}: run `pulumi up` first")
    return Material("pulumi", data[outputs.PKI_ROOT_CERT], data[outputs.PKI_CHAIN], dict(data[outputs.PKI_CERTS]),
                    dict(data[outputs.PKI_KEYS]), data[outputs.PKI_INTERMEDIATE_KEY], data[outputs.PKI_ROOT_CRL])


def from_offline(spec, now: dt.datetime | None = None) -> tuple[Plan, Material]:
    """Lab only: evaluate the program under mocks (real, freshly generated key material)."""
    from llmcluster.offline import evaluate

    ev = evaluate(spec, now=now)
    o = ev.outputs
    return ev.plan, Material("offline", o[outputs.PKI_ROOT_CERT], o[outputs.PKI_CHAIN], dict(o[outputs.PKI_CERTS]),
                             dict(o[outputs.PKI_KEYS]), o[outputs.PKI_INTERMEDIATE_KEY], o[outputs.PKI_ROOT_CRL])


# --------------------------------------------------------------------------- checks


def _x509(pem: str):
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem.encode())


def _pub(obj) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return obj.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_sans(cert) -> tuple[set[str], set[str]]:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(ext.get_values_for_type(x509.DNSName)), {str(a) for a in ext.get_values_for_type(x509.IPAddress)}


def check_material(plan: Plan, m: Material, now: dt.datetime | None = None) -> list[Problem]:
    """Everything that must hold before the material may be pushed (empty list: fine)."""
    from cryptography.hazmat.primitives import serialization

    from llmcluster.plan.pki import check_sans

    now = now or dt.datetime.now(dt.UTC)
    problems = list(check_sans(plan.pki, plan.ip, plan.spec.site.domain))
    try:
        root = _x509(m.root_pem)
        chain = [_x509(p) for p in _split(m.chain_pem)]
    except ValueError as exc:
        return [*problems, Problem("pki.root", f"unreadable CA certificate: {exc}")]
    inter = chain[0] if chain else None
    try:
        root.verify_directly_issued_by(root)
        if inter is None:
            raise ValueError("the chain has no intermediate")
        inter.verify_directly_issued_by(root)
    except Exception as exc:
        problems.append(Problem("pki.intermediate", f"the CA chain does not verify: {exc}"))
        inter = None
    problems += _check_crl_material(m, root, inter)
    for c in plan.pki.leaves:
        where = f"pki.certificates.{c.name}"
        pem, key_pem = m.certs.get(c.name), m.keys.get(c.name)
        if not pem or not key_pem:
            problems.append(Problem(where, "certificate or private key missing from the stack outputs "
                                           "(run `pulumi up` after changing the plan)"))
            continue
        cert = _x509(pem)
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        if _pub(key) != _pub(cert):
            problems.append(Problem(where, "the private key does not match the certificate"))
        if inter is not None:
            try:
                cert.verify_directly_issued_by(inter)
            except Exception as exc:
                problems.append(Problem(where, f"not issued by the cluster's intermediate CA: {exc}"))
        dns, ips = cert_sans(cert)
        planned_dns, planned_ips = set(c.dns_names), {str(ipaddress.ip_address(a)) for a in c.ip_addresses}
        for extra in sorted(dns - planned_dns):
            problems.append(Problem(f"{where}.dns_names", f"{extra} is not a SAN the plan gives {c.name} "
                                                          f"(planned: {', '.join(sorted(planned_dns)) or 'none'})"))
        for extra in sorted(ips - planned_ips):
            problems.append(Problem(f"{where}.ip_addresses", f"{extra} is not an address the plan gives {c.name} "
                                                             f"(planned: {', '.join(sorted(planned_ips)) or 'none'})"))
        for gone in sorted((planned_dns - dns) | (planned_ips - ips)):
            problems.append(Problem(where, f"planned SAN {gone} is missing: re-issue it (`pulumi up`)"))
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        if life < dt.timedelta(hours=c.validity_hours):
            problems.append(Problem(f"{where}.validity", f"lifetime {life} is shorter than the policy's "
                                                         f"{c.validity_hours} h"))
        if cert.not_valid_after_utc < now + dt.timedelta(hours=c.early_renewal_hours):
            problems.append(Problem(f"{where}.validity", f"expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z, "
                                                         f"inside its renewal window: run `pulumi up` to renew it"))
    return problems


def _check_crl_material(m: Material, root, inter) -> list[Problem]:
    """The intermediate's key matches it; the root's CRL is the root's (when the material has them)."""
    from cryptography.hazmat.primitives import serialization

    from llmcluster import pki_crl as C

    problems = []
    if m.intermediate_key_pem is not None and inter is not None:
        try:
            key = serialization.load_pem_private_key(m.intermediate_key_pem.encode(), password=None)
            ok = C.key_matches(key, inter)
        except (ValueError, TypeError):
            ok = False
        if not ok:
            problems.append(Problem("pki.intermediate", "the exported intermediate CA key does not match the "
                                                        "intermediate certificate (run `pulumi up`)"))
    if m.root_crl_pem is not None:
        try:
            crls = [C.load_crl(p) for p in C.split_crls(m.root_crl_pem)]
        except ValueError:
            crls = []
        if len(crls) != 1 or not C.issued_by(crls[0], root):
            problems.append(Problem("pki.root", "the exported root CRL is not signed by the root CA (run `pulumi up`)"))
    return problems


def _split(pems: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    return [p.strip() + "\n" + end + "\n" for p in pems.split(end) if p.strip()]


# --------------------------------------------------------------------------- lab-test material


def _expired_client(plan: Plan, m: Material) -> tuple[str, str]:
    """A client certificate issued by the real intermediate whose validity ended yesterday."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    assert m.intermediate_key_pem
    ca_key = serialization.load_pem_private_key(m.intermediate_key_pem.encode(), password=None)
    inter = _x509(_split(m.chain_pem)[0])
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, plan.spec.site.organization),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "lab-tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"expired.{plan.spec.site.domain}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(inter.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=3)).not_valid_after(now - dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


# --------------------------------------------------------------------------- writing


def manifest(plan: Plan, m: Material) -> dict[str, Any]:
    certs = {}
    for name, pem in sorted(m.certs.items()):
        c = _x509(pem)
        dns, ips = cert_sans(c)
        certs[name] = {"subject": c.subject.rfc4514_string(), "dns_names": sorted(dns), "ip_addresses": sorted(ips),
                       "not_before": c.not_valid_before_utc.isoformat(), "not_after": c.not_valid_after_utc.isoformat(),
                       "sha256": hashlib.sha256(pem.encode()).hexdigest()}
    return {"stack": plan.spec.stack, "source": m.source, "lab_only": m.source == "offline", "certificates": certs}


def legacy_files(folder: Path) -> set[str] | None:
    """The files of an export written before llmcluster kept :data:`llmcluster.outdir.MANIFEST`
    (named by its ``manifest.json``), or None when ``folder`` is not one."""
    import re

    try:
        doc = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("certificates"), dict) or "source" not in doc:
        return None
    names = [n for n in doc["certificates"] if isinstance(n, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", n)]
    files = {"root-ca.pem", "ca-chain.pem", "manifest.json"}
    files |= {f"certs/{n}.pem" for n in names} | {f"private/{n}.key" for n in names}
    files |= {f"{LAB_TESTS}/{EXPIRED_CLIENT}.crt", f"{LAB_TESTS}/{EXPIRED_CLIENT}.key"}
    # An export whose manifest was lost keeps its revocation record (never dropped) and lab key.
    files |= {"crl.pem", "revoked.json", f"{LAB_TESTS}/intermediate-ca.key"}
    return files


def revoked_still_exported(m: Material, revoked) -> list[str]:
    """Notes for certificates of the new export that are revoked (re-issue them: `pulumi up --replace`)."""
    from llmcluster import pki_crl as C

    serials = {r.serial: r for r in revoked}
    notes = []
    for name, pem in sorted(m.certs.items()):
        r = serials.get(_x509(pem).serial_number)
        if r is not None:
            notes.append(f"{name}: the exported certificate {C.serial_hex(r.serial)} is revoked ({r.reason}): "
                         "re-issue it with a new key (`pulumi up --replace` on its key), then export again")
    return notes


def export(plan: Plan, m: Material, out: Path, *, lab_tests: bool = False, replace: bool = False,
           notes: list[str] | None = None, now: dt.datetime | None = None) -> list[Path]:
    """Check, then write the folder (atomically, by :mod:`llmcluster.outdir`'s rules: never over or
    instead of files llmcluster did not write). Raises SpecError on problems. ``notes`` receives
    what the user should know (revocations not carried over, revoked certificates still exported)."""
    from llmcluster import pki_crl as C
    from llmcluster.outdir import inspect

    problems = check_material(plan, m)
    if problems:
        raise SpecError(problems, source=f"stack {plan.spec.stack}")
    if m.intermediate_key_pem is None or m.root_crl_pem is None:
        raise PkiExportError(f"stack {plan.spec.stack} exports no {outputs.PKI_INTERMEDIATE_KEY} / "
                             f"{outputs.PKI_ROOT_CRL} (the CRL's signing material): run `pulumi up` first")
    if lab_tests and m.source != "offline":
        raise PkiExportError("lab-test material needs the offline (lab) evaluation")
    target = inspect(out, "pki", replace=replace, legacy=legacy_files, probe=False)
    if target.state == "new":
        return _export(plan, m, out, C.Carried(), lab_tests=lab_tests, replace=replace, notes=notes, now=now)
    with C.locked(target.real, target.path):  # no `pki revoke` between reading the revocations and the swap
        target = inspect(out, "pki", replace=replace, legacy=legacy_files, probe=False)
        carried = C.Carried()
        if target.state == "ours" and target.previous_kind in (None, "pki"):
            carried = C.carry_over(target.real, target.path, target.previous, _x509(_split(m.chain_pem)[0]))
        return _export(plan, m, out, carried, lab_tests=lab_tests, replace=replace, notes=notes, now=now)


def _export(plan: Plan, m: Material, out: Path, carried, *, lab_tests: bool, replace: bool,
            notes: list[str] | None, now: dt.datetime | None) -> list[Path]:
    from cryptography.hazmat.primitives import serialization

    from llmcluster import pki_crl as C
    from llmcluster.outdir import write_tree

    inter = _x509(_split(m.chain_pem)[0])
    key = serialization.load_pem_private_key(m.intermediate_key_pem.encode(), password=None)
    crl = C.crl_file(inter, key, carried.revoked, number=carried.number + 1, now=now or dt.datetime.now(dt.UTC),
                     days=plan.spec.pki.crl_validity_days, root_crl=m.root_crl_pem)
    files: dict[str, tuple[str, int]] = {"root-ca.pem": (m.root_pem, 0o644), "ca-chain.pem": (m.chain_pem, 0o644),
                                         C.CRL_FILE: (crl, 0o644),
                                         C.REVOKED_FILE: (C.dump_revoked(carried.revoked), 0o644)}
    for name in sorted(m.certs):
        files[f"certs/{name}.pem"] = (m.certs[name], 0o644)
        files[f"private/{name}.key"] = (m.keys[name], 0o600)
    if lab_tests:
        crt, lab_key = _expired_client(plan, m)
        files[f"{LAB_TESTS}/{EXPIRED_CLIENT}.crt"] = (crt, 0o644)
        files[f"{LAB_TESTS}/{EXPIRED_CLIENT}.key"] = (lab_key, 0o600)
        # Lab only: each offline evaluation issues a new hierarchy, so the key that signs its
        # later CRLs must stay with it. Never for a Pulumi-sourced export (source checked above).
        files[C.LAB_INTERMEDIATE_KEY] = (m.intermediate_key_pem, 0o600)
    files["manifest.json"] = (json.dumps(manifest(plan, m), indent=1, sort_keys=True) + "\n", 0o644)
    written = write_tree(out, files, "pki", replace=replace, legacy=legacy_files, dir_mode=0o700)
    if notes is not None:
        notes.extend(carried.notes)
        notes.extend(revoked_still_exported(m, carried.revoked))
    return written


def load_dir(directory: Path) -> Material:
    """Read an exported folder back (to re-check it against the plan)."""
    d = Path(directory)
    certs = {p.stem: p.read_text() for p in sorted((d / "certs").glob("*.pem"))}
    keys = {p.stem: p.read_text() for p in sorted((d / "private").glob("*.key"))}
    return Material("export", (d / "root-ca.pem").read_text(), (d / "ca-chain.pem").read_text(), certs, keys)


def ensure_lab_export(plan: Plan, directory: Path, now: dt.datetime | None = None) -> Path:
    """LAB ONLY: the lab's exported PKI in ``directory``, issued offline once and reused while it
    still passes :func:`check_material` for ``plan`` (so converges are idempotent). Its CRL is
    re-signed (revocations kept) once half of its validity has passed, so a lab left running never
    pushes an expired CRL; an export without a CRL or its lab key is issued again."""
    from llmcluster import pki_crl as C

    directory = Path(directory)
    now = now or dt.datetime.now(dt.UTC)
    if (directory / "manifest.json").is_file() and (directory / LAB_TESTS).is_dir():
        try:
            if not check_material(plan, load_dir(directory), now=now):
                d = C.open_export(directory)
                nxt = d.crl.next_update_utc
                if d.source == "offline" and nxt is not None \
                        and nxt - now < (nxt - d.crl.last_update_utc) / 2:
                    with C.locked(directory, str(directory)):
                        d = C.open_export(directory)
                        C.resign(d, C.signing_key(d, None), now)
                return directory
        except (OSError, ValueError, SpecError):
            pass
    _, material = from_offline(plan.spec)
    export(plan, material, directory, lab_tests=True)
    return directory
