"""The serving layer's manifests, checked statically: `plan --out` writes them, kubernetes-validate (target
version, strict, a removed API version an error), our JSON schemas for the CRDs, and checkov (zero failed
checks; every waiver with its reason). No Kubernetes API server newer than 1.20 runs here."""

from __future__ import annotations

import copy
import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmcluster.render.kubernetes import kubernetes_plan
from llmcluster.render.kubernetes_check import check_builtin, check_crd, check_objects
from tests.conftest import ROOT, load_plan
from tests.helpers import k8s

CASES = {"baremetal": ("prod-baremetal", k8s.BAREMETAL), "baremetal-lws": ("prod-baremetal", k8s.BAREMETAL_LWS),
         "aws-eks": ("prod-aws", k8s.AWS_EKS)}
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
#: checkov check id -> why it does not apply (none needed today: every check passes).
WAIVERS: dict[str, str] = {}


@functools.cache
def kp(case: str):
    stack, over = CASES[case]
    return kubernetes_plan(load_plan(stack, over))


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """`llmcluster plan --out` for the multi-node bare-metal overlay, through the real command line."""
    d = tmp_path_factory.mktemp("plan") / "out"
    args = [sys.executable, "-m", "llmcluster.cli", "plan", "--stack", "prod-baremetal", "--out", str(d)]
    for o in k8s.BAREMETAL_LWS:
        args += ["--set", o]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout + r.stderr
    return d


