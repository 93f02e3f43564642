"""The Kubernetes serving layer's manifests (llmcluster.plan.kubernetes): pure, no API server."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import textwrap

import pytest

from llmcluster.errors import SpecError
from llmcluster.plan.kubernetes import (LWS_API, firewall_pod_matrix, leader_script, netpol_matrix,
                                        pdb_min_available, startup_budget_s)
from llmcluster.render.kubernetes import kubernetes_plan
from tests.conftest import load_plan, load_spec
from tests.helpers import k8s

CASES = {"baremetal": ("prod-baremetal", k8s.BAREMETAL), "baremetal-lws": ("prod-baremetal", k8s.BAREMETAL_LWS),
         "aws-eks": ("prod-aws", k8s.AWS_EKS)}


@functools.cache
def kp(case: str):
    stack, over = CASES[case]
    plan = load_plan(stack, over)
    return plan, kubernetes_plan(plan)


def pod_specs(obj):
    if obj["kind"] == "Deployment":
        return [obj["spec"]["template"]["spec"]]
    t = obj["spec"]["leaderWorkerTemplate"]
    return [t["leaderTemplate"]["spec"], t["workerTemplate"]["spec"]]


def test_systemd_stacks_have_no_kubernetes_layer():
    assert kubernetes_plan(load_plan("prod-baremetal")) is None


@pytest.mark.parametrize("replicas", range(1, 9))
@pytest.mark.parametrize("group", [1, 2, 3, 4, 8])
def test_pdb_keeps_every_replica_but_one_in_whole_groups(replicas, group):
    got = pdb_min_available(replicas, group)
    if replicas == 1:
        assert got is None
        return
    assert got == (replicas - 1) * group
    # evicting one whole group is allowed, one pod more is not
    total = replicas * group
    assert total - group >= got and total - group - 1 < got


def test_pdb_refuses_nonsense():
    with pytest.raises(ValueError):
        pdb_min_available(0, 1)
    with pytest.raises(ValueError):
        pdb_min_available(2, 0)


def test_one_replica_makes_no_pdb_and_says_so():
    plan = load_plan("prod-baremetal", k8s.BAREMETAL + ('kubernetes.autoscaling={"min_replicas": 1}',))
    p = kubernetes_plan(plan)
    assert not [o for o in p.by_kind("PodDisruptionBudget") if o["metadata"]["name"] == "serving"]
    assert any("no PodDisruptionBudget" in w for w in p.warnings)


@pytest.mark.parametrize("case, workload, group", [("baremetal", "Deployment", 1),
                                                    ("baremetal-lws", "LeaderWorkerSet", 2),
                                                    ("aws-eks", "Deployment", 1)])
def test_workload_kind_and_group_size_follow_the_plan(case, workload, group):
    plan, p = kp(case)
    assert p.workload == workload and p.group_size == group == plan.serving.nodes
    pdb = p.get("PodDisruptionBudget", "serving")
    assert pdb["spec"]["minAvailable"] == (p.replicas - 1) * group
    obj = p.get(workload, "serving")
    if workload == "LeaderWorkerSet":
        assert obj["apiVersion"] == LWS_API
        assert obj["spec"]["leaderWorkerTemplate"]["size"] == group
        assert obj["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"] == {"maxUnavailable": 0, "maxSurge": 1}
    else:
        assert obj["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_namespace_enforces_pod_security_restricted_at_the_target_version():
    _, p = kp("baremetal")
    labels = p.get("Namespace", "llm")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "v1.33"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_pod_is_hardened_limited_and_spread(case):
    plan, p = kp(case)
    pods = [ps for o in p.objects if o["kind"] in ("Deployment", "LeaderWorkerSet") for ps in pod_specs(o)]
    assert pods
    for ps in pods:
        assert ps["securityContext"]["runAsNonRoot"] is True
        assert ps["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert ps["automountServiceAccountToken"] is False
        anti = ps["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
        for c in ps.get("initContainers", []) + ps["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
            assert c["resources"]["limits"] == c["resources"]["requests"]
            assert {"cpu", "memory"} <= set(c["resources"]["limits"])
            assert "@sha256:" in c["image"]
    serving = [c for ps in pods for c in ps["containers"] if c["name"] == "trtllm"]
    assert serving and all(c["resources"]["limits"]["nvidia.com/gpu"] == str(plan.serving.gpus_per_node)
                           for c in serving)


def test_startup_budget_comes_from_the_planned_load_time():
    plan, p = kp("baremetal")
    load = plan.storage.raid.load_time_s
    c = p.get("Deployment", "serving")["spec"]["template"]["spec"]["containers"][0]
    sp = c["startupProbe"]
    assert sp["periodSeconds"] * sp["failureThreshold"] >= startup_budget_s(load) >= 3 * load
    assert "/health" in " ".join(sp["exec"]["command"]) and "/health" in " ".join(c["livenessProbe"]["exec"]["command"])
    assert startup_budget_s(1000.0) == 3300 and startup_budget_s(1.0) == 600


def test_init_container_checks_the_pinned_manifest_then_verifies_the_model():
    plan, p = kp("baremetal")
    spec = plan.spec.kubernetes
    init = p.get("Deployment", "serving")["spec"]["template"]["spec"]["initContainers"][0]
    cmd = init["command"][-1]
    assert f"{spec.pins[0].manifest_sha256}  /etc/llmcluster/models/deepseek-r1.json" in cmd
    assert "sha256sum -c -" in cmd and " verify " in cmd and "--manifest" in cmd
    assert init["image"] == spec.pins[0].image
    verifier = p.get("ConfigMap", "model-verifier")["data"]["model_verify.py"]
    assert "def main(" in verifier and '__name__ == "__main__"' in verifier


STUB = textwrap.dedent("""\
    #!/bin/sh
    for a in "$@"; do printf '%s\\n' "$a"; done
    """)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_lws_leader_command_bridges_lws_env_to_mpirun_and_trtllm_llmapi_launch(tmp_path):
    plan, p = kp("baremetal-lws")
    leader = p.get("LeaderWorkerSet", "serving")["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    script = leader["containers"][0]["command"][-1]
    stub = tmp_path / "mpirun"
    stub.write_text(STUB)
    stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "LWS_LEADER_ADDRESS": "serving-1.serving.llm",
           "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "0"}
    out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    argv = out.stdout.splitlines()
    gpn = plan.serving.gpus_per_node
    assert argv[argv.index("-H") + 1] == f"serving-1.serving.llm:{gpn},serving-1-1.serving.llm:{gpn}"
    assert argv[argv.index("-np") + 1] == str(plan.serving.tp * plan.serving.pp) == "16"
    launch = argv.index("trtllm-llmapi-launch")
    assert argv[launch + 1] == "trtllm-serve" and argv[launch + 2] == plan.serving.model_path
    assert argv[argv.index("--tp_size") + 1] == str(plan.serving.tp)
    # not on a worker, not with another group size, not without the LWS environment
    for bad in ({"LWS_WORKER_INDEX": "1"}, {"LWS_GROUP_SIZE": "3"}, {"LWS_LEADER_ADDRESS": ""}):
        r = subprocess.run(["sh", "-c", script], env={**env, **bad}, capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and not r.stdout, bad


def test_leader_script_lists_every_worker_of_a_larger_group(tmp_path):
    script = leader_script(nodes=4, gpus_per_node=8, ranks=32, serve_argv=["trtllm-serve", "/m"])
    (tmp_path / "mpirun").write_text(STUB)
    (tmp_path / "mpirun").chmod(0o755)
    out = subprocess.run(["sh", "-c", script], env={"PATH": f"{tmp_path}:/usr/bin:/bin", "LWS_LEADER_ADDRESS":
                                                     "s-0.s.ns", "LWS_GROUP_SIZE": "4", "LWS_WORKER_INDEX": "0"},
                         capture_output=True, text=True, timeout=10, check=True)
    argv = out.stdout.splitlines()
    assert argv[argv.index("-H") + 1] == "s-0.s.ns:8,s-0-1.s.ns:8,s-0-2.s.ns:8,s-0-3.s.ns:8"


def test_workers_run_sshd_and_no_model_server():
    _, p = kp("baremetal-lws")
    worker = p.get("LeaderWorkerSet", "serving")["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    cmd = worker["containers"][0]["command"]
    assert cmd[0].endswith("sshd") and "trtllm-serve" not in " ".join(cmd)


@pytest.mark.parametrize("case", sorted(CASES))
def test_network_policy_matrix_equals_the_firewall_matrix(case):
    plan, p = kp(case)
    pols = p.by_kind("NetworkPolicy")
    deny = [x for x in pols if x["metadata"]["name"] == "default-deny"]
    assert deny and deny[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    got = netpol_matrix(list(p.objects), plan.firewall, p.pod_zones)
    want = firewall_pod_matrix(plan.firewall, p.pod_zones)
    assert want and got == want


def test_the_matrix_evaluator_sees_a_widened_or_missing_policy():
    plan, p = kp("baremetal")
    objs = [o for o in p.objects if o["metadata"]["name"] != "in-serve-serving"]
    assert netpol_matrix(objs, plan.firewall, p.pod_zones) != firewall_pod_matrix(plan.firewall, p.pod_zones)
    wide = [dict(o) for o in p.objects]
    extra = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "x", "labels": {}},
             "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                      "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}}
    assert netpol_matrix(wide + [extra], plan.firewall, p.pod_zones) != firewall_pod_matrix(plan.firewall,
                                                                                              p.pod_zones)


def test_gateway_runs_the_gateway_roles_config_in_front_of_the_serving_service():
    _, p = kp("baremetal")
    cfg = p.get("ConfigMap", "gateway-config")["data"]["haproxy.cfg"]
    assert "server serving serving.llm.svc.cluster.local:8000" in cfg
    assert "verify required" in cfg and "crl-file /etc/haproxy/certs/crl.pem" in cfg
    for line in ("chroot", "user haproxy", "daemon"):
        assert f"\n    {line}" not in cfg
    dep = p.get("Deployment", "gateway")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["tls"]["secret"]["secretName"] == "gateway-tls"
    assert {s.name for s in p.secrets} >= {"gateway-tls", "serving-tls"}


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed on this machine")
def test_rendered_haproxy_configs_parse(tmp_path):
    """haproxy -c on the gateway and terminator configs (binds and TLS servers replaced: the rest's syntax)."""
    _, p = kp("baremetal")
    gw = p.get("ConfigMap", "gateway-config")["data"]["haproxy.cfg"]
    term = p.get("ConfigMap", "serving-config")["data"]["serving-tls.cfg"]
    for name, text in (("gw", gw), ("term", term)):
        # TLS material is made up here: bind plain on loopback, drop the TLS servers (syntax of the rest)
        lines = [ln for ln in text.splitlines() if not ln.strip().startswith(("server ", "default-server "))]
        body = "\n".join("    bind 127.0.0.1:18443" if ln.strip().startswith("bind ") else ln for ln in lines)
        f = tmp_path / f"{name}.cfg"
        f.write_text(body.replace("/etc/haproxy/config/", f"{tmp_path}/") + "\n")
        (tmp_path / "llmcluster-clients.map").write_text("")
        r = subprocess.run(["haproxy", "-c", "-f", str(f)], capture_output=True, text=True, timeout=30,
                           env={**os.environ})
        assert r.returncode == 0, (name, r.stdout + r.stderr)


def test_autoscaling_keeps_at_least_one_replica_and_scales_the_workload():
    _, p = kp("baremetal-lws")
    so = p.get("ScaledObject", "serving")
    assert so["spec"]["minReplicaCount"] >= 1
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": LWS_API, "kind": "LeaderWorkerSet", "name": "serving"}
    # the default trigger: the gateway's backend (the pinned trtllm-serve 1.0.0 exports no Prometheus metrics)
    assert so["spec"]["triggers"][0]["metadata"]["query"] == (
        'sum(haproxy_backend_current_sessions{namespace="llm",proxy="inference"})'
        ' + sum(haproxy_backend_current_queue{namespace="llm",proxy="inference"})')
    plan = load_plan("prod-baremetal", k8s.BAREMETAL + ('kubernetes.autoscaling={"engine": "hpa"}',))
    hpa = kubernetes_plan(plan).get("HorizontalPodAutoscaler", "serving")
    assert hpa["spec"]["minReplicas"] >= 1 and hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]


