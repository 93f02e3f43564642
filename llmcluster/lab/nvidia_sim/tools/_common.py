# SIMULATION (llmcluster lab): helpers shared by the stand-in NVIDIA tools. No real GPU is used.
# Inlined into every tool at package build time; stdlib only (Debian 12 python3 3.11).
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

#: Root the simulated paths resolve under (tests point it at a temporary directory).
SIM_ROOT = Path(os.environ.get("LLMCLUSTER_SIM_ROOT") or "/")


def sim_path(path: str) -> Path:
    """``/etc/x`` -> ``$LLMCLUSTER_SIM_ROOT/etc/x``."""
    return SIM_ROOT / path.lstrip("/")


HARDWARE_FILE = sim_path("/etc/llmcluster-sim/hardware.json")
FAULTS_FILE = sim_path("/etc/llmcluster-sim/faults.json")
DRIVER_VERSION_FILE = sim_path("/usr/share/llmcluster-sim/driver-version")
RUN_DIR = sim_path("/run/llmcluster-sim")
PERSISTENCED_PIDFILE = sim_path("/run/nvidia-persistenced/nvidia-persistenced.pid")
FABRIC_STATE_FILE = RUN_DIR / "fabric-state"
IMEX_STATE_FILE = RUN_DIR / "imex-state"
PERSISTENCE_MODE_FILE = RUN_DIR / "persistence-mode"


def nvswitch_devices_dir() -> Path:
    env = os.environ.get("LLMCLUSTER_SIM_NVSWITCH_DEVICES")
    return Path(env) if env else sim_path("/etc/llmcluster-sim/proc/driver/nvidia-nvswitch/devices")


def load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_hardware():
    """The simulated board (``None`` when the host has no simulated GPUs)."""
    hw = load_json(HARDWARE_FILE)
    return hw if isinstance(hw, dict) else None


def load_faults() -> dict:
    faults = load_json(FAULTS_FILE)
    return faults if isinstance(faults, dict) else {}


def installed_driver_version():
    """The driver version the installed nvidia-utils package ships (``None``: no driver)."""
    try:
        text = DRIVER_VERSION_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def cuda_version(driver: str) -> str:
    """The CUDA version a driver branch reports (570: 12.8, 575: 12.9, 580+: 13.0)."""
    branch = int(driver.split(".")[0])
    if branch >= 580:
        return "13.0"
    if branch >= 575:
        return "12.9"
    if branch >= 570:
        return "12.8"
    if branch >= 560:
        return "12.6"
    return "12.4"


def visible_gpus(hw: dict, faults: dict) -> list:
    """The GPUs the driver sees, with the injected faults applied."""
    missing = set(faults.get("missing_gpus") or [])
    ecc_off = set(faults.get("ecc_disabled") or [])
    down = {(int(g), int(link)) for g, link in (faults.get("nvlink_down") or [])}
    gpus = []
    for gpu in hw.get("gpus", []):
        if gpu["index"] in missing:
            continue
        gpu = dict(gpu)
        if gpu["index"] in ecc_off:
            gpu["ecc_mode"] = "Disabled"
        gpu["links_down"] = sorted(link for g, link in down if g == gpu["index"])
        gpus.append(gpu)
    for new_index, gpu in enumerate(gpus):  # the driver enumerates what it finds
        gpu["index"] = new_index
    return gpus


def pid_alive(pidfile: Path):
    """The pid written in ``pidfile`` when that process is alive, else ``None``."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:  # a zombie (exited, not yet reaped) is not running
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return None
    except (OSError, IndexError):
        pass
    return pid


def persistence_enabled() -> bool:
    try:
        mode = PERSISTENCE_MODE_FILE.read_text().strip()
    except OSError:
        mode = ""
    return mode == "1" or pid_alive(PERSISTENCED_PIDFILE) is not None


def _service_state(path: Path, driver):
    state = load_json(path)
    if not isinstance(state, dict) or not state.get("pid"):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (ProcessLookupError, ValueError):
        return None
    except PermissionError:
        pass
    return state


def fabric_status(hw: dict, driver):
    """``(State, Status)`` as ``nvidia-smi -q`` reports them under ``Fabric``."""
    fabric = hw.get("fabric", "none")
    if fabric not in ("nvswitch", "imex"):
        return "N/A", "N/A"
    path = FABRIC_STATE_FILE if fabric == "nvswitch" else IMEX_STATE_FILE
    state = _service_state(path, driver)
    if state is None:
        return "Not Started", "N/A"
    if state.get("version") != driver:
        return "In Progress", "N/A"
    return "Completed", "Success"


def log(prog: str, message: str, stream=None) -> None:
    stamp = time.strftime("%b %d %Y %H:%M:%S")
    print(f"[{stamp}] [{prog}] {message}", file=stream or sys.stderr, flush=True)


class Stop:
    """Set by SIGTERM/SIGINT; daemons loop until it is set."""

    event = threading.Event()

    @classmethod
    def install(cls) -> None:
        def handler(signum, frame):
            cls.event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def run_daemon(pidfile: Path, foreground: bool, setup, loop, cleanup, logfile=None) -> int:
    """Run ``setup`` then ``loop`` until SIGTERM, then ``cleanup``.

    Not in the foreground: double fork (like the real daemons systemd runs as Type=forking);
    the parent exits 0 once the child wrote its pid file, or 1 with the child's error.
    ``setup()`` may raise ``RuntimeError(message)`` to refuse to start.
    """

    def body(ready_fd=None) -> int:
        Stop.install()
        try:
            ctx = setup()
        except RuntimeError as exc:
            if ready_fd is not None:
                os.write(ready_fd, ("ERR " + str(exc)).encode())
                os.close(ready_fd)
            else:
                print(str(exc), file=sys.stderr, flush=True)
            return 1
        write_file(pidfile, f"{os.getpid()}\n")
        if ready_fd is not None:
            os.write(ready_fd, b"OK")
            os.close(ready_fd)
        try:
            loop(ctx)
        finally:
            cleanup(ctx)
            if pid_alive(pidfile) == os.getpid():
                remove(pidfile)
        return 0

    if foreground:
        return body()
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        chunks = []
        while True:
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        msg = b"".join(chunks).decode(errors="replace")
        if msg.startswith("OK"):
            return 0
        print(msg[4:] if msg.startswith("ERR ") else "daemon failed to start", file=sys.stderr, flush=True)
        return 1
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    out = devnull
    if logfile is not None:
        try:
            Path(logfile).parent.mkdir(parents=True, exist_ok=True)
            out = os.open(str(logfile), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:
            out = devnull
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.chdir("/")
    code = 1
    try:
        code = body(write_fd)
    finally:
        os._exit(code)


def sleep_until_stopped(ctx=None) -> None:
    while not Stop.event.wait(0.5):
        pass


def tcp_listener(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(16)
    sock.settimeout(0.5)
    return sock


def quiet_sigpipe() -> None:
    """CLI tools: die quietly when the reader of stdout goes away (``nvidia-smi | head``)."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def hostname() -> str:
    return socket.gethostname()
