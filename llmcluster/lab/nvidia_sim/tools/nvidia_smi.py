#!/usr/bin/python3
"""SIMULATION (llmcluster lab): stand-in ``nvidia-smi`` reading /etc/llmcluster-sim/hardware.json.

Supports the summary table, ``-L``, ``--query-gpu=... --format=csv[,noheader][,nounits]``, ``-q``
(with ``-i``), ``nvlink -s``, ``topo -m``, ``-pm 0|1`` and ``--version``. No real GPU is used.
"""
import sys
import time

# --- sim:common begin
from llmcluster.lab.nvidia_sim.tools._common import (
    PERSISTENCE_MODE_FILE,
    cuda_version,
    fabric_status,
    load_faults,
    load_hardware,
    persistence_enabled,
    quiet_sigpipe,
    visible_gpus,
    write_file,
)

# --- sim:common end

BAKED = {"version": "0.0.0"}  # sim:baked
VERSION = BAKED["version"]

NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)


def _temp(gpu) -> int:
    return 30 + (gpu["index"] * 3) % 9


def _power_draw(gpu) -> float:
    return round(gpu["power_limit_w"] * 0.1 + gpu["index"], 2)


def _field_values(gpu: dict, count: int, persistence: bool):
    """field -> (value, unit) for ``--query-gpu``."""
    mib = gpu["memory_total_mib"]
    return {
        "index": (str(gpu["index"]), ""),
        "name": (gpu["name"], ""),
        "uuid": (gpu["uuid"], ""),
        "serial": (gpu["serial"], ""),
        "pci.bus_id": (gpu["pci_bus_id"], ""),
        "driver_version": (VERSION, ""),
        "persistence_mode": ("Enabled" if persistence else "Disabled", ""),
        "ecc.mode.current": (gpu.get("ecc_mode", "Enabled"), ""),
        "ecc.mode.pending": (gpu.get("ecc_mode", "Enabled"), ""),
        "compute_cap": (gpu["compute_cap"], ""),
        "memory.total": (str(mib), "MiB"),
        "memory.used": ("1", "MiB"),
        "memory.free": (str(mib - 1), "MiB"),
        "power.limit": (f"{float(gpu['power_limit_w']):.2f}", "W"),
        "power.draw": (f"{_power_draw(gpu):.2f}", "W"),
        "temperature.gpu": (str(_temp(gpu)), ""),
        "utilization.gpu": ("0", "%"),
        "utilization.memory": ("0", "%"),
        "pstate": ("P0", ""),
        "count": (str(count), ""),
        "mig.mode.current": ("Disabled" if gpu["nvlinks"] else "[N/A]", ""),
        "vbios_version": ("96.00.99.00.01", ""),
        "timestamp": (time.strftime("%Y/%m/%d %H:%M:%S.000"), ""),
    }


ALIASES = {
    "gpu_name": "name", "gpu_uuid": "uuid", "gpu_serial": "serial", "gpu_bus_id": "pci.bus_id",
    "pci.bus_id": "pci.bus_id", "persistence-mode": "persistence_mode", "ecc.mode.current": "ecc.mode.current",
}


def query_gpu(gpus, fields_arg: str, fmt: str) -> int:
    opts = [o.strip() for o in fmt.split(",")] if fmt else []
    if "csv" not in opts:
        print('"--query-gpu" requires "--format=csv"', file=sys.stderr)
        return 2
    fields = [f.strip() for f in fields_arg.split(",") if f.strip()]
    probe = _field_values(gpus[0], len(gpus), False) if gpus else _field_values(
        {"index": 0, "name": "", "uuid": "", "serial": "", "pci_bus_id": "", "compute_cap": "",
         "memory_total_mib": 0, "power_limit_w": 0, "nvlinks": 0}, 0, False)
    for f in fields:
        if ALIASES.get(f, f) not in probe:
            print(f'Field "{f}" is not a valid field to query.', file=sys.stderr)
            return 2
    persistence = persistence_enabled()
    if "noheader" not in opts:
        heads = []
        for f in fields:
            unit = probe[ALIASES.get(f, f)][1]
            heads.append(f"{f} [{unit}]" if unit else f)
        print(", ".join(heads))
    for gpu in gpus:
        values = _field_values(gpu, len(gpus), persistence)
        row = []
        for f in fields:
            value, unit = values[ALIASES.get(f, f)]
            row.append(value if ("nounits" in opts or not unit) else f"{value} {unit}")
        print(", ".join(row))
    return 0


