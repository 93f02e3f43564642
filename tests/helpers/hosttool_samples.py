"""Real output of host tools (apt-cache madison, dpkg-query, gpg keys, dcgmi diag -j), shared by the
collection's tests and the roles' unit tests."""

from __future__ import annotations

import json

MADISON_TOOLKIT_LAB = """\
nvidia-container-toolkit |   1.17.8-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
nvidia-container-toolkit |   1.17.7-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
nvidia-container-toolkit-base |   1.17.8-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
libnvidia-container1 | 1.17.8-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
"""


#: ``apt-cache madison datacenter-gpu-manager-4-core datacenter-gpu-manager-4-cuda12
#: datacenter-gpu-manager-exporter`` against the CUDA repository (DCGM 4 carries the epoch 1).
CUDA_URL = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64"


MADISON_DCGM = f"""\
datacenter-gpu-manager-4-core |  1:4.2.3-1 | {CUDA_URL}  Packages
datacenter-gpu-manager-4-core |  1:4.2.2-1 | {CUDA_URL}  Packages
datacenter-gpu-manager-4-core | 1:4.1.1-1 | {CUDA_URL}  Packages
datacenter-gpu-manager-4-cuda12 |  1:4.2.3-1 | {CUDA_URL}  Packages
datacenter-gpu-manager-exporter |    4.1.3-1 | {CUDA_URL}  Packages
datacenter-gpu-manager-exporter |    4.1.1-1 | {CUDA_URL}  Packages
"""


#: ``dpkg-query --show --showformat='${db:Status-Abbrev} ${Package} ${Version}\\n'`` (the toolkit
#: and dcgm roles' probe): installed, held, removed with its configuration left, unknown, an
#: architecture-qualified name, a half-installed package.
DPKG_ABBREV = (
    "ii  containerd 1.6.20~ds1-1+b1\n"
    "hi  nvidia-container-toolkit 1.17.8-1\n"
    "rc  old-thing 1.0-1\n"
    "un  never \n"  # no version: dpkg prints the empty field
    "ii  libc6:amd64 2.36-9+deb12u10\n"
    "iU  broken-unpacked 2.0-1\n"
    "hi  datacenter-gpu-manager-4-core 1:4.2.3-1\n"
)


#: An ed25519 test key made with GnuPG 2.2 (``gpg --quick-gen-key ... ed25519``); gpg prints
#: the fingerprint below for it.
KEY_ED25519 = """\
-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawPMsxYJKwYBBAHaRw8BAQdAR+vwUFOWZSX8lDqgDZAkglm2OytNO7z2J4iy
UjRnGIi0I2xsbWNsdXN0ZXIgdGVzdCA8dEBleGFtcGxlLmludmFsaWQ+iJAEExYI
ADgWIQR02DkAXhxWkcoChYL+ED+7ovHO8QUCawPMswIbAwULCQgHAgYVCgkICwIE
FgIDAQIeAQIXgAAKCRD+ED+7ovHO8TY1AQDorts1NHaDLOL9ettZb9AF1Q2UT1/d
cR79o20zcNLVtQEAi4M0yOapycrzOO/1p+R/nkgjsbTcySmOt27fcU77LwQ=
=rbEs
-----END PGP PUBLIC KEY BLOCK-----
"""


FPR_ED25519 = "74D839005E1C5691CA028582FE103FBBA2F1CEF1"


def diag_doc(failing: dict[str, str] | None = None, top: str = "DCGM GPU Diagnostic", gpus: int = 8) -> str:
    """A ``dcgmi diag -r 1 -j`` document in the layout DCGM 3/4 print (per-GPU results)."""
    failing = failing or {}
    tests = []
    for name in ("Denylist", "NVML Library", "CUDA Main Library", "Persistence Mode", "Fabric Manager"):
        bad = name in failing
        results = []
        for i in range(gpus):
            r = {"entity_group": "GPU", "entity_group_id": 1, "entity_id": i, "status": "Fail" if bad else "Pass"}
            if bad:
                r["warnings"] = [{"warning": failing[name], "error_id": 1, "error_category": 1, "error_severity": 2}]
            results.append(r)
        tests.append({"name": name, "results": results, "test_summary": {"status": "Fail" if bad else "Pass"}})
    return json.dumps(
        {
            top: {"test_categories": [{"category": "Deployment", "tests": tests}]},
            "metadata": {"DCGM Version": "4.2.3"},
            "version": "4.2.3",
        },
        indent=4,
    )
