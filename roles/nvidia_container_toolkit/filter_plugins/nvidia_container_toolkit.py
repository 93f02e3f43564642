"""Filters of the nvidia_container_toolkit role (pure functions, unit-tested offline).

* ``openpgp_key_info``: the primary-key fingerprints of an OpenPGP key file (armored or binary,
  as ``slurp`` returns it: base64), computed here so the role needs no ``gpg`` on either side.
* ``apt_madison``: ``apt-cache madison`` output as ``{package: [version, ...]}``.
* ``apt_pick_version``: the first candidate of an upstream version (``1.17.8`` -> ``1.17.8-1``).
* ``dpkg_installed``: ``dpkg-query --show`` output as ``{package: version}`` (installed only).
* ``container_cli_info``: ``nvidia-container-cli info`` as ``{driver_version, cuda_version, devices}``.
* ``cdi_devices``: the device names ``nvidia-ctk cdi list`` prints.
* ``runtime_nvidia_state``: whether a containerd/docker configuration has the nvidia runtime,
  and whether it is the default.
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


def _walk_containerd(cfg: dict) -> tuple[bool, bool]:
    configured = default = False
    plugins = cfg.get("plugins") or {}
    for name, plugin in plugins.items():
        if "cri" not in str(name) or not isinstance(plugin, dict):
            continue
        ctr = plugin.get("containerd") or {}
        if isinstance(ctr, dict):
            configured = configured or "nvidia" in (ctr.get("runtimes") or {})
            default = default or ctr.get("default_runtime_name") == "nvidia"
    return configured, default


def runtime_nvidia_state(content: str, runtime: str, encoding: str = "base64") -> dict[str, bool]:
    """``{configured, default}``: the nvidia runtime in a containerd ``config.toml`` or a docker
    ``daemon.json`` (content as ``slurp`` returns it). A file that does not parse counts as not
    configured (``nvidia-ctk`` rewrites it)."""
    text = base64.b64decode(content).decode("utf-8", "replace") if encoding == "base64" else str(content)
    if runtime == "docker":
        try:
            cfg = json.loads(text or "{}")
        except ValueError:
            return {"configured": False, "default": False}
        if not isinstance(cfg, dict):
            return {"configured": False, "default": False}
        return {"configured": "nvidia" in (cfg.get("runtimes") or {}),
                "default": cfg.get("default-runtime") == "nvidia"}
    if runtime == "containerd":
        import tomllib

        try:
            configured, default = _walk_containerd(tomllib.loads(text))
        except tomllib.TOMLDecodeError:
            return {"configured": False, "default": False}
        return {"configured": configured, "default": default}
    return {"configured": False, "default": False}


class FilterModule:
    def filters(self):
        return {
            "openpgp_key_info": openpgp_key_info,
            "normalize_fingerprint": normalize_fingerprint,
            "apt_madison": apt_madison,
            "apt_pick_version": apt_pick_version,
            "dpkg_installed": dpkg_installed,
            "container_cli_info": container_cli_info,
            "cdi_devices": cdi_devices,
            "runtime_nvidia_state": runtime_nvidia_state,
        }
