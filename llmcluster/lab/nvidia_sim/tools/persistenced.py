#!/usr/bin/python3
"""SIMULATION (llmcluster lab): stand-in ``nvidia-persistenced``.

Forks into the background (like the real daemon; ``--foreground`` stays attached), writes its pid
to /run/nvidia-persistenced/nvidia-persistenced.pid and stays up until SIGTERM; while it runs the
stand-in ``nvidia-smi`` reports Persistence Mode Enabled. Refuses to start without the simulated
hardware or an installed driver. No real GPU is used.
"""
import sys

# --- sim:common begin
from llmcluster.lab.nvidia_sim.tools._common import (
    PERSISTENCED_PIDFILE,
    installed_driver_version,
    load_hardware,
    log,
    run_daemon,
    sleep_until_stopped,
)

# --- sim:common end

BAKED = {"version": "0.0.0"}  # sim:baked
VERSION = BAKED["version"]
PROG = "nvidia-persistenced"


def main(argv) -> int:
    if "--version" in argv or "-v" in argv:
        print(f"{PROG}: version {VERSION}")
        return 0
    foreground = "--foreground" in argv or "-f" in argv

    def setup():
        if load_hardware() is None or installed_driver_version() is None:
            raise RuntimeError(f"{PROG} failed to initialize. Check syslog for more details.")
        log(PROG, f"Started ({VERSION})")
        return None

    def cleanup(ctx) -> None:
        log(PROG, "Shutdown (SIGTERM)")

    return run_daemon(PERSISTENCED_PIDFILE, foreground, setup, sleep_until_stopped, cleanup)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
