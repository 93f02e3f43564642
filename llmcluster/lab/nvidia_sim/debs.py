"""LAB SIMULATION: the stand-in NVIDIA ``.deb`` packages (real names and versions, simulated tools).

Every package here is labelled SIMULATED in its description. The tools are the stdlib-only
scripts of :mod:`llmcluster.lab.nvidia_sim.tools`, baked with the package's version. Packages
never start services in maintainer scripts (they have none); the roles start the units.

``cuda`` repository: per driver version ``nvidia-driver-<B>-open`` / ``nvidia-driver-<B>``
(metas), ``nvidia-utils-<B>``, ``nvidia-compute-utils-<B>``, ``libnvidia-nscq-<B>``, the fabric
manager and IMEX (``-<B>`` suffix up to 570, none from 580), ``cuda-drivers-fabricmanager-<B>``;
DCGM 4 (``datacenter-gpu-manager-4-core``/``-cuda12``, epoch 1) and the DCGM exporter.
``libnvidia-container`` repository: the container toolkit (two versions, so pinning matters).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

TOOLS_DIR = Path(__file__).with_name("tools")
MAINTAINER = "llmcluster lab simulation <lab-simulation@llmcluster.invalid>"
HOMEPAGE = "https://github.com/llmcluster (lab simulation; not an NVIDIA package)"

#: Versions the repositories carry (upstream versions; Debian revision -1).
DRIVER_VERSIONS = ("570.172.08", "570.195.03", "580.95.05")
DCGM_VERSION = "1:4.2.3-1"
DCGM_EXPORTER_VERSION = "4.1.3-1"
TOOLKIT_VERSIONS = ("1.17.7", "1.17.8")
REVISION = "1"


@dataclass
class Deb:
    """One package: control fields and files (path -> (content, mode); content None = symlink target)."""

    name: str
    version: str
    description: str
    depends: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    replaces: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    section: str = "multiverse/devel"
    architecture: str = "amd64"

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.split(':', 1)[-1]}_{self.architecture}.deb"

    def control(self) -> str:
        first, _, rest = self.description.partition("\n")
        fields = [
            ("Package", self.name), ("Version", self.version), ("Architecture", self.architecture),
            ("Maintainer", MAINTAINER), ("Section", self.section), ("Priority", "optional"),
            ("Homepage", HOMEPAGE),
        ]
        for key, values in (("Depends", self.depends), ("Conflicts", self.conflicts),
                            ("Replaces", self.replaces), ("Provides", self.provides)):
            if values:
                fields.append((key, ", ".join(values)))
        text = "".join(f"{k}: {v}\n" for k, v in fields)
        body = rest.strip() or "Stand-in package of the llmcluster lab; contains no NVIDIA software."
        body_lines = [f" {line}" if line.strip() else " ." for line in body.splitlines()]
        return text + f"Description: {first}\n" + "\n".join(body_lines) + "\n"


def tool_script(module: str, baked: dict[str, str]) -> str:
    """The installable text of ``tools/<module>.py``: common code inlined, ``BAKED`` filled in."""
    src = (TOOLS_DIR / f"{module}.py").read_text(encoding="utf-8")
    common = (TOOLS_DIR / "_common.py").read_text(encoding="utf-8")
    src, n = re.subn(r"# --- sim:common begin\n.*?# --- sim:common end\n", lambda _: common, src, flags=re.S)
    src, m = re.subn(r"^BAKED = \{.*\}  # sim:baked$", lambda _: f"BAKED = {baked!r}  # sim:baked", src, flags=re.M)
    if m != 1:
        raise ValueError(f"tools/{module}.py: no BAKED line")
    if "from llmcluster" in src:
        raise ValueError(f"tools/{module}.py: imports llmcluster after inlining ({n} common blocks)")
    return src


def _unit(description: str, service: str, install: str = "multi-user.target", unit_extra: str = "") -> str:
    return (
        "# SIMULATION (llmcluster lab): unit of a stand-in package, not NVIDIA's.\n"
        f"[Unit]\nDescription={description}\n{unit_extra}\n[Service]\n{service}\n[Install]\nWantedBy={install}\n"
    )


def _sim(what: str) -> str:
    return f"SIMULATED {what} (llmcluster lab stand-in)"


# --------------------------------------------------------------------------- cuda repository


def driver_debs(version: str, all_branches: list[int]) -> list[Deb]:
    """The driver, utils, compute-utils, nscq, fabric manager and IMEX packages of one driver version."""
    branch = int(version.split(".")[0])
    v = f"{version}-{REVISION}"
    others = [b for b in sorted(set(all_branches)) if b != branch]
    baked = {"version": version}
    body = ("Stand-in package of the llmcluster lab (no GPUs): it carries the real package's name\n"
            "and version, and Python tools that simulate the hardware described in\n"
            "/etc/llmcluster-sim/hardware.json. It contains no NVIDIA software.")
    debs: list[Deb] = []
    for open_ in (True, False):
        name = f"nvidia-driver-{branch}{'-open' if open_ else ''}"
        other = f"nvidia-driver-{branch}{'' if open_ else '-open'}"
        debs.append(Deb(
            name, v, _sim(f"NVIDIA driver metapackage ({'open' if open_ else 'proprietary'} kernel modules)")
            + "\n" + body,
            depends=[f"nvidia-utils-{branch} (= {v})", f"nvidia-compute-utils-{branch} (= {v})"],
            conflicts=[other], section="multiverse/libs",
        ))
    debs.append(Deb(
        f"nvidia-utils-{branch}", v, _sim("NVIDIA driver support binaries (nvidia-smi)") + "\n" + body,
        depends=["python3"],
        conflicts=[f"nvidia-utils-{b}" for b in others], replaces=[f"nvidia-utils-{b}" for b in others],
        files={
            "/usr/bin/nvidia-smi": (tool_script("nvidia_smi", baked), 0o755),
            "/usr/share/llmcluster-sim/driver-version": (version + "\n", 0o644),
        },
    ))
    debs.append(Deb(
        f"nvidia-compute-utils-{branch}", v, _sim("NVIDIA compute utilities (nvidia-persistenced)") + "\n" + body,
        depends=["python3"],
        conflicts=[f"nvidia-compute-utils-{b}" for b in others],
        replaces=[f"nvidia-compute-utils-{b}" for b in others],
        files={
            "/usr/bin/nvidia-persistenced": (tool_script("persistenced", baked), 0o755),
            "/lib/systemd/system/nvidia-persistenced.service": (_unit(
                "NVIDIA Persistence Daemon (SIMULATED)",
                "Type=forking\nPIDFile=/run/nvidia-persistenced/nvidia-persistenced.pid\n"
                "ExecStart=/usr/bin/nvidia-persistenced --verbose\n"
                "ExecStopPost=/bin/rm -rf /run/nvidia-persistenced\n",
                unit_extra="Wants=syslog.target\n"), 0o644),
        },
    ))
    debs.append(Deb(
        f"libnvidia-nscq-{branch}", v, _sim("NVSwitch Configuration and Query library (NSCQ)") + "\n" + body,
        files={f"/usr/lib/x86_64-linux-gnu/libnvidia-nscq.so.{version}": (
            f"SIMULATED libnvidia-nscq {version} (llmcluster lab): not a shared object\n", 0o644)},
        symlinks={"/usr/lib/x86_64-linux-gnu/libnvidia-nscq.so.2": f"libnvidia-nscq.so.{version}"},
        section="multiverse/libs",
    ))
    suffix = f"-{branch}" if branch < 580 else ""
    fm_others = [f"nvidia-fabricmanager-{b}" for b in others if b < 580] + (
        ["nvidia-fabricmanager"] if branch < 580 and any(b >= 580 for b in others) else [])
    fm_cfg = (
        "# SIMULATION (llmcluster lab): fabric manager configuration of the stand-in package.\n"
        "LOG_LEVEL=4\nLOG_FILE_NAME=/var/log/fabricmanager.log\nLOG_APPEND_TO_LOG=1\nLOG_FILE_MAX_SIZE=1024\n"
        "LOG_USE_SYSLOG=0\nDAEMONIZE=1\nBIND_INTERFACE_IP=127.0.0.1\nSTARTING_TCP_PORT=16000\n"
        "FABRIC_MODE=0\nFABRIC_MODE_RESTART=0\nSTATE_FILE_NAME=/tmp/fabricmanager.state\n"
        "FM_CMD_BIND_INTERFACE=127.0.0.1\nFM_CMD_PORT_NUMBER=6666\nFM_STAY_RESIDENT_ON_FAILURES=0\n"
        "ACCESS_LINK_FAILURE_MODE=0\nTRUNK_LINK_FAILURE_MODE=0\nNVSWITCH_FAILURE_MODE=0\n"
        "ABORT_CUDA_JOBS_ON_FM_EXIT=1\nTOPOLOGY_FILE_PATH=/usr/share/nvidia/nvswitch\n"
        "DATABASE_PATH=/usr/share/nvidia/nvswitch\n"
    )
    debs.append(Deb(
        f"nvidia-fabricmanager{suffix}", v, _sim("NVIDIA Fabric Manager for NVSwitch based systems") + "\n" + body,
        depends=["python3"], conflicts=fm_others, replaces=fm_others,
        files={
            "/usr/bin/nv-fabricmanager": (tool_script("fabricmanager", {**baked, "mode": "fabricmanager"}), 0o755),
            "/usr/share/nvidia/nvswitch/fabricmanager.cfg": (fm_cfg, 0o644),
            "/lib/systemd/system/nvidia-fabricmanager.service": (_unit(
                "NVIDIA fabric manager service (SIMULATED)",
                "User=root\nPrivateTmp=false\nType=forking\nTimeoutStartSec=240\n"
                "PIDFile=/run/nvidia-fabricmanager/nv-fabricmanager.pid\n"
                "ExecStart=/usr/bin/nv-fabricmanager -c /usr/share/nvidia/nvswitch/fabricmanager.cfg\n"
                "LimitCORE=infinity\n",
                unit_extra="After=network-online.target\n"), 0o644),
        },
    ))
    imex_others = [n.replace("fabricmanager", "imex") for n in fm_others]
    debs.append(Deb(
        f"nvidia-imex{suffix}", v, _sim("NVIDIA IMEX daemon (Internode Memory Exchange)") + "\n" + body,
        depends=["python3"], conflicts=imex_others, replaces=imex_others,
        files={
            "/usr/bin/nvidia-imex": (tool_script("fabricmanager", {**baked, "mode": "imex"}), 0o755),
            "/etc/nvidia-imex/config.cfg": (
                "# SIMULATION (llmcluster lab): IMEX configuration of the stand-in package.\n"
                "LOG_FILE_NAME=/var/log/nvidia-imex.log\nLOG_LEVEL=4\nDAEMONIZE=1\nSERVER_PORT=50000\n"
                "IMEX_NODE_CONFIG_FILE=/etc/nvidia-imex/nodes_config.cfg\n", 0o644),
            "/etc/nvidia-imex/nodes_config.cfg": ("# one IP address per line (SIMULATION)\n", 0o644),
            "/lib/systemd/system/nvidia-imex.service": (_unit(
                "NVIDIA IMEX service (SIMULATED)",
                "User=root\nPrivateTmp=false\nType=forking\nTimeoutStartSec=infinity\n"
                "PIDFile=/run/nvidia-imex/nvidia-imex.pid\n"
                "ExecStart=/usr/bin/nvidia-imex -c /etc/nvidia-imex/config.cfg\nLimitCORE=infinity\n",
                unit_extra="After=network-online.target\n"), 0o644),
        },
    ))
    debs.append(Deb(
        f"cuda-drivers-fabricmanager-{branch}", v, _sim("metapackage: driver and fabric manager") + "\n" + body,
        depends=[f"nvidia-driver-{branch}-open (= {v}) | nvidia-driver-{branch} (= {v})",
                 f"nvidia-fabricmanager{suffix} (= {v})"],
    ))
    return debs


def dcgm_debs() -> list[Deb]:
    version = DCGM_VERSION.split(":", 1)[1].rsplit("-", 1)[0]
    body = ("Stand-in package of the llmcluster lab (no GPUs): nv-hostengine listens on\n"
            "127.0.0.1:5555; dcgmi runs simulated deployment diagnostics. No NVIDIA software.")
    baked = {"version": version}
    exporter_version = DCGM_EXPORTER_VERSION.rsplit("-", 1)[0]
    return [
        Deb("datacenter-gpu-manager-4-core", DCGM_VERSION, _sim("NVIDIA Datacenter GPU Manager 4 (core)") + "\n" + body,
            depends=["python3"], conflicts=["datacenter-gpu-manager"], replaces=["datacenter-gpu-manager"],
            files={
                "/usr/bin/nv-hostengine": (tool_script("hostengine", baked), 0o755),
                "/usr/bin/dcgmi": (tool_script("dcgmi", baked), 0o755),
                "/lib/systemd/system/nvidia-dcgm.service": (_unit(
                    "NVIDIA DCGM service (SIMULATED)",
                    "User=root\nPrivateTmp=false\nEnvironment=\"DCGM_HOME_DIR=/var/log/nvidia-dcgm\"\n"
                    "ExecStart=/usr/bin/nv-hostengine -n --service-account nvidia-dcgm\nRestart=on-abort\n",
                    unit_extra="Conflicts=dcgm.service\n"), 0o644),
            }),
        Deb("datacenter-gpu-manager-4-cuda12", DCGM_VERSION,
            _sim("NVIDIA Datacenter GPU Manager 4 (CUDA 12 components)") + "\n" + body,
            depends=[f"datacenter-gpu-manager-4-core (= {DCGM_VERSION})"],
            files={"/usr/share/llmcluster-sim/dcgm-cuda12": ("SIMULATED DCGM CUDA 12 components marker\n", 0o644)}),
        Deb("datacenter-gpu-manager-exporter", DCGM_EXPORTER_VERSION,
            _sim("NVIDIA DCGM exporter for Prometheus") + "\n"
            "Stand-in package of the llmcluster lab (no GPUs): serves /metrics and /health;\n"
            "listen address from DCGM_EXPORTER_LISTEN in /etc/default/nvidia-dcgm-exporter.",
            depends=["python3", "datacenter-gpu-manager-4-core"],
            files={
                "/usr/bin/dcgm-exporter": (tool_script("dcgm_exporter", {"version": exporter_version}), 0o755),
                "/lib/systemd/system/nvidia-dcgm-exporter.service": (_unit(
                    "NVIDIA DCGM exporter (SIMULATED)",
                    "EnvironmentFile=-/etc/default/nvidia-dcgm-exporter\nExecStart=/usr/bin/dcgm-exporter\n"
                    "Restart=on-failure\nRestartSec=2\n",
                    unit_extra="Wants=nvidia-dcgm.service\nAfter=nvidia-dcgm.service network-online.target\n"),
                    0o644),
            }),
    ]


def cuda_debs(driver_versions=DRIVER_VERSIONS) -> list[Deb]:
    branches = [int(v.split(".")[0]) for v in driver_versions]
    out: list[Deb] = []
    for version in driver_versions:
        out += driver_debs(version, branches)
    return out + dcgm_debs()


# --------------------------------------------------------------------------- container toolkit


def toolkit_debs(versions=TOOLKIT_VERSIONS) -> list[Deb]:
    out: list[Deb] = []
    body = ("Stand-in package of the llmcluster lab (no GPUs): nvidia-ctk edits the container\n"
            "runtime configuration and writes CDI specs of the simulated GPUs. No NVIDIA software.")
    for version in versions:
        v = f"{version}-{REVISION}"
        baked = {"version": version}
        out += [
            Deb("nvidia-container-toolkit", v, _sim("NVIDIA Container toolkit") + "\n" + body,
                depends=[f"nvidia-container-toolkit-base (= {v})", f"libnvidia-container-tools (= {v})"],
                files={"/usr/bin/nvidia-container-runtime-hook": (
                    "#!/bin/sh\n# SIMULATED (llmcluster lab) OCI hook: does nothing\nexit 0\n", 0o755)},
                section="utils"),
            Deb("nvidia-container-toolkit-base", v, _sim("NVIDIA Container Toolkit Base") + "\n" + body,
                depends=["python3"], section="utils",
                files={
                    "/usr/bin/nvidia-ctk": (tool_script("nvidia_ctk", baked), 0o755),
                    "/usr/bin/nvidia-container-runtime": (tool_script("container_runtime", baked), 0o755),
                    "/etc/nvidia-container-runtime/config.toml": (
                        "# SIMULATION (llmcluster lab): stand-in configuration\n"
                        "[nvidia-container-cli]\nenvironment = []\nldconfig = \"@/sbin/ldconfig\"\n"
                        "[nvidia-container-runtime]\nlog-level = \"info\"\nmode = \"auto\"\n"
                        "runtimes = [\"runc\"]\n", 0o644),
                }),
            Deb("libnvidia-container-tools", v, _sim("NVIDIA container runtime library (command-line tools)")
                + "\n" + body, depends=[f"libnvidia-container1 (= {v})", "python3"], section="utils",
                files={"/usr/bin/nvidia-container-cli": (tool_script("container_cli", baked), 0o755)}),
            Deb("libnvidia-container1", v, _sim("NVIDIA container runtime library") + "\n" + body,
                section="libs",
                files={f"/usr/lib/x86_64-linux-gnu/libnvidia-container.so.{version}": (
                    f"SIMULATED libnvidia-container {version} (llmcluster lab): not a shared object\n", 0o644)},
                symlinks={"/usr/lib/x86_64-linux-gnu/libnvidia-container.so.1": f"libnvidia-container.so.{version}"}),
        ]
    return out


# --------------------------------------------------------------------------- building


def build_deb(deb: Deb, workdir: Path, outdir: Path) -> Path:
    """``dpkg-deb --build`` one package into ``outdir``; returns the .deb path."""
    root = workdir / f"{deb.name}_{deb.version.replace(':', '_')}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(deb.control(), encoding="utf-8")
    conffiles = [p for p in deb.files if p.startswith("/etc/")]
    if conffiles:
        (root / "DEBIAN" / "conffiles").write_text("".join(p + "\n" for p in conffiles), encoding="utf-8")
    docdir = root / "usr/share/doc" / deb.name
    docdir.mkdir(parents=True)
    (docdir / "README.simulation").write_text(
        f"{deb.name} {deb.version}: SIMULATED stand-in package of the llmcluster lab.\n"
        "It has the real package's name and version and contains no NVIDIA software.\n",
        encoding="utf-8",
    )
    for path, (content, mode) in deb.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        os.chmod(target, mode)
    for path, dest in deb.symlinks.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(dest, target)
    for d in [root, *root.rglob("*")]:
        if d.is_dir() and not d.is_symlink():
            os.chmod(d, 0o755)
    out = outdir / deb.filename
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
                   check=True, capture_output=True, text=True)
    return out
