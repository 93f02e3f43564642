"""The GPU node stack of a pool: driver, fabric, container toolkit, DCGM, TensorRT-LLM (pure, no I/O).

What the roles ``nvidia_driver`` .. ``tensorrt_llm`` install, derived once from the spec and the
catalog (docs/gpu-stack.md is the contract):

* **Driver branch and flavour.** The branch is the first component of ``gpu.driver_version``.
  Open kernel modules are NVIDIA's recommendation from Turing on and the only ones Blackwell
  supports; ``auto`` picks open from Hopper (sm 90) on and proprietary before.
* **Package names** are the CUDA repository's branch-named packages: on Ubuntu the ``-server``
  (enterprise-ready) builds, on Debian the plain ones. NVSwitch boards add ``libnvidia-nscq``.
* **Fabric.** HGX boards with NVSwitch run the fabric manager, whose package is named
  ``nvidia-fabricmanager-<branch>`` up to 570 and ``nvidia-fabricmanager`` from 580; it must be
  exactly the driver's version. GB200/GB300 racks run IMEX instead (same naming change).

The serving side (replica layout, engine cache key) is :mod:`llmcluster.plan.serving`.
"""

from __future__ import annotations

from typing import Any

from llmcluster.plan.catalog import GPUS
from llmcluster.plan.hostnet import host_os
from llmcluster.spec.models import Pool, Spec

#: What ``nvidia-smi --query-gpu=name`` prints per catalog GPU (lab simulation and verify checks).
SMI_NAMES: dict[str, str] = {
    "h100": "NVIDIA H100 80GB HBM3",
    "h200": "NVIDIA H200",
    "h20": "NVIDIA H20",
    "a100-80gb": "NVIDIA A100-SXM4-80GB",
    "a100-40gb": "NVIDIA A100-SXM4-40GB",
    "l40s": "NVIDIA L40S",
    "b200": "NVIDIA B200",
    "gb200": "NVIDIA GB200",
}

#: CUDA repository folder per OS (https://developer.download.nvidia.com/compute/cuda/repos/<dir>/x86_64).
CUDA_REPO_DIRS = {"ubuntu-22.04": "ubuntu2204", "ubuntu-24.04": "ubuntu2404", "debian-12": "debian12"}
CUDA_REPO_BASE = "https://developer.download.nvidia.com/compute/cuda/repos"
#: NVIDIA's CUDA repository signing key (3bf863cc.pub) and the libnvidia-container key (gpgkey).
CUDA_KEY_FINGERPRINT = "EB693B3035CD5710E231E123A4B469963BF863CC"
TOOLKIT_REPO_URL = "https://nvidia.github.io/libnvidia-container/stable/deb/amd64"
TOOLKIT_KEY_URL = "https://nvidia.github.io/libnvidia-container/gpgkey"
TOOLKIT_KEY_FINGERPRINT = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
#: The oldest driver branch the stack supports (Hopper needs >= 525; DCGM 4 needs >= 535).
MIN_DRIVER_BRANCH = 535
#: Blackwell needs the 570 branch or newer.
MIN_BRANCH_FOR_ARCH = {"blackwell": 570}


def driver_branch(version: str) -> int:
    return int(version.split(".")[0])


def driver_flavor(requested: str, sm: int) -> str:
    if requested != "auto":
        return requested
    return "open" if sm >= 90 else "proprietary"


def fabric_kind(pool: Pool) -> str:
    """``nvswitch`` (fabric manager), ``imex`` (GB200/GB300) or ``none``."""
    assert pool.gpu is not None
    if GPUS[pool.gpu.model].nvlink_fabric == "imex":
        return "imex"
    return "nvswitch" if pool.gpu.nvswitch else "none"


def driver_packages(os_name: str, branch: int, flavor: str, nvswitch: bool) -> list[str]:
    server = "-server" if os_name.startswith("ubuntu") else ""
    meta = f"nvidia-driver-{branch}{server}{'-open' if flavor == 'open' else ''}"
    pkgs = [meta, f"nvidia-utils-{branch}{server}", f"nvidia-compute-utils-{branch}{server}"]
    if nvswitch:
        pkgs.append(f"libnvidia-nscq-{branch}")
    return pkgs


