"""The preview diff of two offline evaluations (or two ``plan --out`` folders, or two plan JSON files).

A :class:`Side` is what one revision renders: the plan document (resources by URN, the plan, the
outputs), the rendered artifacts (``plan --out``'s files: switch configs, nftables rulesets, tc
scripts, certificates), the inventory's hostvars and the stack file's config. :func:`compare`
diffs two sides into a report (a plain, JSON-ready dict): resources added / removed / replaced /
updated with their changed property paths, the address plan, the firewall's flows per zone pair
(opened / closed), capacity, the rest of the plan per section, the artifacts as line diffs, the
hostvars per host and the config keys. Every text is redacted (:mod:`llmcluster.diff.redact`)
before it is diffed and the report once more when it is done.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmcluster.diff.redact import REDACTED, Redactor

REPORT_VERSION = 1
#: Plan sections with a section of their own in the report; the rest go to "plan".
ADDRESS_KEYS = ("ip",)
CAPACITY_KEYS = ("capacity", "serving")
FIREWALL_KEYS = ("firewall",)
#: Files of ``plan --out`` that are not artifacts of their own: the plan document is the
#: resources and plan sections; the inventory is the hostvars section.
NOT_ARTIFACTS = ("plan.json", "inventory.json", ".llmcluster-export.json")
#: Properties whose change makes the provider replace the resource (the providers' ForceNew
#: inputs); "*" = any input. Under mocks this is a forecast: ``pulumi preview`` has the last word.
REPLACE_ON: dict[str, tuple[str, ...]] = {
    "tls:index/privateKey:PrivateKey": ("*",),
    "tls:index/selfSignedCert:SelfSignedCert": ("*",),
    "tls:index/locallySignedCert:LocallySignedCert": ("*",),
    "tls:index/certRequest:CertRequest": ("*",),
    "aws:ec2/vpc:Vpc": ("cidrBlock",),
    "aws:ec2/subnet:Subnet": ("cidrBlock", "availabilityZone", "vpcId"),
    "aws:ec2/securityGroup:SecurityGroup": ("name", "vpcId", "description"),
    "aws:ec2/placementGroup:PlacementGroup": ("strategy", "name"),
    "aws:ec2/instance:Instance": ("ami", "availabilityZone", "subnetId", "placementGroup", "launchTemplate"),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ("*",),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": ("*",),
    "aws:eks/cluster:Cluster": ("name", "vpcConfig.subnetIds"),
}
#: A unified diff longer than this (lines) is cut, the cut said in the report.
MAX_DIFF_LINES = 400


@dataclass
class Side:
    """One revision's rendering of a stack."""

    label: str
    stack: str | None
    document: dict[str, Any] | None = None          # plan --json; None: the stack does not exist there
    files: dict[str, str] = field(default_factory=dict)   # artifacts: relative path -> text
    config: dict[str, Any] = field(default_factory=dict)  # the stack file's config mapping

    @property
    def exists(self) -> bool:
        return self.document is not None


# --------------------------------------------------------------------------- loading sides


