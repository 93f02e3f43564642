"""Ceph's JSON output (pure functions, standard library only).

The ``ceph`` CLI prints JSON with ``--format json``; these functions reduce it to what the ceph
role and the verification suite decide on, and judge it. Every parser accepts the JSON text (or
Ansible's ``stdout_lines``) or an already parsed document; what is not a document of the expected
shape raises :class:`CephParseError` (a check must never pass on output it did not understand).

* :func:`ceph_status` — ``ceph status --format json``: health, its checks, quorum, OSD counts
  (Pacific's flat ``osdmap`` and Octopus' nested ``osdmap.osdmap``), PG states, the manager.
* :func:`ceph_pools` — ``ceph osd pool ls detail --format json``: per pool size, min_size,
  pg_num, the CRUSH rule id, autoscale mode, applications and pool snapshots.
* :func:`ceph_pg_stat`, :func:`ceph_pgs_clean` — ``ceph pg stat --format json`` and its judge
  (every PG ``active+clean``; no PG at all is not clean).
* :func:`ceph_crush_rules` — ``ceph osd crush rule dump --format json``: rule name -> id and
  failure domain (the type of its ``chooseleaf``/``choose`` step).
* :func:`ceph_osd_hosts` — ``ceph osd tree --format json``: OSD id -> host.
* :func:`crushtool_mappings`, :func:`crush_replica_problems` — ``crushtool -i MAP --test --rule R
  --num-rep N --show-mappings`` lines and the judge: every input mapped to N OSDs on N distinct
  hosts.
* :func:`ceph_auth_caps` — ``ceph auth get <entity> --format json``: the entity's caps (never its
  key).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._text import text as _text


class CephParseError(ValueError):
    """Output that is not the JSON document the parser expects."""


def _doc(document: Any, what: str) -> Any:
    if isinstance(document, (dict, list)) and not (
        isinstance(document, list) and document and all(isinstance(x, str) for x in document)
    ):
        return document
    raw = _text(document).strip()
    # The CLI may print a warning line before the document.
    starts = [i for i in (raw.find("{"), raw.find("[")) if i >= 0]
    if not raw or not starts:
        raise CephParseError(f"{what}: no JSON document in the output {raw[:120]!r}")
    try:
        return json.loads(raw[min(starts):])
    except ValueError as exc:
        raise CephParseError(f"{what}: not JSON ({exc}): {raw[:120]!r}") from None


def _dict(document: Any, what: str) -> dict:
    doc = _doc(document, what)
    if not isinstance(doc, dict):
        raise CephParseError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _list(document: Any, what: str) -> list:
    doc = _doc(document, what)
    if not isinstance(doc, list):
        raise CephParseError(f"{what}: expected a JSON list, got {type(doc).__name__}")
    return doc


# --------------------------------------------------------------------------- ceph status


def ceph_status(document: Any) -> dict[str, Any]:
    """The facts of ``ceph status --format json`` (see the module docstring)."""
    doc = _dict(document, "ceph status")
    health = doc.get("health")
    if not isinstance(health, dict) or "status" not in health:
        raise CephParseError("ceph status: no health.status")
    osdmap = doc.get("osdmap") or {}
    if isinstance(osdmap.get("osdmap"), dict):  # Octopus and older nest it
        osdmap = osdmap["osdmap"]
    pgmap = doc.get("pgmap") or {}
    states = {str(s.get("state_name")): int(s.get("count", 0)) for s in pgmap.get("pgs_by_state") or []}
    checks = {
        name: {
            "severity": str(c.get("severity", "")),
            "message": str((c.get("summary") or {}).get("message", "")),
            "muted": bool(c.get("muted", False)),
        }
        for name, c in sorted((health.get("checks") or {}).items())
    }
    mgrmap = doc.get("mgrmap") or {}
    return {
        "fsid": str(doc.get("fsid", "")),
        "health": str(health["status"]),
        "checks": checks,
        "quorum_names": [str(n) for n in doc.get("quorum_names") or []],
        "num_mons": int((doc.get("monmap") or {}).get("num_mons", len(doc.get("quorum_names") or []))),
        "num_osds": int(osdmap.get("num_osds", 0)),
        "num_up_osds": int(osdmap.get("num_up_osds", 0)),
        "num_in_osds": int(osdmap.get("num_in_osds", 0)),
        "num_pgs": int(pgmap.get("num_pgs", sum(states.values()))),
        "pgs_by_state": states,
        "mgr_available": bool(mgrmap.get("available", False)),
    }


def ceph_health_summary(document: Any) -> str:
    """``HEALTH_OK``, or the status followed by its checks (``HEALTH_WARN: OSD_DOWN 1 osds down; ...``)."""
    st = ceph_status(document) if not (isinstance(document, dict) and "checks" in document
                                        and "health" in document and isinstance(document["health"], str)) else document
    if not st["checks"]:
        return st["health"]
    return st["health"] + ": " + "; ".join(f"{n} {c['message']}" for n, c in st["checks"].items())


# --------------------------------------------------------------------------- pools


def ceph_pools(document: Any) -> dict[str, dict[str, Any]]:
    """``ceph osd pool ls detail --format json`` -> ``{pool name: facts}``."""
    pools = _list(document, "ceph osd pool ls detail")
    out: dict[str, dict[str, Any]] = {}
    for p in pools:
        if not isinstance(p, dict) or "pool_name" not in p:
            raise CephParseError(f"ceph osd pool ls detail: an entry without pool_name: {str(p)[:120]}")
        out[str(p["pool_name"])] = {
            "id": int(p.get("pool_id", p.get("pool", -1))),
            "size": int(p.get("size", 0)),
            "min_size": int(p.get("min_size", 0)),
            "pg_num": int(p.get("pg_num", 0)),
            "pgp_num": int(p.get("pg_placement_num", p.get("pgp_num", 0))),
            "pg_num_target": int(p.get("pg_num_target", p.get("pg_num", 0))),
            "crush_rule": int(p.get("crush_rule", -1)),
            "pg_autoscale_mode": str(p.get("pg_autoscale_mode", "")),
            "applications": sorted((p.get("application_metadata") or {}).keys()),
            "snaps": [{"name": str(s.get("name")), "stamp": str(s.get("stamp", ""))}
                      for s in p.get("pool_snaps") or []],
            "selfmanaged_snaps": bool(p.get("snap_mode") == "selfmanaged" or p.get("removed_snaps")),
        }
    return out


def ceph_pool_changes(pools: Any, planned: list[dict[str, Any]], rule_ids: dict[str, int] | None = None,
                      rule: str = "") -> dict[str, list[str]]:
    """What differs between the cluster's pools (:func:`ceph_pools`' result or its JSON) and the
    planned ones (``CephPlan.pools``: name, size, min_size, pg_num, application): ``{pool:
    [what to set]}`` with items ``create``, ``size``, ``min_size``, ``pg_num``, ``pgp_num``,
    ``autoscale``, ``application``, ``crush_rule``. Empty when everything is as planned."""
    have = pools if isinstance(pools, dict) and all(isinstance(v, dict) for v in pools.values()) else ceph_pools(pools)
    want_rule = (rule_ids or {}).get(rule) if rule else None
    out: dict[str, list[str]] = {}
    for p in planned:
        name = p["name"]
        cur = have.get(name)
        if cur is None:
            out[name] = ["create", "size", "min_size", "autoscale", "application"]
            continue
        todo = []
        if cur["size"] != int(p["size"]):
            todo.append("size")
        if cur["min_size"] != int(p["min_size"]):
            todo.append("min_size")
        if cur["pg_num_target"] != int(p["pg_num"]):
            todo.append("pg_num")
        if cur["pgp_num"] != int(p["pg_num"]) and cur["pg_num_target"] == int(p["pg_num"]):
            todo.append("pgp_num")
        if cur["pg_autoscale_mode"] not in ("off", ""):
            todo.append("autoscale")
        if p["application"] not in cur["applications"]:
            todo.append("application")
        if want_rule is not None and cur["crush_rule"] != want_rule:
            todo.append("crush_rule")
        if todo:
            out[name] = todo
    return out


# --------------------------------------------------------------------------- placement groups


def ceph_pg_stat(document: Any) -> dict[str, Any]:
    """``ceph pg stat --format json`` -> ``{"num_pgs": N, "by_state": {state: count}}``."""
    doc = _dict(document, "ceph pg stat")
    if "pg_summary" in doc:  # some releases wrap it
        doc = doc["pg_summary"]
    if "num_pgs" not in doc:
        raise CephParseError("ceph pg stat: no num_pgs")
    states: dict[str, int] = {}
    for s in doc.get("num_pg_by_state") or []:
        states[str(s.get("name"))] = states.get(str(s.get("name")), 0) + int(s.get("num", 0))
    return {"num_pgs": int(doc["num_pgs"]), "by_state": states}


def ceph_pgs_clean(document: Any, expected_pgs: int | None = None) -> list[str]:
    """Problems with the PGs (``ceph pg stat`` JSON or :func:`ceph_pg_stat`'s result): every PG
    ``active+clean``, their number at least ``expected_pgs``. ``[]`` means all clean."""
    st = document if isinstance(document, dict) and "by_state" in document else ceph_pg_stat(document)
    problems = []
    if st["num_pgs"] == 0:
        problems.append("the cluster has no placement group")
    clean = st["by_state"].get("active+clean", 0)
    others = {k: v for k, v in st["by_state"].items() if k != "active+clean" and v}
    if others:
        problems.append("not active+clean: " + ", ".join(f"{v} {k}" for k, v in sorted(others.items())))
    if sum(st["by_state"].values()) != st["num_pgs"]:
        problems.append(f"{st['num_pgs']} PGs but states count {sum(st['by_state'].values())}")
    elif clean != st["num_pgs"] and not others:
        problems.append(f"{clean} of {st['num_pgs']} PGs active+clean")
    if expected_pgs is not None and st["num_pgs"] < expected_pgs:
        problems.append(f"{st['num_pgs']} PGs, the planned pools alone have {expected_pgs}")
    return problems


# --------------------------------------------------------------------------- CRUSH


def ceph_crush_rules(document: Any) -> dict[str, dict[str, Any]]:
    """``ceph osd crush rule dump --format json`` -> ``{rule name: {"id": N, "failure_domain":
    type, "root": name}}`` (failure domain: the ``type`` of the rule's chooseleaf/choose step)."""
    rules = _list(document, "ceph osd crush rule dump")
    out: dict[str, dict[str, Any]] = {}
    for r in rules:
        if not isinstance(r, dict) or "rule_name" not in r:
            raise CephParseError(f"ceph osd crush rule dump: an entry without rule_name: {str(r)[:120]}")
        domain, root = "", ""
        for step in r.get("steps") or []:
            op = str(step.get("op", ""))
            if op == "take":
                root = str(step.get("item_name", ""))
            elif op.startswith("chooseleaf") or op.startswith("choose"):
                domain = str(step.get("type", ""))
        out[str(r["rule_name"])] = {"id": int(r.get("rule_id", r.get("ruleset", -1))),
                                    "failure_domain": domain, "root": root}
    return out


def ceph_osd_hosts(document: Any) -> dict[int, str]:
    """``ceph osd tree --format json`` -> ``{osd id: host name}`` (OSDs under a ``host`` bucket)."""
    doc = _dict(document, "ceph osd tree")
    nodes = doc.get("nodes")
    if not isinstance(nodes, list):
        raise CephParseError("ceph osd tree: no nodes")
    out: dict[int, str] = {}
    for n in nodes:
        if n.get("type") == "host":
            for child in n.get("children") or []:
                out[int(child)] = str(n.get("name"))
    return out


def ceph_osd_states(document: Any) -> dict[int, dict[str, Any]]:
    """``ceph osd tree --format json`` -> ``{osd id: {"name", "status" (up/down), "reweight"}}``."""
    doc = _dict(document, "ceph osd tree")
    return {int(n["id"]): {"name": str(n.get("name")), "status": str(n.get("status", "")),
                           "reweight": float(n.get("reweight", 0))}
            for n in [*(doc.get("nodes") or []), *(doc.get("stray") or [])] if n.get("type") == "osd"}


def ceph_osds_not_up(document: Any, ids: Any) -> list[int]:
    """The OSDs of ``ids`` that ``ceph osd tree --format json`` does not show ``up`` (missing
    ones included): ``[]`` when all are up."""
    states = ceph_osd_states(document)
    return [int(i) for i in ids if states.get(int(i), {}).get("status") != "up"]


_MAPPING = re.compile(r"^CRUSH rule (\d+) x (\d+) \[([0-9,\s-]*)\]\s*$")


def crushtool_mappings(output: Any) -> list[list[int]]:
    """``crushtool --test --show-mappings`` lines (``CRUSH rule 1 x 0 [3,1,5]``) -> the OSD lists."""
    out = []
    for line in _text(output).splitlines():
        m = _MAPPING.match(line.strip())
        if m:
            out.append([int(x) for x in m.group(3).replace(" ", "").split(",") if x])
    return out


def crush_replica_problems(mappings: list[list[int]], osd_hosts: dict[int, str], replicas: int) -> list[str]:
    """The judge of CRUSH's placements: every mapping has ``replicas`` OSDs on ``replicas``
    distinct hosts. No mapping at all is a problem (crushtool printed nothing we could read)."""
    if not mappings:
        return ["crushtool printed no mapping"]
    short, shared, unknown = [], [], set()
    for i, osds in enumerate(mappings):
        if len(osds) != replicas or any(o < 0 for o in osds):
            short.append((i, osds))
            continue
        hosts = [osd_hosts.get(o) for o in osds]
        unknown.update(o for o, h in zip(osds, hosts, strict=True) if h is None)
        if len(set(hosts)) != len(hosts):
            shared.append((i, osds, hosts))
    problems = []
    if short:
        i, osds = short[0]
        problems.append(f"{len(short)} of {len(mappings)} inputs mapped to fewer than {replicas} OSDs "
                        f"(x {i}: {osds})")
    if unknown:
        problems.append(f"OSDs without a host in the CRUSH tree: {sorted(unknown)}")
    if shared:
        i, osds, hosts = shared[0]
        problems.append(f"{len(shared)} of {len(mappings)} inputs put two replicas on one host "
                        f"(x {i}: OSDs {osds} on {hosts})")
    return problems


# --------------------------------------------------------------------------- keys


def ceph_auth_caps(document: Any) -> dict[str, str]:
    """``ceph auth get <entity> --format json`` -> its caps ``{"mon": "allow r", "osd": ...}``.
    The key is never returned."""
    doc = _doc(document, "ceph auth get")
    entries = doc if isinstance(doc, list) else [doc]
    if not entries or not isinstance(entries[0], dict) or "caps" not in entries[0]:
        raise CephParseError("ceph auth get: no entity with caps")
    return {str(k): str(v) for k, v in sorted((entries[0].get("caps") or {}).items())}


# --------------------------------------------------------------------------- ceph-volume


def ceph_volume_devices(document: Any) -> list[str]:
    """The devices that carry OSDs, from ``ceph-volume lvm list --format json`` (``{osd id:
    [{"devices": [...], "type": "block"}]}``) or ``ceph-volume raw list --format json`` (``{osd
    uuid: {"device": ..., "osd_id": N}}``). An empty document (no OSD) gives ``[]``."""
    empty = not isinstance(document, dict) and _text(document).strip() in ("", "{}")
    doc = {} if empty else _dict(document, "ceph-volume list")
    found: set[str] = set()
    for value in doc.values():
        if isinstance(value, list):  # lvm
            for lv in value:
                if isinstance(lv, dict) and lv.get("type", "block") == "block":
                    found.update(str(d) for d in lv.get("devices") or [])
        elif isinstance(value, dict) and value.get("device"):  # raw
            found.add(str(value["device"]))
    return sorted(found)
