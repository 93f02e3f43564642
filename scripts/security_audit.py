#!/usr/bin/env python3
"""Re-run the third-party auditors of the security review against a running lab.

Tools nobody here wrote, each from where a real attacker or reviewer would stand:

* ``ssh-audit`` (Debian) against every host's sshd, from the controller (the admin zone);
* ``testssl.sh`` (Debian) against the API gateway from the client zone's probe namespace, and
  against every serving head's TLS terminator from inside the gateway's network namespace (the
  only zone the ``serve`` flow admits);
* ``sslyze`` (PyPI) against the gateway, presenting a named client certificate (testssl.sh 3.0
  cannot present one: with it the scan reaches the HTTP layer: HSTS, server header);
* ``nmap`` TCP connect scans of every planned address from each probe zone and the controller:
  every open port must be one a flow of the plan admits from that zone;
* ``lynis`` (Debian) on each lab host: copied into the host for the run and removed after;
  reports the hardening index and the warnings.

Usage (root, a lab that is up and converged: ``llmcluster lab up && llmcluster lab converge``)::

    .venv/bin/python scripts/security_audit.py [--state-dir DIR] [--out DIR] [--skip TOOL ...]

Writes every tool's raw output and ``summary.json`` / ``summary.md`` into ``--out`` (a new
folder; an existing one is refused) and exits 1 when a gate fails: an ssh-audit ``fail``, a
testssl.sh ``NOT ok`` that is not in :data:`JUSTIFIED`, an nmap port open that no flow admits.
docs/security.md records the summaries of the last run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import netaddr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: testssl.sh findings accepted in writing (finding id -> why); docs/security.md repeats them.
JUSTIFIED: dict[str, str] = {
    "neither CRL nor OCSP URI provided": (
        "the certificates carry no CRL distribution point (the Pulumi TLS provider cannot add one); the "
        "CRL reaches every relying party (gateway, serving terminators) by configuration management "
        "(llmcluster pki revoke -> the mtls role) and is checked on every handshake"),
}

TOOLS = ("ssh-audit", "testssl", "sslyze", "nmap", "lynis")


def _run(argv: list[str], *, netns: str | None = None, timeout: float = 900, input: str | None = None):
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, input=input)


def _need(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if path is None:
        raise SystemExit(f"security_audit: {tool} is not installed (scripts/setup.sh installs it)")
    return path


# --------------------------------------------------------------------------- ssh-audit


def ssh_audit_counts(text: str) -> dict[str, list[str]]:
    """Fail and warn notes of ``ssh-audit -n`` text output, as ``(section) algorithm: note``.

    (ssh-audit 2.5's JSON carries the algorithm lists only, not its verdicts.) Continuation lines
    (`` `- [warn] ...``) belong to the algorithm above them; recommendations (``(rec)``) are not
    verdicts and are skipped."""
    out: dict[str, list[str]] = {"fail": [], "warn": []}
    current = ""
    for line in text.splitlines():
        m = re.match(r"^\((\w+)\)\s+(\S+)", line)
        if m:
            current = "" if m.group(1) in ("rec", "gen", "fin") else f"({m.group(1)}) {m.group(2)}"
        for level, note in re.findall(r"\[(fail|warn)\]\s*(.*)$", line):
            if current:
                out[level].append(f"{current}: {note.strip()}")
    return out


def run_ssh_audit(plan, out: Path) -> dict:
    tool = _need("ssh-audit")
    result = {}
    for h in plan.ip.hosts:
        r = _run([tool, "-n", "-t", "10", f"{h.mgmt_ip}:22"], timeout=120)
        (out / f"ssh-audit-{h.name}.txt").write_text(r.stdout + r.stderr)
        counts = ssh_audit_counts(r.stdout)
        if "(kex)" not in r.stdout:
            counts["fail"].append(f"no result from ssh-audit (exit {r.returncode}): {r.stderr.strip()[-200:]}")
        result[h.name] = {"fail": len(counts["fail"]), "warn": len(counts["warn"]),
                          "fail_notes": counts["fail"], "warn_notes": counts["warn"]}
    return result


# --------------------------------------------------------------------------- testssl.sh


NOT_OK = re.compile(r"NOT ok", re.I)


def testssl_findings(doc: list[dict]) -> dict[str, list[str]]:
    """testssl.sh JSON findings by severity (OK/INFO omitted)."""
    out: dict[str, list[str]] = {}
    for f in doc:
        sev = str(f.get("severity", "")).upper()
        if sev in ("OK", "INFO", ""):
            continue
        out.setdefault(sev, []).append(f"{f.get('id')}: {f.get('finding')}")
    return out


def _testssl(target: str, ip: str, port: int, netns: str | None, out: Path, tag: str, ca: Path) -> dict:
    tool = _need("testssl")
    jf, lf = out / f"testssl-{tag}.json", out / f"testssl-{tag}.log"
    for f in (jf, lf):
        f.unlink(missing_ok=True)
    r = _run([tool, "--quiet", "--warnings", "off", "--color", "0", "--openssl-timeout", "10", "--ip", ip,
              "--add-ca", str(ca), "--jsonfile", str(jf), "--logfile", str(lf), f"{target}:{port}"],
             netns=netns, timeout=1200)
    text = lf.read_text(errors="replace") if lf.exists() else r.stdout
    not_ok = [line.strip() for line in text.splitlines() if NOT_OK.search(line)]
    try:
        findings = testssl_findings(json.loads(jf.read_text()))
    except (OSError, ValueError):
        findings = {"ERROR": [f"no JSON (exit {r.returncode}): {(r.stderr or r.stdout).strip()[-300:]}"]}
    unjustified = [line for line in not_ok if not any(k in line for k in JUSTIFIED)]
    return {"target": f"{target}:{port} ({ip})", "not_ok": not_ok, "unjustified_not_ok": unjustified,
            "findings": findings, "exit": r.returncode}


def run_testssl(plan, out: Path, pki: Path) -> dict:
    """The cluster's own root is added as a trust anchor (``--add-ca``): a private PKI by design."""
    from llmcluster.lab import probes

    gw = plan.serving.gateway
    result = {}
    if gw is None:
        return result
    zone = next((f.from_ for f in plan.spec.flows if any(str(p) == f"tcp/{gw.port}" for p in f.ports)
                 and gw.pool in (plan.spec.zones[f.to].pools or ())), None)
    netns = probes.probe_netns(zone) if zone else None
    for h in plan.ip.hosts_in_pool(gw.pool):
        result[f"gateway {h.name}"] = _testssl(gw.hostname, h.addresses["inference"], gw.port, netns, out,
                                                f"gateway-{h.name}", pki / "root-ca.pem")
    gw_host = plan.ip.hosts_in_pool(gw.pool)[0]
    from llmcluster.lab import network as N

    for u in gw.upstreams:
        fqdn = u.get("fqdn") or u["name"]
        result[f"serving {u['name']}"] = _testssl(fqdn, u["address"], u["port"], N.netns_name(gw_host.name), out,
                                                  f"serving-{u['name']}", pki / "root-ca.pem")
    return result


# --------------------------------------------------------------------------- sslyze


def sslyze_argv(hostname: str, port: int, address: str, cert: Path, key: Path, json_out: Path, *,
                headers: bool = False) -> list[str]:
    """sslyze with a client certificate against ``hostname:port`` at ``address``. Without scan
    options sslyze 6 runs the scans its Mozilla-profile check needs, and those leave out the HTTP
    headers scan (``http_headers`` is then NOT_SCHEDULED: no HSTS reading at all); ``headers=True``
    runs that scan alone (``GET /``, one connection), so the gateway's per-source connection caps,
    which the TLS scans' hundreds of connections exceed, cannot refuse it."""
    return [sys.executable, "-m", "sslyze", *(["--http_headers"] if headers else []), "--json_out", str(json_out),
            "--cert", str(cert), "--key", str(key), "--keyform", "PEM", f"{hostname}:{port}{{{address}}}"]


def sslyze_summary(doc: dict, headers_doc: dict | None = None) -> dict:
    """What the summary keeps of sslyze's JSON: the accepted suites per protocol, the scans that did
    not complete (``incomplete``: an empty suite list there is no finding), and the HSTS max-age of
    the HTTP headers scan (``headers_doc``, else ``doc``'s own)."""
    res = doc["server_scan_results"][0]
    sc = res.get("scan_result") or {}
    accepted = {}
    for key in ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites",
                "tls_1_1_cipher_suites", "tls_1_2_cipher_suites", "tls_1_3_cipher_suites"):
        suites = ((sc.get(key) or {}).get("result") or {}).get("accepted_cipher_suites") or []
        accepted[key.replace("_cipher_suites", "")] = [s["cipher_suite"]["name"] for s in suites]
    hsc = ((headers_doc or doc)["server_scan_results"][0].get("scan_result") or {}).get("http_headers") or {}
    hh = hsc.get("result") or {}
    return {
        "scan_status": res.get("scan_status"),
        "accepted": accepted,
        "incomplete": sorted(k for k, v in sc.items() if isinstance(v, dict) and v.get("status") == "ERROR"),
        "http_headers": hsc.get("status"),
        "hsts": (hh.get("strict_transport_security_header") or {}).get("max_age"),
        "compliance_modern": (doc.get("compliance") or doc.get("mozilla_config") or None),
    }


def run_sslyze(plan, out: Path, pki: Path) -> dict:
    from llmcluster.lab import probes

    gw = plan.serving.gateway
    result = {}
    if gw is None:
        return result
    clients = sorted(p.stem for p in (pki / "certs").glob("client-*.pem"))
    client = clients[0] if clients else "admin"
    cert, key = pki / "certs" / f"{client}.pem", pki / "private" / f"{client}.key"
    zone = next((f.from_ for f in plan.spec.flows if any(str(p) == f"tcp/{gw.port}" for p in f.ports)
                 and gw.pool in (plan.spec.zones[f.to].pools or ())), None)
    netns = probes.probe_netns(zone) if zone else None
    for h in plan.ip.hosts_in_pool(gw.pool):
        address = h.addresses["inference"]
        hf = out / f"sslyze-headers-{h.name}.json"
        rh = _run(sslyze_argv(gw.hostname, gw.port, address, cert, key, hf, headers=True), netns=netns, timeout=120)
        jf = out / f"sslyze-{h.name}.json"
        r = _run(sslyze_argv(gw.hostname, gw.port, address, cert, key, jf), netns=netns, timeout=600)
        (out / f"sslyze-{h.name}.txt").write_text(rh.stdout + rh.stderr + r.stdout + r.stderr)
        summary = {"client": client, "exit": r.returncode}
        try:
            summary.update(sslyze_summary(json.loads(jf.read_text()), json.loads(hf.read_text())))
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            summary["error"] = f"{type(exc).__name__}: {exc}; {r.stderr.strip()[-300:]}"
        result[h.name] = summary
    return result


# --------------------------------------------------------------------------- nmap


def admitted(plan, zone: str, address: str, port: int) -> bool:
    """Does some flow admit tcp/<port> from ``zone`` to the host owning ``address``?"""
    host = next((h for h in plan.ip.hosts if address in h.addresses.values()), None)
    if host is None:
        return False
    for f in plan.spec.flows:
        if f.from_ != zone:
            continue
        to = plan.spec.zones[f.to]
        if host.pool not in (to.pools or ()):
            continue
        for p in f.ports:
            proto, _, rng = str(p).partition("/")
            lo, _, hi = rng.partition("-")
            if proto == "tcp" and int(lo) <= port <= int(hi or lo):
                return True
    return False


def parse_nmap_grepable(text: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for line in text.splitlines():
        m = re.match(r"Host: (\S+) .*Ports: (.*)", line)
        if not m:
            continue
        ports = [int(p.split("/")[0]) for p in m.group(2).split(", ") if "/open/" in p]
        out[m.group(1)] = sorted(ports)
    return out


def unscanned(text: str, targets: list[str]) -> list[str]:
    """The targets nmap did not finish: a ``Status: Timeout`` line (``--host-timeout``), or no
    ``Ports:`` line at all. Their ports are unknown, so "open none" would be a false all-clear."""
    timed_out = set(re.findall(r"^Host: (\S+) .*Status: Timeout", text, re.M))
    scanned = set(parse_nmap_grepable(text)) - timed_out
    return [a for a in targets if a not in scanned]


def local_targets(plan, netns: str | None) -> list[str]:
    """The planned addresses inside a VLAN subnet where ``netns`` (``None``: the controller's
    namespace) has an address of its own: reached over the lab's bridges, never over a default
    route (which, from the controller, would leave the machine)."""
    r = _run(["ip", "-j", "addr", "show"], netns=netns, timeout=30)
    own = [a["local"] for i in json.loads(r.stdout or "[]") for a in i.get("addr_info", [])
           if a.get("family") == "inet"]
    nets = [netaddr.IPNetwork(v.cidr) for v in plan.ip.vlans.values()
            if any(netaddr.IPAddress(a) in netaddr.IPNetwork(v.cidr) for a in own)]
    addrs = {a for h in plan.ip.hosts for a in h.addresses.values() if any(netaddr.IPAddress(a) in n for n in nets)}
    return sorted(addrs, key=netaddr.IPAddress)


def _ranges(ports: list[int]) -> str:
    out, start, prev = [], None, None
    for p in ports + [None]:
        if start is not None and (p is None or p != prev + 1):
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if p is not None and start is None:
            start = p
        prev = p
    return ",".join(out)


def run_nmap(plan, out: Path) -> dict:
    from llmcluster.lab import probes

    tool = _need("nmap")
    sources = [("admin", None)] + [(p.zone, p.netns) for p in probes.probe_sources(plan)]
    result = {}
    for zone, netns in sources:
        targets = local_targets(plan, netns)
        if not targets:
            result[zone] = {"targets": [], "open": {}, "unexpected": [], "exit": None}
            continue
        gf = out / f"nmap-{zone}.gnmap"
        # The targets are the lab's own hosts on its bridges (round trips well under a millisecond), and a
        # default-deny firewall drops most probes: without a rate floor and a short round-trip bound,
        # 65535 dropped ports per host outlast any host timeout (2026-12-07: every host of two zones
        # timed out at 300 s and the summary read "open none").
        r = _run([tool, "-sT", "-Pn", "-n", "-T4", "--max-retries", "1", "--min-rate", "4000",
                  "--max-rtt-timeout", "150ms", "--host-timeout", "900s",
                  "-p", "1-65535", "-oG", str(gf), *targets], netns=netns, timeout=3600)
        (out / f"nmap-{zone}.txt").write_text(r.stdout + r.stderr)
        text = gf.read_text() if gf.exists() else ""
        missing = unscanned(text, targets)
        open_ports = {a: p for a, p in parse_nmap_grepable(text).items() if a not in missing}
        unexpected = [f"{a}:{p}" for a, ports in open_ports.items() for p in ports if not admitted(plan, zone, a, p)]
        result[zone] = {"targets": targets, "open": {a: _ranges(p) for a, p in open_ports.items() if p},
                        "unexpected": unexpected[:50], "unexpected_count": len(unexpected), "unscanned": missing,
                        "exit": r.returncode}
    return result


# --------------------------------------------------------------------------- lynis


def _ssh(inv_vars: dict, address: str) -> list[str]:
    return ["ssh", "-i", inv_vars["ansible_ssh_private_key_file"], "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
            f"{inv_vars.get('ansible_user', 'root')}@{address}"]


def run_lynis(plan, out: Path, hostvars: dict) -> dict:
    lynis = _need("lynis")
    result = {}
    with tempfile.TemporaryDirectory() as td:
        tar = Path(td) / "lynis.tar"
        subprocess.run(["tar", "-C", "/", "-cf", str(tar), lynis.lstrip("/"), "usr/share/lynis", "etc/lynis"],
                       check=True)
        for h in plan.ip.hosts:
            hv = hostvars.get(h.name) or {}
            if "ansible_ssh_private_key_file" not in hv:
                continue
            ssh = _ssh(hv, hv.get("ansible_host", h.mgmt_ip))
            d = "/tmp/llmcluster-lynis"
            script = (f"rm -rf {d} && mkdir -p {d} && tar -C {d} -xf - && cd {d}/usr/share/lynis && "
                      f"sh {d}/{lynis.lstrip('/')} audit system --quick --no-colors --no-log "
                      f"--profile {d}/etc/lynis/default.prf --plugindir {d}/etc/lynis/plugins "
                      f"--report-file {d}/report.dat >{d}/out.txt 2>&1; "
                      f"cat {d}/report.dat; echo ===OUT===; cat {d}/out.txt; rm -rf {d}")
            r = subprocess.run([*ssh, script], stdin=tar.open("rb"), capture_output=True, timeout=900, check=False)
            text = r.stdout.decode(errors="replace")
            (out / f"lynis-{h.name}.txt").write_text(text + r.stderr.decode(errors="replace"))
            report, _, _ = text.partition("===OUT===")
            idx = re.search(r"^hardening_index=(\d+)", report, re.M)
            warnings = re.findall(r"^warning\[\]=(.*)$", report, re.M)
            result[h.name] = {"hardening_index": int(idx.group(1)) if idx else None, "warnings": warnings,
                              "suggestions": len(re.findall(r"^suggestion\[\]=", report, re.M))}
    return result


# --------------------------------------------------------------------------- main


def gates(summary: dict) -> list[str]:
    failed = []
    for host, s in (summary.get("ssh-audit") or {}).items():
        if s["fail"]:
            failed.append(f"ssh-audit {host}: {s['fail']} fail: {s['fail_notes'][:3]}")
    for target, s in (summary.get("testssl") or {}).items():
        if s["unjustified_not_ok"]:
            failed.append(f"testssl {target}: NOT ok: {s['unjustified_not_ok'][:3]}")
    for zone, s in (summary.get("nmap") or {}).items():
        if s["unexpected"]:
            failed.append(f"nmap from {zone}: {s.get('unexpected_count', 0)} open port(s) no flow admits: "
                          f"{s['unexpected'][:10]}")
        if s.get("unscanned"):
            failed.append(f"nmap from {zone}: not scanned to the end (host timeout): {s['unscanned']}")
    return failed


def markdown(summary: dict) -> str:
    lines = ["# Security audit summary", ""]
    for host, s in (summary.get("ssh-audit") or {}).items():
        lines.append(f"- ssh-audit {host}: {s['fail']} fail, {s['warn']} warn")
    for target, s in (summary.get("testssl") or {}).items():
        sev = ", ".join(f"{k} {len(v)}" for k, v in sorted(s["findings"].items())) or "no finding above INFO"
        lines.append(f"- testssl.sh {target}: {len(s['not_ok'])} NOT ok ({len(s['unjustified_not_ok'])} unjustified);"
                     f" {sev}")
    for host, s in (summary.get("sslyze") or {}).items():
        acc = {k: len(v) for k, v in (s.get("accepted") or {}).items() if v}
        lines.append(f"- sslyze {host} (client {s.get('client')}): accepted suites {acc}, HSTS max-age {s.get('hsts')}"
                     + (f", scans not completed {s['incomplete']}" if s.get("incomplete") else "")
                     + (f", error {s['error']}" if s.get("error") else ""))
    for zone, s in (summary.get("nmap") or {}).items():
        lines.append(f"- nmap from {zone} ({len(s['targets'])} addresses, all TCP ports): open {s['open'] or 'none'}; "
                     f"open without a flow: {s['unexpected'] or 'none'}"
                     + (f"; NOT SCANNED to the end: {s['unscanned']}" if s.get("unscanned") else ""))
    for host, s in (summary.get("lynis") or {}).items():
        lines.append(f"- lynis {host}: hardening index {s['hardening_index']}, {len(s['warnings'])} warning(s), "
                     f"{s['suggestions']} suggestion(s)")
    failed = summary.get("gates_failed") or []
    lines += ["", "Gates: " + ("all passed" if not failed else "FAILED: " + "; ".join(failed)), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", default="lab")
    ap.add_argument("--state-dir", type=Path, default=None, help="the lab's state folder (default: llmcluster's)")
    ap.add_argument("--out", type=Path, default=Path("out") / f"security-audit-{time.strftime('%Y%m%dT%H%M%S')}")
    ap.add_argument("--skip", action="append", choices=TOOLS, default=[])
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("security_audit: run as root (it enters the lab's network namespaces)", file=sys.stderr)
        return 2
    import yaml

    from llmcluster.lab import default_state_dir
    from llmcluster.plan.build import build_plan
    from llmcluster.validate import load_stack_file

    state = args.state_dir or default_state_dir()
    inv_file = state / "inventory.yml"
    if not inv_file.is_file():
        print(f"security_audit: no lab inventory in {state}: run 'llmcluster lab up' and 'lab converge' first",
              file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"security_audit: {args.out} exists: name a new folder with --out", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True)
    plan = build_plan(load_stack_file(ROOT / "stacks" / f"Pulumi.{args.stack}.yaml"))
    inv = yaml.safe_load(inv_file.read_text())
    hostvars: dict = {}

    def walk(group: dict, inherited: dict) -> None:
        v = {**inherited, **(group.get("vars") or {})}
        for name, hv in (group.get("hosts") or {}).items():
            hostvars.setdefault(name, {}).update({**v, **(hv or {})})
        for child in (group.get("children") or {}).values():
            walk(child or {}, v)

    walk(inv.get("all") or {}, {})
    pki = Path((inv.get("all", {}).get("vars") or {}).get("llmcluster_pki_dir") or state / "pki")
    summary: dict = {}
    steps = {"ssh-audit": lambda: run_ssh_audit(plan, args.out), "testssl": lambda: run_testssl(plan, args.out, pki),
             "sslyze": lambda: run_sslyze(plan, args.out, pki), "nmap": lambda: run_nmap(plan, args.out),
             "lynis": lambda: run_lynis(plan, args.out, hostvars)}
    for name, step in steps.items():
        if name in args.skip:
            continue
        t0 = time.monotonic()
        print(f"security_audit: {name} ...", file=sys.stderr, flush=True)
        summary[name] = step()
        print(f"security_audit: {name} done in {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    summary["gates_failed"] = gates(summary)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    md = markdown(summary)
    (args.out / "summary.md").write_text(md)
    print(md)
    return 1 if summary["gates_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
