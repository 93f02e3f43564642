"""LAB SIMULATION of the NVIDIA GPU node stack: stand-in hardware, packages and wheels.

Nothing here is ever deployed to production. The lab gives each GPU host a simulated board
(``/etc/llmcluster-sim/hardware.json``), signed apt repositories of stand-in packages with the
real NVIDIA names and versions (``/srv/llmcluster-sim``) and a weightless model checkpoint, so the
GPU roles run against real apt, dpkg and systemd (docs/gpu-stack.md, "The lab simulation").
"""

from llmcluster.lab.nvidia_sim.host import prepare_gpu_host
from llmcluster.lab.nvidia_sim.repos import SimRepos, ensure_sim_repos, inventory_overrides

__all__ = ["SimRepos", "ensure_sim_repos", "inventory_overrides", "prepare_gpu_host"]
