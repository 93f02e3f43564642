#!/usr/bin/python3
"""SIMULATION (llmcluster lab): stand-in ``nvidia-ctk`` (NVIDIA Container Toolkit CLI).

* ``runtime configure --runtime=containerd|docker [--config=PATH] [--set-as-default]`` edits the
  real files: containerd's config.toml (adds the ``nvidia`` runtime, runc v2 with BinaryName
  /usr/bin/nvidia-container-runtime; config version 3 uses the ``io.containerd.cri.v1.runtime``
  plugin; the rest of the file is kept; nothing is rewritten when already configured) or
  docker's daemon.json (``runtimes.nvidia``).
* ``cdi generate [--output=FILE]`` writes a CDI spec (nvidia.com/gpu) of the simulated GPUs;
  ``cdi list`` lists the devices of the specs in /etc/cdi and /var/run/cdi.

Paths resolve under ``$LLMCLUSTER_SIM_ROOT`` (default /). No real GPU is used.
"""
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

# --- sim:common begin
from llmcluster.lab.nvidia_sim.tools._common import (
    installed_driver_version,
    load_faults,
    load_hardware,
    quiet_sigpipe,
    sim_path,
    visible_gpus,
    write_file,
)

# --- sim:common end

BAKED = {"version": "0.0.0"}  # sim:baked
VERSION = BAKED["version"]
RUNTIME_BINARY = "/usr/bin/nvidia-container-runtime"


def info(message: str) -> None:
    print(f"INFO[0000] {message}", file=sys.stderr)


def error(message: str) -> int:
    print(f"ERRO[0000] {message}", file=sys.stderr)
    return 1


def _resolve(path: str):
    return sim_path(path) if path.startswith("/") else Path(path)


def _cri_prefix(version: int) -> tuple[str, list[str]]:
    """(TOML table header, key path) of the CRI plugin's ``containerd`` table for a config version."""
    if version >= 3:
        return 'plugins."io.containerd.cri.v1.runtime".containerd', ["plugins", "io.containerd.cri.v1.runtime",
                                                                       "containerd"]
    if version == 2:
        return 'plugins."io.containerd.grpc.v1.cri".containerd', ["plugins", "io.containerd.grpc.v1.cri", "containerd"]
    return "plugins.cri.containerd", ["plugins", "cri", "containerd"]


def _dig(doc: dict, keys):
    for key in keys:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _set_key_in_table(text: str, header: str, key: str, value: str) -> str:
    """Set ``key = value`` in the table ``[header]`` of TOML ``text`` (append the table if absent)."""
    lines = text.splitlines()
    target = f"[{header}]"
    start = next((i for i, line in enumerate(lines) if line.strip() == target), None)
    if start is None:
        return text.rstrip("\n") + f"\n\n{target}\n  {key} = {value}\n"
    end = next((j for j in range(start + 1, len(lines)) if lines[j].strip().startswith("[")), len(lines))
    for j in range(start + 1, end):
        if re.match(rf"^\s*{re.escape(key)}\s*=", lines[j]):
            indent = lines[j][: len(lines[j]) - len(lines[j].lstrip())]
            lines[j] = f"{indent}{key} = {value}"
            return "\n".join(lines) + "\n"
    lines.insert(start + 1, f"  {key} = {value}")
    return "\n".join(lines) + "\n"


