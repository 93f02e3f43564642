"""The audit_log role's configuration, rendered by Ansible from the role's templates and run for
real on this machine — no lab, no systemd as PID 1 — plus its preflight's refusals.

* A scratch journald (tests/helpers/scratch_journal.py: a private mount namespace, nothing
  outside a temporary folder written) runs with the role's journald drop-in: the journal is
  persistent, sealed with a key made as the role makes it (``journalctl --setup-keys``), keeps
  HAProxy's access log lines (real HAProxy logging through /dev/log, identifier ``haproxy``)
  across a journald restart, and ``journalctl --verify --verify-key`` passes on copies of its
  files; bytes flipped in a copy are detected, and so is a forged file written without the key.
* systemd-journal-upload, configured by the role's rendered drop-in and credentials, forwards a
  journal over mTLS on 127.0.0.1 to a collector (HAProxy terminating mTLS in front of
  systemd-journal-remote, :func:`llmcluster.verify.audit.collector_plan`) whose certificate the
  cluster intermediate issued; a client certificate from another CA, no client certificate, a
  collector certificate from another CA or for another address are all refused.

The PKI is the lab stack's, issued offline (real keys, ``llmcluster.pki_export``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from llmcluster import pki_crl as C
from llmcluster.verify import audit as A
from llmcluster.verify import gateway as G
from tests.conftest import ROOT
from tests.helpers import role_local as R
from tests.helpers.scratch_journal import JOURNAL_REMOTE, JOURNAL_UPLOAD, NamespaceHost, ScratchJournal, skip_reason
from tests.helpers.tools import tool_env

ROLE = ROOT / "roles" / "audit_log"
COLLECTOR = "https://127.0.0.1:{port}"

RENDER = R.local_play("Render the audit_log role's files", role=ROLE, tasks=[
    {"name": "Render the templates", "ansible.builtin.template": {
        "src": f"{ROLE}/templates/{{{{ item }}}}.j2", "dest": "{{ out }}/{{ item }}", "mode": "0600"},
     "loop": ["journald-audit.conf", "journal-upload-audit.conf", "journal-upload-unit.conf"],
     "when": "item == 'journald-audit.conf' or _audit_log_forwarding | bool"},
    {"name": "Write the role's variables as the role sees them", "ansible.builtin.copy": {
        "dest": "{{ out }}/vars.json", "mode": "0600",
        "content": "{{ {'key_dir': audit_log_key_dir, 'key_file': _audit_log_key_file, 'fss': _audit_log_fss_path, "
                   "'retention': audit_log_retention_days, 'forward_to': audit_log_forward_to, "
                   "'cert': audit_log_upload_cert_path, 'key': audit_log_upload_key_path, "
                   "'trust': audit_log_upload_trust_path} | to_json }}"}},
])

PREFLIGHT = R.local_play("Run the audit_log role's preflight", role=ROLE, gather_subset=["min"], tasks=[
    {"name": "Preflight", "ansible.builtin.import_tasks": f"{ROLE}/tasks/preflight.yml"}])


def _playbook(d: Path, play: str, variables: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    return R.run_playbook(d, play, variables, env={**R.NO_FACT_CACHE, **(env or {})}, timeout=None)


def render(d: Path, **variables) -> dict[str, str]:
    """The role's files for these inventory variables (``out`` holds them, and vars.json)."""
    d.mkdir(parents=True, exist_ok=True)
    base = {"out": str(d), "ansible_check_mode": False, "inventory_hostname": "gw-01",
            "__audit_log_dpkg": {"stdout_lines": []},
            "__audit_log_machine_id": {"content": base64.b64encode(b"0123456789abcdef0123456789abcdef\n").decode()},
            "__audit_log_material": {"results": [{"stat": {"exists": True, "checksum": "c" * 64}},
                                                 {"stat": {"exists": True, "checksum": "t" * 64}}]}}
    r = _playbook(d, RENDER, {**base, **variables})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return {p.name: p.read_text() for p in d.iterdir() if p.suffix in (".conf", ".json")}


GATEWAY = {"audit": {"retention_days": 180, "max_use": "20G", "forward_to": ["https://10.42.0.14:19532"]}}
PKI = {"cert": "/etc/llmcluster/pki/host.crt", "key": "/etc/llmcluster/pki/host.key",
       "ca_chain": "/etc/llmcluster/pki/ca-chain.pem", "root_ca": "/etc/llmcluster/pki/root-ca.pem"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("render"), llmcluster_gateway=GATEWAY, llmcluster_pki=PKI,
                  llmcluster_pki_dir="/srv/llmcluster/pki/lab/")


