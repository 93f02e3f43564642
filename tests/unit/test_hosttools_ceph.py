"""The llmcluster.hosts collection's Ceph parsers and the verification suite's Ceph judges, fed the
JSON the lab's real Ceph 16.2 cluster printed (tests/helpers/hosttool_samples.py), and broken
variants of it: every judge proves it rejects what it must reject."""

from __future__ import annotations

import json

import pytest

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import ceph as C
from llmcluster.verify import ceph as V
from tests.conftest import load_plan
from tests.helpers import hosttool_samples as S

LAB_CEPH = load_plan("lab").storage.ceph.to_dict()


def test_status_ok_and_osd_down():
    ok = C.ceph_status(S.CEPH_STATUS_OK)
    assert ok["health"] == "HEALTH_OK" and ok["checks"] == {}
    assert sorted(ok["quorum_names"]) == ["storage-01", "storage-02", "storage-03"]
    assert (ok["num_osds"], ok["num_up_osds"], ok["num_in_osds"]) == (6, 6, 6)
    assert ok["pgs_by_state"] == {"active+clean": 161} and ok["num_pgs"] == 161 and ok["mgr_available"]
    down = C.ceph_status(S.CEPH_STATUS_OSD_DOWN)
    assert down["health"] == "HEALTH_WARN" and list(down["checks"]) == ["OSD_DOWN"]
    assert C.ceph_health_summary(S.CEPH_STATUS_OSD_DOWN) == "HEALTH_WARN: OSD_DOWN 1 osds down"
    assert C.ceph_health_summary(S.CEPH_STATUS_OK) == "HEALTH_OK"
    assert V.judge_health(S.CEPH_STATUS_OK) == []
    assert V.judge_health(S.CEPH_STATUS_OSD_DOWN) == ["HEALTH_WARN: OSD_DOWN 1 osds down"]


def test_status_octopus_nesting_and_stdout_lines():
    doc = json.loads(S.CEPH_STATUS_OK)
    doc["osdmap"] = {"osdmap": doc["osdmap"]}
    assert C.ceph_status(doc)["num_up_osds"] == 6
    assert C.ceph_status(S.CEPH_STATUS_OK.splitlines())["health"] == "HEALTH_OK"


@pytest.mark.parametrize("bad", ["", "HEALTH_OK", "[]", '{"fsid": "x"}', "{not json"])
def test_unreadable_status_is_a_problem_not_a_pass(bad):
    with pytest.raises(C.CephParseError):
        C.ceph_status(bad)
    assert V.judge_health(bad), f"{bad!r} must not pass the health check"


def test_pools_and_planned_changes():
    pools = C.ceph_pools(S.CEPH_POOLS)
    assert pools["models"]["pg_num"] == 128 and pools["engines"]["pg_num"] == 32
    assert pools["models"]["applications"] == ["rgw"] and pools["engines"]["applications"] == ["rbd"]
    assert all(pools[p]["size"] == 3 and pools[p]["min_size"] == 2 for p in ("models", "engines"))
    rules = C.ceph_crush_rules(S.CEPH_CRUSH_RULES)
    ids = {n: r["id"] for n, r in rules.items()}
    assert C.ceph_pool_changes(S.CEPH_POOLS, LAB_CEPH["pools"], ids, "llmcluster-replicated") == {}
    planned = [dict(p) for p in LAB_CEPH["pools"]] + [{"name": "new", "size": 3, "min_size": 2, "pg_num": 32,
                                                       "application": "rbd"}]
    planned[0]["pg_num"] = 256
    planned[1]["min_size"] = 1
    changes = C.ceph_pool_changes(S.CEPH_POOLS, planned, ids, "llmcluster-replicated")
    assert changes == {"models": ["pg_num"], "engines": ["min_size"],
                       "new": ["create", "size", "min_size", "autoscale", "application"]}
    assert C.ceph_pool_changes(S.CEPH_POOLS, LAB_CEPH["pools"], ids, "replicated_rule") == {
        "models": ["crush_rule"], "engines": ["crush_rule"]}


def test_pool_judge_rejects_every_difference():
    assert V.judge_pools(S.CEPH_POOLS, S.CEPH_CRUSH_RULES, LAB_CEPH) == []
    doc = json.loads(S.CEPH_POOLS)
    models = next(p for p in doc if p["pool_name"] == "models")
    models.update(size=2, min_size=1, pg_num=64, application_metadata={}, crush_rule=0)
    problems = V.judge_pools(json.dumps(doc), S.CEPH_CRUSH_RULES, LAB_CEPH)
    text = "; ".join(problems)
    for want in ("models: size 2, planned 3", "models: min_size 1, planned 2", "models: pg_num 64, planned 128",
                 "application rgw not enabled", "CRUSH rule id 0"):
        assert want in text, text
    missing = [p for p in json.loads(S.CEPH_POOLS) if p["pool_name"] != "engines"]
    assert V.judge_pools(json.dumps(missing), S.CEPH_CRUSH_RULES, LAB_CEPH) == ["pool engines does not exist"]
    osd_rule = json.loads(S.CEPH_CRUSH_RULES)
    osd_rule[1]["steps"][1]["type"] = "osd"
    assert V.judge_pools(S.CEPH_POOLS, json.dumps(osd_rule), LAB_CEPH) == [
        "CRUSH rule llmcluster-replicated has failure domain osd, the plan host"]