def summary(hw, gpus) -> None:
    persistence = persistence_enabled()
    cuda = cuda_version(VERSION)
    line = "+-----------------------------------------------------------------------------------------+"
    sep = "+-----------------------------------------+------------------------+----------------------+"
    print(time.strftime("%a %b %d %H:%M:%S %Y") + "       ")
    print(line)
    print(f"| NVIDIA-SMI {VERSION:<22} Driver Version: {VERSION:<14} CUDA Version: {cuda:<9}|")
    print("|-----------------------------------------+------------------------+----------------------+")
    print("| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |")
    print("| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |")
    print("|                                         |                        |               MIG M. |")
    print("|=========================================+========================+======================|")
    for gpu in gpus:
        name = gpu["name"][:28]
        pm = "On" if persistence else "Off"
        ecc = "0" if gpu.get("ecc_mode") == "Enabled" else "N/A"
        mig = "Disabled" if gpu["nvlinks"] else "N/A"
        power = f"{int(_power_draw(gpu))}W /  {gpu['power_limit_w']}W"
        mem = f"1MiB /  {gpu['memory_total_mib']}MiB"
        print(f"| {gpu['index']:>3}  {name:<28} {pm:>4}  |   {gpu['pci_bus_id']} Off | {ecc:>20} |")
        print(f"| N/A   {_temp(gpu)}C    P0 {power:>23} | {mem:>22} |      0%      Default |")
        print(f"|                                         |                        | {mig:>20} |")
        print(sep)
    print()
    print(line)
    print("| Processes:                                                                              |")
    print("|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |")
    print("|        ID   ID                                                               Usage      |")
    print("|=========================================================================================|")
    print("|  No running processes found                                                             |")
    print(line)


def query(hw, gpus) -> None:
    state, status = fabric_status(hw, VERSION)
    persistence = "Enabled" if persistence_enabled() else "Disabled"
    out = [
        "",
        "==============NVSMI LOG==============",
        "",
        f"{'Timestamp':<42}: {time.strftime('%a %b %d %H:%M:%S %Y')}",
        f"{'Driver Version':<42}: {VERSION}",
        f"{'CUDA Version':<42}: {cuda_version(VERSION)}",
        "",
        f"{'Attached GPUs':<42}: {len(gpus)}",
    ]
    for gpu in gpus:
        arch = {"9.0": "Hopper", "8.0": "Ampere", "8.9": "Ada Lovelace", "10.0": "Blackwell"}.get(
            gpu["compute_cap"], "Unknown")
        ecc = gpu.get("ecc_mode", "Enabled")
        clique = "0" if status == "Success" else "N/A"
        out += [
            f"GPU {gpu['pci_bus_id']}",
            f"    {'Product Name':<38}: {gpu['name']}",
            f"    {'Product Brand':<38}: NVIDIA",
            f"    {'Product Architecture':<38}: {arch}",
            f"    {'Display Mode':<38}: Disabled",
            f"    {'Persistence Mode':<38}: {persistence}",
            f"    {'Addressing Mode':<38}: None",
            f"    {'MIG Mode':<38}",
            f"        {'Current':<34}: {'Disabled' if gpu['nvlinks'] else 'N/A'}",
            f"        {'Pending':<34}: {'Disabled' if gpu['nvlinks'] else 'N/A'}",
            f"    {'Serial Number':<38}: {gpu['serial']}",
            f"    {'GPU UUID':<38}: {gpu['uuid']}",
            f"    {'Minor Number':<38}: {gpu['index']}",
            f"    {'VBIOS Version':<38}: 96.00.99.00.01",
            f"    {'GPU Part Number':<38}: 2335-885-A1",
            f"    {'Fabric':<38}",
            f"        {'State':<34}: {state}",
            f"        {'Status':<34}: {status}",
            f"        {'CliqueId':<34}: {clique}",
            f"        {'ClusterUUID':<34}: {'00000000-0000-0000-0000-000000000000' if clique == '0' else 'N/A'}",
            f"    {'PCI':<38}",
            f"        {'Bus Id':<34}: {gpu['pci_bus_id']}",
            f"    {'Performance State':<38}: P0",
            f"    {'FB Memory Usage':<38}",
            f"        {'Total':<34}: {gpu['memory_total_mib']} MiB",
            f"        {'Reserved':<34}: 0 MiB",
            f"        {'Used':<34}: 1 MiB",
            f"        {'Free':<34}: {gpu['memory_total_mib'] - 1} MiB",
            f"    {'Compute Mode':<38}: Default",
            f"    {'ECC Mode':<38}",
            f"        {'Current':<34}: {ecc}",
            f"        {'Pending':<34}: {ecc}",
            f"    {'Temperature':<38}",
            f"        {'GPU Current Temp':<34}: {_temp(gpu)} C",
            f"    {'GPU Power Readings':<38}",
            f"        {'Average Power Draw':<34}: {_power_draw(gpu):.2f} W",
            f"        {'Current Power Limit':<34}: {float(gpu['power_limit_w']):.2f} W",
            "",
        ]
    print("\n".join(line.rstrip() for line in out))


