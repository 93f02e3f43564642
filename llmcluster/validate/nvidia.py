"""NVIDIA stack rules: pinned drivers new enough for the GPU, kernel module flavor, TensorRT-LLM install, repos."""

from __future__ import annotations

from collections.abc import Iterator

from llmcluster.errors import Problem
from llmcluster.plan.catalog import GPUS
from llmcluster.plan.nvidia import MIN_BRANCH_FOR_ARCH, MIN_DRIVER_BRANCH, driver_branch
from llmcluster.spec.models import GpuConfig, Spec
from llmcluster.validate.registry import rule


def _gpu_pools(spec: Spec) -> Iterator[tuple[str, GpuConfig]]:
    """Pools whose GPU is in the catalog (pools.gpu-model-known reports the others)."""
    for name, pool in spec.pools.items():
        if pool.gpu is not None and pool.gpu.model in GPUS:
            yield name, pool.gpu


@rule("nvidia.driver-pinned")
def driver_pinned(spec: Spec) -> Iterator[Problem]:
    """On bare metal every GPU pool pins gpu.driver_version (the nodes get exactly this driver)."""
    if spec.platform != "baremetal":
        return
    for name, gpu in _gpu_pools(spec):
        if gpu.driver_version is None:
            yield Problem(f"pools.{name}.gpu.driver_version",
                          "missing: bare-metal GPU nodes get exactly this driver (e.g. '570.172.08')")


@rule("nvidia.driver-branch")
def driver_branch_new_enough(spec: Spec) -> Iterator[Problem]:
    """A pinned driver's branch supports the GPU's architecture."""
    for name, gpu in _gpu_pools(spec):
        if gpu.driver_version is None:
            continue
        arch = GPUS[gpu.model].arch
        branch = driver_branch(gpu.driver_version)
        floor = max(MIN_DRIVER_BRANCH, MIN_BRANCH_FOR_ARCH.get(arch, 0))
        if branch < floor:
            yield Problem(f"pools.{name}.gpu.driver_version",
                          f"branch {branch} is too old for {gpu.model} ({arch}): use {floor} or newer")


@rule("nvidia.open-modules")
def open_modules(spec: Spec) -> Iterator[Problem]:
    """Blackwell GPUs with a pinned driver run the open kernel modules, not the proprietary ones."""
    for name, gpu in _gpu_pools(spec):
        arch = GPUS[gpu.model].arch
        if gpu.driver_version is not None and arch == "blackwell" and gpu.driver_flavor == "proprietary":
            yield Problem(f"pools.{name}.gpu.driver_flavor",
                          f"{gpu.model} ({arch}) runs only the open kernel modules: use 'open' or 'auto'")


@rule("nvidia.trtllm-container-runtime")
def trtllm_container_runtime(spec: Spec) -> Iterator[Problem]:
    """TensorRT-LLM installed as a container needs a container runtime."""
    n = spec.nvidia
    if n.trtllm.install == "container" and n.container_runtime == "none":
        yield Problem("nvidia.trtllm.install", "'container' needs a container runtime: "
                      "set nvidia.container_runtime to containerd or docker")


@rule("nvidia.repo-keys")
def repo_keys(spec: Spec) -> Iterator[Problem]:
    """A custom CUDA or toolkit repository url comes with its key_url and key_fingerprint."""
    for key in ("cuda_repo", "toolkit_repo"):
        r = getattr(spec.nvidia, key)
        if r.url is not None and (r.key_url is None or r.key_fingerprint is None):
            yield Problem(f"nvidia.{key}",
                          "a repository url needs its key_url and key_fingerprint (the roles check the key)")
