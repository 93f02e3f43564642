"""The lab's Ceph cluster (roles/ceph) after the session's converge: real daemons on the three nspawn
storage hosts (monitors, managers, BlueStore OSDs on files: the lab simulation of the planned NVMe
devices).

* the verification suite's Ceph checks pass (HEALTH_OK, pools as planned, every PG active+clean,
  CRUSH puts 3 replicas on 3 hosts, each GPU node's round trip and the limits of its key);
* one OSD stopped (``systemctl stop ceph-osd@N``): ``llmcluster verify`` fails ``ceph[health]``
  with HEALTH_WARN naming the down OSD, data written before is still readable, and after the OSD
  is started again the cluster recovers to HEALTH_OK within a bounded wait;
* the snapshot timer's service makes a pool snapshot of the model repository, and a run 8 days
  later prunes it (retention 7 days) while keeping its own;
* measured: HEALTH_OK after the converge, the daemons' resident memory (printed with the lab timings).
"""

from __future__ import annotations

import json
import secrets
import time

import pytest

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.ceph import (
    ceph_osd_hosts,
    ceph_pools,
    ceph_status,
)
from llmcluster.verify import ceph as CE
from llmcluster.verify.remote import Inventory
from llmcluster.verify.suite.plugin import TIMINGS
from tests.helpers.verify_cli import failed_checks, verify_cli

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("lab")]

RECOVERY_S = 240


def _ceph(lab, host: str, *argv: str, timeout: float = 90, check: bool = True):
    return lab.exec(host, ["ceph", *argv, "--connect-timeout", "20"], timeout=timeout, check=check)


def _status(lab, host: str) -> dict:
    return ceph_status(_ceph(lab, host, "status", "--format", "json").stdout)


def _wait_health_ok(lab, host: str, limit: float) -> tuple[float, dict]:
    """HEALTH_OK, every OSD up and every PG active+clean (what the suite's checks ask). Health alone is
    not enough: right after an OSD restart the monitors may report HEALTH_OK from PG statistics the
    manager has not refreshed yet, while ``ceph[pgs]`` already sees PGs active+undersized."""
    t0 = time.monotonic()
    st: dict = {}
    since = None  # held since (two looks more than one manager stats period apart: 5 s by default)
    while time.monotonic() - t0 < limit:
        st = _status(lab, host)
        if (st["health"] == "HEALTH_OK" and st["num_up_osds"] == st["num_osds"]
                and st["pgs_by_state"] == {"active+clean": st["num_pgs"]}):
            since = time.monotonic() if since is None else since
            if time.monotonic() - since >= 6:
                return time.monotonic() - t0, st
        else:
            since = None
        time.sleep(2)
    raise AssertionError(f"no HEALTH_OK with every PG active+clean within {limit:.0f}s: {st.get('health')} "
                         f"{st.get('checks')} {st.get('pgs_by_state')}")


@pytest.fixture(scope="module")
def ceph_lab(request):
    inventory = request.getfixturevalue("lab_converged")
    lab = request.getfixturevalue("lab")
    ceph = lab.plan.storage.ceph
    assert ceph is not None, "the lab stack plans a Ceph cluster"
    waited, _ = _wait_health_ok(lab, ceph.mons[0], 300)
    TIMINGS["ceph HEALTH_OK after the converge (extra wait)"] = f"{waited:.1f}s"
    return lab, inventory, ceph