def test_gpu_operator_driver_and_toolkit_off_on_bare_metal_on_for_eks():
    _, bm = kp("baremetal")
    _, eks = kp("aws-eks")
    assert bm.gpu_operator_values["driver"] == {"enabled": False} == bm.gpu_operator_values["toolkit"]
    assert eks.gpu_operator_values["driver"] == {"enabled": True} == eks.gpu_operator_values["toolkit"]


@pytest.mark.parametrize("image, words", [
    ("nvcr.io/nvidia/tensorrt-llm/release:1.0.0", "pinned by tag"),
    ("nvcr.io/nvidia/tensorrt-llm/release", "pinned by tag"),
    ("nvcr.io/nvidia/tensorrt-llm/release@sha256:abc", "not an image reference by digest"),
])
def test_images_by_tag_are_refused_with_the_key_path(image, words):
    over = k8s.overrides(**{"kubeconfig_secret": "llmcluster-k8s:kubeconfig", "gateway_image": image})
    with pytest.raises(SpecError) as e:
        load_spec("prod-baremetal", over)
    text = str(e.value)
    assert "kubernetes.gateway_image" in text and words in text


def test_every_autoscaling_metric_is_in_the_metrics_contract():
    """The autoscaler reads only metrics of the contract (a name outside it fails here), from the exporter the
    gateway backend's name matches."""
    from llmcluster.monitoring.contract import load_contract, metric_names, unknown_metrics
    from llmcluster.plan.kubernetes import METRIC_QUERIES

    contract = load_contract()
    from llmcluster.plan.kubernetes import metric_query

    for name in METRIC_QUERIES:
        query = metric_query(name, 'namespace="llm"')
        assert metric_names(query), name
        assert unknown_metrics(query, contract) == set(), name
    # and the check can fail: a query on a name the contract lacks is caught
    assert unknown_metrics('sum(haproxy_backend_queue_depth{proxy="inference"})', contract) == {
        "haproxy_backend_queue_depth"}
    # the HAProxy backend the query names is the gateway's (role template)
    from tests.conftest import ROOT

    assert "\nbackend inference\n" in (ROOT / "roles/gateway/templates/haproxy.cfg.j2").read_text()