# --------------------------------------------------------------------------- rendering


def test_journald_dropin_renders_the_plan(rendered):
    settings = A.journald_settings(rendered["journald-audit.conf"])
    exp = A.expectation(GATEWAY)
    assert A.journald_problems(settings, exp, "rendered") == []
    assert settings["Storage"] == "persistent" and settings["Seal"] == "yes"
    assert settings["MaxRetentionSec"] == "180day" and settings["SystemMaxUse"] == "20G"
    assert A.parse_size(settings["SystemKeepFree"]) and A.parse_timespan(settings["RateLimitIntervalSec"])


def test_journald_dropin_follows_the_retention_and_size(tmp_path):
    files = render(tmp_path, llmcluster_gateway={"audit": {"retention_days": 400, "max_use": "512M"}})
    settings = A.journald_settings(files["journald-audit.conf"])
    assert settings["MaxRetentionSec"] == "400day" and settings["SystemMaxUse"] == "512M"
    # Judged against a plan asking for more, it fails: the judge reads what was rendered.
    assert A.journald_problems(settings, A.AuditExpectation(500, "512M", ()), "x")
    assert A.journald_problems(settings, A.AuditExpectation(400, "1G", ()), "x")
    # Without forwarding, no upload configuration is rendered.
    assert "journal-upload-audit.conf" not in files and json.loads(files["vars.json"])["forward_to"] == []


def test_upload_configuration_uses_credentials_of_the_host_certificate(rendered):
    conf = rendered["journal-upload-audit.conf"]
    assert "URL=https://10.42.0.14:19532\n" in conf
    creds = "/run/credentials/systemd-journal-upload.service"
    for line in (f"ServerKeyFile={creds}/client.key", f"ServerCertificateFile={creds}/client.crt",
                 f"TrustedCertificateFile={creds}/trust.pem"):
        assert line in conf
    unit = rendered["journal-upload-unit.conf"]
    for line in ("LoadCredential=client.crt:/etc/llmcluster/pki/host.crt",
                 "LoadCredential=client.key:/etc/llmcluster/pki/host.key",
                 "LoadCredential=trust.pem:/etc/llmcluster/pki/ca-chain.pem", "Restart=always",
                 "StartLimitIntervalSec=0",
                 "client.crt sha256: " + "c" * 64, "trust.pem sha256: " + "t" * 64):
        assert line in unit, line
    # The unit drop-in parses as a systemd unit (systemd-analyze verify needs systemd running: the
    # syntax is checked with the INI parser, duplicate LoadCredential lines allowed).
    import configparser

    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.read_string(unit)
    assert cp.has_section("Unit") and cp.has_section("Service")


def test_key_dir_default_is_the_one_the_verification_reads(rendered, tmp_path):
    v = json.loads(rendered["vars.json"])
    assert v["key_dir"] == str(A.default_key_dir("/srv/llmcluster/pki/lab/")) == "/srv/llmcluster/pki/lab-audit-keys"
    assert v["key_file"] == str(A.key_path(v["key_dir"], "gw-01", "0123456789abcdef0123456789abcdef"))
    assert v["fss"] == "/var/log/journal/0123456789abcdef0123456789abcdef/fss"
    # From the environment as the mtls role reads it, when the inventory does not name the folder.
    d = tmp_path / "env"
    d.mkdir()
    r = _playbook(d, RENDER, {"out": str(d), "inventory_hostname": "gw-01", "ansible_check_mode": False,
                              "__audit_log_dpkg": {"stdout_lines": []},
                              "__audit_log_machine_id": {"content": base64.b64encode(b"ab" * 16).decode()}},
                  env={"LLMCLUSTER_PKI_DIR": "/var/lib/pki"})
    assert r.returncode == 0, r.stdout[-2000:]
    assert json.loads((d / "vars.json").read_text())["key_dir"] == "/var/lib/pki-audit-keys"


# --------------------------------------------------------------------------- preflight refusals

GOOD = {"llmcluster_gateway": GATEWAY, "llmcluster_pki_dir": "/srv/pki"}