def test_the_suites_ceph_checks_pass(ceph_lab):
    lab, inventory, ceph = ceph_lab
    inv = Inventory(inventory)
    checks = CE.ceph_checks(lab.plan, inv.all_hostvars)
    names = sorted({c.name for c in checks})
    assert names == sorted(CE.CLUSTER_CHECKS + CE.CLIENT_CHECKS), names
    assert {c.host for c in checks if c.name == "client"} == {h.name for h in lab.plan.ip.hosts if h.role == "gpu"}
    problems = {c.id: CE.run_check(c, inv.host(c.host)) for c in checks}
    assert not any(problems.values()), json.dumps({k: v for k, v in problems.items() if v}, indent=1)
    st = _status(lab, ceph.mons[0])
    assert sorted(st["quorum_names"]) == sorted(ceph.mons)
    assert st["num_osds"] == st["num_up_osds"] == st["num_in_osds"] == ceph.osd_count
    pools = ceph_pools(_ceph(lab, ceph.mons[0], "osd", "pool", "ls", "detail", "--format", "json").stdout)
    for p in ceph.pools:
        assert pools[p.name]["pg_autoscale_mode"] == "off", pools[p.name]
    # Memory of the daemons (resident set, MB), per kind, on every storage host.
    rss: dict[str, list[int]] = {}
    for host in ceph.hosts:
        out = lab.exec(host, ["ps", "-o", "rss=,comm=", "-C", "ceph-mon,ceph-mgr,ceph-osd"], check=True).stdout
        for line in out.splitlines():
            kb, comm = line.split()
            rss.setdefault(comm, []).append(int(kb) // 1024)
    TIMINGS["ceph daemons RSS MB"] = json.dumps(rss, sort_keys=True)


def test_a_stopped_osd_warns_keeps_data_and_recovers(ceph_lab):
    lab, inventory, ceph = ceph_lab
    mon, pool = ceph.mons[0], ceph.pools[0].name
    obj, data = f"lab-test-{secrets.token_hex(6)}", secrets.token_hex(256)
    lab.exec(mon, ["sh", "-c", f'printf %s "$1" | rados -p {pool} put {obj} -', "put", data], check=True)
    tree = _ceph(lab, mon, "osd", "tree", "--format", "json").stdout
    victim_host = ceph.hosts[-1]
    osd = min(o for o, h in ceph_osd_hosts(tree).items() if h == victim_host)
    try:
        lab.exec(victim_host, ["systemctl", "stop", f"ceph-osd@{osd}"], check=True)
        deadline = time.monotonic() + 60
        while _status(lab, mon)["num_up_osds"] == ceph.osd_count and time.monotonic() < deadline:
            time.sleep(1)
        rc, doc, out = verify_cli(inventory, "--json", "-k", "ceph")
        assert rc == 5, f"verify with osd.{osd} stopped must exit 5, got {rc}:\n{out[-3000:]}"
        failed = failed_checks(doc)
        health = failed.get(f"{mon} ceph[health]", "")
        assert "HEALTH_WARN" in health and "OSD_DOWN" in health, failed
        got = lab.exec(mon, ["rados", "-p", pool, "get", obj, "-"], timeout=60, check=True)
        assert got.stdout == data, "data written before the OSD stopped must still be readable"
    finally:
        lab.exec(victim_host, ["systemctl", "start", f"ceph-osd@{osd}"])
    waited, st = _wait_health_ok(lab, mon, RECOVERY_S)
    TIMINGS["ceph recovery to HEALTH_OK after an OSD restart"] = f"{waited:.1f}s"
    assert st["num_up_osds"] == ceph.osd_count
    rc, doc, out = verify_cli(inventory, "--json", "-k", "ceph")
    assert rc == 0, f"after the restart verify must pass, got {rc}:\n{out[-3000:]}"
    lab.exec(mon, ["rados", "-p", pool, "rm", obj], check=True)


def test_daily_snapshots_are_taken_and_pruned_after_seven_days(ceph_lab):
    lab, _, ceph = ceph_lab
    mon = ceph.mons[0]
    timer = lab.exec(mon, ["systemctl", "is-enabled", "llmcluster-ceph-snapshot.timer"])
    assert timer.stdout.strip() == "enabled", timer.stdout + timer.stderr
    snapshot_pools = [p.name for p in ceph.pools if p.application != "rbd"]
    assert snapshot_pools, "the lab plans a RADOS pool for the model repository"

    def snaps() -> dict[str, list[str]]:
        pools = ceph_pools(_ceph(lab, mon, "osd", "pool", "ls", "detail", "--format", "json").stdout)
        return {p: [s["name"] for s in pools[p]["snaps"]] for p in snapshot_pools}

    before = snaps()
    lab.exec(mon, ["systemctl", "start", "llmcluster-ceph-snapshot.service"], timeout=120, check=True)
    after = snaps()
    made = {p: sorted(set(after[p]) - set(before[p])) for p in snapshot_pools}
    assert all(len(v) == 1 and v[0].startswith("llmcluster-") for v in made.values()), made
    later = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 8 * 86400))
    res = lab.exec(mon, ["/usr/local/sbin/llmcluster-ceph-snapshot", "--now", later], timeout=120, check=True)
    report = json.loads(res.stdout)
    pruned = snaps()
    for p in snapshot_pools:
        assert made[p][0] not in pruned[p], f"{p}: the 8-day-old snapshot {made[p][0]} was kept: {pruned[p]}"
        assert f"{p}@{made[p][0]}" in report["removed"]
        new = [c.split("@", 1)[1] for c in report["created"] if c.startswith(f"{p}@")]
        assert len(new) == 1 and new[0] in pruned[p], f"{p}: the later run's snapshot {new} is missing: {pruned[p]}"
        assert not [s for s in before[p] if s.startswith("llmcluster-") and s in pruned[p]], "older ones pruned too"
        _ceph(lab, mon, "osd", "pool", "rmsnap", p, new[0])