def test_pg_judge():
    assert C.ceph_pg_stat(S.CEPH_PG_STAT_CLEAN) == {"num_pgs": 161, "by_state": {"active+clean": 161}}
    assert V.judge_pgs(S.CEPH_PG_STAT_CLEAN, LAB_CEPH) == []
    problems = V.judge_pgs(S.CEPH_PG_STAT_DEGRADED, LAB_CEPH)
    assert problems == ["not active+clean: 30 active+undersized, 16 stale+active+clean"], problems
    empty = '{"pg_ready":true,"pg_summary":{"num_pg_by_state":[],"num_pgs":0}}'
    assert "the cluster has no placement group" in V.judge_pgs(empty, LAB_CEPH)
    assert any("planned pools alone have 160" in p for p in V.judge_pgs(
        '{"pg_summary":{"num_pg_by_state":[{"name":"active+clean","num":40}],"num_pgs":40}}', LAB_CEPH))


def test_crush_judge_uses_the_tools_mappings():
    hosts = C.ceph_osd_hosts(S.CEPH_OSD_TREE)
    assert hosts == {0: "storage-01", 1: "storage-01", 2: "storage-02", 3: "storage-02", 4: "storage-03",
                     5: "storage-03"}
    mappings = C.crushtool_mappings(S.CRUSHTOOL_MAPPINGS)
    assert len(mappings) == 10 and mappings[0] == [3, 4, 0]
    assert V.judge_crush(S.CRUSHTOOL_MAPPINGS, S.CEPH_OSD_TREE, 3, "host") == []
    # What a rule with failure domain osd may print: two replicas on storage-01 (osd.0 and osd.1).
    bad = S.CRUSHTOOL_MAPPINGS.replace("x 0 [3,4,0]", "x 0 [0,1,4]")
    assert V.judge_crush(bad, S.CEPH_OSD_TREE, 3, "host") == [
        "1 of 10 inputs put two replicas on one host "
        "(x 0: OSDs [0, 1, 4] on ['storage-01', 'storage-01', 'storage-03'])"]
    assert V.judge_crush(bad, S.CEPH_OSD_TREE, 3, "osd") == []  # distinct OSDs suffice there
    short = S.CRUSHTOOL_MAPPINGS.replace("x 1 [5,0,2]", "x 1 [5,0]")
    assert "fewer than 3 OSDs" in V.judge_crush(short, S.CEPH_OSD_TREE, 3, "host")[0]
    assert V.judge_crush("", S.CEPH_OSD_TREE, 3, "host") == ["crushtool printed no mapping"]


def test_osd_states_and_not_up():
    assert C.ceph_osds_not_up(S.CEPH_OSD_TREE, ["0", 5]) == []
    doc = json.loads(S.CEPH_OSD_TREE)
    next(n for n in doc["nodes"] if n["id"] == 5)["status"] = "down"
    assert C.ceph_osds_not_up(json.dumps(doc), [4, 5, 9]) == [5, 9]


def test_auth_caps_without_the_key():
    caps = C.ceph_auth_caps(S.CEPH_AUTH_MODELS)
    assert caps == {"mon": "allow r", "osd": "allow rw pool=models"}
    assert "key" not in json.dumps(caps).lower()


def test_ceph_volume_devices():
    lvm = {"0": [{"devices": ["/dev/nvme0n1"], "type": "block"}, {"devices": ["/dev/nvme9n1"], "type": "db"}],
           "1": [{"devices": ["/dev/nvme1n1"], "type": "block"}]}
    raw = {"5b0c": {"device": "/dev/nvme2n1", "osd_id": 2, "type": "bluestore"}}
    assert C.ceph_volume_devices(json.dumps(lvm)) == ["/dev/nvme0n1", "/dev/nvme1n1"]
    assert C.ceph_volume_devices(raw) == ["/dev/nvme2n1"]
    assert C.ceph_volume_devices("{}") == [] and C.ceph_volume_devices("") == []


def test_checks_follow_the_plan():
    plan = load_plan("lab")
    hostvars = {h.name: {} for h in plan.ip.hosts}
    checks = V.ceph_checks(plan, hostvars)
    assert [c.id for c in checks if c.host == "storage-01"] == [
        f"storage-01-ceph[{n}]" for n in V.CLUSTER_CHECKS]
    assert {c.host for c in checks if c.name == "client"} == {"gpu-01", "gpu-02"}
    assert all(c.params["pool"] == "models" and c.params["other_pool"] == "engines" for c in checks
               if c.name in V.CLIENT_CHECKS)
    assert V.ceph_checks(plan, {"gpu-01": {}}) == []  # the first monitor is not in the inventory