def pem_summary(text: str) -> str:
    """A certificate file as the facts a reviewer cares about (subject, issuer, SANs, lifetime, key),
    not its bytes: keys and serials differ on every issuance, the facts only when the plan changes."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    lines: list[str] = []
    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        return "<not a certificate file>\n"
    for c in certs:
        key = c.public_key()
        kind = (f"EC {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey)
                else f"RSA {key.key_size}" if isinstance(key, rsa.RSAPublicKey) else type(key).__name__)
        life = c.not_valid_after_utc - c.not_valid_before_utc
        lines += [f"subject: {c.subject.rfc4514_string()}", f"issuer: {c.issuer.rfc4514_string()}",
                  f"lifetime: {life.days} days" + (f" {life.seconds // 3600} h" if life.seconds >= 3600 else ""),
                  f"key: {kind}"]
        for ext in sorted(c.extensions, key=lambda e: e.oid.dotted_string):
            v = ext.value
            if isinstance(v, x509.SubjectAlternativeName):
                lines.append("sans: " + ", ".join(sorted(str(n.value) for n in v)))
            elif isinstance(v, x509.BasicConstraints):
                lines.append(f"ca: {v.ca}" + (f" pathlen {v.path_length}" if v.path_length is not None else ""))
            elif isinstance(v, x509.ExtendedKeyUsage):
                lines.append("extended key usage: " + ", ".join(sorted(u._name for u in v)))
        lines.append("")
    return "\n".join(lines)


def _artifact_text(rel: str, raw: str) -> str:
    if rel.endswith(".pem") and "-----BEGIN CERTIFICATE-----" in raw:
        return pem_summary(raw)
    return raw


def load_folder(folder: Path, label: str) -> Side:
    """A ``llmcluster plan --out`` folder."""
    doc = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    files: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not p.is_symlink() and rel not in NOT_ARTIFACTS:
            try:
                files[rel] = _artifact_text(rel, p.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                files[rel] = f"<binary, {p.stat().st_size} bytes>\n"
    return Side(label=label, stack=doc.get("stack"), document=doc, files=files)


def load_path(path: Path, label: str) -> Side:
    """A plan JSON file (``plan --json``) or a ``plan --out`` folder."""
    if path.is_dir():
        return load_folder(path, label)
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not {"stack", "resources", "plan"} <= doc.keys():
        raise ValueError("not a plan document (llmcluster plan --json) or a plan --out folder")
    return Side(label=label, stack=doc.get("stack"), document=doc)


def side_from_evaluation(ev: Any, label: str, config: Mapping[str, Any] | None = None) -> Side:
    """An in-process evaluation (:func:`llmcluster.offline.evaluate`)."""
    from llmcluster.render.artifacts import artifacts

    files = {rel: _artifact_text(rel, text) for rel, (text, _mode) in artifacts(ev).items()
             if rel not in NOT_ARTIFACTS}
    return Side(label=label, stack=ev.stack, document=ev.document(), files=files, config=dict(config or {}))


# --------------------------------------------------------------------------- flattening


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, 2], "c": [{"d": 1}]}}`` -> ``{"a.b": [1, 2], "a.c[0].d": 1}``: mappings by key,
    lists of mappings by index, lists of plain values kept whole."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping) and obj:
        for k in sorted(obj, key=str):
            out.update(flatten(obj[k], f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list) and obj and any(isinstance(v, (Mapping, list)) for v in obj):
        key = _identity(obj)
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}[{key}={v[key]}]" if key else f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


#: Keys that name an item of a list of mappings (so an item inserted shows as one item added, not as
#: every later item changed).
IDENTITY_KEYS = ("name", "host", "urn", "role", "id")


def _identity(items: list[Any]) -> str | None:
    for key in IDENTITY_KEYS:
        values = [v.get(key) for v in items if isinstance(v, Mapping)]
        if (len(values) == len(items) and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in values)
                and len(set(values)) == len(values)):
            return key
    return None


def _last_key(path: str) -> str:
    return path.split("[", 1)[0].rsplit(".", 1)[-1] if path.endswith("]") else path.rsplit(".", 1)[-1].split("[", 1)[0]


def _changes(before: Any, after: Any, red: Redactor) -> list[dict[str, Any]]:
    """The changed leaf paths between two values: ``{"path", "before", "after"}`` (absent: missing),
    a multi-line text as a line diff (``"diff"``)."""
    a, b = flatten(before) if before is not None else {}, flatten(after) if after is not None else {}
    out = []
    for path in sorted(a.keys() | b.keys()):
        va, vb = a.get(path, _MISSING), b.get(path, _MISSING)
        if va == vb:
            continue
        key = _last_key(path)
        entry: dict[str, Any] = {"path": path}
        if (isinstance(va, str) and "\n" in va) or (isinstance(vb, str) and "\n" in vb):
            ta = red.text(va) if isinstance(va, str) else ""
            tb = red.text(vb) if isinstance(vb, str) else ""
            entry["diff"] = unified(ta, tb, path, path)
            entry["before"] = None if va is _MISSING else f"<{len(ta.splitlines())} lines>"
            entry["after"] = None if vb is _MISSING else f"<{len(tb.splitlines())} lines>"
            if va is _MISSING:
                entry["absent"] = "before"
            elif vb is _MISSING:
                entry["absent"] = "after"
        else:
            for side, v in (("before", va), ("after", vb)):
                if v is _MISSING:
                    entry[side] = None
                    entry["absent"] = side
                else:
                    entry[side] = red.value(key, v)
            if entry.get("before") == entry.get("after") == REDACTED:
                entry["before"], entry["after"] = REDACTED, f"{REDACTED} (changed)"
        out.append(entry)
    return out


class _Missing:
    def __repr__(self) -> str:  # pragma: no cover
        return "<missing>"


_MISSING = _Missing()


def unified(a: str, b: str, from_name: str, to_name: str) -> str:
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), f"a/{from_name}", f"b/{to_name}",
                                      lineterm="", n=2))
    if len(lines) > MAX_DIFF_LINES:
        cut = len(lines) - MAX_DIFF_LINES
        lines = [*lines[:MAX_DIFF_LINES], f"... ({cut} more diff lines cut)"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- sections


def _resources(a: dict | None, b: dict | None, red: Redactor) -> list[dict[str, Any]]:
    ra = {r["urn"]: r for r in (a or {}).get("resources", [])}
    rb = {r["urn"]: r for r in (b or {}).get("resources", [])}
    out = []
    for urn in sorted(ra.keys() | rb.keys()):
        x, y = ra.get(urn), rb.get(urn)
        typ = (y or x)["type"]
        if x is None:
            out.append({"urn": urn, "type": typ, "op": "create", "changes": _changes(None, y["inputs"], red)})
        elif y is None:
            out.append({"urn": urn, "type": typ, "op": "delete", "changes": []})
        else:
            ch = _changes(x.get("inputs"), y.get("inputs"), red)
            if x.get("parent") != y.get("parent"):
                ch.append({"path": "(parent)", "before": x.get("parent"), "after": y.get("parent")})
            if not ch:
                continue
            forcing = REPLACE_ON.get(typ, ())
            replace = [c["path"] for c in ch if "*" in forcing
                       or any(c["path"] == f or c["path"].startswith(f + ".") or c["path"].startswith(f + "[")
                              for f in forcing)]
            entry = {"urn": urn, "type": typ, "op": "replace" if replace else "update", "changes": ch}
            if replace:
                entry["replace_reasons"] = replace
            out.append(entry)
    return out


def _plan_section(a: dict | None, b: dict | None, keys: tuple[str, ...], red: Redactor) -> list[dict[str, Any]]:
    pa, pb = (a or {}).get("plan", {}), (b or {}).get("plan", {})
    return _changes({k: pa.get(k) for k in keys if k in pa}, {k: pb.get(k) for k in keys if k in pb}, red)


def flows(doc: dict | None) -> set[tuple[str, str, str, str]]:
    """Every allowed flow of a plan document: (from zone, to zone, proto/port, vlan), from the
    firewall plan's per-host rules (what the hosts' rulesets let in)."""
    out: set[tuple[str, str, str, str]] = set()
    fw = ((doc or {}).get("plan") or {}).get("firewall") or {}
    for h in (fw.get("hosts") or {}).values():
        for rule in h.get("rules", []):
            for src in rule.get("source_zones") or ["(any)"]:
                for port in rule.get("ports") or ["*"]:
                    out.add((src, h.get("zone") or "(none)", f"{rule.get('proto', 'any')}/{port}",
                             rule.get("vlan") or "-"))
    # egress to external zones (what the hosts' rulesets let out): zones by their CIDRs and addresses
    zones = fw.get("zones") or {}
    by_cidr = {c: z for z, v in zones.items() for c in v.get("cidrs") or []}
    by_addr = {a: z for z, v in zones.items() for addrs in (v.get("addresses") or {}).values() for a in addrs}
    for rule in fw.get("egress") or []:
        for dst in rule.get("destinations") or []:
            for src in rule.get("sources") or []:
                for port in rule.get("ports") or ["*"]:
                    out.add((by_addr.get(src.split("/")[0], src), by_cidr.get(dst, dst),
                             f"{rule.get('proto', 'any')}/{port}", rule.get("vlan") or "-"))
    return out


def _ports(text: str) -> set[int]:
    lo, _, hi = str(text).partition("-")
    try:
        return set(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        return set()


def _ranges(ports: set[int]) -> list[str]:
    out, run = [], []
    for p in sorted(ports):
        if run and p == run[-1] + 1:
            run.append(p)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [p]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return out


def port_sets(doc: dict | None) -> dict[tuple[str, str, str, str], set[int]]:
    """(from zone, to zone, proto, vlan) -> the ports allowed (ranges expanded, so a port added to a
    range shows as that port opened)."""
    out: dict[tuple[str, str, str, str], set[int]] = {}
    for f, t, port, vlan in flows(doc):
        proto, _, p = port.partition("/")
        out.setdefault((f, t, proto, vlan), set()).update(_ports(p))
    return out


def _firewall(a: dict | None, b: dict | None) -> dict[str, Any]:
    pa, pb = port_sets(a), port_sets(b)
    opened, closed = [], []
    matrix: dict[str, dict[str, list[str]]] = {}
    for key in sorted(pa.keys() | pb.keys()):
        f, t, proto, vlan = key
        x, y = pa.get(key, set()), pb.get(key, set())
        cell = matrix.setdefault(f, {}).setdefault(t, [])
        for r in _ranges(y - x):
            opened.append({"from": f, "to": t, "port": f"{proto}/{r}", "vlan": vlan})
            cell.append(f"+{proto}/{r}")
        for r in _ranges(x - y):
            closed.append({"from": f, "to": t, "port": f"{proto}/{r}", "vlan": vlan})
            cell.append(f"-{proto}/{r}")
        cell += [f"{proto}/{r}" for r in _ranges(x & y)]
    changed = bool(opened or closed)
    return {"opened": opened, "closed": closed,
            "matrix": {f: {t: sorted(set(v), key=lambda s: (s.lstrip("+-"), s)) for t, v in sorted(row.items())}
                       for f, row in sorted(matrix.items())} if changed else {}}


def _artifacts(a: Side, b: Side) -> list[dict[str, Any]]:
    out = []
    for rel in sorted(a.files.keys() | b.files.keys()):
        x, y = a.files.get(rel), b.files.get(rel)
        if x == y:
            continue
        status = "added" if x is None else "removed" if y is None else "changed"
        text = unified(x or "", y or "", rel if x is not None else "/dev/null", rel if y is not None else "/dev/null")
        added = sum(1 for line in text.splitlines() if line.startswith("+") and not line.startswith("+++"))
        removed = sum(1 for line in text.splitlines() if line.startswith("-") and not line.startswith("---"))
        out.append({"path": rel, "status": status, "added_lines": added, "removed_lines": removed, "diff": text})
    return out


def _hostvars(a: dict | None, b: dict | None, red: Redactor) -> list[dict[str, Any]]:
    def hv(doc):
        return ((((doc or {}).get("outputs") or {}).get("inventory") or {}).get("_meta") or {}).get("hostvars") or {}

    ha, hb = hv(a), hv(b)
    out = []
    for host in sorted(ha.keys() | hb.keys()):
        if host not in ha or host not in hb:  # a whole host: its keys are in the other sections' numbers
            out.append({"host": host, "status": "added" if host not in ha else "removed", "changes": [],
                        "keys": len(hb.get(host) or ha.get(host) or {})})
            continue
        ch = _changes(ha.get(host), hb.get(host), red)
        if ch:
            out.append({"host": host, "status": "changed", "changes": ch})
    return out


def _config(a: Side, b: Side, red: Redactor) -> list[dict[str, Any]]:
    def typed(cfg):  # values of secure: entries and of secret namespaces go by type
        return {k: ({"secure": REDACTED} if isinstance(v, Mapping) and set(v) == {"secure"} else
                    REDACTED if str(k).startswith("llmcluster-switches:") else v) for k, v in cfg.items()}

    ch = _changes(typed(a.config), typed(b.config), red)
    for c in ch:  # a secret that changed shows as changed, never its value
        if REDACTED in json.dumps([c.get("before"), c.get("after")]) and c.get("before") == c.get("after"):
            c["after"] = f"{REDACTED} (changed)"
    return ch


def compare(a: Side, b: Side, *, layer: str = "infra", redactor: Redactor | None = None) -> dict[str, Any]:
    """The report of what changes from ``a`` (base) to ``b`` (head)."""
    red = redactor or Redactor()
    red.collect(a.config)
    red.collect(b.config)
    for side in (a, b):
        inv = (((side.document or {}).get("outputs") or {}).get("inventory")) or {}
        red.collect(inv)
    stack = b.stack or a.stack
    # redact every artifact text before diffing (a secret line never enters a diff)
    a_files = Side(a.label, a.stack, a.document, {k: red.text(v) for k, v in a.files.items()}, a.config)
    b_files = Side(b.label, b.stack, b.document, {k: red.text(v) for k, v in b.files.items()}, b.config)
    da, db = a.document, b.document
    own = set(ADDRESS_KEYS + CAPACITY_KEYS + FIREWALL_KEYS)
    other = tuple(sorted(k for k in ((da or {}).get("plan", {}).keys() | (db or {}).get("plan", {}).keys())
                         if k not in own and k != "stack"))
    resources = _resources(da, db, red)
    report: dict[str, Any] = {
        "version": REPORT_VERSION, "stack": stack, "layer": layer,
        "base": {"label": a.label, "exists": a.exists}, "head": {"label": b.label, "exists": b.exists},
        "resources": resources,
        "addresses": _plan_section(da, db, ADDRESS_KEYS, red),
        "firewall": _firewall(da, db),
        "capacity": _plan_section(da, db, CAPACITY_KEYS, red),
        "plan": _plan_section(da, db, other, red),
        "artifacts": _artifacts(a_files, b_files),
        "hostvars": _hostvars(da, db, red),
        "config": _config(a, b, red),
    }
    report["summary"] = summarise(report)
    return red.walk(report)


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The counts the comment always keeps."""
    ops = {"create": 0, "delete": 0, "replace": 0, "update": 0}
    for r in report.get("resources", []):
        ops[r["op"]] = ops.get(r["op"], 0) + 1
    arts = {"added": 0, "removed": 0, "changed": 0}
    for x in report.get("artifacts", []):
        arts[x["status"]] += 1
    fw = report.get("firewall") or {}
    s = {"resources": ops, "addresses": len(report.get("addresses", [])),
         "flows": {"opened": len(fw.get("opened", [])), "closed": len(fw.get("closed", []))},
         "capacity": len(report.get("capacity", [])), "plan": len(report.get("plan", [])),
         "artifacts": arts, "hostvars": len(report.get("hostvars", [])), "config": len(report.get("config", []))}
    if "hosts" in report:
        s["hosts"] = report["hosts"].get("summary", {})
    s["changed"] = has_changes(s)
    return s


def has_changes(summary: Mapping[str, Any]) -> bool:
    def nonzero(v):
        if isinstance(v, Mapping):
            return any(nonzero(x) for k, x in v.items() if k not in ("changed", "hosts_total", "unchanged"))
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    return any(nonzero(v) for k, v in summary.items() if k != "changed")