def test_a_trtllm_metric_the_pinned_version_lacks_is_refused():
    over = k8s.BAREMETAL + ('kubernetes.autoscaling={"metric": "trtllm_num_requests_waiting"}',)
    with pytest.raises(SpecError) as e:
        load_spec("prod-baremetal", over)
    text = str(e.value)
    assert "kubernetes.autoscaling.metric" in text and "1.0.0" in text and "gateway_queue" in text
    # a tensorrt_llm that exports it is accepted
    ok = over + ('nvidia.trtllm.version=1.2.0',)
    assert kubernetes_plan(load_plan("prod-baremetal", ok)).get("ScaledObject", "serving")["spec"]["triggers"][0][
        "metadata"]["query"] == 'sum(trtllm_num_requests_waiting{namespace="llm"})'
    # without a gateway the default (trtllm_num_requests_waiting) on 1.0.0 is refused too, with the fix
    with pytest.raises(SpecError) as e:
        load_spec("prod-baremetal", k8s.BAREMETAL + ("serving.gateway=null", "access=null"))
    assert "the default without a gateway" in str(e.value) and "add serving.gateway" in str(e.value)


def test_service_monitors_scrape_the_pods_over_mtls_with_the_hosts_labels():
    from llmcluster.plan.kubernetes import METRICS_SECRET, metrics_client_cn

    _, p = kp("baremetal")
    names = {o["metadata"]["name"] for o in p.by_kind("ServiceMonitor")}
    assert names == {"serving", "gateway", "dcgm-exporter"}
    for name, job in (("serving", "trtllm"), ("gateway", "haproxy")):
        ep = p.get("ServiceMonitor", name)["spec"]["endpoints"][0]
        assert ep["scheme"] == "https" and ep["tlsConfig"]["keySecret"]["name"] == METRICS_SECRET
        assert ep["tlsConfig"]["insecureSkipVerify"] is False and ep["tlsConfig"]["serverName"]
        assert {"action": "replace", "targetLabel": "job", "replacement": job} in ep["relabelings"]
        # the Service the monitor selects has the port it names
        svc = p.get("Service", name)
        assert ep["port"] in {x["name"] for x in svc["spec"]["ports"]}
    dcgm = p.get("ServiceMonitor", "dcgm-exporter")["spec"]
    assert dcgm["namespaceSelector"] == {"matchNames": ["gpu-operator"]} and dcgm["endpoints"][0]["scheme"] == "http"
    assert METRICS_SECRET in {s.name for s in p.secrets}
    # the metrics frontends in the pods admit only the scraper's certificate (the roles' templates)
    gw_cfg = p.get("ConfigMap", "gateway-config")["data"]["haproxy.cfg"]
    term = p.get("ConfigMap", "serving-config")["data"]["serving-tls.cfg"]
    for cfg, port in ((gw_cfg, 8405), (term, 9401)):
        assert f"bind 0.0.0.0:{port} ssl" in cfg and metrics_client_cn("llm") in cfg, cfg
    # the Prometheus namespace may reach the metrics ports, nothing else
    pol = p.get("NetworkPolicy", "in-metrics-gateway")["spec"]["ingress"]
    assert pol == [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                    "ports": [{"protocol": "TCP", "port": 8405}]}]