def nvlink_status(gpus) -> None:
    for gpu in gpus:
        print(f"GPU {gpu['index']}: {gpu['name']} (UUID: {gpu['uuid']})")
        for link in range(gpu["nvlinks"]):
            speed = "<inactive>" if link in gpu["links_down"] else f"{gpu['nvlink_speed_gbps']} GB/s"
            print(f"\t Link {link}: {speed}")


def topo(hw, gpus) -> None:
    n = len(gpus)
    head = "\t" + "\t".join(f"GPU{g['index']}" for g in gpus) + "\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID"
    print(head)
    for a in gpus:
        cells = []
        for b in gpus:
            if a is b:
                cells.append(" X ")
            elif a["nvlinks"] and hw.get("fabric") == "nvswitch":
                cells.append(f"NV{a['nvlinks']}")
            else:
                cells.append("SYS")
        half = "0-47,96-143" if a["index"] < max(1, n // 2) else "48-95,144-191"
        numa = "0" if a["index"] < max(1, n // 2) else "1"
        print(f"GPU{a['index']}\t" + "\t".join(cells) + f"\t{half}\t{numa}\t\tN/A")
    print("\nLegend:\n\n  X    = Self\n"
          "  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes\n"
          "  NV#  = Connection traversing a bonded set of # NVLinks")


def set_persistence(gpus, value: str) -> int:
    import os

    if value not in ("0", "1"):
        print(f'Invalid value "{value}" for persistence mode.', file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        for gpu in gpus:
            print(f"Unable to set persistence mode for GPU {gpu['pci_bus_id']}: Insufficient Permissions")
        print("Terminating early due to previous errors.")
        return 4
    write_file(PERSISTENCE_MODE_FILE, value + "\n")
    word = "Enabled" if value == "1" else "Disabled"
    for gpu in gpus:
        print(f"{word} Legacy persistence mode for GPU {gpu['pci_bus_id']}.")
    print("All done.")
    return 0


def main(argv) -> int:
    if argv[:1] == ["--version"]:
        print(f"NVIDIA-SMI version  : {VERSION}")
        print(f"NVML version        : {VERSION.rsplit('.', 1)[0]}")
        print(f"DRIVER version      : {VERSION}")
        print(f"CUDA Version        : {cuda_version(VERSION)}")
        return 0
    hw = load_hardware()
    if hw is None:
        sys.stdout.write(NO_DRIVER)
        return 9
    gpus = visible_gpus(hw, load_faults())
    opts: dict = {}
    words = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, eq, val = arg.partition("=")
        takes_value = key in ("-i", "--id", "--query-gpu", "--format", "-pm", "--persistence-mode", "-d",
                              "--display", "-f", "--filename")
        if takes_value and not eq:
            i += 1
            val = argv[i] if i < len(argv) else ""
        opts[key] = val if takes_value else True
        if not arg.startswith("-"):
            words.append(arg)
        i += 1
    sel = opts.get("-i", opts.get("--id"))
    if sel not in (None, ""):
        wanted = set(sel.split(","))
        chosen = [g for g in gpus if str(g["index"]) in wanted or g["uuid"] in wanted or g["pci_bus_id"] in wanted]
        if not chosen:
            print(f"No devices were found matching the given identifier {sel}", file=sys.stderr)
            return 6
        gpus = chosen
    if not gpus:
        print("No devices were found")
        return 6
    if words[:1] == ["nvlink"]:
        if "-s" in opts or "--status" in opts:
            nvlink_status(gpus)
            return 0
        print("nvlink: use -s/--status (simulation supports the status query only)", file=sys.stderr)
        return 2
    if words[:1] == ["topo"]:
        topo(hw, gpus)
        return 0
    if words:
        print(f"Invalid combination of input arguments: {' '.join(words)}", file=sys.stderr)
        return 2
    if "-pm" in opts or "--persistence-mode" in opts:
        return set_persistence(gpus, str(opts.get("-pm", opts.get("--persistence-mode"))))
    if "--query-gpu" in opts:
        return query_gpu(gpus, str(opts["--query-gpu"]), str(opts.get("--format", "")))
    if "-L" in opts or "--list-gpus" in opts:
        for gpu in gpus:
            print(f"GPU {gpu['index']}: {gpu['name']} (UUID: {gpu['uuid']})")
        return 0
    if "-q" in opts or "--query" in opts:
        query(hw, gpus)
        return 0
    summary(hw, gpus)
    return 0


if __name__ == "__main__":
    quiet_sigpipe()
    sys.exit(main(sys.argv[1:]))
