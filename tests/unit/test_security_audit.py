"""The judges of scripts/security_audit.py (the third-party auditors' outputs as they print them)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import ROOT, load_plan

_spec = importlib.util.spec_from_file_location("security_audit", ROOT / "scripts" / "security_audit.py")
S = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(S)

SSH_AUDIT = """\
# general
(gen) banner: SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10

# key exchange algorithms
(kex) sntrup761x25519-sha512@openssh.com    -- [warn] using experimental algorithm
                                            `- [info] available since OpenSSH 8.5
(kex) curve25519-sha256                     -- [info] available since OpenSSH 7.4, Dropbear SSH 2018.76
(kex) ecdh-sha2-nistp256                    -- [fail] using weak elliptic curves
                                            `- [info] available since OpenSSH 5.7, Dropbear SSH 2013.62

# host-key algorithms
(key) ecdsa-sha2-nistp256                   -- [fail] using weak elliptic curves
                                            `- [warn] using weak random number generator could reveal the key
(key) ssh-ed25519                           -- [info] available since OpenSSH 6.5

# algorithm recommendations (for OpenSSH 9.2)
(rec) -ecdh-sha2-nistp256                   -- kex algorithm to remove [fail] (not a verdict)
"""


def test_ssh_audit_counts_verdicts_with_their_algorithm():
    c = S.ssh_audit_counts(SSH_AUDIT)
    assert c["fail"] == ["(kex) ecdh-sha2-nistp256: using weak elliptic curves",
                         "(key) ecdsa-sha2-nistp256: using weak elliptic curves"]
    assert c["warn"] == ["(kex) sntrup761x25519-sha512@openssh.com: using experimental algorithm",
                         "(key) ecdsa-sha2-nistp256: using weak random number generator could reveal the key"]


def test_ssh_audit_clean_output_has_no_verdicts():
    clean = "\n".join(line for line in SSH_AUDIT.splitlines() if "nistp" not in line and "random" not in line
                      and "experimental" not in line)
    assert S.ssh_audit_counts(clean) == {"fail": [], "warn": []}


def test_nmap_grepable_open_ports_only():
    text = ("# Nmap 7.93 scan\nHost: 10.42.1.13 ()\tStatus: Up\n"
            "Host: 10.42.1.13 ()\tPorts: 22/filtered/tcp//ssh///, 443/open/tcp//https///"
            "\tIgnored State: filtered (65533)\n"
            "Host: 10.42.0.11 ()\tPorts: \tIgnored State: filtered (65535)\n")
    assert S.parse_nmap_grepable(text) == {"10.42.1.13": [443], "10.42.0.11": []}


def test_admitted_follows_the_flows():
    plan = load_plan("lab")
    gw = plan.ip.hosts_in_pool("gateway")[0]
    gpu = plan.ip.hosts_in_pool("gpu")[0]
    assert S.admitted(plan, "clients", gw.addresses["inference"], 443)
    assert not S.admitted(plan, "clients", gw.addresses["inference"], 22)
    assert not S.admitted(plan, "clients", gpu.addresses["inference"], 8000)
    assert S.admitted(plan, "admin", gpu.mgmt_ip, 22)
    assert not S.admitted(plan, "admin", "10.99.0.1", 22)


@pytest.mark.parametrize(("ports", "text"), [([], ""), ([22], "22"), ([1, 2, 3, 9, 11, 12], "1-3,9,11-12")])
def test_port_ranges(ports, text):
    assert S._ranges(ports) == text


def test_gates_fail_on_each_tool():
    summary = {"ssh-audit": {"h": {"fail": 1, "fail_notes": ["(kex) x: weak"]}},
               "testssl": {"t": {"unjustified_not_ok": ["Chain of trust NOT ok"]}},
               "nmap": {"clients": {"unexpected": ["10.0.0.1:22"], "unexpected_count": 1}}}
    failed = S.gates(summary)
    assert len(failed) == 3 and "ssh-audit h" in failed[0] and "testssl t" in failed[1] and "nmap" in failed[2]
    assert S.gates({"ssh-audit": {"h": {"fail": 0, "fail_notes": []}}}) == []


def test_a_host_nmap_timed_out_on_is_unscanned_and_fails_the_gate():
    # nmap 7.93 -oG after --host-timeout (2026-12-07, the lab's admin zone): "Up", then "Timeout", no Ports line
    text = ("# Nmap 7.93 scan\nHost: 10.42.0.11 ()\tStatus: Up\nHost: 10.42.0.11 ()\tStatus: Timeout\n"
            "Host: 10.42.0.12 ()\tStatus: Up\n"
            "Host: 10.42.0.12 ()\tPorts: 22/open/tcp//ssh///\tIgnored State: filtered (65534)\n")
    targets = ["10.42.0.11", "10.42.0.12", "10.42.0.13"]
    assert S.unscanned(text, targets) == ["10.42.0.11", "10.42.0.13"]  # timed out; not in the output at all
    assert S.unscanned(text, ["10.42.0.12"]) == []
    summary = {"nmap": {"admin": {"targets": targets, "open": {"10.42.0.12": "22"}, "unexpected": [],
                                  "unexpected_count": 0, "unscanned": ["10.42.0.11", "10.42.0.13"]}}}
    failed = S.gates(summary)
    assert len(failed) == 1 and "not scanned to the end" in failed[0] and "10.42.0.11" in failed[0]
    assert "NOT SCANNED to the end" in S.markdown(summary)