def test_no_prometheus_operator_no_monitors_and_no_metrics_frontends():
    plan = load_plan("prod-baremetal", k8s.BAREMETAL[:-1] + (
        'kubernetes=' + __import__("json").dumps(k8s.section(kubeconfig_secret="llmcluster-k8s:kubeconfig",
                                                             prometheus_operator=False)),))
    p = kubernetes_plan(plan)
    assert not p.by_kind("ServiceMonitor") and not p.by_kind("PrometheusRule")
    assert "frontend metrics" not in p.get("ConfigMap", "gateway-config")["data"]["haproxy.cfg"]
    assert all(x["name"] != "metrics" for x in p.get("Service", "serving")["spec"]["ports"])


def test_prometheus_rule_holds_the_host_rules_for_what_the_cluster_scrapes():
    """One source: the cluster's groups are the monitoring plan's rules, unchanged, limited to the jobs scraped."""
    from llmcluster.monitoring.rules import cluster_rule_groups, rule_groups, rule_jobs
    from llmcluster.plan.monitoring import monitoring_plan

    mp = monitoring_plan(load_plan("lab"))
    host = {r["alert"]: r for g in rule_groups(mp) for r in g["rules"]}
    cluster = {r["alert"]: r for g in cluster_rule_groups(mp, {"dcgm", "trtllm", "haproxy"}) for r in g["rules"]}
    assert cluster and all(host[a] == r for a, r in cluster.items())
    assert {"GpuCriticalXid", "ServingReplicaDown", "GatewayNoUpstream", "ExporterAbsentDcgm"} <= set(cluster)
    assert not {"ExporterAbsentNode", "TargetDown"} & set(cluster)
    assert all(rule_jobs(r["expr"]) <= {"dcgm", "trtllm", "haproxy"} for r in cluster.values())
    assert "ServingReplicaDown" not in {r["alert"] for g in cluster_rule_groups(mp, {"dcgm"}) for r in g["rules"]}


