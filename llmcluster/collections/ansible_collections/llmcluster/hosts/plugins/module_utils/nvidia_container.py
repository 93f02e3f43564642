"""The NVIDIA container toolkit's and the container runtimes' output (pure functions, standard
library only): ``nvidia-container-cli info``, ``nvidia-ctk cdi list``, the nvidia runtime in a
containerd or docker configuration, and ``ctr plugins ls``."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from ._text import lines, text as _text


def nvidia_container_cli_info(output: Any) -> dict[str, Any]:
    """Parse ``nvidia-container-cli info``::

        NVRM version:   570.172.08
        CUDA version:   12.8

        Device Index:   0
        Device Minor:   0
        Model:          NVIDIA H200
        GPU UUID:       GPU-...
        Bus Location:   00000000:18:00.0
    """
    info: dict[str, Any] = {"driver_version": "", "cuda_version": "", "devices": []}
    device: dict[str, str] | None = None
    for line in lines(output):
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "nvrm version":
            info["driver_version"] = value
        elif key == "cuda version":
            info["cuda_version"] = value
        elif key == "device index":
            device = {"index": value}
            info["devices"].append(device)
        elif device is not None and key:
            device[key.replace(" ", "_")] = value
    return info


def nvidia_ctk_cdi_devices(output: Any) -> list[str]:
    """``nvidia-ctk cdi list``: the fully-qualified device names (``vendor/class=name``)."""
    return [m.group(0) for line in lines(output)
            if (m := re.fullmatch(r"[A-Za-z0-9.-]+/[A-Za-z0-9._-]+=\S+", line.strip()))]


def _walk_containerd(cfg: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"configured": False, "default": False, "default_runtime": "", "runtimes": []}
    plugins = cfg.get("plugins") or {}
    for name, plugin in plugins.items():
        if "cri" not in str(name) or not isinstance(plugin, dict):
            continue
        ctr = plugin.get("containerd") or {}
        if not isinstance(ctr, dict):
            continue
        runtimes = list(ctr.get("runtimes") or {})
        out["runtimes"] += [r for r in runtimes if r not in out["runtimes"]]
        out["configured"] = out["configured"] or "nvidia" in runtimes
        if ctr.get("default_runtime_name"):
            out["default_runtime"] = ctr["default_runtime_name"]
    out["default"] = out["default_runtime"] == "nvidia"
    return out


def container_runtime_nvidia_state(content: Any, runtime: str, encoding: str = "base64") -> dict[str, Any]:
    """``{configured, default, default_runtime, runtimes, default_defined}``: the nvidia runtime in
    a containerd ``config.toml`` (or ``containerd config dump``) or a docker ``daemon.json``
    (content as ``slurp`` returns it). ``default_defined`` is false when the default runtime has
    no entry among the runtimes (containerd's CRI plugin then fails to load). A file that does
    not parse counts as not configured (``nvidia-ctk`` rewrites it)."""
    text = base64.b64decode(content).decode("utf-8", "replace") if encoding == "base64" else _text(content)
    empty = {"configured": False, "default": False, "default_runtime": "", "runtimes": [], "default_defined": True}
    if runtime == "docker":
        try:
            cfg = json.loads(text or "{}")
        except ValueError:
            return empty
        if not isinstance(cfg, dict):
            return empty
        runtimes = list(cfg.get("runtimes") or {})
        default = cfg.get("default-runtime") or ""
        return {"configured": "nvidia" in runtimes, "default": default == "nvidia", "default_runtime": default,
                "runtimes": runtimes, "default_defined": default in ("", "runc") or default in runtimes}
    if runtime == "containerd":
        import tomllib

        try:
            state = _walk_containerd(tomllib.loads(text))
        except tomllib.TOMLDecodeError:
            return empty
        state["default_defined"] = not state["default_runtime"] or state["default_runtime"] in state["runtimes"]
        return state
    return empty


def ctr_plugin_errors(output: Any) -> list[str]:
    """``ctr plugins ls``: the CRI plugins (``cri``, ``io.containerd.cri.v1.*``) whose status is
    ``error`` (a disabled or skipped plugin is not an error)."""
    out = []
    for line in lines(output):
        parts = line.split()
        cri = len(parts) >= 3 and (parts[1] == "cri" or parts[0].startswith("io.containerd.cri."))
        if cri and parts[-1] == "error":
            out.append(f"{parts[0]} {parts[1]}")
    return out