@pytest.mark.parametrize(("case", "variables", "message"), [
    ("good", {}, None),
    ("short-retention", {"llmcluster_gateway": {"audit": {"retention_days": 30}}}, "at least 180"),
    ("short-retention-allowed", {"llmcluster_gateway": {"audit": {"retention_days": 30,
                                                                  "allow_short_retention": True}}}, None),
    ("zero-retention", {"audit_log_retention_days": 0, "audit_log_allow_short_retention": True}, "at least 180"),
    ("bad-size", {"audit_log_max_use": "lots"}, "a size such as 20G"),
    ("http-collector", {"audit_log_forward_to": ["http://10.42.0.14:19532"]}, "https:// URLs"),
    ("two-collectors", {"audit_log_forward_to": ["https://10.42.0.14:19532", "https://10.42.0.15:19532"]},
     "at most one"),
    ("no-key-dir", {"llmcluster_pki_dir": ""}, "absolute folder on the controller"),
    ("relative-key-dir", {"audit_log_key_dir": "keys"}, "absolute folder on the controller"),
    ("empty-machine-id", {"machine_id": ""}, "is not initialised (empty): run systemd-machine-id-setup"),
    ("uninitialized-machine-id", {"machine_id": "uninitialized\n"}, "is not initialised (uninitialized)"),
])
def test_preflight(tmp_path, case, variables, message):
    # The machine id is read from a file of the test's own: the controller's /etc/machine-id may be
    # empty (CI containers), and the preflight must refuse exactly that.
    variables = dict(variables)
    id_file = tmp_path / "machine-id"
    id_file.write_text(variables.pop("machine_id", "0123456789abcdef0123456789abcdef\n"))
    r = _playbook(tmp_path, PREFLIGHT, {**GOOD, **variables, "audit_log_machine_id_path": str(id_file)},
                  env={"LLMCLUSTER_PKI_DIR": ""})
    out = r.stdout + r.stderr
    if message is None:
        assert r.returncode == 0, out[-3000:]
    else:
        assert r.returncode != 0, f"{case}: the preflight accepted it"
        assert message in out, out[-3000:]


# --------------------------------------------------------------------------- a real journald

LINE = ('127.0.0.1:4711 [05/Dec/2026:10:00:00.000] api~ inference/gpu-01 0/0/1/2/3 403 120 - - ---- 1/1/0/0/0 0/0 '
        'client="/O=llmcluster lab/OU=app/CN=chat.clients.lab.llmcluster.internal" serial=1A2B3C '
        '"GET {path} HTTP/1.1"')


def _needs_journald() -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)


def _entries(j: ScratchJournal, *extra: str) -> list[dict]:
    """HAProxy's entries in the *persistent* journal (read from /var/log/journal only)."""
    j.check(["journalctl", "--sync"])  # what journald received is on disk
    out = j.check(["journalctl", f"--directory={A.JOURNAL_DIR}", "-t", A.IDENTIFIER, "-o", "json", "--no-pager",
                   *extra])
    return A.parse_json_entries(out)


def _verify(directory: Path, key: str) -> tuple[int, str, dict[str, dict[str, str]]]:
    """journalctl --verify --verify-key over a folder of copies, on this side (as the suite does)."""
    files = sorted(directory.glob("*.journal"))
    r = subprocess.run(["journalctl", "--verify", f"--verify-key={key}", f"--directory={directory}"],
                       capture_output=True, text=True, check=False)
    headers = {}
    for f in files:
        h = subprocess.run(["journalctl", "--header", f"--file={f}"], capture_output=True, text=True, check=False)
        headers[str(f)] = A.parse_header(h.stdout)
    return r.returncode, r.stdout + r.stderr, headers


