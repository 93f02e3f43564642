"""Converge lanes (llmcluster.converge.site_lanes / run_lanes): site.yml's storage and GPU plays in one
ansible-playbook and the other plays in a second one, at the same time. Real ansible-playbook runs over
local connections (no network)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from llmcluster.converge import (
    FIRST_LANE_ROLES,
    ConvergeResult,
    Lane,
    PlainProgress,
    RoleTimes,
    merge_results,
    merge_role_times,
    run_lanes,
    site_lanes,
)
from tests.conftest import ROOT

ROLES = {"storage-01": "storage", "storage-02": "storage", "gpu-01": "gpu", "gw-01": "gateway", "mon-01": "monitor"}


def test_two_lanes_storage_and_gpu_first_the_rest_second():
    first, second = site_lanes(ROLES)
    assert first == Lane("storage, gpu", ("gpu-01", "storage-01", "storage-02"))
    assert second == Lane("gateway, monitor", ("gw-01", "mon-01"))
    assert not set(first.hosts) & set(second.hosts)


@pytest.mark.parametrize("roles", [
    {"storage-01": "storage", "gpu-01": "gpu"},  # nothing for the second lane
    {"gw-01": "gateway", "mon-01": "monitor"},  # nothing for the first
    {},
])
def test_one_lane_without_a_limit_when_a_lane_would_be_empty(roles):
    assert site_lanes(roles) == [Lane("site", ())]


def test_site_yml_has_the_plays_the_lanes_were_drawn_for():
    """The lanes are safe because of what each play of site.yml needs (converge.FIRST_LANE_ROLES' comment). A
    new play, or one on other hosts, must be placed in a lane deliberately: this fails until it is."""
    plays = yaml.safe_load((ROOT / "ansible" / "site.yml").read_text())
    assert [p["hosts"] for p in plays] == ["storage", "gpu", "gateway", "monitor",
                                           "all:!storage:!gpu:!gateway:!monitor"]
    assert tuple(p["hosts"] for p in plays[:2]) == FIRST_LANE_ROLES  # one lane, in this order


# Each play records when its host's task started and ended (2 s apart), for the overlap checks.
_TIMED = """\
    - name: Start
      ansible.builtin.shell: >-
        date +%s.%N > {{ out }}/{{ inventory_hostname }}.start; sleep 2;
        date +%s.%N > {{ out }}/{{ inventory_hostname }}.end
"""
PLAYBOOK = f"""\
- name: First lane
  hosts: storage
  gather_facts: false
  tasks:
{_TIMED}\
    - name: Fail on request
      ansible.builtin.fail:
        msg: "asked to fail"
      when: fail_here | default(false) | bool

- name: Second lane
  hosts: gateway
  gather_facts: false
  tasks:
{_TIMED}"""


@pytest.fixture()
def project(tmp_path: Path):
    pb = tmp_path / "pb.yml"
    pb.write_text(PLAYBOOK)
    py = sys.executable
    inv = tmp_path / "inv.ini"
    inv.write_text(f"[storage]\nalpha ansible_connection=local ansible_python_interpreter={py}\n"
                   f"[gateway]\nbeta ansible_connection=local ansible_python_interpreter={py}\n")
    out = tmp_path / "out"
    out.mkdir()
    return pb, inv, out


def _interval(out: Path, host: str) -> tuple[float, float]:
    return float((out / f"{host}.start").read_text()), float((out / f"{host}.end").read_text())


def test_lanes_run_at_the_same_time_and_their_results_merge(project):
    pb, inv, out = project
    lanes = site_lanes({"alpha": "storage", "beta": "gateway"})
    seen: list[set[str]] = []
    events: dict[str, list[str]] = {}

    def on_event_for(lane):
        return lambda e: events.setdefault(lane.name, []).append(e.get("event", ""))

    r = run_lanes(pb, inv, lanes, extravars={"out": str(out)}, on_progress=lambda hosts: seen.append(set(hosts)),
                  on_event_for=on_event_for)
    assert r.ok, (r.rc, r.hosts)
    assert sorted(r.stats) == ["alpha", "beta"]
    a, b = _interval(out, "alpha"), _interval(out, "beta")
    assert a[0] < b[1] and b[0] < a[1], f"the lanes did not overlap: {a} {b}"
    assert {"alpha", "beta"} in seen  # the progress callback saw both lanes' hosts together
    assert set(events) == {"storage", "gateway"} and all("playbook_on_stats" in v for v in events.values())


def test_sequential_is_one_run_and_the_lanes_do_not_overlap(project):
    pb, inv, out = project
    r = run_lanes(pb, inv, [Lane("site", ())], extravars={"out": str(out)})
    assert r.ok and sorted(r.stats) == ["alpha", "beta"]
    a, b = _interval(out, "alpha"), _interval(out, "beta")
    assert a[1] <= b[0], "one run plays its plays one after the other"


def test_a_failure_in_one_lane_fails_the_converge_and_the_other_lane_still_runs(project):
    pb, inv, out = project
    r = run_lanes(pb, inv, site_lanes({"alpha": "storage", "beta": "gateway"}),
                  extravars={"out": str(out), "fail_here": True})
    assert not r.ok and r.rc != 0
    assert r.failed_hosts == ["alpha"] and r.hosts["alpha"].last_error == "asked to fail"
    assert r.stats["beta"]["ok"] == 1 and (out / "beta.end").is_file()


def test_lanes_refuse_a_limit_of_their_own(project):
    pb, inv, out = project
    with pytest.raises(ValueError, match="limit"):
        run_lanes(pb, inv, site_lanes({"alpha": "storage", "beta": "gateway"}), limit="alpha")


def test_merged_results_keep_the_first_failure():
    ok = ConvergeResult(rc=0, status="successful", stats={"a": {"ok": 3}})
    bad = ConvergeResult(rc=2, status="failed", stats={"b": {"ok": 1, "failures": 1}})
    m = merge_results([ok, bad])
    assert (m.rc, m.status, sorted(m.stats), m.failed_hosts) == (2, "failed", ["a", "b"], ["b"])
    assert merge_results([ok]).ok


def test_role_times_of_lanes_add_up():
    one, two = RoleTimes(), RoleTimes()
    one.per_play = {("storage", "common"): 10.0, ("storage", "ceph"): 5.0}
    two.per_play = {("gateway", "common"): 4.0}
    assert merge_role_times([one, two]).per_role == {"common": 14.0, "ceph": 5.0}


def test_plain_progress_names_the_lane_and_skips_the_plays_of_the_other_lane():
    lines: list[str] = []
    ticks = iter(x * 1.5 for x in range(100))
    p = PlainProgress(lines.append, lambda: next(ticks), prefix="[storage, gpu] ", start=-2.0)
    p({"event": "playbook_on_play_start",
       "event_data": {"play": "Converge the storage nodes", "play_pattern": "storage"}})
    assert lines == []  # a lane's play prints when one of its hosts shows: most match none of them
    p({"event": "runner_on_ok", "event_data": {"host": "storage-01", "task": "t", "res": {"changed": True}}})
    p({"event": "playbook_on_play_start", "event_data": {"play": "Converge the gateways", "play_pattern": "gateway"}})
    p({"event": "playbook_on_stats", "event_data": {}})
    assert lines == [  # times from the converge's start, shared by the lanes (-2.0 here)
        "[    3.5s] [storage, gpu] play 'Converge the storage nodes' on storage",
        "[    6.5s] [storage, gpu]   storage-01: play 'Converge the storage nodes' done in 3.0s: ok 1, changed 1",
        "[   11.0s] [storage, gpu] playbook done",
    ]


def test_lab_converge_runs_one_playbook_per_lane_on_its_hosts(monkeypatch, tmp_path, capsys):
    import threading

    import llmcluster.converge as C
    import llmcluster.lab
    from llmcluster import cli
    from llmcluster.lab.phases import CONVERGE_ROLES

    calls: list[tuple[str, str]] = []
    lock = threading.Lock()

    def fake(playbook, inventory, *, limit=None, on_progress=None, on_event=None, **kw):
        with lock:
            calls.append((Path(playbook).name, limit))
        for kind, t, data in [("playbook_on_play_start", 0.0, {"play": "p"}), ("playbook_on_task_start", 1.0,
                              {"task": "t", "role": "common"}), ("playbook_on_stats", 3.0, {})]:
            if on_event is not None:
                on_event({"event": kind, "created": f"2026-12-07T00:00:0{int(t)}+00:00", "event_data": data})
        hosts = limit.split(",") if limit else ["gw-01"]
        return C.ConvergeResult(rc=0, status="successful", stats={h: {k: 0 for k in C.STAT_KEYS} for h in hosts})

    monkeypatch.setattr(C, "run_playbook", fake)
    monkeypatch.setattr(llmcluster.lab.LabRuntime, "status", lambda self: [])  # "up"
    (tmp_path / "inventory.yml").write_text("all: {}\n")
    assert cli.main(["lab", "converge", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 lanes at once" in out
    assert sorted(calls) == [("site.yml", "gpu-01,gpu-02,storage-01,storage-02,storage-03"),
                             ("site.yml", "gw-01,mon-01")]
    doc = json.loads((tmp_path / CONVERGE_ROLES).read_text())
    assert doc["ok"] is True and doc["roles"] == {"common": 4.0}  # 2 s in each lane, summed
    calls.clear()
    assert cli.main(["lab", "converge", "--sequential", "--state-dir", str(tmp_path)]) == 0
    assert calls == [("site.yml", None)]
