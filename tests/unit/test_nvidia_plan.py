"""The GPU node stack plan (llmcluster/plan/nvidia.py), its spec rules and the inventory it feeds."""

from __future__ import annotations

import pytest

from llmcluster.errors import SpecError
from llmcluster.inventory import build_inventory
from llmcluster.plan.nvidia import (
    driver_flavor,
    driver_packages,
    fabric_packages,
    gpu_vars,
)
from llmcluster.plan.serving import ENGINE_KEY_HOST_FIELDS, engine_key, engine_key_plan_fields
from tests.conftest import load_plan, load_spec


@pytest.mark.parametrize(("os_name", "branch", "flavor", "nvswitch", "expected"), [
    ("debian-12", 570, "open", True,
     ["nvidia-driver-570-open", "nvidia-utils-570", "nvidia-compute-utils-570", "libnvidia-nscq-570"]),
    ("ubuntu-24.04", 580, "open", False,
     ["nvidia-driver-580-server-open", "nvidia-utils-580-server", "nvidia-compute-utils-580-server"]),
    ("ubuntu-22.04", 535, "proprietary", True,
     ["nvidia-driver-535-server", "nvidia-utils-535-server", "nvidia-compute-utils-535-server",
      "libnvidia-nscq-535"]),
])
def test_driver_packages_per_os_and_branch(os_name, branch, flavor, nvswitch, expected):
    assert driver_packages(os_name, branch, flavor, nvswitch) == expected


def test_fabric_manager_naming_changes_at_580():
    assert fabric_packages("nvswitch", 570) == (["nvidia-fabricmanager-570"], "nvidia-fabricmanager")
    assert fabric_packages("nvswitch", 580) == (["nvidia-fabricmanager"], "nvidia-fabricmanager")
    assert fabric_packages("imex", 570) == (["nvidia-imex-570"], "nvidia-imex")
    assert fabric_packages("imex", 590) == (["nvidia-imex"], "nvidia-imex")
    assert fabric_packages("none", 570) == ([], "")


def test_driver_flavor_auto_is_open_from_hopper():
    assert driver_flavor("auto", 90) == "open"
    assert driver_flavor("auto", 80) == "proprietary"
    assert driver_flavor("proprietary", 90) == "proprietary"


def test_lab_gpu_vars():
    g = gpu_vars(load_spec("lab"), "gpu")
    assert g["smi_name"] == "NVIDIA H200" and g["fabric"] == "nvswitch" and g["driver_branch"] == "570"
    assert g["packages"]["fabric"] == ["nvidia-fabricmanager-570"]
    assert g["packages"]["driver"][0] == "nvidia-driver-570-open"


def test_gb200_runs_imex_not_the_fabric_manager():
    spec = load_spec("prod-baremetal", ("pools.gpu.gpu={model: gb200, count: 4, driver_version: '580.95.05'}",
                                        "serving.model=deepseek-r1-distill-llama-70b", "serving.precision=fp8"))
    g = gpu_vars(spec, "gpu")
    assert g["fabric"] == "imex" and g["packages"]["fabric"] == ["nvidia-imex"]
    assert g["packages"]["fabric_service"] == "nvidia-imex" and g["driver_flavor"] == "open"


@pytest.mark.parametrize(("overrides", "path", "needle"), [
    (("pools.gpu.gpu.driver_version=null",), "pools.gpu.gpu.driver_version", "missing"),
    (("pools.gpu.gpu.driver_version='525.147.05'",), "pools.gpu.gpu.driver_version", "too old"),
    (("pools.gpu.gpu={model: b200, count: 8, nvswitch: true, driver_version: '570.172.08', "
      "driver_flavor: proprietary}",), "pools.gpu.gpu.driver_flavor", "open kernel modules"),
    (("pools.gpu.gpu={model: b200, count: 8, nvswitch: true, driver_version: '565.57.01'}",),
     "pools.gpu.gpu.driver_version", "570 or newer"),
    (("nvidia={container_runtime: none, trtllm: {install: container}}",), "nvidia.trtllm.install", "container runtime"),
    (("nvidia={cuda_repo: {url: 'https://mirror.internal/cuda'}}",), "nvidia.cuda_repo", "key_fingerprint"),
    (("nvidia={cuda_repo: {key_fingerprint: 'abc'}}",), "nvidia.cuda_repo.key_fingerprint", ""),
    (("nvidia={dcgm_diag_level: 5}",), "nvidia.dcgm_diag_level", ""),
    (("nvidia={trtllm: {image: 'not an image'}}",), "nvidia.trtllm.image", ""),
])
def test_unsafe_or_wrong_nvidia_settings_are_rejected(overrides, path, needle):
    with pytest.raises(SpecError) as ei:
        load_spec("lab", overrides)
    hits = [p for p in ei.value.problems if p.path == path]
    assert hits, [f"{p.path}: {p.message}" for p in ei.value.problems]
    assert needle in hits[0].message