def _archived_copies(j: ScratchJournal, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in j.journal_dir.glob("*@*.journal"):
        shutil.copy2(f, dest / f.name)
    return dest


@pytest.fixture(scope="module")
def sealed(rendered, tmp_path_factory):
    """A journald with the role's drop-in, sealed as the role does it (setup-keys, then rotate), a
    2 s sealing interval so that sealed epochs exist within the test, and access log lines."""
    _needs_journald()
    root = tmp_path_factory.mktemp("journal")
    j = ScratchJournal(root, {"60-llmcluster-audit.conf": rendered["journald-audit.conf"]}).start()
    try:
        j.check(["journalctl", "--flush"])
        key = j.setup_keys("2s")  # the role's task (interval: audit_log_seal_interval)
        assert A.parse_verification_key(key), key
        assert not list(root.rglob("*.key")), "the verification key is never written on the host"
        j.check(["journalctl", "--rotate"])  # the role's handler: new files are sealed
        markers = [uuid.uuid4().hex for _ in range(3)]
        for i, m in enumerate(markers):
            j.syslog(A.IDENTIFIER, LINE.format(path=A.MARKER_PATH.format(marker=m)))
            if i == 0:
                j.check(["journalctl", "--rotate"])  # two sealed files: marker 0, then markers 1 and 2
            if i < 2:
                time.sleep(2.2)  # next epoch: journald appends a seal (tag) before the next entry
        j.check(["journalctl", "--rotate"])
        yield {"journal": j, "key": key, "markers": markers, "root": root}
    finally:
        j.stop()


def test_journald_runs_the_role_dropin(sealed):
    j = sealed["journal"]
    cat = j.check(["systemd-analyze", "cat-config", "systemd/journald.conf"])
    assert "/etc/systemd/journald.conf.d/60-llmcluster-audit.conf" in A.config_files(cat)
    assert A.journald_problems(A.journald_settings(cat), A.expectation(GATEWAY), "scratch journald") == []
    # persistent: journald writes to /var/log/journal (here the scratch folder), not to /run
    assert (j.journal_dir / "system.journal").is_file()
    assert j.run(["sh", "-c", "ls /run/log/journal/*/system.journal"]).returncode != 0


def test_access_log_lines_are_kept_with_client_and_serial(sealed):
    entries = _entries(sealed["journal"])
    for m in sealed["markers"]:
        assert A.access_log_problems(entries, m, "scratch journald") == []
    # The judge fails on what is missing.
    assert A.access_log_problems(entries, uuid.uuid4().hex, "x")


def test_sealed_journal_verifies_with_the_key(sealed, tmp_path):
    rc, out, headers = _verify(_archived_copies(sealed["journal"], tmp_path / "copy"), sealed["key"])
    assert A.seal_problems(rc, out, headers, "scratch journald") == [], out
    assert "Validated from" in out, f"no sealed epoch was verified: {out}"
    assert any(A.header_sealed(h) for h in headers.values())


def test_a_flipped_byte_in_a_copy_is_detected(sealed, tmp_path):
    copies = _archived_copies(sealed["journal"], tmp_path / "copies")
    needle = sealed["markers"][0].encode()
    src = next(f for f in sorted(copies.glob("*.journal")) if needle in f.read_bytes())
    before = src.read_bytes()
    (tmp_path / "pristine").mkdir()
    (tmp_path / "tampered").mkdir()
    shutil.copy2(src, tmp_path / "pristine" / src.name)
    at = A.tamper_file(src, tmp_path / "tampered" / src.name, needle)
    assert src.read_bytes() == before, "the source is only read"
    assert before[at] != (tmp_path / "tampered" / src.name).read_bytes()[at]
    pristine = _verify(tmp_path / "pristine", sealed["key"])
    tampered = _verify(tmp_path / "tampered", sealed["key"])
    assert A.tamper_problems(pristine[:2], tampered[:2], "copy") == [], tampered[1]
    assert A.seal_problems(*tampered, "tampered copy"), "the seal judge fails on a tampered copy too"
    # The judge fails when the "tampered" copy passes (nothing was changed).
    assert A.tamper_problems(pristine[:2], pristine[:2], "copy")


def test_a_forged_replacement_without_the_key_is_detected(sealed, tmp_path):
    """An attacker with root but without the verification key rewrites a file (export, edit,
    re-import): the forgery is a valid, unsealed journal file that passes ``--verify`` even with
    the key; the judge refuses an unsealed file started after sealing began."""
    copies = _archived_copies(sealed["journal"], tmp_path / "copies")
    marker = sealed["markers"][1]
    src = next(f for f in sorted(copies.glob("*.journal")) if marker.encode() in f.read_bytes())
    export = subprocess.run(["journalctl", f"--file={src}", "-o", "export"], capture_output=True, check=True).stdout
    forged = export.replace(b"CN=chat.clients", b"CN=someone.else")
    assert forged != export
    src.unlink()
    r = subprocess.run([JOURNAL_REMOTE, f"--output={copies / src.name}", "--split-mode=none", "-"], input=forged,
                       capture_output=True, check=False)
    assert r.returncode == 0, r.stderr
    rc, out, headers = _verify(copies, sealed["key"])
    assert rc == 0 and "FAIL" not in out, f"journalctl alone accepts the forgery: {out}"
    problems = A.seal_problems(rc, out, headers, "forged")
    assert any("not sealed although it starts after sealing began" in p for p in problems), problems


CONVERGE = R.local_play("Converge the audit_log role inside a scratch namespace", gather_subset=["min"],
                        roles=[{"role": str(ROLE)}])


def _converge(j: ScratchJournal, d: Path, keys: Path, **extra) -> subprocess.CompletedProcess:
    variables = {"llmcluster_gateway": {"audit": {"retention_days": 200, "max_use": "2G", "forward_to": []}},
                 "audit_log_key_dir": str(keys), "llmcluster_manage_services": False, **extra}
    return j.run(R.playbook_argv(d, CONVERGE, variables, extra=("-v",)), timeout=300,
                 env={**tool_env(), **R.NO_FACT_CACHE, "ANSIBLE_LOCAL_TEMP": str(d / "ansible-tmp")})


def test_the_role_converges_idempotently_and_keeps_the_key_off_the_host(rendered, tmp_path):
    """The whole role, for real, in a scratch namespace (its /etc/systemd, /var/log/journal and
    machine id are scratch copies; services are not managed: no systemd here): the sealing key is
    made once, its verification key lands on the controller (0600, folders 0700) and nowhere in the
    namespace's files nor in Ansible's output, and a second run changes nothing."""
    _needs_journald()
    root = tmp_path / "root"
    keys = tmp_path / "controller" / "pki-audit-keys"
    runs = []
    with ScratchJournal(root) as j:
        for _ in range(2):
            r = _converge(j, tmp_path, keys)
            assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
            runs.append(r.stdout)
    key_file = A.key_path(keys, "localhost", j.machine_id)
    key = key_file.read_text().strip()
    assert A.parse_verification_key(key), "the saved key is a verification key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (keys.stat().st_mode & 0o777, key_file.parent.stat().st_mode & 0o777) == (0o700, 0o700)
    assert (j.journal_dir / "fss").is_file(), "the sealing key is on the host"
    seed = key.split("/")[0].encode()
    leaks = [p for p in root.rglob("*") if p.is_file() and seed in p.read_bytes()]
    assert not leaks, f"the verification key is on the host: {leaks}"
    assert all(key not in out and key.split("/")[0] not in out for out in runs), "the key is in Ansible's output"
    dropin = root / "etc-systemd" / "journald.conf.d" / "60-llmcluster-audit.conf"
    assert "MaxRetentionSec=200day" in dropin.read_text() and "SystemMaxUse=2G" in dropin.read_text()
    script = root / "usr-local-sbin" / "llmcluster-journal-archive"  # the namespace's /usr/local/sbin
    assert script.stat().st_mode & 0o777 == 0o755
    for unit in ("llmcluster-journal-archive.service", "llmcluster-journal-seal.service"):
        assert (root / "etc-systemd" / "system" / unit).read_text() == (ROLE / "files" / unit).read_text()
    recap = [line for line in runs[1].splitlines() if line.startswith("localhost")]
    assert recap and " changed=0 " in recap[-1], f"the second run changed something: {recap}"
    assert " changed=0 " not in [line for line in runs[0].splitlines() if line.startswith("localhost")][-1]


def test_a_lost_verification_key_stops_the_role_until_rekeyed(tmp_path):
    """A host that seals but whose verification key the controller lacks: the role stops (the
    journal could no longer be checked); -e audit_log_rekey=true makes a new key and keeps the
    former key file, if any, as a backup."""
    _needs_journald()
    keys = tmp_path / "controller" / "pki-audit-keys"
    with ScratchJournal(tmp_path / "root") as j:
        assert _converge(j, tmp_path, keys).returncode == 0
        key_file = A.key_path(keys, "localhost", j.machine_id)
        first = key_file.read_text()
        key_file.unlink()
        r = _converge(j, tmp_path, keys)
        assert r.returncode != 0 and "the controller has no verification key" in r.stdout, r.stdout[-3000:]
        assert not key_file.exists()
        key_file.write_text(first)  # restored from a backup: the role goes on, and makes it private again
        key_file.chmod(0o644)
        assert _converge(j, tmp_path, keys).returncode == 0
        assert key_file.stat().st_mode & 0o777 == 0o600
        r = _converge(j, tmp_path, keys, audit_log_rekey=True)
        assert r.returncode == 0, r.stdout[-3000:]
    assert key_file.read_text() != first and A.parse_verification_key(key_file.read_text())
    backups = [p for p in key_file.parent.iterdir() if p != key_file]
    assert [b.read_text() for b in backups] == [first], "the former key is kept beside the new one"
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [key_file, *backups]}
    assert set(modes.values()) == {"0o600"}, modes