# ---------------------------------------------------------------- the HPA path's metrics adapter


def _adapter_rules(objects) -> dict[str, dict]:
    """Exposed metric name -> prometheus-adapter rule, from the adapter ConfigMaps among ``objects``."""
    import yaml

    from llmcluster.plan.kubernetes import ADAPTER_CONFIG_KEY, ADAPTER_CONFIGMAP

    out = {}
    for o in objects:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == ADAPTER_CONFIGMAP:
            cfg = yaml.safe_load(o["data"][ADAPTER_CONFIG_KEY])
            for kind in ("rules", "externalRules"):
                for r in cfg.get(kind, []):
                    out[r["name"]["as"]] = {**r, "_kind": kind}
    return out


def _hpa_metrics_without_adapter_rule(objects) -> list[str]:
    """Every metric an HPA reads through the custom/external metrics API (types External, Pods, Object) that no
    adapter rule of the right kind exposes under that name."""
    rules = _adapter_rules(objects)
    missing = []
    for o in objects:
        if o["kind"] != "HorizontalPodAutoscaler":
            continue
        for m in o["spec"].get("metrics", []):
            kind = {"External": "externalRules", "Pods": "rules", "Object": "rules"}.get(m["type"])
            if kind is None:
                continue
            name = m[m["type"].lower()]["metric"]["name"]
            if rules.get(name, {}).get("_kind") != kind:
                missing.append(f"{o['metadata']['name']}: {m['type']} metric {name}")
    return missing


