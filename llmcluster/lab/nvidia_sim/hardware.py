"""LAB SIMULATION: the hardware description of a simulated GPU node (no real GPU anywhere).

:func:`hardware_doc` turns a pool's ``gpu`` section and the catalog entry into the
``/etc/llmcluster-sim/hardware.json`` the stand-in NVIDIA tools read (GPUs with deterministic
UUIDs, serials and PCI bus ids; the NVSwitches of HGX boards); :func:`write_hardware` writes it
and the stand-in NVSwitch device folder (``/etc/llmcluster-sim/proc/driver/nvidia-nvswitch/
devices/<bdf>/``, the simulation of ``/proc/driver/nvidia-nvswitch/devices``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from llmcluster.plan.catalog import GPUS, GPUSpec
from llmcluster.plan.nvidia import SMI_NAMES, fabric_kind
from llmcluster.spec.models import Pool

__all__ = ["SMI_NAMES", "hardware_doc", "write_hardware", "SIM_ETC", "NVSWITCH_DEVICES"]

#: Where the simulated hardware lives on a GPU host (relative to its root).
SIM_ETC = "etc/llmcluster-sim"
NVSWITCH_DEVICES = f"{SIM_ETC}/proc/driver/nvidia-nvswitch/devices"
SIMULATION = "llmcluster lab (no real GPUs)"

#: PCI bus ids of the 8 GPUs of an HGX board (the usual Hopper HGX enumeration).
GPU_BUS = ("18", "2a", "3a", "5d", "9a", "ab", "ba", "db")
#: NVSwitch chips per HGX generation: 6 (A100, NVLink 3), 4 (H100/H200/H20, NVLink 4), 2 (B200, NVLink 5).
NVSWITCHES_BY_ARCH = {"ampere": 6, "hopper": 4, "blackwell": 2}
#: NVLinks per GPU and per-link speed as ``nvidia-smi nvlink -s`` prints it (GB/s).
NVLINK_BY_ARCH = {"ampere": (12, 25.0), "hopper": (18, 26.562), "blackwell": (18, 53.125)}
#: Board power limit (W) per catalog GPU (datasheet TDP of the SXM/PCIe part).
POWER_LIMIT_W = {"h100": 700, "h200": 700, "h20": 400, "a100-80gb": 400, "a100-40gb": 400, "l40s": 350,
                 "b200": 1000, "gb200": 1200}


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 3)


def _board(g: GPUSpec, model: str, count: int, fabric: str) -> str:
    short = SMI_NAMES.get(model, g.display_name).removeprefix("NVIDIA ").split(" ")[0]
    if g.form_factor == "nvl72":
        return f"{short} NVL72 compute tray ({count} GPUs)"
    if g.form_factor == "sxm":
        return f"HGX {short} {count}-GPU" + ("" if fabric == "nvswitch" else " (no NVSwitch)")
    return f"{count}x {SMI_NAMES.get(model, g.display_name)} (PCIe)"


def hardware_doc(pool: Pool, host_name: str) -> dict[str, Any]:
    """The ``hardware.json`` document of a host of ``pool`` (a GPU pool)."""
    if pool.gpu is None:
        raise ValueError(f"{host_name}: its pool has no GPUs")
    model, count = pool.gpu.model, pool.gpu.count
    g = GPUS[model]
    fabric = fabric_kind(pool)
    links, speed = NVLINK_BY_ARCH.get(g.arch, (0, 0.0)) if g.has_nvlink and g.form_factor != "pcie" else (0, 0.0)
    gpus = []
    for i in range(count):
        seed = f"llmcluster-sim/{host_name}/gpu{i}"
        bus = GPU_BUS[i] if i < len(GPU_BUS) else f"{0xe0 + i - len(GPU_BUS):02x}"
        gpus.append({
            "index": i,
            "name": SMI_NAMES.get(model, g.display_name),
            "uuid": f"GPU-{uuid.uuid5(uuid.NAMESPACE_URL, seed)}",
            "serial": str(1650000000000 + int(hashlib.sha256(seed.encode()).hexdigest()[:10], 16) % 10**10),
            "pci_bus_id": f"00000000:{bus}:00.0",
            "memory_total_mib": g.memory_bytes // 2**20,
            "compute_cap": f"{g.sm // 10}.{g.sm % 10}",
            "ecc_mode": "Enabled",
            "nvlinks": links,
            "nvlink_speed_gbps": speed,
            "hbm_bandwidth_gbps": _number(g.hbm_bandwidth_bytes_per_s / 1e9),
            "power_limit_w": POWER_LIMIT_W.get(model, 700),
        })
    switches = []
    if fabric == "nvswitch" and count == 8:
        switches = [{"pci_bus_id": f"0000:{5 + n:02x}:00.0"} for n in range(NVSWITCHES_BY_ARCH.get(g.arch, 4))]
    return {
        "simulation": SIMULATION,
        "host": host_name,
        "model": model,
        "board": _board(g, model, count, fabric),
        "arch": g.arch,
        "fabric": fabric,
        "gpus": gpus,
        "nvswitches": switches,
    }


def write_hardware(root: Path, doc: dict[str, Any]) -> None:
    """Write ``hardware.json`` and the NVSwitch device folder under the host root ``root``."""
    etc = root / SIM_ETC
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "README").write_text(
        "SIMULATION (llmcluster lab): this host has no GPUs. hardware.json describes the simulated\n"
        "board the stand-in NVIDIA tools (nvidia-smi, fabric manager, DCGM, container toolkit) report.\n"
        "Optional fault injection: faults.json, e.g.\n"
        '{"nvlink_down": [[0, 3]], "ecc_disabled": [2], "missing_gpus": [7], "dcgm_diag_fail": "reason",\n'
        ' "xid": {"3": 79}}  (xid: the last XID dcgm-exporter reports for a GPU index)\n',
        encoding="utf-8",
    )
    (etc / "hardware.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    devices = root / NVSWITCH_DEVICES
    devices.mkdir(parents=True, exist_ok=True)
    for old in devices.iterdir():
        if old.is_dir() and old.name not in {s["pci_bus_id"] for s in doc["nvswitches"]}:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
    for n, sw in enumerate(doc["nvswitches"]):
        d = devices / sw["pci_bus_id"]
        d.mkdir(exist_ok=True)
        (d / "information").write_text(
            f"Simulated:      yes (llmcluster lab)\nDevice Index:   {n}\nBus Location:   {sw['pci_bus_id']}\n",
            encoding="utf-8",
        )