def test_the_suites_checks_on_the_scratch_journal(sealed, tmp_path):
    """The verification suite's host checks (llmcluster/verify/audit.py), run through the same
    host interface as over SSH: configuration, persistent access log, copies verified here with
    the key, tamper detection on a copy."""
    host = NamespaceHost(sealed["journal"])
    assert A.journald_check(host, A.expectation(GATEWAY), "ns", systemd=False) == []
    assert A.access_log_problems(A.persistent_entries(host), sealed["markers"][2], "ns") == []
    info = A.fetch_journal(host, tmp_path / "copies")
    assert info["machine_id"] == sealed["journal"].machine_id and info["files"] and not info["left_out"]
    assert not (tmp_path / "copies" / "fss").exists()
    assert A.seal_problems(*A.verify_here(tmp_path / "copies", sealed["key"]), "ns") == []
    assert A.tamper_check(tmp_path / "copies", sealed["key"], "ns") == []
    # A plan asking for more retention than the host keeps: the check fails.
    assert A.journald_check(host, A.AuditExpectation(365, "20G", ()), "ns", systemd=False)


def test_an_unsealed_journal_is_refused(rendered, tmp_path):
    _needs_journald()
    with ScratchJournal(tmp_path / "root", {"60-llmcluster-audit.conf": rendered["journald-audit.conf"]}) as j:
        j.check(["journalctl", "--flush"])
        j.syslog(A.IDENTIFIER, "no sealing key")
        j.check(["journalctl", "--rotate"])
        copies = _archived_copies(j, tmp_path / "copies")
    key = "0a0b0c-0d0e0f-101112-131415/1e7540-35a4e900"  # a well-formed key of some other journal
    problems = A.seal_problems(*_verify(copies, key), "unsealed")
    assert any("none of the" in p for p in problems), problems