def test_a_mirror_with_its_key_is_accepted_and_pinned_by_origin():
    spec = load_spec("lab", ("nvidia={cuda_repo: {url: 'https://mirror.internal:8443/cuda/debian12/x86_64', "
                             "key_url: 'https://mirror.internal:8443/cuda.pub', "
                             "key_fingerprint: 'EB693B3035CD5710E231E123A4B469963BF863CC'}}",))
    from llmcluster.plan.nvidia import cuda_repo, toolkit_repo

    assert cuda_repo(spec)["origin"] == "mirror.internal"
    assert toolkit_repo(spec)["origin"] == "nvidia.github.io"
    assert cuda_repo(load_spec("lab"))["url"].endswith("/debian12/x86_64")


def test_inventory_upstreams_are_replica_heads_only():
    # Two-node replicas (8x H100 cannot hold DeepSeek-R1 FP8): rank 1 is an MPI worker, not an upstream.
    plan = load_plan("lab", ("pools.gpu.gpu={model: h100, count: 8, nvswitch: true, driver_version: '570.172.08'}",
                             "pools.gpu.count=4", "serving.replicas=2"))
    layout = {n: s.to_dict() for n, s in plan.serving.layout.items()}
    assert [(n, s["replica"], s["node_rank"], s["head"]) for n, s in sorted(layout.items())] == [
        ("gpu-01", 0, 0, "gpu-01"), ("gpu-02", 0, 1, "gpu-01"), ("gpu-03", 1, 0, "gpu-03"), ("gpu-04", 1, 1, "gpu-03")]
    assert [h["slots"] for h in layout["gpu-02"]["hosts"]] == [8, 8]
    inv = build_inventory(plan)
    assert [u["name"] for u in inv["all"]["vars"]["llmcluster_gateway"]["upstreams"]] == ["gpu-01", "gpu-03"]
    assert inv["all"]["vars"]["llmcluster_serving_plan"]["nodes"] == 2
    assert plan.serving.heads == ("gpu-01", "gpu-03")
    assert {n: hv["llmcluster_serving"] for n, hv in inv["_meta"]["hostvars"].items()
            if "llmcluster_serving" in hv} == layout


def test_spare_hosts_serve_nothing():
    # 3 one-node replicas asked of 4 hosts: gpu-04 is a spare; 5 asked of 4: only 4 fit.
    plan = load_plan("lab", ("pools.gpu.count=4", "serving.replicas=3"))
    assert sorted(plan.serving.layout) == ["gpu-01", "gpu-02", "gpu-03"]
    assert plan.serving.heads == ("gpu-01", "gpu-02", "gpu-03")
    inv = build_inventory(plan)
    assert "llmcluster_serving" not in inv["_meta"]["hostvars"]["gpu-04"]
    assert "gpu-04" not in inv["serving"]["hosts"]


def test_serving_plan_vars_of_the_lab():
    plan = load_plan("lab")
    sp = plan.serving.to_vars()
    assert sp["model_path"] == "/srv/models/deepseek-ai/DeepSeek-R1" and sp["model_type"] == "deepseek_v3"
    assert sp["backend"] == "pytorch" and sp["tp"] == 8 and sp["nodes"] == 1
    assert sp["extra_llm_api_options"]["kv_cache_config"]["dtype"] == "fp8"


def test_engine_key_changes_with_every_field_and_only_then():
    plan = load_plan("lab", ("serving.model=deepseek-r1-distill-qwen-7b",))
    sp = plan.serving.to_vars()
    assert sp["backend"] == "engine"
    base = dict(gpu_sm="9.0", trtllm_version="1.0.0", cuda_version="12.9", driver_version="570.172.08")
    k = engine_key(sp, **base)
    assert k.digest == engine_key(sp, **base).digest and len(k.digest) == 16
    for field, value in (("driver_version", "570.195.03"), ("gpu_sm", "10.0"), ("trtllm_version", "1.0.1"),
                         ("cuda_version", "13.0")):
        assert engine_key(sp, **{**base, field: value}).digest != k.digest, field
    other = dict(sp, tp=2)
    assert engine_key(other, **base).digest != k.digest
    # The plan's half of the key is what the inventory hands the role: one definition of the fields.
    assert sp["engine_key"] == engine_key_plan_fields(sp)
    assert set(k.fields) == set(sp["engine_key"]) | set(ENGINE_KEY_HOST_FIELDS)
