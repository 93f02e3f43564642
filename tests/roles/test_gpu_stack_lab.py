"""The GPU node stack on the lab's (SIMULATED) GPU nodes: the two behaviours issue 5 must show.

* A fabric manager whose version differs from the installed driver fails the converge, with a
  message naming both versions and error 802; a fabric manager package replaced behind the
  role's back (which the simulated fabric manager, like the real one, refuses to run with the
  driver) is put back at the driver's version, and the converge succeeds only once the fabric
  is initialised again.
* Changing the driver version in the spec upgrades driver and fabric manager together and
  builds a new engine cache entry for the dense model served with TensorRT engines; the entry
  built for the old driver stays untouched, and a converge with an unchanged key builds nothing.

Both run on gpu-02 after the session's converge (``lab_converged``) and put it back as the
lab stack describes it (driver 570.172.08, DeepSeek-R1 on the PyTorch backend) at the end —
a driver rollback, which the nvidia_driver role performs only with nvidia_driver_allow_downgrade.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcluster.converge import run_playbook
from tests.conftest import load_plan

pytestmark = pytest.mark.xdist_group("lab")

HOST = "gpu-02"
OLD, NEW = "570.172.08", "570.195.03"
DENSE = "deepseek-r1-distill-qwen-7b"
ENGINES = f"/var/lib/llmcluster/engines/{DENSE}"
GPU_ROLES = ("nvidia_driver", "nvidia_fabricmanager", "nvidia_container_toolkit", "dcgm", "model_store", "tensorrt_llm")


def _play(tmp_path: Path, roles: tuple[str, ...], name: str = "play") -> Path:
    path = tmp_path / f"{name}.yml"
    lines = [f"- name: GPU roles on {HOST}", f"  hosts: {HOST}", "  become: true", "  gather_facts: true",
             "  gather_subset: [min]", "  roles:"] + [f"    - role: {r}" for r in roles]
    path.write_text("\n".join(lines) + "\n")
    return path


def _inventory(lab, tmp_path: Path, overrides: tuple[str, ...], name: str) -> Path:
    from llmcluster.lab import LabRuntime

    return LabRuntime(load_plan("lab", overrides), lab.state_dir).write_inventory(tmp_path / f"{name}.yml")


def _errors(result) -> str:
    return "; ".join(f"{h}: {p.last_error}" for h, p in sorted(result.hosts.items()) if p.last_error)


def _sh(lab, script: str, check: bool = True) -> str:
    r = lab.exec(HOST, ["sh", "-c", script])
    if check:
        assert r.returncode == 0, f"{HOST}: {script}: exit {r.returncode}: {r.stderr or r.stdout}"
    return r.stdout


def _entries(lab) -> dict[str, dict]:
    """Engine cache entries on HOST: digest -> {key: cache-key.json, stamp: inode/mtime of every file}."""
    out = _sh(lab, f"""python3 - <<'EOF'
import json, os
root = "{ENGINES}"
res = {{}}
for d in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    p = os.path.join(root, d)
    if d == "current" or not os.path.isdir(p) or os.path.islink(p):
        continue
    stamp = {{}}
    for base, _, files in os.walk(p):
        for f in files:
            st = os.stat(os.path.join(base, f))
            stamp[os.path.relpath(os.path.join(base, f), p)] = [st.st_ino, st.st_mtime_ns, st.st_size]
    k = os.path.join(p, "cache-key.json")
    key = json.load(open(k)) if os.path.exists(k) else None
    res[d] = {{"key": key, "stamp": stamp}}
cur = os.path.join(root, "current")
current = os.path.basename(os.path.realpath(cur)) if os.path.exists(cur) else None
print(json.dumps({{"entries": res, "current": current}}))
EOF""")
    return json.loads(out)


def _driver_on_host(lab) -> tuple[str, str]:
    smi = _sh(lab, "nvidia-smi --query-gpu=driver_version --format=csv,noheader | sort -u").strip()
    fm = _sh(lab, "dpkg-query -W -f '${Version}' nvidia-fabricmanager-570").strip()
    return smi, fm


@pytest.fixture
def restore(lab, lab_converged, tmp_path):
    """After the test: converge HOST's GPU roles with the lab inventory (the stack as written)."""
    yield lab_converged
    _sh(lab, "systemctl reset-failed nvidia-fabricmanager || true", check=False)
    # A rollback (570.195.03 -> 570.172.08) must be asked for explicitly.
    result = run_playbook(_play(tmp_path, GPU_ROLES, "restore"), lab_converged, limit=HOST,
                          extravars={"nvidia_driver_allow_downgrade": True})
    assert result.ok, f"restoring {HOST} failed: {_errors(result)}"
    assert _driver_on_host(lab) == (OLD, f"{OLD}-1")