def test_entries_survive_a_journald_restart(rendered, tmp_path):
    _needs_journald()
    dropins = {"60-llmcluster-audit.conf": rendered["journald-audit.conf"]}
    before, after = uuid.uuid4().hex, uuid.uuid4().hex
    with ScratchJournal(tmp_path, dropins) as j:
        j.check(["journalctl", "--flush"])
        j.syslog(A.IDENTIFIER, LINE.format(path=A.MARKER_PATH.format(marker=before)))
        j.check(["journalctl", "--sync"])
    with ScratchJournal(tmp_path, dropins) as j:  # a new journald over the same disk: a restart
        j.check(["journalctl", "--flush"])
        j.syslog(A.IDENTIFIER, LINE.format(path=A.MARKER_PATH.format(marker=after)))
        entries = _entries(j)
    assert A.access_log_problems(entries, before, "before the restart") == []
    assert A.access_log_problems(entries, after, "after the restart") == []


HAPROXY = """\
global
    log {dev_log} local0
defaults
    mode http
    log global
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend api
    bind 127.0.0.1:{port} ssl crt {bundle} ca-file {ca} verify required ssl-min-ver TLSv1.3
    log-format "{log_format}"
    http-request deny deny_status 403
"""
#: The gateway's access log fields (roles/gateway/templates/haproxy.cfg.j2): the client certificate's
#: subject and serial.
LOG_FORMAT = ('%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc '
              'client=\\"%[ssl_c_s_dn]\\" serial=%[ssl_c_serial,hex] %{+Q}r')


