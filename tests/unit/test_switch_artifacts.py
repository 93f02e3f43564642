"""`llmcluster plan --out` writes every switch configuration, and each passes its checker.

Bad switch input (a port map naming an unknown host, a trunk missing a VLAN) stops ``validate``
and ``plan`` with exit 2 and the key path, before anything is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmcluster.nos import NOSES, get
from llmcluster.offline import evaluate
from llmcluster.render.artifacts import write_artifacts
from llmcluster.render.switch.check import check_switch
from tests.conftest import ROOT, load_spec

MALFORMED = ROOT / "tests" / "unit" / "malformed"


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LLMCLUSTER_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "llmcluster.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope="module")
def prod_eval():
    return evaluate(load_spec("prod-baremetal"))


@pytest.mark.parametrize("nos", [None, *NOSES])
def test_plan_out_writes_every_switch_config_and_each_passes_its_checker(prod_eval, tmp_path, nos):
    write_artifacts(prod_eval, tmp_path, switch_os=nos)
    plan = prod_eval.plan
    used = nos or plan.spec.baremetal.switch_os
    files = sorted(p.name for p in (tmp_path / "switches").iterdir())
    assert files == sorted(get(used).file_name(s.name) for s in plan.switches.switches)
    for sw in plan.switches.switches:
        text = (tmp_path / "switches" / get(used).file_name(sw.name)).read_text(encoding="utf-8")
        assert check_switch(sw, text, used, plan.firewall) == [], sw.name
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert set(doc["plan"]["switches"]["switches"]) == {s.name for s in plan.switches.switches}


def test_cli_plan_out_writes_the_lab_leaf(tmp_path):
    out = tmp_path / "out"
    r = cli("plan", "--stack", "lab", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "switches").iterdir()) == ["leaf-01.nvue.yaml"]


@pytest.mark.parametrize(("name", "needle"), [
    ("190-switch-port-map-unknown-host.yaml", "baremetal.port_map.leaf-01.swp5.host: references unknown host "
                                              "'gpu-09'; known: gpu-01..gpu-04, storage-01..storage-03, gw-01..gw-02"),
    ("191-switch-port-map-vlan-missing-from-trunk.yaml", "baremetal.port_map.leaf-01.swp3.vlans: VLAN 'inference' "
                                                         "of gpu-01's NIC bf3 is missing from the trunk leaf-01 swp3"),
])
def test_validate_rejects_bad_port_maps_with_exit_2(name, needle):
    r = cli("validate", str(MALFORMED / name))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert needle in r.stderr + r.stdout


def test_plan_out_writes_nothing_for_a_bad_port_map(tmp_path):
    out = tmp_path / "out"
    r = cli("plan", "--stack", "prod-baremetal", "--set",
            'baremetal.port_map={"leaf-01": {"swp5": {"host": "gpu-09", "nic": "cx7"}}}', "--out", str(out))
    assert r.returncode == 2 and "references unknown host 'gpu-09'" in r.stderr
    assert not out.exists()
