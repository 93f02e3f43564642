#!/usr/bin/python3
"""SIMULATION (llmcluster lab): stand-in ``dcgmi`` (``discovery -l``, ``diag -r N [-j]``, ``health -s/-f/-c``).

Like the real client it needs the host engine: it connects to 127.0.0.1:5555 (``--host ADDR[:PORT]``)
and fails when nothing listens. ``diag`` runs the deployment checks against the simulated board:
driver installed, every GPU visible, persistence mode, fabric state Completed on NVSwitch/IMEX
boards, ECC enabled, NVLinks up, and ``faults.json``'s ``dcgm_diag_fail``. ``health -s LETTERS`` sets
watches in the host engine, ``-f`` lists them, ``-c`` reports faults of the watched systems (Overall
Health Healthy / Warning / Failure). No real GPU is used.
"""
import json
import socket
import sys
import textwrap

# --- sim:common begin
from llmcluster.lab.nvidia_sim.tools._common import (
    fabric_status,
    installed_driver_version,
    load_faults,
    load_hardware,
    persistence_enabled,
    quiet_sigpipe,
    visible_gpus,
)

# --- sim:common end

BAKED = {"version": "0.0.0"}  # sim:baked
VERSION = BAKED["version"]

CONNECT_ERROR = (
    "Error: unable to establish a connection to the specified host: {host}\n"
    "Error: Unable to connect to host engine. Host engine connection invalid/disconnected."
)


