#!/usr/bin/python3
"""SIMULATION (llmcluster lab): stand-in ``dcgm-exporter`` (Prometheus metrics of the simulated GPUs).

Serves ``/metrics`` (DCGM_FI_DEV_* gauges labelled ``gpu``, ``UUID``, ``pci_bus_id``, ``device``,
``modelName``, ``Hostname``, ``DCGM_FI_DRIVER_VERSION``) and ``/health`` over HTTP. Each setting,
first found: the flag, the real tool's environment variable (the unit loads
/etc/default/nvidia-dcgm-exporter), that variable's line in /etc/default/nvidia-dcgm-exporter:
listen address ``-a/--address`` / ``DCGM_EXPORTER_LISTEN`` (default ``:9400``); collectors CSV
``-f/--collectors`` / ``DCGM_EXPORTER_COLLECTORS`` (only the listed fields; default all); remote host
engine ``-r/--remote-hostengine-info`` / ``DCGM_REMOTE_HOSTENGINE_INFO`` (must answer at start,
default embedded). Runs in the foreground. No real GPU is used.
"""
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# --- sim:common begin
from llmcluster.lab.nvidia_sim.tools._common import (
    Stop,
    hostname,
    installed_driver_version,
    load_faults,
    load_hardware,
    log,
    sim_path,
    visible_gpus,
)

# --- sim:common end

BAKED = {"version": "0.0.0"}  # sim:baked
VERSION = BAKED["version"]
PROG = "dcgm-exporter"
ENV_FILE = sim_path("/etc/default/nvidia-dcgm-exporter")

METRICS = [
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", lambda g: 1980),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", lambda g: 2619),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", lambda g: 30 + (g["index"] * 3) % 9),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).",
     lambda g: round(g["power_limit_w"] * 0.1 + g["index"], 3)),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", lambda g: 0),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", lambda g: 0),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", lambda g: g["memory_total_mib"] - 1),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", lambda g: 1),
    # faults.json {"xid": {"<gpu index>": <xid>}}: the last XID of that GPU (a gauge that never resets, as the real one)
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.", lambda g: g.get("xid", 0)),
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors.", lambda g: 0),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter",
     "Total number of NVLink bandwidth counters for all lanes.", lambda g: 0),
]


def option(argv, short: str, long: str, env: str, default: str) -> str:
    """A flag's value, else the environment variable, else its line in the env file, else ``default``."""
    for i, arg in enumerate(argv):
        if arg in (short, long) and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    if os.environ.get(env):
        return os.environ[env]
    try:
        for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip() == env and value.strip():
                return value.strip().strip('"').strip("'")
    except OSError:
        pass
    return default


def collectors(path: str) -> set:
    """Field names listed in a collectors CSV (``DCGM_FI_DEV_GPU_TEMP, gauge, help``); empty: all."""
    if not path:
        return set()
    try:
        text = (sim_path(path) if path.startswith("/") else Path(path)).read_text(encoding="utf-8")
    except OSError:
        return set()
    return {line.split(",")[0].strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")}


ENABLED: set = set()


def render() -> str:
    hw = load_hardware()
    driver = installed_driver_version() or ""
    faults = load_faults()
    gpus = visible_gpus(hw, faults) if hw else []
    xids = faults.get("xid") if isinstance(faults.get("xid"), dict) else {}
    for gpu in gpus:
        try:
            gpu["xid"] = int(xids.get(str(gpu["index"]), 0))
        except (TypeError, ValueError):
            gpu["xid"] = 0
    host = hostname()
    out = []
    metrics = [m for m in METRICS if m[0] in ENABLED] or METRICS
    for name, kind, help_text, value in metrics:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for gpu in gpus:
            labels = (f'gpu="{gpu["index"]}",UUID="{gpu["uuid"]}",pci_bus_id="{gpu["pci_bus_id"]}",'
                      f'device="nvidia{gpu["index"]}",modelName="{gpu["name"]}",Hostname="{host}",'
                      f'DCGM_FI_DRIVER_VERSION="{driver}"')
            out.append(f"{name}{{{labels}}} {value(gpu)}")
    return "\n".join(out) + "\n"


class Handler(BaseHTTPRequestHandler):
    server_version = "dcgm-exporter-simulated"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status: int, body: str, ctype: str = "text/plain; version=0.0.4; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, render())
        elif path == "/health":
            self._send(200, "OK\n", "text/plain")
        elif path == "/":
            self._send(200, '<html><body><a href="/metrics">Metrics</a> (SIMULATED dcgm-exporter)</body></html>',
                       "text/html")
        else:
            self._send(404, "404 page not found\n")


def main(argv) -> int:
    if "--version" in argv or "-v" in argv:
        print(f"DCGM Exporter version {VERSION}-simulated")
        return 0
    if load_hardware() is None or installed_driver_version() is None:
        log(PROG, "Failed to initialize NVML: the NVIDIA driver is not loaded")
        return 1
    address = option(argv, "-a", "--address", "DCGM_EXPORTER_LISTEN", ":9400")
    ENABLED.update(collectors(option(argv, "-f", "--collectors", "DCGM_EXPORTER_COLLECTORS", "")))
    remote = option(argv, "-r", "--remote-hostengine-info", "DCGM_REMOTE_HOSTENGINE_INFO", "")
    if remote:  # like the real exporter: a remote host engine must answer, else it exits
        rhost, _, rport = remote.rpartition(":") if ":" in remote else (remote, "", "5555")
        try:
            socket.create_connection((rhost or "127.0.0.1", int(rport or 5555)), timeout=3).close()
        except (OSError, ValueError) as exc:
            log(PROG, f"Failed to connect to the remote host engine at {remote}: {exc}")
            return 1
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer((host, int(port)), Handler)
    except (OSError, ValueError) as exc:
        log(PROG, f"Failed to listen on {address}: {exc}")
        return 1
    Stop.install()
    server.timeout = 0.5
    log(PROG, f"Starting webserver on {address}")
    while not Stop.event.is_set():
        server.handle_request()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
