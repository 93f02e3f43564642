"""The serving plan's model store facts (llmcluster.plan.serving): where the verifier and the manifest
live on the serving hosts, derived once and carried by the inventory to the roles and the suite."""

from __future__ import annotations

from llmcluster.inventory import build_inventory
from llmcluster.plan.serving import MODEL_MANIFEST_DIR, MODEL_VERIFIER, model_manifest_path
from tests.conftest import load_plan


def test_the_plan_places_the_manifest_outside_the_model_folder():
    plan = load_plan("lab")
    sp = plan.serving.to_vars()
    assert sp["model_verifier"] == MODEL_VERIFIER == "/usr/local/libexec/llmcluster/model-verify"
    assert sp["model_manifest"] == model_manifest_path("deepseek-r1") == f"{MODEL_MANIFEST_DIR}/deepseek-r1.json"
    assert not sp["model_manifest"].startswith(sp["model_path"].rstrip("/") + "/")


def test_the_manifest_follows_the_served_model():
    plan = load_plan("lab", ("serving.model=deepseek-r1-distill-qwen-7b",))
    sp = plan.serving.to_vars()
    assert sp["model_manifest"] == "/etc/llmcluster/models/deepseek-r1-distill-qwen-7b.json"
    assert sp["model_path"] == "/srv/models/deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def test_the_inventory_carries_them_to_the_roles():
    inv = build_inventory(load_plan("lab"))
    sp = inv["all"]["vars"]["llmcluster_serving_plan"]
    assert (sp["model_manifest"], sp["model_verifier"]) == ("/etc/llmcluster/models/deepseek-r1.json", MODEL_VERIFIER)
    assert inv["all"]["vars"]["llmcluster_model_dir"] == "/srv/models"
