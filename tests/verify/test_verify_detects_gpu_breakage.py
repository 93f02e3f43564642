"""Broken GPU nodes make ``llmcluster verify`` fail on exactly the affected GPU checks.

Lab mode only (``make test``). The lab's GPUs are SIMULATED (llmcluster/lab/nvidia_sim): the
hardware faults are injected through the simulation's fault file, the service fault is real:

* gpu-01: NVLink 3 of GPU 0 goes down and ECC is off on GPU 2 (``/etc/llmcluster-sim/faults.json``);
* gpu-02: the fabric manager unit is stopped (``systemctl stop``), so the fabric is no longer
  initialised and DCGM's diagnostic fails.

Then both are repaired and the same checks pass again.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers.verify_cli import assert_fail_as_expected, failed_checks, verify_cli

pytestmark = pytest.mark.xdist_group("lab")

FAULTS = "/etc/llmcluster-sim/faults.json"


def test_broken_gpu_nodes_fail_verify_precisely(request) -> None:
    if request.config.getoption("--llmcluster-inventory"):
        pytest.skip("breaks lab hosts on purpose: runs only against the lab this session brought up")
    inventory = request.getfixturevalue("lab_converged")
    lab = request.getfixturevalue("lab")
    try:
        faults = json.dumps({"nvlink_down": [[0, 3]], "ecc_disabled": [2]})
        lab.exec("gpu-01", ["sh", "-c", f"printf '%s' '{faults}' > {FAULTS}"], check=True)
        lab.exec("gpu-02", ["systemctl", "stop", "nvidia-fabricmanager"], check=True)

        rc, doc, out = verify_cli(inventory, "--json", "-k", "test_gpu")
        assert rc == 5, f"verify of broken GPU nodes must exit 5, got {rc}:\n{out[-3000:]}"
        failed = failed_checks(doc)
        expected = {
            "gpu-01 gpu[nvlink]": "GPU 0: NVLink(s) [3] down",
            "gpu-01 gpu[ecc]": "GPU 2: Disabled",
            "gpu-02 gpu[fabric]": "nvidia-fabricmanager is inactive, expected active",
            "gpu-02 gpu[dcgm]": "dcgmi diag -r 1 failed",
        }
        assert_fail_as_expected(failed, expected)
        # gpu-01's DCGM diagnostic may also see its faults; nothing else may fail.
        extra = set(failed) - set(expected) - {"gpu-01 gpu[dcgm]"}
        assert not extra, f"unrelated checks failed: {json.dumps({k: failed[k] for k in extra}, indent=1)}"
    finally:
        lab.exec("gpu-01", ["rm", "-f", FAULTS])
        lab.exec("gpu-02", ["systemctl", "start", "nvidia-fabricmanager"])
    rc, doc, out = verify_cli(inventory, "--json", "-k", "test_gpu")
    assert rc == 0, f"after repair the GPU checks must pass again, got {rc}:\n{out[-3000:]}"
    assert doc["counts"].get("passed", 0) >= 18 and not doc["counts"].get("failed")
