"""The verification suite's model store check (llmcluster/verify/model.py): its cases from the plan,
and its gather program run for real on this machine against a model tree in a temporary folder (the
verifier, the manifest and the trtllm-serve unit placed where the plan says, under that folder), whole
and broken in each way the check must report."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from llmcluster.verify import model as MS
from tests.conftest import load_plan
from tests.helpers.model_tree import CORRUPTIONS, corrupt, install_verifier, make_tree, write_manifest


def test_one_check_per_serving_host_of_the_inventory():
    plan = load_plan("lab")
    serving = sorted(plan.serving.layout)
    hv = {h.name: {} for h in plan.ip.hosts}
    checks = MS.model_checks(plan, hv)
    assert [c.host for c in checks] == serving and {c.name for c in checks} == {"manifest"}
    sp = plan.serving.to_vars()
    c = checks[0]
    assert c.id == f"{c.host}:model[manifest]"
    assert (c.params["verifier"], c.params["manifest"], c.params["model_path"]) == (
        "/usr/local/libexec/llmcluster/model-verify", f"/etc/llmcluster/models/{sp['model']}.json", sp["model_path"])
    # hosts the inventory lacks are not checked
    assert MS.model_checks(plan, {serving[0]: {}})[0].host == serving[0]
    assert len(MS.model_checks(plan, {serving[0]: {}})) == 1


@pytest.fixture
def host(tmp_path):
    """A serving host's model store in a folder: verifier, manifest, model, the unit verifying it."""
    verifier = install_verifier(tmp_path / "libexec" / "model-verify")
    model = make_tree(tmp_path / "models" / "org" / "Model")
    manifest = tmp_path / "etc" / "models" / "m.json"
    write_manifest(model, manifest)
    unit = tmp_path / "trtllm-serve.service"
    argv = [str(verifier), "verify", "--manifest", str(manifest), str(model)]
    unit.write_text(f"[Service]\nType=exec\nExecStartPre={shlex.join(argv)}\nExecStart=/bin/true\n")
    check = MS.ModelCheck("gpu-01", "manifest", {"verifier": str(verifier), "manifest": str(manifest),
                                                  "model_path": str(model), "head": True, "unit": str(unit)})
    return check, tmp_path


def gather(check: MS.ModelCheck) -> dict:
    r = subprocess.run([sys.executable, "-c", MS.GATHER, *MS.gather_args(check)], capture_output=True, text=True,
                       check=True)
    return json.loads(r.stdout)


def test_a_good_model_store_passes_and_reports_its_throughput(host):
    check, _ = host
    facts = gather(check)
    assert MS.judge(check, facts) == []
    assert MS.throughput(facts).startswith("verified 5 files, ") and MS.throughput(facts).endswith("GB/s)")


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_corruption_fails_naming_the_file(host, kind):
    check, _ = host
    name = corrupt(Path(check.params["model_path"]), kind)
    (problem,) = MS.judge(check, gather(check))
    assert "does not match its manifest (exit 1)" in problem and f"{name}: " in problem, problem


def test_missing_verifier_manifest_and_unit_gate_are_reported(host):
    check, tmp = host
    Path(check.params["verifier"]).chmod(0o644)
    Path(check.params["manifest"]).unlink()
    unit = Path(check.params["unit"])
    unit.write_text("[Service]\nExecStartPre=-/usr/bin/docker rm --force trtllm-serve\nExecStart=/bin/true\n")
    problems = MS.judge(check, gather(check))
    assert any("model-verify is not executable" in p for p in problems), problems
    assert any("m.json is missing" in p for p in problems), problems
    assert any("does not verify the model before it starts" in p for p in problems), problems
    unit.unlink()
    assert any("no trtllm-serve unit" in p for p in MS.judge(check, gather(check)))


def test_a_worker_rank_has_no_unit_to_check(host):
    check, _ = host
    worker = MS.ModelCheck(check.host, check.name, {**check.params, "head": False})
    Path(check.params["unit"]).unlink()
    facts = gather(worker)
    assert "unit" not in facts and MS.judge(worker, facts) == []


def test_exec_start_pre_parsing():
    text = "ExecStartPre=-/usr/bin/docker rm x\nExecStartPre=/v verify --manifest '/a b.json' /m\nExecStart=/x\n"
    assert MS.exec_start_pre(text) == [["/usr/bin/docker", "rm", "x"],
                                       ["/v", "verify", "--manifest", "/a b.json", "/m"]]