def test_haproxy_access_log_reaches_the_journal_as_haproxy(rendered, pki, tmp_path):
    """Real HAProxy (the gateway's access log format: subject and serial of the client certificate)
    logging through /dev/log: journald files it under the identifier ``haproxy``."""
    _needs_journald()
    if shutil.which("haproxy") is None or shutil.which("curl") is None:
        pytest.skip("not installed here: haproxy, curl")
    port = R.free_port()
    bundle = R.bundle(tmp_path / "api.pem", pki / "certs" / "gateway-api.pem", pki / "ca-chain.pem",
                      pki / "private" / "gateway-api.key")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY.format(dev_log="/run/systemd/journal/dev-log", port=port, bundle=bundle,
                                  ca=pki / "ca-chain.pem", log_format=LOG_FORMAT))
    marker = uuid.uuid4().hex
    with ScratchJournal(tmp_path / "root", {"60-llmcluster-audit.conf": rendered["journald-audit.conf"]}) as j:
        j.check(["journalctl", "--flush"])
        hp = R.start_haproxy(cfg, port, tmp_path / "haproxy.log",
                             prefix=("nsenter", f"--target={j.proc.pid}", "--mount", "--"))
        try:
            argv = G.curl_argv("api.lab.llmcluster.internal", "127.0.0.1", port, str(pki / "root-ca.pem"),
                               client=G.ClientCert(str(pki / "certs" / "admin.pem"),
                                                   str(pki / "private" / "admin.key")),
                               path=A.MARKER_PATH.format(marker=marker), data=None)
            res = subprocess.run(argv, capture_output=True, text=True, check=False)
            assert G.parse_curl(res.returncode, res.stdout, res.stderr).status == 403, res.stdout + res.stderr
            problems: list[str] = ["not read"]
            for _ in range(50):
                problems = A.access_log_problems(_entries(j), marker, "haproxy -> journald")
                if not problems:
                    break
                time.sleep(0.1)
        finally:
            R.stop(hp)
    assert problems == [], problems


# --------------------------------------------------------------------------- forwarding over mTLS


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    return R.export_lab_pki(tmp_path_factory.mktemp("pki"))[2]