@pytest.mark.parametrize("metric", [None, "kv_cache_utilization"])
def test_the_hpa_metric_has_the_adapter_rule_of_the_same_query(metric):
    """autoscaling.engine hpa: the HPA names an External metric, which exists only through prometheus-adapter; the
    layer renders the adapter's rule for exactly that metric, from the query KEDA's trigger uses."""
    import copy
    import json

    from llmcluster.monitoring.contract import load_contract, metric_names
    from llmcluster.plan.kubernetes import ADAPTER_CONFIGMAP, metric_query

    auto = {"engine": "hpa", **({"metric": metric} if metric else {})}
    if metric == "kv_cache_utilization":  # a trtllm metric: needs a tensorrt_llm that exports it
        over = k8s.BAREMETAL + (f"kubernetes.autoscaling={json.dumps(auto)}",
                                'nvidia.trtllm={"version": "1.2.0"}')
    else:
        over = k8s.BAREMETAL + (f"kubernetes.autoscaling={json.dumps(auto)}",)
    plan = load_plan("prod-baremetal", over)
    p = kubernetes_plan(plan)
    hpa = p.get("HorizontalPodAutoscaler", "serving")
    [m] = hpa["spec"]["metrics"]
    name = m["external"]["metric"]["name"]
    assert name == (metric or "gateway_queue")
    rules = _adapter_rules(p.objects)
    assert set(rules) == {name} and rules[name]["_kind"] == "externalRules"
    rule = rules[name]
    assert p.get("ConfigMap", ADAPTER_CONFIGMAP)["metadata"]["namespace"] == plan.spec.kubernetes.prometheus_namespace
    # discovery on a metric of the contract, which the query reads
    contract = load_contract()
    [series] = metric_names(rule["seriesQuery"])
    assert contract.get(series) is not None and series in metric_names(rule["metricsQuery"].replace(
        "<<.LabelMatchers>>", 'namespace="llm"'))
    assert rule["resources"] == {"overrides": {"namespace": {"resource": "namespace"}}}
    assert rule["name"]["matches"] == f"^{series}$"
    # the same plan fact as KEDA's trigger: the adapter's matchers (the HPA's namespace) give KEDA's query
    keda_like = rule["metricsQuery"].replace("<<.LabelMatchers>>", 'namespace="llm"')
    assert keda_like == metric_query(name, 'namespace="llm"')
    assert _hpa_metrics_without_adapter_rule(p.objects) == []
    from llmcluster.render.kubernetes_check import check_objects

    assert check_objects(p.objects, p.version) == []  # the HPA and the ConfigMap, for the target version
    # the check fails without the rule, or with a rule for another name
    assert _hpa_metrics_without_adapter_rule([o for o in p.objects if o["kind"] != "ConfigMap"
                                              or o["metadata"]["name"] != ADAPTER_CONFIGMAP])
    bad = copy.deepcopy(p.objects)
    bad_hpa = next(o for o in bad if o["kind"] == "HorizontalPodAutoscaler")
    bad_hpa["spec"]["metrics"][0]["external"]["metric"]["name"] = "gateway_queue_depth"
    assert _hpa_metrics_without_adapter_rule(bad) == ["serving: External metric gateway_queue_depth"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_keda_stacks_render_no_adapter_rule_and_no_hpa(case):
    from llmcluster.plan.kubernetes import ADAPTER_CONFIGMAP

    _, p = kp(case)
    assert p.by_kind("ScaledObject") and not p.by_kind("HorizontalPodAutoscaler")
    assert not [o for o in p.objects if o["metadata"]["name"] == ADAPTER_CONFIGMAP]
    assert _hpa_metrics_without_adapter_rule(p.objects) == []