def test_driver_change_rebuilds_only_its_engine_cache_entry(lab, restore, tmp_path):
    # The model store stages the dense model too (the lab fixture of that model: the inventory of a
    # plan serving it names its folder and manifest, llmcluster.lab.model_fixture).
    play = _play(tmp_path, GPU_ROLES)
    dense_old = _inventory(lab, tmp_path, (f"serving.model={DENSE}",), "dense-old")
    dense_new = _inventory(lab, tmp_path, (f"serving.model={DENSE}", f"pools.gpu.gpu.driver_version='{NEW}'"),
                           "dense-new")

    first = run_playbook(play, dense_old, limit=HOST)
    assert first.ok, f"engine build on driver {OLD} failed: {_errors(first)}"
    before = _entries(lab)
    assert len(before["entries"]) == 1, before
    (old_digest, old_entry), = before["entries"].items()
    assert old_entry["key"]["driver_version"] == OLD and before["current"] == old_digest
    assert any(f.startswith("engine/") and f.endswith(".engine") for f in old_entry["stamp"]), old_entry

    upgrade = run_playbook(play, dense_new, limit=HOST)
    assert upgrade.ok, f"upgrade to driver {NEW} failed: {_errors(upgrade)}"
    assert _driver_on_host(lab) == (NEW, f"{NEW}-1"), "driver and fabric manager must move together"
    after = _entries(lab)
    assert set(after["entries"]) == {old_digest, after["current"]} and after["current"] != old_digest, after
    assert after["entries"][old_digest] == old_entry, "the entry built for the old driver must stay untouched"
    new_key = after["entries"][after["current"]]["key"]
    assert {k: v for k, v in new_key.items() if v != old_entry["key"][k]} == {"driver_version": NEW}

    again = run_playbook(play, dense_new, limit=HOST)
    assert again.ok, _errors(again)
    assert again.changed(HOST) == 0, f"an unchanged key must not rebuild: {again.changed_tasks}"
    assert _entries(lab) == after


def test_fabric_manager_version_mismatch_fails_closed(lab, restore, tmp_path):
    fm_play = _play(tmp_path, ("nvidia_fabricmanager",), "fm")
    # 1. The inventory asks for a fabric manager that is not the installed driver's version.
    asked = run_playbook(fm_play, restore, limit=HOST, extravars={"nvidia_fabricmanager_version": NEW})
    assert not asked.ok, "a fabric manager version other than the driver's must fail the converge"
    message = _errors(asked)
    assert NEW in message and OLD in message and "802" in message, message
    assert _driver_on_host(lab) == (OLD, f"{OLD}-1"), "a refused converge changes nothing"

    # 2. The package is replaced behind the role's back: the (simulated) fabric manager, like the
    #    real one, refuses the driver and the fabric stays down. The role puts the fabric manager
    #    back at the driver's exact version and succeeds only once the fabric is initialised.
    _sh(lab, f"apt-get install -y -q --allow-change-held-packages nvidia-fabricmanager-570={NEW}-1 >/dev/null")
    restarted = lab.exec(HOST, ["systemctl", "restart", "nvidia-fabricmanager"])
    assert restarted.returncode != 0, "the fabric manager must refuse a driver of another version"
    assert "Completed" not in _sh(lab, "nvidia-smi -q | grep -A1 Fabric | grep State | sort -u")
    repaired = run_playbook(fm_play, restore, limit=HOST)
    assert repaired.ok, f"the role must repair a drifted fabric manager: {_errors(repaired)}"
    assert repaired.changed(HOST) > 0
    assert _driver_on_host(lab) == (OLD, f"{OLD}-1")
    states = _sh(lab, "nvidia-smi -q | grep -A2 Fabric | grep -E 'State|Status' | sort | uniq -c")
    assert "8 " in states and "Completed" in states and "Success" in states and "Not Started" not in states, states
