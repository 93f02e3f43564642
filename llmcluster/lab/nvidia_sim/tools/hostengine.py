#!/usr/bin/python3
"""SIMULATION (llmcluster lab): stand-in ``nv-hostengine`` (DCGM host engine).

Listens on 127.0.0.1:5555 (``-p PORT``, ``--bind-interface ADDR``): the stand-in ``dcgmi`` connects
there, as the real one does, and sends one JSON line (``{"op": "ping"}`` or ``{"op": "set_watches",
"systems": "a"}``); the engine answers with its version and the health watches it holds (in
memory only, so a restart clears them, as with the real engine). ``-n`` stays in the foreground (the
nvidia-dcgm.service way); without it the daemon forks. Pid file: /run/nvidia-dcgm/nv-hostengine.pid
(``--pid FILE``). No real GPU is used.
"""
import json
import sys
from pathlib import Path

# --- sim:common begin
from llmcluster.lab.nvidia_sim.tools._common import (
    Stop,
    log,
    run_daemon,
    sim_path,
    tcp_listener,
)

# --- sim:common end

BAKED = {"version": "0.0.0"}  # sim:baked
VERSION = BAKED["version"]
PROG = "nv-hostengine"


def main(argv) -> int:
    if "--version" in argv or "-v" in argv:
        print(f"Version : {VERSION}")
        return 0
    port, address, pidfile = 5555, "127.0.0.1", sim_path("/run/nvidia-dcgm/nv-hostengine.pid")
    i = 0
    while i < len(argv):
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in ("-p", "--port"):
            port, i = int(nxt), i + 1
        elif arg in ("-b", "--bind-interface"):
            address, i = ("0.0.0.0" if nxt == "ALL" else nxt), i + 1
        elif arg == "--pid":
            pidfile, i = sim_path(nxt) if nxt.startswith("/") else Path(nxt), i + 1
        elif arg in ("--service-account", "--log-level", "-f", "--log-filename"):
            i += 1
        i += 1
    foreground = "-n" in argv or "--no-daemon" in argv

    def setup():
        try:
            sock = tcp_listener(address, port)
        except OSError as exc:
            raise RuntimeError(f"Err: Failed to start DCGM Server: {exc} (listening on {address}:{port})") from exc
        log(PROG, f"Started host engine version {VERSION} using port number: {port}")
        return sock

    state = {"watches": ""}  # health watch letters; they live in the host engine (lost on restart)

    def answer(request: dict) -> dict:
        if request.get("op") == "set_watches":
            state["watches"] = str(request.get("systems", ""))
        return {"dcgm": VERSION, "simulation": True, "watches": state["watches"]}

    def loop(sock) -> None:
        while not Stop.event.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(2)
                    data = b""
                    while not data.endswith(b"\n") and len(data) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    try:
                        request = json.loads(data or b"{}")
                    except ValueError:
                        request = {}
                    conn.sendall((json.dumps(answer(request if isinstance(request, dict) else {})) + "\n").encode())
                except OSError:
                    pass

    def cleanup(sock) -> None:
        sock.close()
        log(PROG, "Host engine stopped")

    return run_daemon(pidfile, foreground, setup, loop, cleanup)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