def engine(host: str, request: dict):
    """Send one request to the host engine; its answer, or ``None`` when it does not answer."""
    address, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "5555")
    try:
        with socket.create_connection((address or "127.0.0.1", int(port or 5555)), timeout=3) as conn:
            conn.sendall((json.dumps(request) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        return json.loads(data or b"{}")
    except (OSError, ValueError):
        return None


#: Health watch letters of ``dcgmi health -s`` and the systems they switch on.
WATCH_LETTERS = {
    "p": ["PCIe"], "m": ["GPU Memory"], "s": ["SM"], "i": ["InfoROM"], "t": ["Thermal", "Power"],
    "n": ["NVLINK"], "d": ["Driver"], "v": ["NvSwitch Non-Fatal", "NvSwitch Fatal"],
}
SYSTEMS = ["PCIe", "NVLINK", "GPU Memory", "SM", "InfoROM", "Thermal", "Power", "Driver",
           "NvSwitch Non-Fatal", "NvSwitch Fatal"]


def watched(letters: str) -> set:
    if "a" in letters:
        return set(SYSTEMS)
    return {s for c in letters for s in WATCH_LETTERS.get(c, [])}


def health(host: str, args, hw, gpus, faults) -> int:
    bar = "+---------------------------+----------------------------------------------------------+"
    if "-s" in args:
        letters = args[args.index("-s") + 1] if args.index("-s") + 1 < len(args) else ""
        bad = [c for c in letters if c != "a" and c not in WATCH_LETTERS]
        if not letters or bad:
            print(f"Error: invalid health system(s) '{letters}'. Use a combination of a,p,m,s,i,t,n,d,v.",
                  file=sys.stderr)
            return 2
        engine(host, {"op": "set_watches", "systems": letters})
        print("Health monitor systems set successfully.")
        return 0
    letters = (engine(host, {"op": "ping"}) or {}).get("watches", "")
    on = watched(letters)
    if "-f" in args:
        print("Health monitor systems report")
        print(bar)
        print(f"| {'Health Monitor Systems':<25} | {'':<56} |")
        print(f"| {'Group ID: 0':<25} | {'':<56} |")
        print(bar.replace("-", "="))
        for system in SYSTEMS:
            print(f"| {system:<25} | {'On' if system in on else 'Off':<56} |")
        print(bar)
        return 0
    if "-c" in args:
        problems = []  # (gpu, severity, message)
        expected = len(hw.get("gpus", []))
        if "PCIe" in on and len(gpus) < expected:
            problems.append(("-", "Failure", f"PCIe: {expected - len(gpus)} GPU(s) fell off the bus"))
        for gpu in gpus:
            if "NVLINK" in on and gpu["links_down"]:
                problems.append((gpu["index"], "Failure",
                                 f"NVLINK: link(s) {', '.join(map(str, gpu['links_down']))} down"))
            if "GPU Memory" in on and gpu.get("ecc_mode") != "Enabled":
                problems.append((gpu["index"], "Warning", "GPU Memory: ECC is disabled"))
        overall = "Failure" if any(p[1] == "Failure" for p in problems) else ("Warning" if problems else "Healthy")
        print(bar)
        print(f"| {'Health Monitor Report':<84} |")
        print(bar.replace("-", "="))
        print(f"| {'Overall Health':<25} | {overall:<56} |")
        for gpu, severity, message in problems:
            print(f"| {'GPU ID: ' + str(gpu):<25} | {severity + ': ' + message:<56} |")
        print(bar)
        return 0
    print("Usage: dcgmi health -s SYSTEMS | -f | -c (simulation)", file=sys.stderr)
    return 2


def discovery(hw, gpus) -> int:
    bar = "+--------+----------------------------------------------------------------------+"
    print(f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''} found.")
    print(bar)
    print("| GPU ID | Device Information                                                   |")
    print(bar)
    for gpu in gpus:
        print(f"| {gpu['index']:<6} | {'Name: ' + gpu['name']:<68} |")
        print(f"|        | {'PCI Bus ID: ' + gpu['pci_bus_id']:<68} |")
        print(f"|        | {'Device UUID: ' + gpu['uuid']:<68} |")
        print(bar)
    switches = hw.get("nvswitches", [])
    print(f"{len(switches)} NvSwitch{'es' if len(switches) != 1 else ''} found.")
    if switches:
        print("+-----------+\n| Switch ID |\n+-----------+")
        for n, _sw in enumerate(switches):
            print(f"| {n:<9} |")
        print("+-----------+")
    return 0


def _result(ok: bool, gpus, info: str = "", warning: str = "") -> dict:
    results = []
    for gpu in gpus or [{"index": 0}]:
        r = {"entity_group": "GPU", "entity_group_id": 1, "entity_id": gpu["index"], "status": "Pass" if ok else "Fail"}
        if ok and info:
            r["info"] = [info]
        if not ok:
            r["warnings"] = [{"warning": warning, "error_id": 1, "error_category": 1, "error_severity": 2}]
        results.append(r)
    return {"results": results, "test_summary": {"status": "Pass" if ok else "Fail"}}


def diag_checks(hw, gpus, faults) -> list:
    """(name, ok, info, warning) of each deployment check."""
    driver = installed_driver_version()
    expected = len(hw.get("gpus", []))
    checks = [
        ("Denylist", True, "", ""),
        ("NVML Library", driver is not None, f"NVML {driver}", "Unable to load the NVML library (no NVIDIA driver)"),
        ("CUDA Main Library", driver is not None, "", "Unable to load the CUDA library libcuda.so"),
        ("Permissions and OS Blocks", True, "", ""),
        ("Persistence Mode", persistence_enabled(), "",
         "Persistence mode for GPU is disabled. Enable persistence mode by running \"nvidia-smi -pm 1\" "
         "as root (or start nvidia-persistenced)."),
        ("Environment Variables", True, "", ""),
        ("Page Retirement/Row Remap", True, "", ""),
        ("Graphics Processes", True, "", ""),
        ("Inforom", True, "", ""),
        ("GPU Count", len(gpus) == expected, f"{len(gpus)} of {expected} GPUs visible",
         f"Only {len(gpus)} of the board's {expected} GPUs are visible to the driver"),
    ]
    ecc_off = [g["index"] for g in gpus if g.get("ecc_mode") != "Enabled"]
    checks.append(("ECC Mode", not ecc_off, "", f"ECC is disabled on GPU(s) {ecc_off}"))
    down = [f"GPU {g['index']} link {link}" for g in gpus for link in g["links_down"]]
    if any(g["nvlinks"] for g in gpus):
        checks.append(("NVLink Status", not down, "", f"NVLink down: {', '.join(down)}"))
    if hw.get("fabric") in ("nvswitch", "imex"):
        state, status = fabric_status(hw, driver)
        service = "nvidia-fabricmanager" if hw["fabric"] == "nvswitch" else "nvidia-imex"
        checks.append(("Fabric Manager", status == "Success", f"fabric state {state}",
                       f"GPU fabric state is {state} (status {status}); is {service} running at the driver's "
                       f"version? CUDA would fail with error 802 (system not yet initialized)"))
    if faults.get("dcgm_diag_fail"):
        checks.append(("Software", False, "", str(faults["dcgm_diag_fail"])))
    return checks


def diag(hw, gpus, faults, level: str, as_json: bool) -> int:
    checks = diag_checks(hw, gpus, faults)
    tests = [{"name": name, **_result(ok, gpus, info, warning)} for name, ok, info, warning in checks]
    failed = [name for name, ok, _, _ in checks if not ok]
    doc = {
        "DCGM GPU Diagnostic": {
            "test_categories": [{"category": "Deployment", "tests": tests}],
        },
        "metadata": {"DCGM Version": VERSION, "Driver Version Detected": installed_driver_version() or "",
                     "GPU Device IDs": [g["index"] for g in gpus], "diag_level": level,
                     "simulation": "llmcluster lab (no real GPUs)"},
        "version": VERSION,
    }
    if as_json:
        print(json.dumps(doc, indent=4))
    else:
        bar = "+---------------------------+------------------------------------------------+"
        print("Successfully ran diagnostic for group.")
        print(bar)
        print("| Diagnostic                | Result                                         |")
        print("+===========================+================================================+")
        print("|-----  Metadata  ----------+------------------------------------------------|")
        print(f"| DCGM Version              | {VERSION:<46} |")
        print(f"| Driver Version Detected   | {installed_driver_version() or '':<46} |")
        print("|-----  Deployment  --------+------------------------------------------------|")
        for name, ok, _info, warning in checks:
            print(f"| {name[:25]:<25} | {'Pass' if ok else 'Fail':<46} |")
            if not ok:
                for n, chunk in enumerate(textwrap.wrap(warning, 46)):
                    print(f"| {'Warning' if n == 0 else '':<25} | {chunk:<46} |")
        print(bar)
    return 226 if failed else 0


def main(argv) -> int:
    if "--version" in argv or "-v" in argv:
        print(f"dcgmi  version: {VERSION}")
        return 0
    host = "127.0.0.1:5555"
    rest = []
    i = 0
    while i < len(argv):
        if argv[i] == "--host" and i + 1 < len(argv):
            host, i = argv[i + 1], i + 2
            continue
        rest.append(argv[i])
        i += 1
    if not rest or rest[0] not in ("discovery", "diag", "health"):
        print("Usage: dcgmi discovery -l | diag -r LEVEL [-j] | health -s|-f|-c  (simulation supports these)",
              file=sys.stderr)
        return 2
    if engine(host, {"op": "ping"}) is None:
        print(CONNECT_ERROR.format(host=host.split(":")[0]), file=sys.stderr)
        return 255
    hw = load_hardware()
    if hw is None or installed_driver_version() is None:
        print("Error: DCGM failed to initialize: NVML driver is not loaded", file=sys.stderr)
        return 255
    faults = load_faults()
    gpus = visible_gpus(hw, faults)
    if rest[0] == "discovery":
        return discovery(hw, gpus)
    if rest[0] == "health":
        return health(host, rest[1:], hw, gpus, faults)
    level = "1"
    for j, arg in enumerate(rest):
        if arg in ("-r", "--run") and j + 1 < len(rest):
            level = rest[j + 1]
    return diag(hw, gpus, faults, level, "-j" in rest or "--json" in rest)


if __name__ == "__main__":
    quiet_sigpipe()
    sys.exit(main(sys.argv[1:]))
