"""LAB SIMULATION: prepare a GPU host's root filesystem before it boots (hardware, repositories).

The model is not placed here: the model_store role stages the lab's fixture tree
(llmcluster.lab.model_fixture) and verifies it, as on a production node."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from llmcluster.lab.nvidia_sim.hardware import hardware_doc, write_hardware
from llmcluster.lab.nvidia_sim.repos import FINGERPRINT_NAME, HOST_DIR, KEY_NAME, SimRepos


def copy_repos(root: Path, repos: SimRepos) -> Path:
    """Copy the repositories, wheels and key to ``root/srv/llmcluster-sim`` (replacing older copies)."""
    dest = root / HOST_DIR.lstrip("/")
    dest.mkdir(parents=True, exist_ok=True)
    for src, name in ((repos.cuda, "cuda"), (repos.libnvidia_container, "libnvidia-container"),
                      (repos.wheels, "wheels")):
        shutil.rmtree(dest / name, ignore_errors=True)
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            (dest / name).mkdir()
    shutil.copy2(repos.key, dest / KEY_NAME)
    shutil.copy2(repos.fingerprint_file, dest / FINGERPRINT_NAME)
    return dest


def prepare_gpu_host(root: Path, plan: Any, host_name: str, repos: SimRepos, engine: Any = None) -> None:
    """Give the host rooted at ``root`` its simulated GPUs and the NVIDIA repositories, and with
    ``engine`` (a :class:`llmcluster.lab.llama_engine.LabEngine`, opt-in) the real-model stand-in."""
    root = Path(root)
    pool = plan.spec.pools[plan.ip.host(host_name).pool]
    write_hardware(root, hardware_doc(pool, host_name))
    copy_repos(root, repos)
    if engine is not None:
        from llmcluster.lab.llama_engine import install_on_host

        install_on_host(root, engine)
