"""The pure parts of bench/converge_scaling.py: no lab, no root, no Ansible run."""

from __future__ import annotations

import argparse
import importlib.util
import sys

import pytest
import yaml

from tests.conftest import ROOT, load_plan

_spec = importlib.util.spec_from_file_location("converge_scaling", ROOT / "bench" / "converge_scaling.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("converge_scaling", bench)
_spec.loader.exec_module(bench)

PLAYS = yaml.safe_load((ROOT / "ansible" / "site.yml").read_text())


@pytest.mark.parametrize("kind", ["stack", "namespace", "nspawn"])
@pytest.mark.parametrize("n", [2, 3, 4, 8, 16])
def test_overrides_validate_and_give_exactly_n_hosts(n, kind):
    plan = load_plan("lab", tuple(bench.overrides_for(n, kind)))  # load_stack_file validates: SpecError otherwise
    assert len(plan.ip.hosts) == n
    assert all(v.prefixlen == 24 for v in plan.ip.vlans.values())  # the lab's /24 VLANs are kept
    if kind != "stack":
        lab = plan.spec.lab
        kinds = {(lab.host(h.name, h.pool).kind if lab else "namespace") for h in plan.ip.hosts}
        assert kinds == {kind}


def test_overrides_reject_a_single_host_and_unknown_kinds():
    with pytest.raises(ValueError):
        bench.overrides_for(1)
    with pytest.raises(ValueError):
        bench.overrides_for(4, "docker")


@pytest.mark.parametrize(("n", "batches"), [(2, 2), (4, 4), (8, 8), (16, 7)])
def test_serial_batches_of_site_yml(n, batches):
    from llmcluster.inventory import build_inventory

    groups, hosts = bench.inventory_groups(build_inventory(load_plan("lab", tuple(bench.overrides_for(n))).in_lab()))
    plays = bench.play_batches(PLAYS, groups, hosts)
    assert sum(c for _, c, _ in plays) == n  # every host is in exactly one play
    assert sum(b for _, _, b in plays) == batches


def test_batch_size_follows_ansible_rounding():
    assert bench.batch_size("25%", 14) == 3  # 3.5 rounds down
    assert bench.batch_size("25%", 2) == 1  # at least one
    assert bench.batch_size(1, 5) == 1
    assert bench.batch_size(None, 7) == 7
    assert bench.batch_size("50%", 0) == 0


def test_host_patterns():
    groups = {"gpu": ["g1", "g2"], "storage": ["s1"], "gateway": ["gw1"]}
    hosts = ["g1", "g2", "gw1", "o1", "s1"]
    assert bench._select("gpu", groups, hosts) == ["g1", "g2"]
    assert bench._select("all:!storage:!gpu:!gateway", groups, hosts) == ["o1"]
    assert bench._select("gpu:storage", groups, hosts) == ["g1", "g2", "s1"]


def test_forks_groups_and_parsing():
    assert bench.parse_forks("5,10,20,N", 16) == [5, 10, 16, 20]
    assert bench.fork_groups([5, 10, 16, 20], 3) == [(3, [5, 10, 16, 20])]
    assert bench.fork_groups([5, 10, 16, 20], 14) == [(5, [5]), (10, [10]), (14, [16, 20])]
    assert bench.parse_pipelining("on,off,on") == [True, False]
    assert bench.parse_sizes("16,2,4") == [2, 4, 16]
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_pipelining("maybe")


def test_playbook_variants_leave_the_original_alone():
    free = bench.playbook_variant(PLAYS, drop_serial=True, strategy="free")
    assert all("serial" not in p and p["strategy"] == "free" for p in free)
    assert any("serial" in p for p in PLAYS)
    assert [p["hosts"] for p in free] == [p["hosts"] for p in PLAYS]


def _rows():
    return bench.add_ratios([
        {"hosts": 2, "batches": 2, "tasks_per_host": 60, "up_s": 0.7, "converge_s": 20.0, "reconverge_s": 10.0},
        {"hosts": 4, "batches": 4, "tasks_per_host": 60, "up_s": 1.4, "converge_s": 30.0, "reconverge_s": 20.0},
    ])


def test_ratios_and_size_table():
    rows = _rows()
    assert rows[1]["converge_ratio"] == 1.5 and rows[1]["converge_per_host_ratio"] == 0.75
    assert rows[1]["reconverge_ratio"] == 2.0 and rows[1]["reconverge_per_host_ratio"] == 1.0
    table = bench.size_table_rows(rows)
    assert all(len(r) == len(bench.SIZE_COLUMNS) for r in table)
    assert table[1][:8] == ["4", "4", "60", "1.4", "30.0", "7.50", "1.50", "0.75"]
    md = bench.markdown_table(bench.SIZE_COLUMNS, table)
    assert md.count("\n") == 3 and md.startswith("| hosts |")


def _sweep():
    return [
        {"playbook": bench.SITE, "forks": [5, 16, 20], "effective_forks": 3, "run_forks": 20, "pipelining": True,
         "reconverge_s": 10.0, "runs": [10.0], "reused": True},
        {"playbook": bench.SITE, "forks": [5, 16, 20], "effective_forks": 3, "run_forks": 20, "pipelining": False,
         "reconverge_s": 13.0, "runs": [13.0], "reused": False},
        {"playbook": bench.NOSERIAL, "forks": [5], "effective_forks": 5, "run_forks": 5, "pipelining": True,
         "reconverge_s": 8.0, "runs": [8.0], "reused": False},
    ]


def test_best_setting_and_conclusions():
    sweep = _sweep()
    assert bench.best_setting(sweep, bench.SITE)["pipelining"] is True
    assert bench.best_setting(sweep)["playbook"] == bench.NOSERIAL
    table = bench.sweep_table_rows(sweep)
    assert all(len(r) == len(bench.SWEEP_COLUMNS) for r in table)
    assert table[1][5] == "1.30" and table[0][-1].endswith("(size run)")
    lines = bench.conclusions(_rows(), sweep, [], {"forks": 20, "pipelining": True, "ssh_args": ""})
    assert any("that is ansible.cfg's setting" in line for line in lines)
    assert any("pipelining off costs 1.30x" in line for line in lines)
    assert any("1.25x faster" in line for line in lines)


def test_markdown_report_has_every_section():
    rows = _rows()
    rows[-1].update(sweep=_sweep(), variants=[], converge_slowest_tasks=[("Set the kernel parameters", 4.2)],
                    reconverge_slowest_tasks=[])
    rows[0].update(converge_slowest_tasks=[], reconverge_slowest_tasks=[])
    for r in rows:
        r["overrides"] = bench.overrides_for(r["hosts"])
    doc = {"date": "2025-01-01", "machine": "2 cores", "ansible": "2.19", "total_s": 1.0,
           "current": {"forks": 20, "pipelining": True, "ssh_args": "-o ControlMaster=auto"},
           "rows": rows, "conclusions": ["x"]}
    md = bench.markdown_report(doc)
    for heading in ("## Converge and re-converge vs. lab size", "## Settings sweep", "## Conclusions"):
        assert heading in md
    assert "Set the kernel parameters 4.2" in md


def test_current_settings_read_ansible_cfg():
    cur = bench.current_settings()
    assert isinstance(cur["forks"], int) and cur["forks"] >= 1
    assert isinstance(cur["pipelining"], bool)


def test_sweep_groups_forks_and_reuses_the_size_run(monkeypatch, tmp_path):
    calls = []

    def fake(playbook, inventory, what, repeat, **kw):
        calls.append((playbook.name, kw.get("forks"), kw.get("pipelining"), kw.get("ssh_args")))
        t = 10.0 if kw.get("pipelining") else 13.0
        if playbook.name != "site.yml":
            t -= min(kw["forks"], 14) / 10  # more forks help only without serial
        return {"reconverge_s": t, "runs": [t], "controller_cpu_s": 1.0, "hosts_cpu_s": 2.0, "others_cpu_s": 0.0,
                "busy": 0.5}

    monkeypatch.setattr(bench, "median_reconverge", fake)
    monkeypatch.setattr(bench, "current_settings", lambda: {"forks": 20, "pipelining": True, "ssh_args": "",
                                                            "strategy": "mitogen_linear"})
    from llmcluster.inventory import build_inventory

    groups, hosts = bench.inventory_groups(build_inventory(load_plan("lab", tuple(bench.overrides_for(16))).in_lab()))
    batches = bench.play_batches(PLAYS, groups, hosts)
    baseline = bench.Run(seconds=10.0, controller_cpu_s=1.0, hosts_cpu_s=2.0, others_cpu_s=0.0, busy=0.5,
                         tasks_per_host=50)
    plan = bench.SweepPlan(forks=["5", "20", "N"], pipelining=[True, False], repeat=1, variants=True, full=False)
    rows, variants = bench.run_sweep(16, tmp_path / "inv.yml", PLAYS, batches, plan, baseline, tmp_path,
                                     lambda _m: None, frozenset())
    site = [r for r in rows if r["playbook"] == bench.SITE]
    assert [(r["forks"], r["effective_forks"], r["pipelining"], r["reused"]) for r in site] == [
        ([5, 16, 20], 3, True, True), ([5, 16, 20], 3, False, False)]
    free = [r for r in rows if r["playbook"] == bench.NOSERIAL]
    assert [(r["forks"], r["effective_forks"], r["pipelining"]) for r in free] == [
        ([5], 5, True), ([16, 20], 14, True)]  # at site.yml's best pipelining only
    assert [v["variant"] for v in variants] == [
        "site.yml (a copy) with Ansible's linear strategy, not ansible.cfg's mitogen_linear",
        "site.yml, SSH without ControlMaster/ControlPersist", f"{bench.NOSERIAL}, strategy: free (Ansible's)"]
    assert calls[-3][0] == "site-linear.yml" and variants[0]["vs"] == bench.SITE
    assert all(p["strategy"] == "linear" and p.get("serial") == q.get("serial")
               for p, q in zip(yaml.safe_load((tmp_path / "site-linear.yml").read_text()), PLAYS, strict=True))
    assert calls[-2][3] == "-o ControlMaster=no" and calls[-1][0] == "site-noserial-free.yml"
    copy = yaml.safe_load((tmp_path / "site-noserial.yml").read_text())
    assert all("serial" not in p for p in copy)


def test_cpu_meters_read_this_machine():
    import os

    busy, total = bench.machine_busy_s()
    assert 0 <= busy <= total
    ns = os.readlink("/proc/self/ns/net")
    assert bench.netns_cpu_s(frozenset({int(ns[ns.index("[") + 1:-1])})) > 0  # this process at least
    assert bench.netns_cpu_s(frozenset()) == 0
