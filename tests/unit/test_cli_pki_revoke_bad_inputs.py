"""``pki revoke`` and ``pki crl`` refuse every ordinary mistake the way the rest of the command line
does (tests/unit/test_cli_bad_inputs.py): exit 2, one ``<where>: <message>`` line per problem, a
short answer, never an internal error, and nothing written anywhere.

The playground holds export folders broken in one way each (an export from before revocation, a
damaged ``revoked.json``, a CRL entry ``revoked.json`` lacks, a CRL signed by another key, no root
CRL, a lab key of another hierarchy or none, a Pulumi-sourced export) beside the usual suspects (a
file, an empty folder, someone else's folder, another command's output, symlink loops). Pulumi is a
tripwire: no case may reach it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from llmcluster import pki_crl as C
from llmcluster.cli import main
from tests.conftest import load_spec
from tests.helpers.fs import changes, snapshot

LONG = "n" * 300
PAGE = 4096


def _key_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def playground(tmp_path_factory) -> Path:
    from llmcluster.outdir import MANIFEST, manifest_bytes, read_manifest
    from llmcluster.pki_export import export, from_offline

    root = tmp_path_factory.mktemp("revoke-play")
    plan, m = from_offline(load_spec("lab"))
    export(plan, m, root / "lab", lab_tests=True)
    export(plan, dataclasses.replace(m, source="pulumi"), root / "prod")
    for name in ("old", "badjson", "lostjson", "forged", "norootcrl", "wrongkey", "nokey", "garbled-crl"):
        shutil.copytree(root / "lab", root / name, symlinks=True)
    # An export from before revocation existed: no crl.pem / revoked.json in it or its manifest.
    for rel in ("crl.pem", "revoked.json"):
        (root / "old" / rel).unlink()
    _, files = read_manifest(root / "old")
    (root / "old" / MANIFEST).write_bytes(manifest_bytes("pki", files - {"crl.pem", "revoked.json"}))
    (root / "badjson" / "revoked.json").write_text('[{"serial": "zz"}]\n')
    d = C.open_export(root / "lostjson")
    C.revoke(d, C.resolve(d, ["admin"], []), "keyCompromise", lambda: C.signing_key(d, None))
    (root / "lostjson" / "revoked.json").write_text("[]\n")
    inter = x509.load_pem_x509_certificate((root / "lab" / "ca-chain.pem").read_bytes())
    now = dt.datetime.now(dt.UTC)
    other = ec.generate_private_key(ec.SECP256R1())
    first, second = C.split_crls((root / "lab" / "crl.pem").read_text())
    forged = C.crl_pem(C.sign_crl(inter, other, [], number=5, this_update=now, next_update=now + dt.timedelta(days=1)))
    (root / "forged" / "crl.pem").write_text(forged + second)
    (root / "norootcrl" / "crl.pem").write_text(first)
    (root / "garbled-crl" / "crl.pem").write_text("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    (root / "wrongkey" / C.LAB_INTERMEDIATE_KEY).write_text(_key_pem(other))
    (root / "nokey" / C.LAB_INTERMEDIATE_KEY).unlink()
    # The usual suspects.
    (root / "f").write_text("a regular file\n")
    (root / "e").mkdir()
    (root / "d").mkdir()
    (root / "d" / "theirs.txt").write_text("someone else's\n")
    (root / "plan-output").mkdir()
    (root / "plan-output" / MANIFEST).write_text('{"tool": "llmcluster", "kind": "plan", "files": ["x.txt"]}')
    (root / "plan-output" / "x.txt").write_text("x")
    os.symlink("loop", root / "loop")
    os.symlink("nowhere", root / "dangling")
    return root


@pytest.fixture(autouse=True)
def tripwires(monkeypatch, playground):
    import llmcluster.pki_export

    def trip(*a, **k):
        raise AssertionError("pulumi ran for a command that should have been refused")

    monkeypatch.setattr(C, "stack_output", trip)
    monkeypatch.setattr(llmcluster.pki_export, "from_pulumi", trip)
    monkeypatch.chdir(playground)
    monkeypatch.delenv("LLMCLUSTER_DEBUG", raising=False)


CASES: list[tuple[list[str], str]] = []


def case(where: str, *argv: str) -> None:
    CASES.append((list(argv), where))


REVOKE, CRL = ("pki", "revoke", "--pki-dir"), ("pki", "crl", "--pki-dir")
for cmd, extra in ((REVOKE, ("--name", "admin")), (CRL, ())):
    for folder, where in (
        ("nonexistent", "--pki-dir"), ("f", "--pki-dir"), ("f/sub", "--pki-dir"), ("loop", "--pki-dir"),
        ("dangling", "--pki-dir"), ("", "--pki-dir"), (LONG, "--pki-dir"), ("lab\0x", "--pki-dir"),
        ("/proc/llmcluster-nope", "--pki-dir"),
        ("e", "e"), ("d", "d"), ("plan-output", "plan-output"), ("old", "old"),       # not an export (with a CRL)
        ("badjson", "badjson/revoked.json"), ("lostjson", "lostjson/revoked.json"),  # damaged records
        ("forged", "forged/crl.pem"), ("norootcrl", "norootcrl/crl.pem"), ("garbled-crl", "garbled-crl/crl.pem"),
        ("wrongkey", f"wrongkey/{C.LAB_INTERMEDIATE_KEY}"),                           # a key of another hierarchy
        ("nokey", f"nokey/{C.LAB_INTERMEDIATE_KEY}"),
    ):
        case(where, *cmd, folder, *extra)
    case("--stack", *cmd, "lab", *extra, "--stack", "lab")        # a lab export is signed with its lab key
    case("--stack", *cmd, "prod", *extra)                          # a Pulumi export needs --stack ...
    case("--stack", *cmd, "prod", *extra, "--stack", "other")      # ... its own
    for stack in ("a/b", "", LONG, "lab\0"):
        case("--stack", *cmd, "prod", *extra, "--stack", stack)

# What to revoke.
for name in ("nope", "admni", "../admin", "a\0b", LONG, "", "certs/admin", "admin.pem"):
    case("--name", *REVOKE, "lab", "--name", name)
for name in ("root", "intermediate", "ROOT-CA", "ca-chain", "intermediate-ca"):
    case("--name", *REVOKE, "lab", "--name", name)                # a CA: rotate the hierarchy instead
case("--name", *REVOKE, "lab", "--name", "admin", "--name", "nope")   # one bad among good: nothing revoked
for serial in ("xyz", "0", "-1", "1" * 41, "", "0x", "12 34", "0BADC0DE", "@ROOT@", "@INTERMEDIATE@"):
    case("--serial", *REVOKE, "lab", "--serial", serial)
case("--serial", *REVOKE, "prod", "--serial", "0BADC0DE", "--stack", "lab")   # checked before any key is read

# Usage mistakes.
case("--serial", *REVOKE, "lab", "--name", "admin", "--serial", "0A")
case("llmcluster pki revoke", "pki", "revoke", "--pki-dir", "lab")
case("llmcluster pki revoke", "pki", "revoke", "--name", "admin")
case("--reason", *REVOKE, "lab", "--name", "admin", "--reason", "lost")
case("--reason", *REVOKE, "lab", "--name", "admin", "--reason", "keycompromise")
case("llmcluster", *CRL, "lab", "--name", "admin")              # unrecognized: the top level says so
case("llmcluster pki crl", "pki", "crl")
case("action", "pki", "revok", "--pki-dir", "lab")


def _id(argv: list[str]) -> str:
    text = " ".join(a.replace("\0", "\\0") for a in argv)
    return text if len(text) < 90 else text[:70] + "..." + text[-15:]


def _resolve(argv: list[str], playground: Path) -> list[str]:
    chain = (playground / "lab" / "ca-chain.pem").read_bytes()
    serials = {"@ROOT@": x509.load_pem_x509_certificate((playground / "lab" / "root-ca.pem").read_bytes()),
               "@INTERMEDIATE@": x509.load_pem_x509_certificate(chain)}
    return [C.serial_hex(serials[a].serial_number) if a in serials else a for a in argv]


@pytest.mark.parametrize(("argv", "where"), CASES, ids=[_id(a) for a, _ in CASES])
def test_bad_input_is_a_clean_error_and_writes_nothing(argv, where, playground, capsys):
    before = snapshot(playground)
    started = time.monotonic()
    code = main(_resolve(argv, playground))
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}\n{out}{err}"
    assert "internal error" not in err and "Traceback" not in out + err, err
    assert len((out + err).encode()) < PAGE, f"{len((out + err).encode())} bytes of output"
    assert not out, f"a refusal prints nothing on stdout: {out!r}"
    lines = err.splitlines()
    assert lines, "no message"
    for line in lines:
        assert line.startswith(f"{where}: ") and len(line) > len(where) + 2, f"not '{where}: <message>': {line!r}"
    assert changes(before, snapshot(playground)) == [], "the playground changed"
    assert elapsed < 10, f"{elapsed:.1f}s to refuse"


def test_the_messages_say_what_to_do(playground, capsys):
    expect = {
        ("--name", "root"): "rotate the hierarchy instead",
        ("--name", "admni"): "did you mean 'admin'?",
        ("--serial", "0BADC0DE"): "is not the serial of a certificate in lab issued by its intermediate CA",
        ("--serial", "@INTERMEDIATE@"): "is the intermediate CA: a CA is not revoked by its own CRL",
    }
    for (opt, value), text in expect.items():
        assert main(_resolve([*REVOKE, "lab", opt, value], playground)) == 2
        assert text in capsys.readouterr().err
    for folder, text in (("old", "export it again"), ("e", "not a PKI export"),
                         ("lostjson", "a revocation is never dropped"), ("forged", "is not signed by this export's "
                                                                                 "intermediate CA"),
                         ("wrongkey", "does not match the intermediate CA of wrongkey")):
        assert main([*CRL, folder]) == 2
        err = capsys.readouterr().err
        assert text in err, err


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 80
    assert all(re.match(r"^[\w./ -]+$|^--\w", w) for _, w in CASES)
