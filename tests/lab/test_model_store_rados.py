"""The Ceph model repository with real Ceph (the lab's cluster after the session's converge): the
model_store role publishes a verified model folder from gpu-01 into the ``models`` pool, gpu-02
stages from it and verifies, and an object altered in Ceph is refused on arrival naming the file.

Nothing here touches the lab's real model: both nodes use scratch folders under
``/var/tmp/llmcluster-rados-test-<token>`` (model dir, manifest, verifier), and the objects live
under the unique prefix ``lab-test/<token>``, removed in a ``finally``. The source on gpu-01 is the
lab model fixture on the controller (the lab inventory's ``model_store_source``).

Written to run with the lab (tests marked ``lab``); about a minute of lab time: three short
model_store runs and a handful of rados calls.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from llmcluster.converge import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("lab")]

POOL = "models"
PUBLISHER, PULLER = "gpu-01", "gpu-02"


def _play(tmp_path: Path, host: str, name: str) -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(f"- name: model_store on {host} ({name})\n  hosts: {host}\n  become: true\n  gather_facts: true\n"
                    "  gather_subset: [min]\n  roles:\n    - role: model_store\n")
    return path


def _scratch_vars(lab, scratch: str, **extra) -> dict:
    """The role pointed at scratch paths: never the plan's model path, manifest or verifier."""
    plan = lab.plan.serving
    model, hf_repo = plan.model, plan.hf_repo
    return {"llmcluster_model_dir": f"{scratch}/models",
            "llmcluster_serving_plan": {"model": model, "hf_repo": hf_repo,
                                        "model_path": f"{scratch}/models/{hf_repo}",
                                        "model_manifest": f"{scratch}/etc/{model}.json",
                                        "model_verifier": f"{scratch}/model-verify"},
            # the role's default: the RADOS striper (production shards are GBs), through the client.models
            # key's "allow rwx pool=models" (x: the striper's cls_lock calls)
            "model_store_group": "root", **extra}


def _errors(result) -> str:
    return "; ".join(f"{h}: {p.last_error}" for h, p in sorted(result.hosts.items()) if p.last_error)


def test_publish_from_one_node_stage_on_another_refuse_an_altered_object(lab, lab_converged, tmp_path):
    assert POOL in {p.name for p in lab.plan.storage.ceph.pools}, "the lab plans the models pool"
    token = secrets.token_hex(6)
    prefix = f"lab-test/{token}"
    scratch = f"/var/tmp/llmcluster-rados-test-{token}"
    target = f"rados://{POOL}/{prefix}"
    rados = ["rados", "--id", "models", "-p", POOL, "--striper"]
    try:
        # gpu-01: stage from the controller (the lab fixture), verify, publish.
        first = run_playbook(_play(tmp_path, PUBLISHER, "publish"), lab_converged, limit=PUBLISHER,
                             extravars=_scratch_vars(lab, scratch, model_store_publish=target))
        assert first.ok, f"publishing from {PUBLISHER} failed: {_errors(first)}"
        listed = lab.exec(PUBLISHER, [*rados, "ls"], check=True).stdout.split()
        ours = sorted(o for o in listed if o.startswith(prefix + "/"))
        assert ours, f"nothing under {prefix} after publishing: {listed[:20]}"
        again = run_playbook(_play(tmp_path, PUBLISHER, "publish-again"), lab_converged, limit=PUBLISHER,
                             extravars=_scratch_vars(lab, scratch, model_store_publish=target))
        assert again.ok and again.changed(PUBLISHER) == 0, f"a second publish changed {again.changed(PUBLISHER)}"

        # gpu-02: stage from Ceph into another scratch folder, verified by the role.
        pulled = run_playbook(_play(tmp_path, PULLER, "pull"), lab_converged, limit=PULLER,
                              extravars=_scratch_vars(lab, scratch, model_store_source=target))
        assert pulled.ok, f"staging on {PULLER} from {target} failed: {_errors(pulled)}"
        out = lab.exec(PULLER, [f"{scratch}/model-verify", "verify", "--manifest", f"{scratch}/etc/"
                                f"{lab.plan.serving.model}.json", f"{scratch}/models/{lab.plan.serving.hf_repo}"])
        assert out.returncode == 0, out.stderr

        # Alter one shard in Ceph: a fresh stage on gpu-02 refuses it, naming the file.
        manifest = json.loads(lab.exec(PULLER, ["cat", f"{scratch}/etc/{lab.plan.serving.model}.json"],
                                       check=True).stdout)
        shard = next(f["path"] for f in manifest["files"] if f["path"].endswith(".safetensors"))
        obj = f"{prefix}/{shard}"
        tmp = f"{scratch}/altered"
        lab.exec(PUBLISHER, ["sh", "-c", f'{" ".join(rados)} get "$1" {tmp} && '
                             f'printf "\\377" | dd of={tmp} bs=1 seek=200 conv=notrunc 2>/dev/null && '
                             f'{" ".join(rados)} put "$1" {tmp}; rm -f {tmp}', "sh", obj], check=True)
        fresh = f"{scratch}-fresh"
        refused = run_playbook(_play(tmp_path, PULLER, "pull-altered"), lab_converged, limit=PULLER,
                               extravars=_scratch_vars(lab, fresh, model_store_source=target))
        assert not refused.ok, f"an altered object in {target} was accepted on {PULLER}"
        err = _errors(refused)
        assert f"{shard}: sha256 " in err and target in err, err
        gone = lab.exec(PULLER, ["test", "-e", f"{fresh}/models/{lab.plan.serving.hf_repo}/{shard}"])
        assert gone.returncode != 0, "the refused shard must not be in the model folder"
    finally:
        listed = lab.exec(PUBLISHER, [*rados, "ls"], timeout=60).stdout.split()
        for o in listed:
            if o.startswith(prefix + "/"):
                lab.exec(PUBLISHER, [*rados, "rm", o], timeout=60)
        for host in (PUBLISHER, PULLER):
            lab.exec(host, ["rm", "-rf", scratch, f"{scratch}-fresh"], timeout=60)
