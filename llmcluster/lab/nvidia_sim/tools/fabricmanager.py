#!/usr/bin/python3
"""SIMULATION (llmcluster lab): stand-in ``nv-fabricmanager`` and ``nvidia-imex``.

The package bakes in its version and which daemon this is (``BAKED["mode"]``: ``fabricmanager``
or ``imex``). Start-up checks, as the real daemons make them:

* the NVIDIA driver is installed (``/usr/share/llmcluster-sim/driver-version``) and the board
  exists (``/etc/llmcluster-sim/hardware.json``);
* fabric manager only: NVSwitch devices exist (``/etc/llmcluster-sim/proc/driver/nvidia-nvswitch/
  devices``, or ``$LLMCLUSTER_SIM_NVSWITCH_DEVICES``);
* the daemon's version equals the driver's exactly, else it logs the incompatibility and exits 1.

Then it writes ``/run/llmcluster-sim/fabric-state`` (``imex-state``) with state ``Completed``,
forks into the background (``DAEMONIZE=1`` in the config; ``-n``/``--foreground`` stays attached)
and stays up until SIGTERM, removing the state on exit. No real NVSwitch is touched.
"""
import json
import os
import sys

# --- sim:common begin
from llmcluster.lab.nvidia_sim.tools._common import (
    FABRIC_STATE_FILE,
    IMEX_STATE_FILE,
    installed_driver_version,
    load_hardware,
    log,
    nvswitch_devices_dir,
    remove,
    run_daemon,
    sim_path,
    sleep_until_stopped,
    write_file,
)

# --- sim:common end

BAKED = {"version": "0.0.0", "mode": "fabricmanager"}  # sim:baked
VERSION = BAKED["version"]
MODE = BAKED["mode"]
PROG = "nv-fabricmanager" if MODE == "fabricmanager" else "nvidia-imex"
DEFAULT_CONFIG = (
    "/usr/share/nvidia/nvswitch/fabricmanager.cfg" if MODE == "fabricmanager" else "/etc/nvidia-imex/config.cfg"
)
PIDFILE = sim_path(
    "/run/nvidia-fabricmanager/nv-fabricmanager.pid" if MODE == "fabricmanager" else "/run/nvidia-imex/nvidia-imex.pid"
)
STATE_FILE = FABRIC_STATE_FILE if MODE == "fabricmanager" else IMEX_STATE_FILE


def read_config(path: str) -> dict:
    cfg = {}
    try:
        text = sim_path(path).read_text(encoding="utf-8") if path.startswith("/") else open(path).read()
    except OSError:
        return cfg
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            cfg[key.strip()] = value.strip()
    return cfg


def check() -> str:
    """Raise RuntimeError (the daemon's log lines) when the daemon cannot start; return the driver version."""
    driver = installed_driver_version()
    if driver is None or load_hardware() is None:
        raise RuntimeError(
            f"[ERROR] {PROG}: failed to open NVIDIA GPU driver interface: the NVIDIA driver is not loaded\n"
            f"[ERROR] request to query NVSwitch device information from NVSwitch driver failed"
        )
    if MODE == "fabricmanager":
        devices = nvswitch_devices_dir()
        found = sorted(p.name for p in devices.iterdir()) if devices.is_dir() else []
        if not found:
            raise RuntimeError(
                f"[ERROR] {PROG}: no NVSwitch devices found (nothing in {devices}); fabric manager is only "
                "needed on NVSwitch-based systems (HGX/DGX) and will exit"
            )
    if driver != VERSION:
        name = "fabric manager" if MODE == "fabricmanager" else "IMEX"
        raise RuntimeError(
            f"[ERROR] {name} version {VERSION} is not compatible with the NVIDIA driver version {driver}: "
            f"{name} NVIDIA GPU driver interface version {VERSION} don't match with driver version {driver}. "
            "Please update with matching NVIDIA driver package.\n"
            "[ERROR] request to query NVSwitch device information from NVSwitch driver failed with error: "
            "WARNING Requested data not found"
        )
    return driver


def main(argv) -> int:
    if "--version" in argv or "-v" in argv:
        print(f"Fabric Manager version is : {VERSION}" if MODE == "fabricmanager" else f"IMEX version is: {VERSION}")
        return 0
    config_path = DEFAULT_CONFIG
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            config_path = argv[i + 1]
        elif arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
    cfg = read_config(config_path)
    foreground = "-n" in argv or "--foreground" in argv or cfg.get("DAEMONIZE", "1") == "0"
    log_name = cfg.get("LOG_FILE_NAME") or ("/var/log/fabricmanager.log" if MODE == "fabricmanager"
                                            else "/var/log/nvidia-imex.log")
    logfile = sim_path(log_name)

    def note(message: str) -> None:
        log(PROG, message)
        try:
            logfile.parent.mkdir(parents=True, exist_ok=True)
            with open(logfile, "a", encoding="utf-8") as fh:
                log(PROG, message, fh)
        except OSError:
            pass

    try:
        driver = check()
    except RuntimeError as exc:
        for line in str(exc).splitlines():
            note(line)
        return 1

    def setup():
        write_file(STATE_FILE, json.dumps({"state": "Completed", "version": VERSION, "pid": os.getpid(),
                                           "daemon": PROG, "simulation": True}) + "\n")
        note(f"{PROG} version {VERSION} started (driver {driver}); fabric state Completed")
        return None

    def cleanup(ctx) -> None:
        remove(STATE_FILE)
        note(f"{PROG} received a stop signal, exiting")

    return run_daemon(PIDFILE, foreground, setup, sleep_until_stopped, cleanup)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