def test_plan_out_writes_every_object_and_lists_it_in_its_manifest(out):
    objs = kp("baremetal-lws").objects
    written = sorted((out / "kubernetes").glob("*.yaml"))
    assert [yaml.safe_load(p.read_text()) for p in written] == list(objs)
    ours = json.loads((out / ".llmcluster-export.json").read_text())
    listed = json.dumps(ours)
    assert all(f"kubernetes/{p.name}" in listed for p in written)
    assert not [p for p in written if yaml.safe_load(p.read_text())["kind"] == "Secret"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_validate_for_the_target_version(case):
    p = kp(case)
    assert check_objects(p.objects, p.version) == []


def test_kubernetes_validate_command_line_passes_the_builtin_kinds_without_a_warning(out, tmp_path):
    exe = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("kubernetes-validate is not installed in this environment (pyproject test extra)")
    files = [str(p) for p in sorted((out / "kubernetes").glob("*.yaml"))
             if yaml.safe_load(p.read_text())["kind"] not in ("LeaderWorkerSet", "ScaledObject", "ServiceMonitor",
                                                               "PrometheusRule")]
    r = subprocess.run([exe, "--strict", "-k", "1.33.0", *files], capture_output=True, text=True, timeout=120)
    text = r.stdout + r.stderr
    assert r.returncode == 0 and "WARN" not in text and "ERROR" not in text, text
    assert text.count("passed") == len(files)
    # the command line only warns about an API version the target does not serve: we treat it as an error
    old = tmp_path / "old.yaml"
    old.write_text("apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: x}\n"
                   "spec: {minAvailable: 1}\n")
    r = subprocess.run([exe, "--strict", "-k", "1.33.0", str(old)], capture_output=True, text=True, timeout=60)
    assert "WARN" in r.stdout + r.stderr
    assert check_builtin(yaml.safe_load(old.read_text()), "1.33")


def test_builtin_check_rejects_unknown_fields_and_wrong_types():
    dep = copy.deepcopy(kp("baremetal").get("Deployment", "serving"))
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    assert any("readOnlyRootFilesytem" in p for p in check_builtin(dep, "1.33"))
    pdb = copy.deepcopy(kp("baremetal").get("PodDisruptionBudget", "serving"))
    pdb["spec"]["minAvailable"] = []
    assert check_builtin(pdb, "1.33")


@pytest.mark.parametrize("mutate, words", [
    (lambda o: o["spec"].__setitem__("replica", 2), "replica"),
    (lambda o: o["spec"]["leaderWorkerTemplate"].__setitem__("size", 0), "size"),
    (lambda o: o["spec"]["leaderWorkerTemplate"].__setitem__("restartPolicy", "Always"), "restartPolicy"),
    (lambda o: o["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"].update(maxUnavailable=0, maxSurge=0),
     "rollingUpdateConfiguration"),
    (lambda o: o["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0].__setitem__(
        "imagePulPolicy", "Always"), "imagePulPolicy"),
])
def test_lws_schema_rejects(mutate, words):
    o = copy.deepcopy(kp("baremetal-lws").get("LeaderWorkerSet", "serving"))
    assert check_crd(o, "1.33") == []
    mutate(o)
    problems = check_crd(o, "1.33")
    assert problems and any(words in p for p in problems), problems


@pytest.mark.parametrize("mutate", [
    lambda o: o["spec"]["triggers"][0]["metadata"].pop("threshold"),
    lambda o: o["spec"]["triggers"][0]["metadata"].__setitem__("threshold", 8),
    lambda o: o["spec"].__setitem__("triggers", []),
    lambda o: o["spec"].__setitem__("minReplicas", 1),
    lambda o: o["spec"]["scaleTargetRef"].pop("name"),
])
def test_scaledobject_schema_rejects(mutate):
    o = copy.deepcopy(kp("baremetal").get("ScaledObject", "serving"))
    assert check_crd(o, "1.33") == []
    mutate(o)
    assert check_crd(o, "1.33")


@pytest.mark.parametrize("mutate", [
    lambda o: o["spec"].pop("selector"),
    lambda o: o["spec"].__setitem__("endpoints", []),
    lambda o: o["spec"]["endpoints"][0].__setitem__("scheme", "tls"),
    lambda o: o["spec"]["endpoints"][0]["tlsConfig"].__setitem__("keyFile", "/etc/key"),
    lambda o: o["spec"]["endpoints"][0]["tlsConfig"]["keySecret"].pop("key"),
    lambda o: o["spec"]["endpoints"][0]["relabelings"][0].__setitem__("action", "rename"),
    lambda o: o["spec"]["endpoints"][0].__setitem__("interval", "15 seconds"),
])
def test_servicemonitor_schema_rejects(mutate):
    o = copy.deepcopy(kp("baremetal").get("ServiceMonitor", "gateway"))
    assert check_crd(o, "1.33") == []
    mutate(o)
    assert check_crd(o, "1.33")


def _prometheus_rule():
    from llmcluster.plan.kubernetes import PROMETHEUS_API
    from llmcluster.plan.monitoring import monitoring_plan
    from llmcluster.monitoring.rules import cluster_rule_groups
    from tests.conftest import load_plan

    mp = monitoring_plan(load_plan("lab"))
    return {"apiVersion": PROMETHEUS_API, "kind": "PrometheusRule", "metadata": {"name": "llmcluster-rules",
            "namespace": "llm"}, "spec": {"groups": cluster_rule_groups(mp, {"dcgm", "trtllm", "haproxy"})}}


@pytest.mark.parametrize("mutate", [
    lambda o: o["spec"]["groups"][0].pop("name"),
    lambda o: o["spec"]["groups"][0]["rules"][0].pop("expr"),
    lambda o: o["spec"]["groups"][0]["rules"][0].__setitem__("record", "x"),
    lambda o: o["spec"]["groups"][0]["rules"][0].__setitem__("for", "five minutes"),
    lambda o: o["spec"]["groups"][0]["rules"][0]["labels"].__setitem__("severity", 3),
])
def test_prometheusrule_schema_rejects(mutate):
    o = _prometheus_rule()
    assert check_crd(o, "1.33") == []
    mutate(o)
    assert check_crd(o, "1.33")


def _checkov_scan(objects, folder: Path) -> dict:
    docs = list(objects)
    for o in objects:  # checkov knows no LeaderWorkerSet: its pod templates are scanned as Pods
        if o["kind"] == "LeaderWorkerSet":
            for key in ("leaderTemplate", "workerTemplate"):
                t = o["spec"]["leaderWorkerTemplate"][key]
                docs.append({"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": f"serving-{key.lower()}", "namespace": o["metadata"]["namespace"],
                                          **t["metadata"]}, "spec": t["spec"]})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "all.yaml").write_text(yaml.safe_dump_all(docs))
    args = [str(CHECKOV), "-d", str(folder), "--framework", "kubernetes", "--skip-download", "--quiet", "--compact",
            "-o", "json"]
    if WAIVERS:
        args += ["--skip-check", ",".join(WAIVERS)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    data = json.loads(r.stdout)
    return data[0] if isinstance(data, list) else data


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov's own venv (.tools/checkov, made by scripts/setup.sh) is "
                                                  "absent")
@pytest.mark.parametrize("case", sorted(CASES))
def test_checkov_reports_zero_failed_checks(case, tmp_path):
    res = _checkov_scan(kp(case).objects, tmp_path / "scan")
    failed = [(f["check_id"], f["resource"], f["check_name"]) for f in res["results"]["failed_checks"]]
    assert res["summary"]["passed"] > 100 and failed == []
    assert all(WAIVERS.get(s["check_id"]) for s in res["results"].get("skipped_checks", []))


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov's own venv (.tools/checkov) is absent")
def test_checkov_catches_a_weakened_pod(tmp_path):
    objs = [copy.deepcopy(o) for o in kp("baremetal").objects]
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "serving")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["securityContext"]["allowPrivilegeEscalation"] = True
    c["image"] = "nvcr.io/nvidia/tensorrt-llm/release:1.0.0"
    failed = {f["check_id"] for f in _checkov_scan(objs, tmp_path / "scan")["results"]["failed_checks"]}
    assert {"CKV_K8S_20", "CKV_K8S_43"} <= failed