@pytest.fixture(scope="module")
def collector(pki, tmp_path_factory):
    """HAProxy (mTLS, client certificate required) in front of systemd-journal-remote, on 127.0.0.1."""
    if shutil.which("haproxy") is None or not Path(JOURNAL_REMOTE).exists():
        pytest.skip("not installed here: haproxy, systemd-journal-remote")
    d = tmp_path_factory.mktemp("collector")
    bundle = A.issue_collector_cert((pki / C.LAB_INTERMEDIATE_KEY).read_text(), (pki / "ca-chain.pem").read_text(),
                                    "127.0.0.1", "logs.lab.llmcluster.internal", d / "tls")
    port, backend = R.free_port(), R.free_port()
    plan = A.collector_plan("127.0.0.1", port, d, bundle, pki / "ca-chain.pem", backend=("127.0.0.1", backend))
    # A second address of the loopback, which the collector's certificate does not name.
    bind = next(line for line in plan.config.splitlines() if line.strip().startswith("bind "))
    second = bind.replace("127.0.0.1:", "127.0.0.2:")
    plan = dataclasses.replace(plan, config=plan.config.replace(bind, f"{bind}\n{second}"))
    plan.write()
    procs = [subprocess.Popen(plan.remote_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    R.wait_port(backend)
    procs.append(subprocess.Popen(plan.terminator_argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        R.wait_port(port)
        yield {"plan": plan, "port": port, "dir": d}
    finally:
        for p in procs:
            R.stop(p)


def _source_journal(d: Path, marker: str) -> Path:
    """A journal file with one access log line of gw-01 (journal export format, written by journal-remote)."""
    d.mkdir(parents=True, exist_ok=True)
    export = (f"__REALTIME_TIMESTAMP={int(time.time() * 1e6)}\n_HOSTNAME=gw-01\nSYSLOG_IDENTIFIER={A.IDENTIFIER}\n"
              f"MESSAGE={LINE.format(path=A.MARKER_PATH.format(marker=marker))}\n\n")
    r = subprocess.run([JOURNAL_REMOTE, f"--output={d / 'source.journal'}", "--split-mode=none", "-"], input=export,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return d / "source.journal"


def _upload(rendered_upload: str, tmp_path: Path, source: Path, cert: Path, key: Path, trust: Path,
            url: str) -> subprocess.CompletedProcess:
    """systemd-journal-upload as the role configures it: its drop-in (URL, files under
    /run/credentials/<unit>/) and the credentials systemd would copy there at start."""
    conf = rendered_upload.replace("https://10.42.0.14:19532", url)
    j = ScratchJournal(tmp_path / "upload-root", {}, {"60-llmcluster-audit.conf": conf}).start()
    try:
        creds = "/run/credentials/systemd-journal-upload.service"
        script = (f"mkdir -p {creds} && cp {cert} {creds}/client.crt && cp {key} {creds}/client.key && "
                  f"cp {trust} {creds}/trust.pem && chmod 0400 {creds}/* && "
                  f"exec {JOURNAL_UPLOAD} --file={source} --follow=no --save-state={tmp_path / 'state'}")
        return j.run(["sh", "-c", script], timeout=30)
    finally:
        j.stop()


def _received(collector) -> list[dict]:
    r = subprocess.run(collector["plan"].read_argv(), capture_output=True, text=True, check=False)
    return A.parse_json_entries(r.stdout)


def _wait_received(collector, marker: str, seconds: float = 5) -> list[str]:
    end = time.monotonic() + seconds
    while True:
        problems = A.forwarded_problems(_received(collector), marker, "collector", hostname="gw-01")
        if not problems or time.monotonic() > end:
            return problems
        time.sleep(0.2)


def test_upload_forwards_over_mtls_with_the_host_certificate(rendered, pki, collector, tmp_path):
    _needs_journald()
    marker = uuid.uuid4().hex
    r = _upload(rendered["journal-upload-audit.conf"], tmp_path, _source_journal(tmp_path / "src", marker),
                pki / "certs" / "host-gw-01.pem", pki / "private" / "host-gw-01.key", pki / "ca-chain.pem",
                COLLECTOR.format(port=collector["port"]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert _wait_received(collector, marker) == []


@pytest.mark.parametrize("case", ["other-ca-client", "other-ca-collector", "collector-for-another-address"])
def test_upload_refusals(case, rendered, pki, collector, tmp_path):
    _needs_journald()
    marker = uuid.uuid4().hex
    cert, key, trust = pki / "certs" / "host-gw-01.pem", pki / "private" / "host-gw-01.key", pki / "ca-chain.pem"
    url = COLLECTOR.format(port=collector["port"])
    if case == "other-ca-client":  # the collector refuses a client the cluster CA did not issue
        other = G.other_ca_client(tmp_path / "other", cn="gw-01.lab.llmcluster.internal")
        cert, key = Path(other.cert), Path(other.key)
    elif case == "other-ca-collector":  # the upload trusts only the cluster chain
        other = G.other_ca_client(tmp_path / "other")
        trust = Path(other.cert)
    else:  # the collector's certificate names 127.0.0.1, the URL another loopback address
        url = COLLECTOR.format(port=collector["port"]).replace("127.0.0.1", "127.0.0.2")
    r = _upload(rendered["journal-upload-audit.conf"], tmp_path, _source_journal(tmp_path / "src", marker),
                cert, key, trust, url)
    assert r.returncode != 0, f"{case}: the upload succeeded: {r.stdout} {r.stderr}"
    reason = {"other-ca-client": "alert unknown ca", "other-ca-collector": "SSL certificate problem",
              "collector-for-another-address": "no alternative certificate subject name matches"}[case]
    assert reason in r.stderr, f"{case}: refused for another reason: {r.stderr[-400:]}"
    time.sleep(0.5)
    assert A.forwarded_problems(_received(collector), marker, "collector"), f"{case}: the collector got the entry"


def test_collector_refuses_a_client_without_certificate(pki, collector):
    if shutil.which("curl") is None:
        pytest.skip("not installed here: curl")
    argv = G.curl_argv("127.0.0.1", "127.0.0.1", collector["port"], str(pki / "ca-chain.pem"), path="/upload",
                       data="MESSAGE=x\n\n")
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert G.expect_rejected(G.parse_curl(r.returncode, r.stdout, r.stderr), "collector without client cert") == []
    # ... and answers the same request with a cluster client certificate (so the refusal is the certificate's).
    argv = G.curl_argv("127.0.0.1", "127.0.0.1", collector["port"], str(pki / "ca-chain.pem"), path="/upload",
                       client=G.ClientCert(str(pki / "certs" / "host-gw-01.pem"),
                                           str(pki / "private" / "host-gw-01.key")),
                       data="MESSAGE=x\n\n")
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert G.parse_curl(r.returncode, r.stdout, r.stderr).status != 0, r.stderr
