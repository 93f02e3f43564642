"""Ceph checks of the verification suite: what the plan expects, how observations are judged.

Cluster checks run on the plan's first monitor (it holds the admin key), client checks on every
host of the client groups (the GPU nodes, with their restricted ``client.models`` key). The tools'
JSON is read by the ``llmcluster.hosts`` collection's parsers (the code the ceph role uses).

Checks (``ceph[<name>]`` in the results table):

* ``health`` — ``ceph status``: ``HEALTH_OK`` (else the status and every health check's message);
* ``pools`` — every planned pool exists with the planned size, min_size, pg_num, the CRUSH rule of
  the planned failure domain and its application enabled;
* ``pgs`` — ``ceph pg stat``: every PG ``active+clean``, at least the planned pools' PGs;
* ``crush`` — ``ceph osd getcrushmap`` and ``crushtool --test --rule R --num-rep <size>
  --show-mappings`` (the tool's placements, not our arithmetic): every input gets ``size`` OSDs
  on ``size`` distinct hosts (failure domain host; distinct OSDs for failure domain osd);
* ``client`` (per client host) — a round trip with the host's key: ``rados put`` of a random
  object into its pool, ``rados get`` back (same bytes), ``rados rm``;
* ``client-limits`` (per client host) — the same key is refused a write to another pool and an
  administrative command (``ceph osd pool create``; ``ceph auth ls``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.ceph import (
    CephParseError,
    ceph_crush_rules,
    ceph_health_summary,
    ceph_osd_hosts,
    ceph_pgs_clean,
    ceph_pools,
    ceph_status,
    crush_replica_problems,
    crushtool_mappings,
)
from llmcluster.plan.build import Plan

#: The ceph role's defaults (roles/ceph/defaults/main.yml).
CRUSH_RULE = "llmcluster-replicated"
CLIENTS = {"models": {"pools": ["models"], "groups": ["gpu"]}}
CLUSTER_CHECKS = ("health", "pools", "pgs", "crush")
CLIENT_CHECKS = ("client", "client-limits")
TIMEOUT = ["--connect-timeout", "20"]


@dataclass(frozen=True)
class CephCheck:
    host: str
    name: str
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        return f"{self.host}-ceph[{self.name}]"


def ceph_checks(plan: Plan, hostvars: Mapping[str, Mapping[str, Any]]) -> list[CephCheck]:
    """The Ceph checks of a plan (none without ``storage.ceph``) for the hosts of the inventory."""
    ceph = plan.storage.ceph
    if ceph is None or not ceph.mons or ceph.mons[0] not in hostvars:
        return []
    cplan = ceph.to_dict()
    out = [CephCheck(ceph.mons[0], name, {"ceph": cplan}) for name in CLUSTER_CHECKS]
    roles = {h.name: h.role for h in plan.ip.hosts}
    for client, spec in CLIENTS.items():
        pools = [p for p in spec["pools"] if any(q.name == p for q in ceph.pools)]
        if not pools:
            continue
        other = next((q.name for q in ceph.pools if q.name not in pools), None)
        for host in sorted(hostvars):
            if roles.get(host) in spec["groups"] and host not in ceph.hosts:
                params = {"client": client, "pool": pools[0], "other_pool": other}
                out += [CephCheck(host, name, params) for name in CLIENT_CHECKS]
    return out


# --------------------------------------------------------------------------- judges (pure)


def judge_health(status_json: str) -> list[str]:
    try:
        st = ceph_status(status_json)
    except CephParseError as exc:
        return [str(exc)]
    return [] if st["health"] == "HEALTH_OK" and not st["checks"] else [ceph_health_summary(st)]


def judge_pools(pools_json: str, rules_json: str, ceph: Mapping[str, Any], rule: str = CRUSH_RULE) -> list[str]:
    try:
        have = ceph_pools(pools_json)
        rules = ceph_crush_rules(rules_json)
    except CephParseError as exc:
        return [str(exc)]
    problems = []
    want_rule = rules.get(rule)
    if want_rule is None:
        problems.append(f"no CRUSH rule {rule} (rules: {sorted(rules)})")
    elif want_rule["failure_domain"] != ceph["failure_domain"]:
        problems.append(f"CRUSH rule {rule} has failure domain {want_rule['failure_domain']}, "
                        f"the plan {ceph['failure_domain']}")
    for p in ceph["pools"]:
        cur = have.get(p["name"])
        if cur is None:
            problems.append(f"pool {p['name']} does not exist")
            continue
        for key in ("size", "min_size", "pg_num"):
            if cur[key] != p[key]:
                problems.append(f"pool {p['name']}: {key} {cur[key]}, planned {p[key]}")
        if p["application"] not in cur["applications"]:
            problems.append(f"pool {p['name']}: application {p['application']} not enabled ({cur['applications']})")
        if want_rule is not None and cur["crush_rule"] != want_rule["id"]:
            problems.append(f"pool {p['name']}: CRUSH rule id {cur['crush_rule']}, not {rule} ({want_rule['id']})")
    return problems


def judge_pgs(pg_stat_json: str, ceph: Mapping[str, Any]) -> list[str]:
    try:
        return ceph_pgs_clean(pg_stat_json, sum(p["pg_num"] for p in ceph["pools"]))
    except CephParseError as exc:
        return [str(exc)]


def judge_crush(mappings_text: str, tree_json: str, replicas: int, failure_domain: str) -> list[str]:
    try:
        osd_hosts = ceph_osd_hosts(tree_json)
    except CephParseError as exc:
        return [str(exc)]
    mappings = crushtool_mappings(mappings_text)
    if failure_domain == "osd":  # distinct OSDs are enough
        osd_hosts = {o: f"osd.{o}" for o in osd_hosts}
    return crush_replica_problems(mappings, osd_hosts, replicas)


# --------------------------------------------------------------------------- runs (over SSH)


def _fail(what: str, res) -> str:
    return f"{what} exited {res.rc}: {(res.stderr or res.stdout).strip()[-300:]}"


def run_check(check: CephCheck, host) -> list[str]:
    """Run one check on ``host`` (a :class:`~llmcluster.verify.remote.RemoteHost`)."""
    if check.name in CLIENT_CHECKS:
        return _client(check, host)
    ceph = check.params["ceph"]
    if check.name == "health":
        res = host.run(["ceph", "status", "--format", "json", *TIMEOUT], timeout=60)
        return judge_health(res.stdout) if res.rc == 0 else [_fail("ceph status", res)]
    if check.name == "pools":
        pools = host.run(["ceph", "osd", "pool", "ls", "detail", "--format", "json", *TIMEOUT], timeout=60)
        rules = host.run(["ceph", "osd", "crush", "rule", "dump", "--format", "json", *TIMEOUT], timeout=60)
        for what, res in (("ceph osd pool ls detail", pools), ("ceph osd crush rule dump", rules)):
            if res.rc != 0:
                return [_fail(what, res)]
        return judge_pools(pools.stdout, rules.stdout, ceph)
    if check.name == "pgs":
        res = host.run(["ceph", "pg", "stat", "--format", "json", *TIMEOUT], timeout=60)
        return judge_pgs(res.stdout, ceph) if res.rc == 0 else [_fail("ceph pg stat", res)]
    if check.name == "crush":
        return _crush(host, ceph)
    raise ValueError(f"unknown ceph check {check.name}")


CRUSH_SCRIPT = r"""
set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
ceph osd getcrushmap -o "$d/map" --connect-timeout 20 2>/dev/null
rule=$(ceph osd crush rule dump "$1" --format json --connect-timeout 20 \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["rule_id"])')
crushtool -i "$d/map" --test --rule "$rule" --num-rep "$2" --min-x 0 --max-x "$3" --show-mappings
"""


def _crush(host, ceph: Mapping[str, Any], inputs: int = 1024) -> list[str]:
    replicas = max(p["size"] for p in ceph["pools"])
    tree = host.run(["ceph", "osd", "tree", "--format", "json", *TIMEOUT], timeout=60)
    if tree.rc != 0:
        return [_fail("ceph osd tree", tree)]
    res = host.run(["sh", "-c", CRUSH_SCRIPT, "crush", CRUSH_RULE, str(replicas), str(inputs - 1)], timeout=120)
    if res.rc != 0:
        return [_fail("ceph osd getcrushmap | crushtool --test", res)]
    problems = judge_crush(res.stdout, tree.stdout, replicas, ceph["failure_domain"])
    n = len(crushtool_mappings(res.stdout))
    if not problems and n != inputs:
        problems.append(f"crushtool mapped {n} inputs, asked for {inputs}")
    return problems


def _client(check: CephCheck, host) -> list[str]:
    p = check.params
    # Before the command: rados takes every later word as an object name (and has no --connect-timeout).
    ident = ["--id", p["client"]]
    obj = f"llmcluster-verify-{secrets.token_hex(8)}"
    if check.name == "client":
        data = secrets.token_hex(512)
        digest = hashlib.sha256(data.encode()).hexdigest()
        script = (
            'set -e; d="$1" pool="$2" obj="$3"; shift 3; f=$(mktemp); g=$(mktemp); trap \'rm -f "$f" "$g"\' EXIT; '
            'printf %s "$d" > "$f"; rados "$@" -p "$pool" put "$obj" "$f"; rados "$@" -p "$pool" get "$obj" "$g"; '
            'sha256sum "$g" | cut -d" " -f1; rados "$@" -p "$pool" rm "$obj"; '
            'if rados "$@" -p "$pool" stat "$obj" 2>/dev/null; then echo "still there"; exit 3; fi'
        )
        res = host.run(["bash", "-c", script, "rt", data, p["pool"], obj, *ident], timeout=120)
        if res.rc != 0:
            return [_fail(f"rados put/get/rm of {obj} in pool {p['pool']} as client.{p['client']}", res)]
        got = res.stdout.strip().splitlines()[:1]
        return [] if got == [digest] else [f"rados get returned other bytes (sha256 {got}, put {digest})"]
    problems = []
    if p.get("other_pool"):
        res = host.run(["bash", "-c", 'p="$1" o="$2"; shift 2; echo x | rados "$@" -p "$p" put "$o" -', "w",
                        p["other_pool"], obj, *ident], timeout=60)
        if res.rc == 0:
            host.run(["rados", *ident, "-p", p["other_pool"], "rm", obj], timeout=60)
            problems.append(f"client.{p['client']} wrote to pool {p['other_pool']} (it may write {p['pool']} only)")
        elif "Operation not permitted" not in res.stderr:
            problems.append(f"writing to pool {p['other_pool']} failed, but not as refused: "
                            f"{res.stderr.strip()[-200:]}")
    for argv in (["osd", "pool", "create", obj, "8"], ["auth", "ls"]):
        res = host.run(["ceph", *ident, *TIMEOUT, *argv], timeout=60)
        if res.rc == 0:
            problems.append(f"client.{p['client']} may run the admin command ceph {' '.join(argv[:3])} "
                            "(it must be refused)")
        elif "denied" not in res.stderr.lower() and "not permitted" not in res.stderr.lower():
            problems.append(f"ceph {' '.join(argv[:3])} failed, but not as refused: {res.stderr.strip()[-200:]}")
    return problems
