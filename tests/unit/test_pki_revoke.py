"""Revocation: the CRL builder, ``revoked.json``, exports keeping revocations, ``pki revoke`` and
``pki crl`` end to end, and OpenSSL (a tool nobody here wrote) as the judge of the result.

The PKI is the lab stack's, issued offline (real keys). The production path (``--stack``) runs
against a stand-in ``pulumi`` executable on PATH that prints the stack outputs as
``pulumi stack output --json --show-secrets`` does; nothing here talks to Pulumi.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from llmcluster import outputs
from llmcluster import pki_crl as C
from llmcluster.cli import main
from llmcluster.errors import SpecError
from tests.conftest import STACKS, load_spec
from tests.helpers.fs import changes, snapshot

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


@pytest.fixture(scope="module")
def lab_pki():
    from llmcluster.pki_export import from_offline

    return from_offline(load_spec("lab"))


@pytest.fixture
def export_dir(lab_pki, tmp_path) -> Path:
    from llmcluster.pki_export import export

    plan, material = lab_pki
    d = tmp_path / "pki"
    export(plan, material, d, lab_tests=True)
    return d


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _crls(d: Path) -> list[x509.CertificateRevocationList]:
    return [x509.load_pem_x509_crl(p.encode()) for p in C.split_crls((d / "crl.pem").read_text())]


def _inter(d: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((d / "ca-chain.pem").read_bytes())


def cli(*argv: str) -> int:
    return main(list(argv))


# --------------------------------------------------------------------------- the CRL builder


def test_the_intermediate_crl_is_v2_sha256_numbered_with_the_authority_key_id(export_dir):
    inter_key = serialization.load_pem_private_key((export_dir / C.LAB_INTERMEDIATE_KEY).read_bytes(), None)
    inter = _inter(export_dir)
    revs = [C.Revocation(0x1234, "client-x", "keyCompromise", NOW - dt.timedelta(hours=1)),
            C.Revocation(0xABCD, "", "unspecified", NOW)]
    crl = C.sign_crl(inter, inter_key, revs, number=7, this_update=NOW, next_update=NOW + dt.timedelta(days=7))
    assert crl.is_signature_valid(inter.public_key())
    assert crl.issuer == inter.subject
    assert crl.signature_hash_algorithm.name == "sha256"
    assert (crl.last_update_utc, crl.next_update_utc) == (NOW, NOW + dt.timedelta(days=7))
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == inter.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    der = crl.public_bytes(serialization.Encoding.DER)
    tbs = der[_header(der, 0):]
    assert tbs[_header(tbs, 0):][:3] == b"\x02\x01\x01", "version v2 (INTEGER 1) leads the tbsCertList"
    by_serial = {e.serial_number: e for e in crl}
    assert set(by_serial) == {0x1234, 0xABCD}
    reason = by_serial[0x1234].extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    assert not list(by_serial[0xABCD].extensions), "unspecified: no reason code (RFC 5280 5.3.1)"
    assert C.entries(crl, {0x1234: "client-x"})[0] == revs[0]


def test_the_root_crl_is_empty_lives_as_long_as_the_root_and_is_deterministic(lab_pki):
    from llmcluster.offline import _unsecret, evaluate

    _, m = lab_pki
    root = x509.load_pem_x509_certificate(m.root_pem.encode())
    crl = x509.load_pem_x509_crl(m.root_crl_pem.encode())
    assert C.issued_by(crl, root) and len(list(crl)) == 0
    assert (crl.last_update_utc, crl.next_update_utc) == (root.not_valid_before_utc, root.not_valid_after_utc)
    # The same root key and certificate give the same bytes (an unchanged root: pulumi up shows no change).
    ev = evaluate(load_spec("lab"))
    signed = next(r for r in ev.resources if r.type == "tls:index/selfSignedCert:SelfSignedCert")
    key_pem = _unsecret(signed.inputs["privateKeyPem"])
    again = C.root_crl_pem(key_pem, ev.outputs[outputs.PKI_ROOT_CERT])
    assert again == ev.outputs[outputs.PKI_ROOT_CRL] == C.root_crl_pem(key_pem, ev.outputs[outputs.PKI_ROOT_CERT])


def _header(der: bytes, at: int) -> int:
    """The length of the DER tag-and-length header at ``at``."""
    first = der[at + 1]
    return 2 + (first & 0x7F if first & 0x80 else 0)


@pytest.mark.parametrize(("text", "value"), [("0A", 10), ("0x0a", 10), ("0a:1B", 0x0A1B), (" 7F ", 0x7F),
                                              ("1" * 40, int("1" * 40, 16))])
def test_serials_as_people_type_them(text, value):
    assert C.parse_serial(text) == value


@pytest.mark.parametrize("text", ["", "0", "00", "xyz", "-1", "1" * 41, "0x", "12 34", "１２"])
def test_bad_serials_are_refused(text):
    with pytest.raises(ValueError, match="serial number"):
        C.parse_serial(text)


def test_serial_hex_is_what_openssl_prints():
    assert C.serial_hex(0xABC) == "0ABC" and C.serial_hex(0x1F) == "1F"


# --------------------------------------------------------------------------- revoked.json


def test_revoked_json_round_trips():
    revs = [C.Revocation(0x1F, "admin", "superseded", NOW), C.Revocation(0xABCDEF, "", "keyCompromise", NOW)]
    text = C.dump_revoked(revs)
    doc = json.loads(text)
    assert doc[0] == {"serial": "1F", "name": "admin", "reason": "superseded", "revoked_at": "2026-03-01T12:00:00Z"}
    assert C.load_revoked(text, "r.json") == revs
    assert C.dump_revoked(C.load_revoked(text, "r.json")) == text


@pytest.mark.parametrize(("doc", "line"), [
    ("{", "r.json: not JSON"),
    ('{"serial": "1F"}', "r.json: must be a JSON list"),
    ('[1]', "r.json: [0]: must be an object"),
    ('[{"serial": "zz", "name": "a", "reason": "superseded", "revoked_at": "2026-01-01T00:00:00Z"}]',
     "r.json: [0].serial: 'zz' is not a certificate serial number"),
    ('[{"name": "a", "reason": "superseded", "revoked_at": "2026-01-01T00:00:00Z"}]', "r.json: [0].serial: missing"),
    ('[{"serial": "1F", "name": "a", "reason": "lost", "revoked_at": "2026-01-01T00:00:00Z"}]',
     "r.json: [0].reason: 'lost' is not one of"),
    ('[{"serial": "1F", "name": "a", "reason": "superseded", "revoked_at": "yesterday"}]',
     "r.json: [0].revoked_at: must be an ISO 8601 time"),
    ('[{"serial": "1F", "name": "a/b", "reason": "superseded", "revoked_at": "2026-01-01T00:00:00Z"}]',
     "r.json: [0].name: must be a certificate name"),
    ('[{"serial": "1F", "name": "a", "reason": "superseded", "revoked_at": "2026-01-01T00:00:00Z"},'
     ' {"serial": "1f", "name": "b", "reason": "superseded", "revoked_at": "2026-01-01T00:00:00Z"}]',
     "r.json: [1].serial: 1F is listed twice"),
])
def test_a_damaged_revoked_json_is_one_line_per_problem(doc, line):
    with pytest.raises(SpecError) as ei:
        C.load_revoked(doc, "r.json")
    lines = ei.value.lines()
    assert len(lines) == 1 and lines[0].startswith(line), lines


# --------------------------------------------------------------------------- the export


def test_an_export_has_an_empty_crl_signed_by_the_intermediate_then_the_roots(export_dir, lab_pki):
    plan, _ = lab_pki
    inter, root = _inter(export_dir), _cert(export_dir / "root-ca.pem")
    first, second = _crls(export_dir)
    assert C.issued_by(first, inter) and C.issued_by(second, root)
    assert len(list(first)) == 0 and C.crl_number(first) == 1
    assert first.next_update_utc - first.last_update_utc == dt.timedelta(days=plan.spec.pki.crl_validity_days)
    assert json.loads((export_dir / "revoked.json").read_text()) == []
    for rel, mode in (("crl.pem", 0o644), ("revoked.json", 0o644), (C.LAB_INTERMEDIATE_KEY, 0o600)):
        assert stat.S_IMODE(os.stat(export_dir / rel).st_mode) == mode, rel
    key = serialization.load_pem_private_key((export_dir / C.LAB_INTERMEDIATE_KEY).read_bytes(), None)
    assert C.key_matches(key, inter)


def test_crl_validity_days_comes_from_the_spec(tmp_path):
    from llmcluster.pki_export import export, from_offline

    plan, m = from_offline(load_spec("lab", ("pki.crl_validity_days=2",)))
    export(plan, m, tmp_path / "pki", lab_tests=True)
    crl = _crls(tmp_path / "pki")[0]
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=2)


def test_a_pulumi_sourced_export_never_writes_the_intermediate_key(lab_pki, tmp_path):
    from llmcluster.pki_export import PkiExportError, export

    plan, m = lab_pki
    prod = dataclasses.replace(m, source="pulumi")
    d = tmp_path / "pki"
    export(plan, prod, d)
    body = m.intermediate_key_pem.strip().splitlines()[1]
    for p in d.rglob("*"):
        if p.is_file():
            assert body not in p.read_text(), f"{p.relative_to(d)} holds the intermediate key"
    assert not (d / "lab-tests").exists()
    assert C.issued_by(_crls(d)[0], _inter(d)), "the CRL is signed all the same (key in memory)"
    with pytest.raises(PkiExportError, match="offline"):
        export(plan, prod, tmp_path / "other", lab_tests=True)
    assert not (tmp_path / "other").exists()


def test_a_stack_without_the_crl_outputs_is_refused_before_writing(lab_pki, tmp_path):
    from llmcluster.pki_export import PkiExportError, export

    plan, m = lab_pki
    for missing in ({"intermediate_key_pem": None}, {"root_crl_pem": None}):
        with pytest.raises(PkiExportError, match="run `pulumi up` first"):
            export(plan, dataclasses.replace(m, source="pulumi", **missing), tmp_path / "pki")
    assert not (tmp_path / "pki").exists()


def test_check_material_refuses_a_foreign_intermediate_key_and_root_crl(lab_pki):
    from llmcluster.pki_export import check_material

    plan, m = lab_pki
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    inter = x509.load_pem_x509_certificate(m.chain_pem.encode())
    foreign_crl = C.crl_pem(C.sign_crl(inter, serialization.load_pem_private_key(m.intermediate_key_pem.encode(),
                                                                                  None),
                                       [], number=1, this_update=NOW, next_update=NOW + dt.timedelta(days=1)))
    problems = check_material(plan, dataclasses.replace(m, intermediate_key_pem=other, root_crl_pem=foreign_crl))
    text = "\n".join(str(p) for p in problems)
    assert "pki.intermediate: the exported intermediate CA key does not match" in text
    assert "pki.root: the exported root CRL is not signed by the root CA" in text
    assert check_material(plan, m) == []


def test_a_new_export_keeps_the_revocations_of_the_same_intermediate(export_dir, lab_pki, capsys):
    from llmcluster.pki_export import export

    plan, m = lab_pki
    assert cli("pki", "revoke", "--pki-dir", str(export_dir), "--name", "admin", "--reason", "keyCompromise") == 0
    before = json.loads((export_dir / "revoked.json").read_text())
    number = C.crl_number(_crls(export_dir)[0])
    notes: list[str] = []
    export(plan, m, export_dir, lab_tests=True, notes=notes)
    assert json.loads((export_dir / "revoked.json").read_text()) == before
    crl = _crls(export_dir)[0]
    assert C.crl_number(crl) == number + 1, "the CRL number goes on"
    assert [e.serial_number for e in crl] == [_cert(export_dir / "certs" / "admin.pem").serial_number]
    assert any(n.startswith("admin: the exported certificate") and "is revoked" in n for n in notes), notes


def test_a_new_hierarchy_says_which_revocations_it_does_not_carry_over(export_dir, capsys):
    from llmcluster.pki_export import export, from_offline

    assert cli("pki", "revoke", "--pki-dir", str(export_dir), "--name", "host-gpu-01") == 0
    plan, fresh = from_offline(load_spec("lab"))
    notes: list[str] = []
    export(plan, fresh, export_dir, lab_tests=True, notes=notes)
    assert json.loads((export_dir / "revoked.json").read_text()) == []
    assert len(notes) == 1 and "1 revocation(s) of the previous intermediate CA" in notes[0]
    assert "(host-gpu-01)" in notes[0] and "not carried over" in notes[0]
    # The CLI prints the note (never silent).
    d2 = export_dir.parent / "again"
    assert cli("pki", "export", "--stack", "lab", "--stacks-dir", str(STACKS), "--offline", "--out", str(d2)) == 0
    assert cli("pki", "revoke", "--pki-dir", str(d2), "--name", "admin") == 0
    capsys.readouterr()
    assert cli("pki", "export", "--stack", "lab", "--stacks-dir", str(STACKS), "--offline", "--out", str(d2)) == 0
    err = capsys.readouterr().err
    assert "note: " in err and "not carried over" in err and "(admin)" in err


@pytest.mark.parametrize("damage", ["revoked.json", "crl.pem"])
def test_a_damaged_revocation_record_stops_the_export(export_dir, lab_pki, damage):
    from llmcluster.pki_export import export

    plan, m = lab_pki
    (export_dir / damage).write_text("{damaged")
    before = snapshot(export_dir)
    with pytest.raises(SpecError) as ei:
        export(plan, m, export_dir, lab_tests=True)
    assert ei.value.lines()[0].startswith(f"{export_dir}/{damage}: ")
    assert changes(before, snapshot(export_dir)) == []


def test_a_crl_entry_missing_from_revoked_json_is_kept_by_the_export(export_dir, lab_pki):
    from llmcluster.pki_export import export

    plan, m = lab_pki
    assert cli("pki", "revoke", "--pki-dir", str(export_dir), "--name", "admin") == 0
    (export_dir / "revoked.json").write_text("[]\n")   # lost, yet the CRL still holds it
    export(plan, m, export_dir, lab_tests=True)
    serial = _cert(export_dir / "certs" / "admin.pem").serial_number
    assert [e.serial_number for e in _crls(export_dir)[0]] == [serial]
    assert json.loads((export_dir / "revoked.json").read_text())[0]["serial"] == C.serial_hex(serial)


# --------------------------------------------------------------------------- pki revoke / pki crl


def test_revoke_by_name_and_by_serial_and_again(export_dir, capsys):
    d = str(export_dir)
    admin, gw = _cert(export_dir / "certs" / "admin.pem"), _cert(export_dir / "certs" / "host-gw-01.pem")
    assert cli("pki", "revoke", "--pki-dir", d, "--name", "admin", "--reason", "keyCompromise") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"revoked {C.serial_hex(admin.serial_number)} (admin, keyCompromise): {d}/crl.pem #2")
    assert "mtls_configure,mtls_run,gateway_configure,gateway_run" in out[1] and len(out) == 2
    colons = ":".join(C.serial_hex(gw.serial_number)[i:i + 2] for i in range(0, 40, 2)).lower()
    assert cli("pki", "revoke", "--pki-dir", d, "--serial", colons) == 0
    assert f"revoked {C.serial_hex(gw.serial_number)} (host-gw-01, unspecified)" in capsys.readouterr().out
    assert {r["name"] for r in json.loads((export_dir / "revoked.json").read_text())} == {"admin", "host-gw-01"}
    crl = _crls(export_dir)[0]
    assert C.crl_number(crl) == 3 and {e.serial_number for e in crl} == {admin.serial_number, gw.serial_number}
    # Idempotent: exit 0, says so, writes nothing.
    before = snapshot(export_dir)
    assert cli("pki", "revoke", "--pki-dir", d, "--name", "admin", "--reason", "superseded") == 0
    out = capsys.readouterr().out
    assert "is already revoked (keyCompromise" in out and "nothing to do" in out and "next:" not in out
    assert changes(before, snapshot(export_dir)) == []


def test_revoke_several_at_once_one_line_each(export_dir, capsys):
    assert cli("pki", "revoke", "--pki-dir", str(export_dir), "--name", "admin", "--name", "host-gpu-02",
               "--name", "admin") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[1].split(",")[0] for line in lines if line.startswith("revoked ")] == \
        ["admin", "host-gpu-02"]
    assert C.crl_number(_crls(export_dir)[0]) == 2, "one new CRL for the whole command"


def test_the_lab_expired_client_can_be_revoked_by_serial(export_dir):
    crt = _cert(export_dir / "lab-tests" / "expired-client.crt")
    assert cli("pki", "revoke", "--pki-dir", str(export_dir), "--serial", C.serial_hex(crt.serial_number)) == 0
    assert json.loads((export_dir / "revoked.json").read_text())[0]["name"] == "expired-client"


def test_revoke_a_certificate_file_issued_outside_the_export(export_dir, tmp_path, capsys):
    """--cert: a certificate found on a compromised machine (here: issued for a named client's
    identity with a fresh serial, as the verification suite's revocation check does)."""
    from llmcluster.verify import gateway as G

    client = G.issue_client(export_dir, tmp_path / "c", "lab-app.clients.lab.llmcluster.internal", "app", "t")
    serial = _cert(Path(client.cert)).serial_number
    assert cli("pki", "revoke", "--pki-dir", str(export_dir), "--cert", client.cert) == 0
    assert f"revoked {C.serial_hex(serial)} (lab-app.clients.lab.llmcluster.internal" in capsys.readouterr().out
    assert serial in {e.serial_number for e in _crls(export_dir)[0]}
    chain = export_dir / "ca-chain.pem"
    r = _openssl("verify", "-crl_check_all", "-CAfile", str(chain), "-CRLfile", str(export_dir / "crl.pem"),
                 client.cert)
    assert r.returncode != 0 and "certificate revoked" in r.stdout + r.stderr


@pytest.mark.parametrize("which", ["other-ca", "not-pem", "missing", "root"])
def test_revoke_cert_file_problems_are_one_line_and_write_nothing(export_dir, tmp_path, capsys, which):
    from llmcluster.verify import gateway as G

    path = tmp_path / "x.pem"
    if which == "other-ca":
        path = Path(G.other_ca_client(tmp_path).cert)
    elif which == "not-pem":
        path.write_text("hello\n")
    elif which == "root":
        path = export_dir / "root-ca.pem"
    before = snapshot(export_dir)
    assert cli("pki", "revoke", "--pki-dir", str(export_dir), "--cert", str(path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cert: " in err[0], err
    assert changes(before, snapshot(export_dir)) == []


def test_pki_crl_re_signs_with_a_new_next_update_and_the_same_entries(export_dir, capsys):
    assert cli("pki", "revoke", "--pki-dir", str(export_dir), "--name", "admin") == 0
    old = _crls(export_dir)[0]
    later = old.last_update_utc + dt.timedelta(days=3)
    d = C.open_export(export_dir)
    outcome = C.resign(d, C.signing_key(d, None), now=later)
    new, root_crl = _crls(export_dir)
    assert C.crl_number(new) == C.crl_number(old) + 1 == outcome.number
    assert (new.last_update_utc, new.next_update_utc) == (later, old.next_update_utc + dt.timedelta(days=3))
    assert [e.serial_number for e in new] == [e.serial_number for e in old]
    assert C.issued_by(root_crl, _cert(export_dir / "root-ca.pem"))
    capsys.readouterr()
    assert cli("pki", "crl", "--pki-dir", str(export_dir)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"signed {export_dir}/crl.pem #4 (1 revoked certificate(s)), valid until ")
    assert C.crl_number(_crls(export_dir)[0]) == 4


def test_a_revoked_json_entry_missing_from_the_crl_is_signed_into_the_next_one(export_dir):
    serial = _cert(export_dir / "certs" / "admin.pem").serial_number
    (export_dir / "revoked.json").write_text(C.dump_revoked([C.Revocation(serial, "admin", "superseded", NOW)]))
    assert cli("pki", "crl", "--pki-dir", str(export_dir)) == 0
    assert [e.serial_number for e in _crls(export_dir)[0]] == [serial]


def test_revoke_replaces_only_its_two_files_and_keeps_foreign_ones(export_dir):
    (export_dir / "operator-notes.txt").write_text("mine\n")
    before = snapshot(export_dir)
    assert cli("pki", "revoke", "--pki-dir", str(export_dir), "--name", "admin") == 0
    assert sorted(changes(before, snapshot(export_dir))) == ["~ crl.pem", "~ revoked.json"]
    assert not [p for p in export_dir.iterdir() if p.name.startswith(".llmcluster-stage")]


def test_ensure_lab_export_re_signs_a_crl_past_half_its_life_and_keeps_revocations(lab_pki, tmp_path):
    from llmcluster.pki_export import ensure_lab_export

    plan, _ = lab_pki
    d = tmp_path / "pki"
    ensure_lab_export(plan, d)
    assert cli("pki", "revoke", "--pki-dir", str(d), "--name", "admin") == 0
    crl = _crls(d)[0]
    ensure_lab_export(plan, d)
    assert C.crl_number(_crls(d)[0]) == C.crl_number(crl), "fresh: reused as it is"
    later = crl.last_update_utc + (crl.next_update_utc - crl.last_update_utc) * 0.6
    ensure_lab_export(plan, d, now=later)
    again = _crls(d)[0]
    assert C.crl_number(again) == C.crl_number(crl) + 1 and again.last_update_utc == later.replace(microsecond=0)
    assert _inter(d) == _inter(d) and [e.serial_number for e in again] == [e.serial_number for e in crl]


# --------------------------------------------------------------------------- the production path (--stack)


def _fake_pulumi(tmp_path: Path, monkeypatch, outputs_doc: dict | None, rc: int = 0) -> Path:
    """A ``pulumi`` on PATH printing ``outputs_doc`` for ``stack output --json --show-secrets``."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    data = tmp_path / "outputs.json"
    data.write_text(json.dumps(outputs_doc or {}))
    log = tmp_path / "pulumi.log"
    exe = bindir / "pulumi"
    exe.write_text(f"#!/bin/sh\necho \"$@\" >> '{log}'\n"
                   + (f"cat '{data}'\n" if rc == 0 else "echo 'error: no stack named prod' >&2\n")
                   + f"exit {rc}\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


@pytest.fixture
def prod_dir(lab_pki, tmp_path) -> Path:
    from llmcluster.pki_export import export

    plan, m = lab_pki
    d = tmp_path / "prod-pki"
    export(plan, dataclasses.replace(m, source="pulumi"), d)
    return d


def test_a_pulumi_export_is_revoked_with_the_stacks_secret_key_in_memory(prod_dir, lab_pki, tmp_path, monkeypatch,
                                                                         capsys):
    _, m = lab_pki
    log = _fake_pulumi(tmp_path, monkeypatch, {outputs.PKI_INTERMEDIATE_KEY: m.intermediate_key_pem})
    assert cli("pki", "revoke", "--pki-dir", str(prod_dir), "--name", "admin", "--stack", "lab") == 0
    assert "stack output --json --show-secrets --stack lab" in log.read_text()
    assert "llmcluster converge --stack lab --tags" in capsys.readouterr().out
    assert C.issued_by(_crls(prod_dir)[0], _inter(prod_dir)) and len(list(_crls(prod_dir)[0])) == 1
    body = m.intermediate_key_pem.strip().splitlines()[1]
    assert not any(body in p.read_text() for p in prod_dir.rglob("*") if p.is_file()), "the key was written"
    assert cli("pki", "crl", "--pki-dir", str(prod_dir), "--stack", "lab") == 0


@pytest.mark.parametrize(("doc", "rc", "argv", "line"), [
    ("other-key", 0, ("--stack", "lab"), "--stack: the key does not match the intermediate CA of"),
    ({}, 0, ("--stack", "lab"), "error: stack lab has no output pkiIntermediateKeyPem: run `pulumi up` first"),
    ({}, 1, ("--stack", "lab"), "error: pulumi stack output --stack lab failed: error: no stack named prod"),
    ({outputs.PKI_INTERMEDIATE_KEY: "not a key"}, 0, ("--stack", "lab"), "--stack: not an unencrypted PEM private key"),
    (None, 0, (), "--stack: "),                                   # a Pulumi export needs --stack
    (None, 0, ("--stack", "prod"), "--stack: "),                  # ... the export's own stack
])
def test_production_key_problems_are_one_line_and_write_nothing(prod_dir, tmp_path, monkeypatch, capsys, doc, rc,
                                                                argv, line):
    if doc == "other-key":
        doc = {outputs.PKI_INTERMEDIATE_KEY: ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()}
    log = _fake_pulumi(tmp_path, monkeypatch, doc, rc)
    before = snapshot(prod_dir)
    for cmd in (("revoke", "--name", "admin"), ("crl",)):
        assert cli("pki", *cmd, "--pki-dir", str(prod_dir), *argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(line), err
    assert changes(before, snapshot(prod_dir)) == []
    if doc is None:
        assert not log.exists(), "pulumi ran although the stack was wrong"


def test_without_the_pulumi_cli_the_error_says_so(prod_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cli("pki", "crl", "--pki-dir", str(prod_dir), "--stack", "lab") == 2
    assert capsys.readouterr().err.startswith("error: the Pulumi CLI is not installed")


# --------------------------------------------------------------------------- OpenSSL as the judge


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


@needs_openssl
@pytest.mark.parametrize("check", ["-crl_check", "-crl_check_all"])
def test_openssl_verify_rejects_the_revoked_leaf_and_accepts_the_others(export_dir, check):
    assert cli("pki", "revoke", "--pki-dir", str(export_dir), "--name", "host-gpu-01") == 0
    d = export_dir
    for leaf in sorted((d / "certs").glob("*.pem")):
        r = _openssl("verify", check, "-CAfile", str(d / "root-ca.pem"), "-untrusted", str(d / "ca-chain.pem"),
                     "-CRLfile", str(d / "crl.pem"), "-purpose", "any", str(leaf))
        if leaf.stem == "host-gpu-01":
            assert r.returncode != 0 and "certificate revoked" in r.stdout + r.stderr, (leaf.stem, r.stdout, r.stderr)
        else:
            assert r.returncode == 0 and r.stdout.strip().endswith(": OK"), (leaf.stem, r.stdout, r.stderr)


@needs_openssl
def test_openssl_without_the_root_crl_refuses_every_client_under_crl_check_all(export_dir, tmp_path):
    """Why crl.pem carries the root's CRL: a whole-chain check (HAProxy's crl-file) needs one per CA."""
    only_inter = tmp_path / "inter-only.pem"
    only_inter.write_text(C.split_crls((export_dir / "crl.pem").read_text())[0])
    r = _openssl("verify", "-crl_check_all", "-CAfile", str(export_dir / "root-ca.pem"), "-untrusted",
                 str(export_dir / "ca-chain.pem"), "-CRLfile", str(only_inter), str(export_dir / "certs" / "admin.pem"))
    assert r.returncode != 0 and "unable to get certificate CRL" in r.stdout + r.stderr


@needs_openssl
def test_openssl_crl_verify_accepts_both_crls_and_reads_the_fields(export_dir, tmp_path):
    assert cli("pki", "revoke", "--pki-dir", str(export_dir), "--name", "admin", "--reason", "superseded") == 0
    inter_crl, root_crl = (tmp_path / "i.pem", tmp_path / "r.pem")
    first, second = C.split_crls((export_dir / "crl.pem").read_text())
    inter_crl.write_text(first)
    root_crl.write_text(second)
    for f in (inter_crl, root_crl):
        r = _openssl("crl", "-in", str(f), "-noout", "-verify", "-CAfile", str(export_dir / "ca-chain.pem"))
        assert r.returncode == 0 and "verify OK" in r.stderr, r.stderr
    text = _openssl("crl", "-in", str(inter_crl), "-noout", "-text").stdout
    serial = C.serial_hex(_cert(export_dir / "certs" / "admin.pem").serial_number)
    assert "Version 2 (0x1)" in text and "ecdsa-with-SHA256" in text and "X509v3 CRL Number" in text
    assert "X509v3 Authority Key Identifier" in text and f"Serial Number: {serial}" in text
    assert "Superseded" in text
    assert _openssl("crl", "-in", str(inter_crl), "-noout", "-crlnumber").stdout.strip() == "crlNumber=0x02"


@needs_openssl
def test_openssl_crl_verify_rejects_a_crl_signed_by_another_key(export_dir, tmp_path):
    inter = _inter(export_dir)
    other = ec.generate_private_key(ec.SECP256R1())
    forged = tmp_path / "forged.pem"
    forged.write_text(C.crl_pem(C.sign_crl(inter, other, [], number=9, this_update=NOW,
                                           next_update=NOW + dt.timedelta(days=1))))
    r = _openssl("crl", "-in", str(forged), "-noout", "-verify", "-CAfile", str(export_dir / "ca-chain.pem"))
    assert "verify OK" not in r.stderr and "verify failure" in r.stderr


# --------------------------------------------------------------------------- inventory and the role's defaults


def test_every_host_gets_the_crl_path_the_mtls_role_installs():
    import yaml

    from llmcluster.inventory import build_inventory
    from tests.conftest import ROOT, load_plan

    inv = build_inventory(load_plan("lab"))
    paths = {hv["llmcluster_pki"]["crl"] for hv in inv["_meta"]["hostvars"].values()}
    assert paths == {"/etc/llmcluster/pki/crl.pem"}
    spec = yaml.safe_load((ROOT / "roles" / "mtls" / "meta" / "argument_specs.yml").read_text())
    assert spec["argument_specs"]["main"]["options"]["mtls_crl_path"]["default"] == "/etc/llmcluster/pki/crl.pem"
    assert "(llmcluster_pki | default({})).crl" in (ROOT / "roles" / "mtls" / "defaults" / "main.yml").read_text()


def test_two_commands_never_change_the_revocations_at_once(export_dir):
    """A second writer waits for the first (a lock on the folder itself, nothing written for it)."""
    before = snapshot(export_dir)
    with C.locked(export_dir, "pki"):
        with pytest.raises(SpecError, match="^pki: another llmcluster command has been writing it"):
            with C.locked(export_dir, "pki", wait_s=0.3):
                pass
    with C.locked(export_dir, "pki", wait_s=0.3):
        pass
    assert changes(before, snapshot(export_dir)) == []


@pytest.mark.parametrize("overrides", [("pki.algorithm=RSA", "pki.allow_rsa=true"), ("pki.ecdsa_curve=P384",)])
def test_other_key_types_sign_their_crls_too(tmp_path, overrides):
    from llmcluster.offline import _unsecret, evaluate
    from llmcluster.pki_export import export, from_offline

    ev = evaluate(load_spec("lab", overrides))
    signed = next(r for r in ev.resources if r.type == "tls:index/selfSignedCert:SelfSignedCert")
    key = _unsecret(signed.inputs["privateKeyPem"])
    assert C.root_crl_pem(key, ev.outputs[outputs.PKI_ROOT_CERT]) == ev.outputs[outputs.PKI_ROOT_CRL], \
        "deterministic for every key type"
    plan, m = from_offline(load_spec("lab", overrides))
    export(plan, m, tmp_path / "pki", lab_tests=True)
    assert cli("pki", "revoke", "--pki-dir", str(tmp_path / "pki"), "--name", "admin") == 0
    first, second = _crls(tmp_path / "pki")
    assert C.issued_by(first, _inter(tmp_path / "pki")) and len(list(first)) == 1
    assert C.issued_by(second, _cert(tmp_path / "pki" / "root-ca.pem"))
