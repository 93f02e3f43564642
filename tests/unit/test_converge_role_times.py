"""Converge wall time per role (:class:`llmcluster.converge.RoleTimes`) from synthetic ansible-runner
events: a role's time runs from its first task start to the next task start of another role in that
play, summed over plays; handlers count for their role, tasks of no role for ``PLAY_LEVEL``. ``llmcluster
converge`` prints the slowest roles; ``lab converge`` also keeps them in the state dir for the summary."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import llmcluster.lab
from llmcluster import cli
from llmcluster import converge as C
from llmcluster.lab.phases import CONVERGE_ROLES, load_role_times

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def ev(kind: str, at: float | None, **data) -> dict:
    e = {"event": kind, "event_data": data}
    if at is not None:
        e["created"] = (T0 + timedelta(seconds=at)).isoformat()
    return e


def _events() -> list[dict]:
    """Two plays; play 1: fact gathering (no role), common, a skipped nvidia task, a play-level task,
    common's handler; play 2: gateway where gw-01 fails, then common again."""
    return [
        ev("playbook_on_start", 0.0),
        ev("playbook_on_play_start", 0.0, play="hosts", play_pattern="all"),
        ev("playbook_on_task_start", 0.5, task="Gathering Facts"),
        ev("runner_on_ok", 2.0, host="gpu-01", task="Gathering Facts", res={}),
        ev("playbook_on_task_start", 2.5, task="common : packages", role="common"),
        ev("runner_on_ok", 9.0, host="gpu-01", task="common : packages", res={"changed": True}),
        ev("playbook_on_task_start", 10.5, task="common : sshd", role="common"),
        ev("playbook_on_task_start", 12.5, task="nvidia : driver", role="nvidia"),
        ev("runner_on_skipped", 12.6, host="gpu-01", task="nvidia : driver"),
        ev("playbook_on_task_start", 13.0, task="a play-level task"),
        ev("playbook_on_task_start", 14.0, task="common : restart sshd", role="common", is_conditional=True),
        ev("runner_on_ok", 15.0, host="gpu-01", task="common : restart sshd", res={"changed": True}),
        ev("playbook_on_play_start", 16.0, play="gateway", play_pattern="gateway"),
        ev("playbook_on_task_start", 16.0, task="haproxy : config", role="haproxy"),
        ev("runner_on_failed", 20.0, host="gw-01", task="haproxy : config", res={"msg": "haproxy -c failed"}),
        ev("playbook_on_no_hosts_remaining", 20.5),
        ev("playbook_on_play_start", 21.0, play="again", play_pattern="all"),
        ev("playbook_on_task_start", 21.0, task="common : packages", role="common"),
        ev("playbook_on_stats", 24.0),
    ]


def test_role_times_from_task_starts_summed_over_plays():
    rt = C.RoleTimes(clock=lambda: pytest.fail("the events carry their times"))
    for e in _events():
        rt(e)
    rt.finish()
    assert rt.per_play == {
        ("hosts", C.PLAY_LEVEL): pytest.approx(2.0 + 1.0),  # facts 0.5-2.5, the play-level task 13-14
        ("hosts", "common"): pytest.approx(10.0 + 2.0),  # 2.5-12.5 and its handler 14-16
        ("hosts", "nvidia"): pytest.approx(0.5),  # a skipped task still takes its time
        ("gateway", "haproxy"): pytest.approx(5.0),  # the failed host's play ends at the next play start
        ("again", "common"): pytest.approx(3.0),
    }
    assert list(rt.per_role) == ["common", "haproxy", C.PLAY_LEVEL, "nvidia"]  # the slowest first
    assert rt.per_role["common"] == pytest.approx(15.0)
    assert rt.slowest_line(2) == "slowest roles: common 15.0 s, haproxy 5.0 s (of 23.5 s in tasks)"
    doc = rt.to_dict()
    assert doc["roles"] == {"common": 15.0, "haproxy": 5.0, C.PLAY_LEVEL: 3.0, "nvidia": 0.5}
    assert {"play": "gateway", "role": "haproxy", "seconds": 5.0} in doc["plays"]


def test_a_run_without_stats_closes_at_its_last_event_and_the_clock_is_the_fallback():
    ticks = iter([100.0, 103.0, 104.5])
    rt = C.RoleTimes(clock=lambda: next(ticks))
    rt(ev("playbook_on_play_start", None, play="p"))  # 100
    rt(ev("playbook_on_task_start", None, task="a", role="ceph"))  # 103
    rt(ev("runner_on_ok", None, host="h", task="a"))  # not a boundary: the clock is not read
    rt(ev("playbook_on_task_start", None, task="b", role="ceph"))  # 104.5, then ansible dies
    rt.finish()
    assert rt.per_role == {"ceph": pytest.approx(1.5)}  # the open task counts up to the last event
    rt.finish()  # twice: no change
    assert rt.per_role == {"ceph": pytest.approx(1.5)}


def test_no_tasks_no_line():
    rt = C.RoleTimes()
    rt(ev("playbook_on_play_start", 0.0, play="p"))
    rt(ev("playbook_on_stats", 1.0))
    assert rt.per_role == {} and rt.slowest_line() == ""


def _fake_run_playbook(playbook, inventory, *, on_progress=None, on_event=None, **kw):
    for e in _events():
        if on_event is not None:
            on_event(e)
    stats = {"gw-01": {k: 0 for k in C.STAT_KEYS}}
    stats["gw-01"]["failures"] = 1
    return C.ConvergeResult(rc=2, status="failed", stats=stats, hosts={})


def test_converge_prints_the_slowest_roles(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(C, "run_playbook", _fake_run_playbook)
    inv, book = tmp_path / "inventory.yml", tmp_path / "site.yml"
    inv.write_text("all: {}\n")
    book.write_text("- hosts: all\n")
    assert cli.main(["converge", "--inventory", str(inv), "--playbook", str(book)]) == 4
    out = capsys.readouterr().out
    assert "slowest roles: common 15.0 s, haproxy 5.0 s, (play tasks) 3.0 s, nvidia 0.5 s (of 23.5 s in tasks)" in out
    assert not list(tmp_path.glob("*.json"))  # a plain converge keeps no file


def test_lab_converge_keeps_the_role_times_in_the_state_dir(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(C, "run_playbook", _fake_run_playbook)
    monkeypatch.setattr(llmcluster.lab.LabRuntime, "status", lambda self: [])  # "up"
    (tmp_path / "inventory.yml").write_text("all: {}\n")
    # --sequential: one run (lanes would replay the fake's events once per lane: tests/unit/test_converge_lanes.py)
    assert cli.main(["lab", "converge", "--sequential", "--state-dir", str(tmp_path)]) == 4  # a failed host: fails
    doc = json.loads((tmp_path / CONVERGE_ROLES).read_text())
    assert doc["ok"] is False and doc["check"] is False and doc["roles"]["common"] == 15.0
    assert list(load_role_times(tmp_path / CONVERGE_ROLES)) == ["common", "haproxy", C.PLAY_LEVEL, "nvidia"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONVERGE_ROLES, "inventory.yml"])  # no temp file
