"""Filters of the nvidia_container_toolkit role (pure functions, unit-tested offline).

* ``nct_openpgp_key_info``: the primary-key fingerprints of an OpenPGP key file (armored or binary,
  as ``slurp`` returns it: base64), computed here so the role needs no ``gpg`` on either side.
* ``nct_apt_madison``: ``apt-cache madison`` output as ``{package: [version, ...]}``.
* ``nct_apt_pick_version``: the first candidate of an upstream version (``1.17.8`` -> ``1.17.8-1``).
* ``nct_dpkg_installed``: ``dpkg-query --show`` output as ``{package: version}`` (installed only).
* ``nct_container_cli_info``: ``nvidia-container-cli info`` as ``{driver_version, cuda_version, devices}``.
* ``nct_cdi_devices``: the device names ``nvidia-ctk cdi list`` prints.
* ``nct_runtime_nvidia_state``: whether a containerd/docker configuration has the nvidia runtime,
  whether it is the default, and whether the default runtime is defined at all.
* ``nct_ctr_plugin_errors``: the CRI plugins ``ctr plugins ls`` reports in error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

# --------------------------------------------------------------------------- OpenPGP


class OpenPGPError(ValueError):
    pass


def _dearmor(text: str) -> bytes:
    """Every ``PUBLIC KEY BLOCK`` of the text, decoded and concatenated (a file with two blocks
    is two sets of keys to apt: both are checked)."""
    lines = text.replace("\r", "").split("\n")
    out = b""
    i, blocks = 0, 0
    while i < len(lines):
        if not lines[i].startswith("-----BEGIN PGP PUBLIC KEY BLOCK"):
            i += 1
            continue
        blocks += 1
        i += 1
        # Armor headers ("Version: ...", "Comment: ...") end at the first blank line.
        while i < len(lines) and lines[i].strip() and ":" in lines[i]:
            i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("-----END PGP PUBLIC KEY BLOCK"):
            line = lines[i].strip()
            if line and not line.startswith("="):  # blank lines and the CRC-24 line
                body.append(line)
            i += 1
        if i >= len(lines):
            raise OpenPGPError("no 'END PGP PUBLIC KEY BLOCK' armor")
        try:
            out += base64.b64decode("".join(body), validate=True)
        except (binascii.Error, ValueError) as e:
            raise OpenPGPError(f"armored key is not valid base64: {e}") from e
    if not blocks:
        raise OpenPGPError("no 'BEGIN PGP PUBLIC KEY BLOCK' armor")
    return out


def _packets(data: bytes):
    """(tag, body) of every OpenPGP packet (RFC 4880/9580 old and new formats)."""
    pos = 0
    while pos < len(data):
        ctb = data[pos]
        pos += 1
        if not ctb & 0x80:
            raise OpenPGPError(f"not an OpenPGP packet at offset {pos - 1}")
        if ctb & 0x40:  # new format
            tag = ctb & 0x3F
            if pos >= len(data):
                raise OpenPGPError("truncated packet header")
            o1 = data[pos]
            if o1 < 192:
                length, pos = o1, pos + 1
            elif o1 < 224:
                if pos + 1 >= len(data):
                    raise OpenPGPError("truncated packet header")
                length, pos = ((o1 - 192) << 8) + data[pos + 1] + 192, pos + 2
            elif o1 == 255:
                length, pos = int.from_bytes(data[pos + 1:pos + 5], "big"), pos + 5
            else:
                raise OpenPGPError("partial body lengths are not allowed in a key")
        else:  # old format
            tag = (ctb >> 2) & 0x0F
            ltype = ctb & 0x03
            if ltype == 3:
                length = len(data) - pos
            else:
                n = (1, 2, 4)[ltype]
                length, pos = int.from_bytes(data[pos:pos + n], "big"), pos + n
        if pos + length > len(data):
            raise OpenPGPError("truncated packet")
        yield tag, data[pos:pos + length]
        pos += length


def _fingerprint(body: bytes) -> str:
    version = body[0] if body else 0
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    if version == 5:
        return hashlib.sha256(b"\x9a" + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    if version == 6:
        return hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise OpenPGPError(f"unsupported OpenPGP key version {version}")


def openpgp_key_info(content: str, encoding: str = "base64") -> dict[str, Any]:
    """``{armored, fingerprints, error}`` of a public key file; ``fingerprints`` lists the
    primary keys only (tag 6), upper-case hex. Never raises: ``error`` says what is wrong."""
    try:
        raw = base64.b64decode(content) if encoding == "base64" else content.encode("latin-1")
        armored = raw.lstrip().startswith(b"-----BEGIN PGP")
        data = _dearmor(raw.decode("ascii", "replace")) if armored else raw
        fingerprints = [_fingerprint(body) for tag, body in _packets(data) if tag == 6]
        if not fingerprints:
            raise OpenPGPError("no public key packet")
        return {"armored": armored, "fingerprints": fingerprints, "error": ""}
    except (OpenPGPError, binascii.Error, ValueError) as e:
        return {"armored": False, "fingerprints": [], "error": str(e) or type(e).__name__}


def normalize_fingerprint(value: str) -> str:
    return re.sub(r"[\s:]", "", str(value)).upper()


# --------------------------------------------------------------------------- apt / dpkg


def apt_madison(stdout: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in str(stdout).splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[0] and parts[1]:
            versions = out.setdefault(parts[0], [])
            if parts[1] not in versions:
                versions.append(parts[1])
    return out


def apt_pick_version(versions: list[str], upstream: str, epoch: str | None = None) -> str:
    """The first version (madison lists the preferred first) whose upstream part is ``upstream``:
    ``[epoch:]upstream-revision``. ``epoch`` None accepts any epoch (or none); "" requires none."""
    up = re.escape(str(upstream))
    if epoch is None:
        pattern = rf"^(\d+:)?{up}-[^-\s]+$"
    elif epoch == "":
        pattern = rf"^{up}-[^-\s]+$"
    else:
        pattern = rf"^{re.escape(str(epoch))}:{up}-[^-\s]+$"
    for v in versions or []:
        if re.match(pattern, v):
            return v
    return ""


def dpkg_installed(stdout: str) -> dict[str, str]:
    """``${db:Status-Abbrev} ${Package} ${Version}`` lines: installed packages ("ii", "hi") only."""
    out: dict[str, str] = {}
    for line in str(stdout).splitlines():
        parts = line.split()
        if len(parts) >= 3 and len(parts[0]) >= 2 and parts[0][1] == "i":
            out[parts[1].split(":")[0]] = parts[2]
    return out


# --------------------------------------------------------------------------- NVIDIA tools


def container_cli_info(stdout: str) -> dict[str, Any]:
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
    for line in str(stdout).splitlines():
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


def cdi_devices(stdout: str) -> list[str]:
    """``nvidia-ctk cdi list``: the fully-qualified device names (``vendor/class=name``)."""
    return [m.group(0) for line in str(stdout).splitlines()
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


def runtime_nvidia_state(content: str, runtime: str, encoding: str = "base64") -> dict[str, Any]:
    """``{configured, default, default_runtime, runtimes, default_defined}``: the nvidia runtime in
    a containerd ``config.toml`` (or ``containerd config dump``) or a docker ``daemon.json``
    (content as ``slurp`` returns it). ``default_defined`` is false when the default runtime has
    no entry among the runtimes (containerd's CRI plugin then fails to load). A file that does
    not parse counts as not configured (``nvidia-ctk`` rewrites it)."""
    text = base64.b64decode(content).decode("utf-8", "replace") if encoding == "base64" else str(content)
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


def ctr_plugin_errors(stdout: str) -> list[str]:
    """``ctr plugins ls``: the CRI plugins (``cri``, ``io.containerd.cri.v1.*``) whose status is
    ``error`` (a disabled or skipped plugin is not an error)."""
    out = []
    for line in str(stdout).splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "error" and (parts[1] == "cri" or parts[0].startswith("io.containerd.cri.")):
            out.append(f"{parts[0]} {parts[1]}")
    return out


class FilterModule:
    def filters(self):
        return {
            "nct_openpgp_key_info": openpgp_key_info,
            "nct_normalize_fingerprint": normalize_fingerprint,
            "nct_apt_madison": apt_madison,
            "nct_apt_pick_version": apt_pick_version,
            "nct_dpkg_installed": dpkg_installed,
            "nct_container_cli_info": container_cli_info,
            "nct_cdi_devices": cdi_devices,
            "nct_runtime_nvidia_state": runtime_nvidia_state,
            "nct_ctr_plugin_errors": ctr_plugin_errors,
        }
