#!/usr/bin/python3
"""SIMULATION (llmcluster lab): stand-in ``nvidia-container-cli`` (``info``, ``list``, ``--version``).

Reports the simulated GPUs the way libnvidia-container does; fails like the real tool when the
NVIDIA driver (libnvidia-ml) is absent. No real GPU is used.
"""
import sys

# --- sim:common begin
from llmcluster.lab.nvidia_sim.tools._common import (
    cuda_version,
    installed_driver_version,
    load_faults,
    load_hardware,
    quiet_sigpipe,
    visible_gpus,
)

# --- sim:common end

BAKED = {"version": "0.0.0"}  # sim:baked
VERSION = BAKED["version"]
NO_DRIVER = ("nvidia-container-cli: initialization error: load library failed: libnvidia-ml.so.1: "
             "cannot open shared object file: no such file or directory")


def main(argv) -> int:
    if "--version" in argv or "-V" in argv:
        print(f"cli-version: {VERSION}\nlib-version: {VERSION}\nbuild date: simulated\nbuild revision: simulated")
        return 0
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] not in ("info", "list"):
        print("Usage: nvidia-container-cli [OPTION...] info|list (simulation)", file=sys.stderr)
        return 2
    hw, driver = load_hardware(), installed_driver_version()
    if hw is None or driver is None:
        print(NO_DRIVER, file=sys.stderr)
        return 1
    gpus = visible_gpus(hw, load_faults())
    if words[0] == "list":
        print("/dev/nvidiactl\n/dev/nvidia-uvm\n/dev/nvidia-uvm-tools")
        for gpu in gpus:
            print(f"/dev/nvidia{gpu['index']}")
        print(f"/usr/bin/nvidia-smi\n/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{driver}")
        return 0
    print(f"NVRM version:   {driver}")
    print(f"CUDA version:   {cuda_version(driver)}")
    for gpu in gpus:
        print()
        print(f"Device Index:   {gpu['index']}")
        print(f"Device Minor:   {gpu['index']}")
        print(f"Model:          {gpu['name']}")
        print("Brand:          Nvidia")
        print(f"GPU UUID:       {gpu['uuid']}")
        print(f"Bus Location:   {gpu['pci_bus_id']}")
        print(f"Architecture:   {gpu['compute_cap']}")
    return 0


if __name__ == "__main__":
    quiet_sigpipe()
    sys.exit(main(sys.argv[1:]))
