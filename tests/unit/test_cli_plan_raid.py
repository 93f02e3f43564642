"""``llmcluster plan`` reports the model cache per node: the RAID, its read bound, the model load
time it gives and the space the model needs there (plan.storage.raid)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, load_plan


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}  # rich fits tables to the terminal
    env.pop("LLMCLUSTER_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "llmcluster.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300, check=False)


def test_plan_shows_the_load_time_per_node():
    plan = load_plan("prod-baremetal")
    raid = plan.storage.raid
    r = run("plan", "--stack", "prod-baremetal")
    assert r.returncode == 0, r.stderr
    assert "model cache: local NVMe RAID of pool gpu" in r.stdout
    rows = [line for line in r.stdout.splitlines() if "RAID 10, 8 x 3,840 GB, LUKS" in line]
    assert [row.split("│")[1].strip() for row in rows] == [h.host for h in raid.hosts]
    for row in rows:
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells[2:] == ["15,360 GB", f"{raid.required_bytes / 1e9:,.0f} GB", "54.4 GB/s",
                             f"{raid.load_time_s:.1f} s"], cells


def test_plan_json_carries_the_raid_space_and_load_time():
    r = run("plan", "--stack", "lab", "--json")
    assert r.returncode == 0, r.stderr
    raid = json.loads(r.stdout)["plan"]["storage"]["raid"]
    assert raid["load_time_s"] > 0 and raid["fits"] is True
    assert raid["required_bytes"] == raid["checkpoint_bytes"] + raid["engine_cache_bytes"] + raid["reserve_bytes"]


def test_plan_refuses_a_model_that_does_not_fit_the_raid():
    r = run("plan", "--stack", "prod-baremetal", "--set", "pools.gpu.nvme.size_gb=100")
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.returncode == 2 and "storage.raid: deepseek-r1 fp8 needs" in r.stderr + r.stdout
