#!/usr/bin/python3
"""SIMULATION (llmcluster lab): stand-in ``nvidia-container-runtime``.

Says it is simulated (on stderr) and hands over to ``runc`` with the same arguments when runc is
installed; no GPU is injected into containers.
"""
import os
import shutil
import sys

BAKED = {"version": "0.0.0"}  # sim:baked
VERSION = BAKED["version"]


def main(argv) -> int:
    if argv[:1] == ["--version"]:
        print(f"NVIDIA Container Runtime version {VERSION} (SIMULATED, llmcluster lab)")
    print("nvidia-container-runtime: SIMULATED (llmcluster lab): no GPUs are injected; running runc",
          file=sys.stderr)
    runc = shutil.which("runc")
    if runc is None:
        print("nvidia-container-runtime: runc not found", file=sys.stderr)
        return 1
    os.execv(runc, [runc, *argv])
    return 1  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