def configure_containerd(path: str, set_default: bool, source: str = "file") -> int:
    """``--config-source=command`` starts from ``containerd config dump`` (containerd's effective
    configuration, defaults included), as the real tool does; ``file`` from the file alone."""
    target = _resolve(path)
    if source == "command":
        try:
            dump = subprocess.run(["containerd", "config", "dump"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return error(f"failed to load config from command 'containerd config dump': {exc}")
        if dump.returncode != 0:
            return error(f"failed to load config from command 'containerd config dump': {dump.stderr.strip()}")
        text = dump.stdout
    elif source == "file":
        text = target.read_text(encoding="utf-8") if target.exists() else ""
    else:
        return error(f"unrecognized config source '{source}'")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return error(f"unable to load config: {target}: {exc}")
    version = int(doc.get("version", 2 if not text else 1))
    prefix, keys = _cri_prefix(version)
    runtime = _dig(doc, [*keys, "runtimes", "nvidia"]) or {}
    has_runtime = (runtime.get("runtime_type") == "io.containerd.runc.v2"
                   and (runtime.get("options") or {}).get("BinaryName") == RUNTIME_BINARY)
    is_default = _dig(doc, [*keys, "default_runtime_name"]) == "nvidia"
    if has_runtime and (is_default or not set_default):
        info(f"Config file is already up to date: {path}")
        return 0
    new = text if text else "version = 2\n"
    if not has_runtime:
        new = new.rstrip("\n") + (
            f"\n\n[{prefix}.runtimes.nvidia]\n"
            "  privileged_without_host_devices = false\n"
            '  runtime_engine = ""\n'
            '  runtime_root = ""\n'
            '  runtime_type = "io.containerd.runc.v2"\n'
            f"\n[{prefix}.runtimes.nvidia.options]\n"
            f'  BinaryName = "{RUNTIME_BINARY}"\n'
        )
    if set_default and not is_default:
        new = _set_key_in_table(new, prefix, "default_runtime_name", '"nvidia"')
    try:
        tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:  # never write a file containerd cannot read
        return error(f"unable to update {path} (result would not parse: {exc}); edit it by hand")
    write_file(target, new)
    info(f"Wrote updated config to {path}")
    info("It is recommended that containerd daemon be restarted.")
    return 0


def configure_docker(path: str, set_default: bool) -> int:
    target = _resolve(path)
    try:
        doc = json.loads(target.read_text(encoding="utf-8")) if target.exists() else {}
    except ValueError as exc:
        return error(f"unable to load config: {target}: {exc}")
    want = {"args": [], "path": "nvidia-container-runtime"}
    runtimes = doc.setdefault("runtimes", {})
    changed = runtimes.get("nvidia") != want
    runtimes["nvidia"] = want
    if set_default and doc.get("default-runtime") != "nvidia":
        doc["default-runtime"] = "nvidia"
        changed = True
    if not changed:
        info(f"Config file is already up to date: {path}")
        return 0
    write_file(target, json.dumps(doc, indent=4) + "\n")
    info(f"Wrote updated config to {path}")
    info("It is recommended that docker daemon be restarted.")
    return 0


def cdi_yaml(gpus, driver: str) -> str:
    def device(name: str, indexes) -> list:
        out = [f'- name: "{name}"', "  containerEdits:", "    deviceNodes:"]
        for i in indexes:
            out += [f"    - path: /dev/nvidia{i}"]
        return out

    lines = ["---", "cdiVersion: 0.5.0", "kind: nvidia.com/gpu", "devices:"]
    for gpu in gpus:
        lines += device(str(gpu["index"]), [gpu["index"]])
    for gpu in gpus:
        lines += device(gpu["uuid"], [gpu["index"]])
    lines += device("all", [g["index"] for g in gpus])
    lines += [
        "containerEdits:",
        "  env:",
        "  - NVIDIA_VISIBLE_DEVICES=void",
        f"  - NVIDIA_DRIVER_VERSION={driver}",
        "  - LLMCLUSTER_SIMULATED_CDI=1",
        "  deviceNodes:",
        "  - path: /dev/nvidiactl",
        "  - path: /dev/nvidia-uvm",
        "  - path: /dev/nvidia-uvm-tools",
        "  hooks:",
        "  - hookName: createContainer",
        "    path: /usr/bin/nvidia-ctk",
        "    args:",
        "    - nvidia-ctk",
        "    - hook",
        "    - update-ldcache",
    ]
    return "\n".join(lines) + "\n"


def cdi_generate(args) -> int:
    output = ""
    for i, arg in enumerate(args):
        if arg.startswith("--output="):
            output = arg.split("=", 1)[1]
        elif arg == "--output" and i + 1 < len(args):
            output = args[i + 1]
    hw, driver = load_hardware(), installed_driver_version()
    if hw is None or driver is None:
        return error("failed to generate CDI spec: failed to create device CDI specs: failed to initialize NVML: "
                     "ERROR_LIBRARY_NOT_FOUND")
    gpus = visible_gpus(hw, load_faults())
    text = cdi_yaml(gpus, driver)
    info(f"Auto-detected mode as 'nvml'; selecting NVIDIA CDI spec for {len(gpus)} devices")
    if not output:
        sys.stdout.write(text)
        return 0
    write_file(_resolve(output), text)
    info(f"Generated CDI spec with version 0.5.0 to {output}")
    return 0


def cdi_list() -> int:
    names = []
    for folder in ("/etc/cdi", "/var/run/cdi"):
        path = sim_path(folder)
        if not path.is_dir():
            continue
        for spec in sorted(path.iterdir()):
            if spec.suffix not in (".yaml", ".yml", ".json"):
                continue
            try:
                text = spec.read_text(encoding="utf-8")
            except OSError:
                continue
            if spec.suffix == ".json":
                try:
                    doc = json.loads(text)
                except ValueError:
                    continue
                names += [f"{doc.get('kind')}={d.get('name')}" for d in doc.get("devices", [])]
                continue
            kind = re.search(r"^kind:\s*(\S+)", text, re.M)
            block = text.split("\ndevices:\n", 1)[1] if "\ndevices:\n" in text else ""
            for match in re.finditer(r'^- name:\s*"?([^"\n]+)"?\s*$', block, re.M):
                names.append(f"{kind.group(1) if kind else 'unknown'}={match.group(1)}")
    info(f"Found {len(names)} CDI devices")
    for name in names:
        print(name)
    return 0


def main(argv) -> int:
    if not argv or argv[0] in ("--version", "-v", "version"):
        print(f"NVIDIA Container Toolkit CLI version {VERSION}\ncommit: simulated")
        return 0
    opts = {}
    for arg in argv[2:]:
        key, eq, value = arg.partition("=")
        opts[key] = value if eq else True
    if argv[:2] == ["runtime", "configure"]:
        runtime = opts.get("--runtime", "docker")
        set_default = "--set-as-default" in opts
        if runtime == "containerd":
            return configure_containerd(str(opts.get("--config") or "/etc/containerd/config.toml"), set_default,
                                        str(opts.get("--config-source") or "file"))
        if runtime == "docker":
            return configure_docker(str(opts.get("--config") or "/etc/docker/daemon.json"), set_default)
        return error(f"unrecognized runtime '{runtime}'")
    if argv[:2] == ["cdi", "generate"]:
        return cdi_generate(argv[2:])
    if argv[:2] == ["cdi", "list"]:
        return cdi_list()
    if argv[:1] == ["hook"]:
        return 0
    return error(f"unsupported command (simulation): {' '.join(argv)}")


if __name__ == "__main__":
    quiet_sigpipe()
    sys.exit(main(sys.argv[1:]))