def fabric_packages(kind: str, branch: int) -> tuple[list[str], str]:
    """(packages, service) of the fabric: the name drops the branch suffix from 580 on."""
    if kind == "none":
        return [], ""
    base = "nvidia-fabricmanager" if kind == "nvswitch" else "nvidia-imex"
    return [base if branch >= 580 else f"{base}-{branch}"], base


def cuda_repo(spec: Spec) -> dict[str, str]:
    os_name = host_os(spec)
    base = f"{CUDA_REPO_BASE}/{CUDA_REPO_DIRS[os_name]}/x86_64"
    r = spec.nvidia.cuda_repo
    url = r.url or base
    return {"url": url, "key_url": r.key_url or f"{base}/3bf863cc.pub",
            "key_fingerprint": r.key_fingerprint or CUDA_KEY_FINGERPRINT, "origin": _origin(url)}


def toolkit_repo(spec: Spec) -> dict[str, str]:
    r = spec.nvidia.toolkit_repo
    url = r.url or TOOLKIT_REPO_URL
    return {"url": url, "key_url": r.key_url or TOOLKIT_KEY_URL,
            "key_fingerprint": r.key_fingerprint or TOOLKIT_KEY_FINGERPRINT, "origin": _origin(url)}


def _origin(url: str) -> str:
    """apt's ``origin`` of a source: the host name of an http(s) URL, "" for file: sources."""
    if url.startswith(("http://", "https://")):
        return url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
    return ""


def nvidia_vars(spec: Spec) -> dict[str, Any]:
    """``all.vars.llmcluster_nvidia`` of the inventory."""
    n = spec.nvidia
    t = n.trtllm
    return {
        "cuda_repo": cuda_repo(spec),
        "toolkit_repo": toolkit_repo(spec),
        "container_toolkit_version": n.container_toolkit_version,
        "container_runtime": n.container_runtime,
        "dcgm_version": n.dcgm_version,
        "dcgm_exporter_version": n.dcgm_exporter_version,
        "dcgm_diag_level": n.dcgm_diag_level,
        "skip_reboot": n.skip_reboot,
        "kubernetes_drain": n.kubernetes_drain,
        "trtllm": {
            "version": t.version, "cuda_version": t.cuda_version, "install": t.install,
            "pip_index_url": t.pip_index_url, "pip_find_links": "", "image": t.image,
            "registry_mirror": t.registry_mirror, "engine_cache_dir": t.engine_cache_dir,
        },
    }


def gpu_vars(spec: Spec, pool_name: str) -> dict[str, Any]:
    """``llmcluster_gpu`` of a host of ``pool_name`` (a GPU pool)."""
    pool = spec.pools[pool_name]
    assert pool.gpu is not None
    g = GPUS[pool.gpu.model]
    os_name = host_os(spec)
    kind = fabric_kind(pool)
    out: dict[str, Any] = {
        "model": pool.gpu.model, "smi_name": SMI_NAMES[pool.gpu.model], "count": pool.gpu.count,
        "nvswitch": pool.gpu.nvswitch, "fabric": kind, "sm": g.sm, "arch": g.arch,
        "memory_bytes": g.memory_bytes, "hbm_bandwidth_bytes_per_s": g.hbm_bandwidth_bytes_per_s,
        "driver_version": pool.gpu.driver_version,
    }
    if pool.gpu.driver_version is not None:
        branch = driver_branch(pool.gpu.driver_version)
        flavor = driver_flavor(pool.gpu.driver_flavor, g.sm)
        fabric, service = fabric_packages(kind, branch)
        out.update({
            "driver_branch": str(branch), "driver_flavor": flavor,
            "packages": {"driver": driver_packages(os_name, branch, flavor, kind == "nvswitch"),
                         "fabric": fabric, "fabric_service": service},
        })
    return out
