"""The lab SIMULATION of NVIDIA's repositories and hardware (llmcluster.lab.nvidia_sim).

Builds the signed stand-in repositories once (a temporary cache), checks the packages with
``dpkg-deb``, the Release hashes and the signatures with ``gpgv``, then runs every stand-in tool
from the built packages against a simulated board in a temporary root (``LLMCLUSTER_SIM_ROOT``).
The last test proves real apt accepts the repositories (root only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from llmcluster.lab.nvidia_sim import SimRepos, ensure_sim_repos, inventory_overrides, prepare_gpu_host
from llmcluster.lab.nvidia_sim.checkpoint import config_json
from llmcluster.lab.nvidia_sim.hardware import SMI_NAMES, hardware_doc
from llmcluster.plan.catalog import MODELS
from llmcluster.spec.models import Pool
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.dcgm import dcgm_diag_report
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.nvidia_smi import (
    nvidia_smi_fabric as parse_fabric,
    nvidia_smi_nvlink as parse_nvlink,
)
from tests.conftest import load_plan

_TOOLS = ("dpkg-deb", "dpkg-scanpackages", "gpg", "gpgv")
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in _TOOLS), reason=f"needs {', '.join(_TOOLS)}"
)
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
DRIVER = "570.172.08"


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> SimRepos:
    return ensure_sim_repos(tmp_path_factory.mktemp("cache"))


def _field(deb: Path, *fields: str) -> dict[str, str]:
    out = subprocess.run(["dpkg-deb", "--field", str(deb), *fields], capture_output=True, text=True,
                         check=True).stdout
    if len(fields) == 1:  # one field: dpkg-deb prints the bare value
        return {fields[0]: out.strip()}
    result: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(": ")
        result[key] = value
    return result


def test_rebuild_is_reused(repos: SimRepos) -> None:
    started = time.monotonic()
    again = ensure_sim_repos(repos.root.parent)
    assert again == repos
    assert time.monotonic() - started < 2
    assert repos.root.name.startswith("nvidia-sim-")
    assert repos.fingerprint_file.read_text().strip() == repos.fingerprint
    assert len(repos.fingerprint) == 40


def test_packages_have_real_names_versions_and_dependencies(repos: SimRepos) -> None:
    cuda = repos.cuda
    meta = _field(cuda / "nvidia-driver-570-open_570.172.08-1_amd64.deb", "Package", "Version", "Depends",
                  "Conflicts", "Description", "Maintainer")
    assert meta["Package"] == "nvidia-driver-570-open" and meta["Version"] == "570.172.08-1"
    assert meta["Depends"] == "nvidia-utils-570 (= 570.172.08-1), nvidia-compute-utils-570 (= 570.172.08-1)"
    assert meta["Conflicts"] == "nvidia-driver-570"
    assert meta["Description"].startswith("SIMULATED")
    assert meta["Maintainer"].startswith("llmcluster lab simulation")
    utils = _field(cuda / "nvidia-utils-580_580.95.05-1_amd64.deb", "Conflicts", "Replaces")
    assert utils == {"Conflicts": "nvidia-utils-570", "Replaces": "nvidia-utils-570"}
    fm = _field(cuda / "nvidia-fabricmanager_580.95.05-1_amd64.deb", "Package", "Version", "Depends")
    assert fm == {"Package": "nvidia-fabricmanager", "Version": "580.95.05-1", "Depends": "python3"}
    assert (cuda / "nvidia-fabricmanager-570_570.195.03-1_amd64.deb").exists()
    assert (cuda / "nvidia-imex-570_570.172.08-1_amd64.deb").exists()
    assert (cuda / "libnvidia-nscq-570_570.195.03-1_amd64.deb").exists()
    dcgm = _field(cuda / "datacenter-gpu-manager-4-core_4.2.3-1_amd64.deb", "Version")
    assert dcgm["Version"] == "1:4.2.3-1"
    assert _field(cuda / "datacenter-gpu-manager-exporter_4.1.3-1_amd64.deb", "Version")["Version"] == "4.1.3-1"
    tk = _field(repos.libnvidia_container / "nvidia-container-toolkit_1.17.8-1_amd64.deb", "Depends")
    assert tk["Depends"] == "nvidia-container-toolkit-base (= 1.17.8-1), libnvidia-container-tools (= 1.17.8-1)"
    assert (repos.libnvidia_container / "nvidia-container-toolkit_1.17.7-1_amd64.deb").exists()
    contents = subprocess.run(["dpkg-deb", "--contents", str(cuda / "nvidia-compute-utils-570_570.172.08-1_amd64.deb")],
                              capture_output=True, text=True, check=True).stdout
    assert "./usr/bin/nvidia-persistenced" in contents
    assert "./lib/systemd/system/nvidia-persistenced.service" in contents
    # no maintainer scripts: packages never start services (the roles do)
    fm570 = cuda / "nvidia-fabricmanager-570_570.172.08-1_amd64.deb"
    control = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(fm570)], capture_output=True, check=True).stdout
    assert b"postinst" not in control


def test_release_hashes_match(repos: SimRepos) -> None:
    for repo in (repos.cuda, repos.libnvidia_container):
        release = (repo / "Release").read_text()
        assert "Origin: llmcluster-sim" in release and "Architectures: amd64 all" in release
        section = None
        checked = 0
        for line in release.splitlines():
            if line in ("MD5Sum:", "SHA256:"):
                section = "md5" if line == "MD5Sum:" else "sha256"
                continue
            if line.startswith(" ") and section:
                digest, size, name = line.split()
                data = (repo / name).read_bytes()
                assert hashlib.new(section, data).hexdigest() == digest and int(size) == len(data), name
                checked += 1
        assert checked == 4


def _dearmor(asc: Path, out: Path) -> Path:
    lines = asc.read_text().splitlines()
    body = lines[lines.index("") + 1:]
    b64 = "".join(line for line in body if not line.startswith(("=", "-----")))
    out.write_bytes(base64.b64decode(b64))
    return out


def test_signatures_verify(repos: SimRepos, tmp_path: Path) -> None:
    keyring = _dearmor(repos.key, tmp_path / "key.gpg")
    for repo in (repos.cuda, repos.libnvidia_container):
        for args in (["InRelease"], ["Release.gpg", "Release"]):
            proc = subprocess.run(["gpgv", "--keyring", str(keyring), *args], cwd=repo, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
            assert repos.fingerprint[-16:] in proc.stderr.replace(" ", "")


def test_inventory_overrides(repos: SimRepos) -> None:
    key = "file:///srv/llmcluster-sim/llmcluster-sim-archive-keyring.asc"
    assert inventory_overrides(repos) == {
        "nvidia_driver_repo_url": "file:/srv/llmcluster-sim/cuda",
        "nvidia_driver_repo_key_url": key,
        "nvidia_driver_repo_key_fingerprint": repos.fingerprint,
        "nvidia_driver_repo_origin": "",
        "nvidia_container_toolkit_repo_url": "file:/srv/llmcluster-sim/libnvidia-container",
        "nvidia_container_toolkit_repo_key_url": key,
        "nvidia_container_toolkit_repo_key_fingerprint": repos.fingerprint,
        "nvidia_container_toolkit_repo_origin": "",
        "tensorrt_llm_pip_find_links": "/srv/llmcluster-sim/wheels",
        "tensorrt_llm_pip_index_url": "",
        "nvidia_fabricmanager_nvswitch_devices_path": "/etc/llmcluster-sim/proc/driver/nvidia-nvswitch/devices",
    }


# --------------------------------------------------------------------------- hardware and model files


def test_hardware_doc_per_board() -> None:
    def pool(gpu: dict) -> Pool:
        return Pool.model_validate({"role": "gpu", "count": 1, "vlans": ["mgmt"], "gpu": gpu})

    h200 = hardware_doc(pool({"model": "h200", "count": 8, "nvswitch": True}), "gpu-01")
    assert h200["fabric"] == "nvswitch" and len(h200["nvswitches"]) == 4 and h200["board"] == "HGX H200 8-GPU"
    g0 = h200["gpus"][0]
    assert g0["name"] == "NVIDIA H200" and g0["memory_total_mib"] == 143771 and g0["compute_cap"] == "9.0"
    assert g0["nvlinks"] == 18 and g0["nvlink_speed_gbps"] == 26.562 and g0["hbm_bandwidth_gbps"] == 4800
    assert g0["pci_bus_id"] == "00000000:18:00.0" and g0["uuid"].startswith("GPU-")
    assert h200 == hardware_doc(pool({"model": "h200", "count": 8, "nvswitch": True}), "gpu-01")  # deterministic
    other = hardware_doc(pool({"model": "h200", "count": 8, "nvswitch": True}), "gpu-02")
    assert g0["uuid"] != other["gpus"][0]["uuid"]
    l40s = hardware_doc(pool({"model": "l40s", "count": 4}), "x")
    assert l40s["fabric"] == "none" and l40s["nvswitches"] == [] and l40s["gpus"][0]["nvlinks"] == 0
    assert hardware_doc(pool({"model": "a100-80gb", "count": 8, "nvswitch": True}), "x")["gpus"][0]["nvlinks"] == 12
    assert hardware_doc(pool({"model": "gb200", "count": 4}), "x")["fabric"] == "imex"
    assert set(SMI_NAMES) >= {"h100", "h200", "h20", "a100-80gb", "a100-40gb", "l40s", "b200"}


def test_checkpoint_model_types() -> None:
    assert config_json(MODELS["deepseek-r1"])["model_type"] == "deepseek_v3"
    assert config_json(MODELS["deepseek-r1"])["kv_lora_rank"] == 512
    assert config_json(MODELS["deepseek-r1-distill-qwen-7b"])["architectures"] == ["Qwen2ForCausalLM"]
    assert config_json(MODELS["deepseek-r1-distill-llama-8b"])["model_type"] == "llama"


# --------------------------------------------------------------------------- the tools


class Host:
    """A simulated GPU host root in a temporary folder with packages extracted into it."""

    def __init__(self, root: Path, repos: SimRepos) -> None:
        self.root, self.repos = root, repos
        self.env = {**os.environ, "LLMCLUSTER_SIM_ROOT": str(root)}
        self.pidfiles: list[Path] = []

    def install(self, repo: Path, *debs: str) -> None:
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(repo / deb), str(self.root)], check=True)

    def run(self, tool: str, *args: str, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
        path = self.root / "usr/bin" / tool
        argv = [str(path), *args] if os.path.exists("/usr/bin/python3") else [sys.executable, str(path), *args]
        return subprocess.run(argv, capture_output=True, text=True, env={**self.env, **(env or {})}, timeout=timeout)

    def start(self, tool: str, *args: str, pidfile: str) -> subprocess.CompletedProcess:
        proc = self.run(tool, *args)
        self.pidfiles.append(self.root / pidfile.lstrip("/"))
        return proc

    def stop_all(self) -> None:
        for pf in self.pidfiles:
            try:
                os.kill(int(pf.read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 5
        while any(pf.exists() for pf in self.pidfiles) and time.monotonic() < deadline:
            time.sleep(0.05)

    def write_faults(self, faults: dict) -> None:
        (self.root / "etc/llmcluster-sim/faults.json").write_text(json.dumps(faults))

    def smi_query(self, fields: str) -> list[list[str]]:
        r = self.run("nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits")
        assert r.returncode == 0, r.stderr
        return [[v.strip() for v in line.split(",")] for line in r.stdout.strip().splitlines()]


@pytest.fixture(scope="module")
def lab_plan():
    return load_plan("lab")


@pytest.fixture
def host(repos: SimRepos, tmp_path: Path, lab_plan):
    h = Host(tmp_path / "root", repos)
    v = f"{DRIVER}-1_amd64.deb"
    h.install(repos.cuda, f"nvidia-utils-570_{v}", f"nvidia-compute-utils-570_{v}", f"nvidia-fabricmanager-570_{v}",
              "datacenter-gpu-manager-4-core_4.2.3-1_amd64.deb", "datacenter-gpu-manager-exporter_4.1.3-1_amd64.deb")
    h.install(repos.libnvidia_container, "nvidia-container-toolkit-base_1.17.8-1_amd64.deb",
              "libnvidia-container-tools_1.17.8-1_amd64.deb")
    gpu_host = next(x.name for x in lab_plan.ip.hosts if lab_plan.spec.pools[x.pool].gpu is not None)
    prepare_gpu_host(h.root, lab_plan, gpu_host, repos)
    yield h
    h.stop_all()


def test_prepare_gpu_host(host: Host, lab_plan) -> None:
    root = host.root
    hw = json.loads((root / "etc/llmcluster-sim/hardware.json").read_text())
    assert hw["simulation"].startswith("llmcluster lab") and len(hw["gpus"]) == 8
    devices = sorted(p.name for p in (root / "etc/llmcluster-sim/proc/driver/nvidia-nvswitch/devices").iterdir())
    assert devices == [s["pci_bus_id"] for s in hw["nvswitches"]] and len(devices) == 4
    srv = root / "srv/llmcluster-sim"
    assert (srv / "cuda/InRelease").exists() and (srv / "libnvidia-container/Packages").exists()
    assert (srv / "keyring.fingerprint").read_text().strip() == host.repos.fingerprint
    assert (srv / "llmcluster-sim-archive-keyring.asc").exists() and (srv / "wheels").is_dir()
    # The model is not placed in the root: the model_store role stages the lab fixture
    # (llmcluster.lab.model_fixture; tests/unit/test_lab_model_fixture.py) as on a production node.
    model = MODELS[lab_plan.spec.serving.model]
    assert not (root / lab_plan.spec.storage.model_dir.lstrip("/") / model.hf_repo).exists()


def test_nvidia_smi(host: Host) -> None:
    rows = host.smi_query("index,name,uuid,serial,pci.bus_id,driver_version,persistence_mode,ecc.mode.current,"
                          "compute_cap,memory.total,power.limit,count")
    assert len(rows) == 8
    assert rows[0][1] == "NVIDIA H200" and rows[0][5] == DRIVER and rows[0][6] == "Disabled"
    assert rows[0][7] == "Enabled" and rows[0][8] == "9.0" and rows[0][9] == "143771" and rows[0][11] == "8"
    r = host.run("nvidia-smi", "--query-gpu=memory.total", "--format=csv")
    assert r.stdout.splitlines() == ["memory.total [MiB]"] + ["143771 MiB"] * 8
    assert host.run("nvidia-smi", "--query-gpu=bogus", "--format=csv").returncode == 2
    assert len(host.run("nvidia-smi", "-L").stdout.splitlines()) == 8
    table = host.run("nvidia-smi")
    assert f"Driver Version: {DRIVER}" in table.stdout and "CUDA Version: 12.8" in table.stdout
    q = host.run("nvidia-smi", "-q").stdout
    assert f"Driver Version                            : {DRIVER}" in q
    assert "Attached GPUs                             : 8" in q
    assert [f["State"] for f in parse_fabric(q)] == ["Not Started"] * 8
    links = parse_nvlink(host.run("nvidia-smi", "nvlink", "-s").stdout)
    assert len(links) == 8 and all(len(v) == 18 and set(v.values()) == {"26.562 GB/s"} for v in links.values())
    # injected faults
    host.write_faults({"nvlink_down": [[0, 3]], "ecc_disabled": [2], "missing_gpus": [7]})
    assert parse_nvlink(host.run("nvidia-smi", "nvlink", "-s").stdout)[0][3] == "<inactive>"
    rows = host.smi_query("index,ecc.mode.current")
    assert len(rows) == 7 and rows[2][1] == "Disabled"
    # no driver/hardware: the real tool's message and exit 9
    (host.root / "etc/llmcluster-sim/hardware.json").unlink()
    r = host.run("nvidia-smi")
    assert r.returncode == 9 and "couldn't communicate with the NVIDIA driver" in r.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="nvidia-smi -pm needs root")
def test_nvidia_smi_persistence_mode_flag(host: Host) -> None:
    r = host.run("nvidia-smi", "-pm", "1")
    assert r.returncode == 0 and "All done." in r.stdout
    assert {row[0] for row in host.smi_query("persistence_mode")} == {"Enabled"}


def test_daemons_fabric_and_dcgm(host: Host) -> None:
    # persistenced: forks, writes its pid; persistence mode follows it
    r = host.start("nvidia-persistenced", "--verbose", pidfile="/run/nvidia-persistenced/nvidia-persistenced.pid")
    assert r.returncode == 0, r.stderr
    assert {row[0] for row in host.smi_query("persistence_mode")} == {"Enabled"}
    # fabric manager at the driver's version: fabric Completed/Success while it runs
    fm_pid = "/run/nvidia-fabricmanager/nv-fabricmanager.pid"
    r = host.start("nv-fabricmanager", "-c", "/usr/share/nvidia/nvswitch/fabricmanager.cfg", pidfile=fm_pid)
    assert r.returncode == 0, r.stderr
    states = parse_fabric(host.run("nvidia-smi", "-q").stdout)
    assert {(s["State"], s["Status"]) for s in states} == {("Completed", "Success")}
    # dcgmi without the host engine fails to connect, as the real one does
    port = _free_port()
    r = host.run("dcgmi", "discovery", "-l", "--host", f"127.0.0.1:{port}")
    assert r.returncode != 0 and "Unable to connect to host engine" in r.stderr
    r = host.start("nv-hostengine", "-p", str(port), pidfile="/run/nvidia-dcgm/nv-hostengine.pid")
    assert r.returncode == 0, r.stderr
    r = host.run("dcgmi", "discovery", "-l", "--host", f"127.0.0.1:{port}")
    assert r.returncode == 0 and r.stdout.startswith("8 GPUs found.") and "4 NvSwitches found." in r.stdout
    r = host.run("dcgmi", "diag", "-r", "1", "-j", "--host", f"127.0.0.1:{port}")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and dcgm_diag_report(doc, gpus=8)["ok"] is True
    assert doc["DCGM GPU Diagnostic"]["test_categories"][0]["category"] == "Deployment"
    # health watches live in the host engine: off, set with -s a, listed by -f, judged by -c
    hostarg = ["--host", f"127.0.0.1:{port}"]
    assert "| PCIe                      | Off" in host.run("dcgmi", "health", *hostarg, "-f").stdout
    assert host.run("dcgmi", "health", *hostarg, "-s", "a").returncode == 0
    systems = host.run("dcgmi", "health", *hostarg, "-f").stdout
    assert "| NVLINK                    | On" in systems and "| Off" not in systems
    assert "Overall Health            | Healthy" in host.run("dcgmi", "health", *hostarg, "-c").stdout
    host.write_faults({"nvlink_down": [[1, 5]]})
    report = host.run("dcgmi", "health", *hostarg, "-c").stdout
    assert "Overall Health            | Failure" in report and "NVLINK: link(s) 5 down" in report
    host.write_faults({"dcgm_diag_fail": "simulated PCIe replay storm"})
    r = host.run("dcgmi", "diag", "-r", "1", "-j", "--host", f"127.0.0.1:{port}")
    report = dcgm_diag_report(json.loads(r.stdout), gpus=8)
    assert r.returncode != 0 and not report["ok"]
    assert any("simulated PCIe replay storm" in m for m in report["messages"])
    # stopping the fabric manager removes the fabric state
    host.stop_all()
    assert not (host.root / "run/llmcluster-sim/fabric-state").exists()
    assert {s["State"] for s in parse_fabric(host.run("nvidia-smi", "-q").stdout)} == {"Not Started"}


def test_fabric_manager_refuses_mismatch_and_missing_nvswitch(host: Host, tmp_path: Path) -> None:
    (host.root / "usr/share/llmcluster-sim/driver-version").write_text("570.195.03\n")
    r = host.run("nv-fabricmanager", "-c", "/usr/share/nvidia/nvswitch/fabricmanager.cfg")
    assert r.returncode == 1
    assert "fabric manager version 570.172.08 is not compatible with the NVIDIA driver version 570.195.03" in r.stderr
    assert "request to query NVSwitch device information" in r.stderr
    assert "not compatible" in (host.root / "var/log/fabricmanager.log").read_text()
    assert not (host.root / "run/llmcluster-sim/fabric-state").exists()
    (host.root / "usr/share/llmcluster-sim/driver-version").write_text(DRIVER + "\n")
    empty = tmp_path / "no-switches"
    empty.mkdir()
    r = host.run("nv-fabricmanager", env={"LLMCLUSTER_SIM_NVSWITCH_DEVICES": str(empty)})
    assert r.returncode == 1 and "no NVSwitch devices found" in r.stderr


def test_imex_version_lock(repos: SimRepos, host: Host) -> None:
    host.install(repos.cuda, "nvidia-imex_580.95.05-1_amd64.deb")
    r = host.run("nvidia-imex", "-c", "/etc/nvidia-imex/config.cfg")
    assert r.returncode == 1 and "IMEX version 580.95.05 is not compatible" in r.stderr


def test_dcgm_exporter(host: Host) -> None:
    port = _free_port()
    (host.root / "etc/default").mkdir(parents=True, exist_ok=True)
    (host.root / "etc/default/nvidia-dcgm-exporter").write_text(f'DCGM_EXPORTER_LISTEN="127.0.0.1:{port}"\n')
    path = host.root / "usr/bin/dcgm-exporter"
    argv = [str(path)] if os.path.exists("/usr/bin/python3") else [sys.executable, str(path)]
    env = {k: v for k, v in host.env.items() if not k.startswith(("DCGM_EXPORTER_", "DCGM_REMOTE_"))}
    # a remote host engine that does not answer: the exporter exits, as the real one does
    down = subprocess.run([*argv, "--remote-hostengine-info", f"127.0.0.1:{_free_port()}"], env=env,
                          capture_output=True, text=True, timeout=20)
    assert down.returncode == 1 and "remote host engine" in down.stderr
    (host.root / "etc/dcgm-exporter").mkdir(parents=True)
    (host.root / "etc/dcgm-exporter/counters.csv").write_text(
        "# field, type, help\nDCGM_FI_DEV_GPU_TEMP, gauge, temp\nDCGM_FI_DEV_POWER_USAGE, gauge, power\n"
        "DCGM_FI_DEV_FB_USED, gauge, fb\n")
    proc = subprocess.Popen([*argv, "--collectors", "/etc/dcgm-exporter/counters.csv"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        body = _http_get(f"http://127.0.0.1:{port}/metrics")
        assert "DCGM_FI_DEV_SM_CLOCK" not in body  # only the listed collectors
        assert 'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-' in body
        assert 'modelName="NVIDIA H200"' in body and f'DCGM_FI_DRIVER_VERSION="{DRIVER}"' in body
        assert sum(line.startswith("DCGM_FI_DEV_FB_USED{") for line in body.splitlines()) == 8
        assert "DCGM_FI_DEV_POWER_USAGE{" in body and "Hostname=" in body
        assert _http_get(f"http://127.0.0.1:{port}/health").strip() == "OK"
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


def test_container_toolkit(host: Host) -> None:
    cfg = host.root / "etc/containerd/config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('version = 2\n\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n\n'
                   '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n'
                   '  runtime_type = "io.containerd.runc.v2"\n')
    r = host.run("nvidia-ctk", "runtime", "configure", "--runtime=containerd", "--set-as-default")
    assert r.returncode == 0, r.stderr
    doc = tomllib.loads(cfg.read_text())
    ctd = doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    assert ctd["snapshotter"] == "overlayfs" and ctd["default_runtime_name"] == "nvidia"
    assert ctd["runtimes"]["runc"]["runtime_type"] == "io.containerd.runc.v2"
    assert ctd["runtimes"]["nvidia"]["runtime_type"] == "io.containerd.runc.v2"
    assert ctd["runtimes"]["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    before = (cfg.read_text(), cfg.stat().st_mtime_ns)
    r = host.run("nvidia-ctk", "runtime", "configure", "--runtime=containerd", "--set-as-default")
    assert r.returncode == 0 and "already up to date" in r.stderr
    assert (cfg.read_text(), cfg.stat().st_mtime_ns) == before
    r = host.run("nvidia-ctk", "runtime", "configure", "--runtime=docker", "--config=/etc/docker/daemon.json")
    assert r.returncode == 0
    daemon = json.loads((host.root / "etc/docker/daemon.json").read_text())
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    r = host.run("nvidia-ctk", "cdi", "generate", "--output=/etc/cdi/nvidia.yaml")
    assert r.returncode == 0, r.stderr
    spec = (host.root / "etc/cdi/nvidia.yaml").read_text()
    assert "cdiVersion: 0.5.0" in spec and "kind: nvidia.com/gpu" in spec
    names = host.run("nvidia-ctk", "cdi", "list").stdout.split()
    assert [f"nvidia.com/gpu={i}" for i in range(8)] == names[:8] and "nvidia.com/gpu=all" in names
    assert len(names) == 17  # 8 indexes, 8 UUIDs, all
    info = host.run("nvidia-container-cli", "info")
    assert info.returncode == 0 and f"NVRM version:   {DRIVER}" in info.stdout
    assert info.stdout.count("Device Index:") == 8 and "Architecture:   9.0" in info.stdout
    (host.root / "usr/share/llmcluster-sim/driver-version").unlink()
    r = host.run("nvidia-container-cli", "info")
    assert r.returncode == 1 and "libnvidia-ml.so.1" in r.stderr


# --------------------------------------------------------------------------- real apt (root)


@ROOT_ONLY
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
def test_apt_accepts_the_signed_repositories(repos: SimRepos, tmp_path: Path) -> None:
    state, cache, etc = tmp_path / "state", tmp_path / "cache", tmp_path / "etc"
    for d in (state / "lists/partial", cache / "archives/partial", etc / "sources.list.d", etc / "preferences.d"):
        d.mkdir(parents=True)
    # a dpkg status with python3 installed (the stand-in packages' only outside dependency)
    (tmp_path / "status").write_text("Package: python3\nStatus: install ok installed\nPriority: optional\n"
                                     "Architecture: amd64\nVersion: 3.11.2-1+b1\nDescription: stub\n\n")
    (etc / "sources.list").write_text(
        f"deb [signed-by={repos.key}] file:{repos.cuda} ./\n"
        f"deb [signed-by={repos.key}] file:{repos.libnvidia_container} ./\n"
    )
    opts = []
    for key, value in (("Dir::Etc::sourcelist", etc / "sources.list"),
                       ("Dir::Etc::sourceparts", etc / "sources.list.d"),
                       ("Dir::Etc::preferencesparts", etc / "preferences.d"), ("Dir::State", state),
                       ("Dir::State::status", tmp_path / "status"), ("Dir::Cache", cache),
                       ("APT::Architecture", "amd64"), ("Debug::NoLocking", "1"),
                       ("APT::Sandbox::User", "root")):  # the temporary folders are private to root
        opts += ["-o", f"{key}={value}"]
    upd = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True, timeout=60)
    assert upd.returncode == 0, upd.stdout + upd.stderr
    assert "NO_PUBKEY" not in upd.stderr and "not signed" not in upd.stderr and "W: " not in upd.stderr, upd.stderr
    madison = subprocess.run(["apt-cache", *opts, "madison", "nvidia-driver-570-open", "nvidia-container-toolkit",
                              "datacenter-gpu-manager-4-core"], capture_output=True, text=True, check=True).stdout
    versions = {(cols[0].strip(), cols[1].strip()) for cols in (line.split("|") for line in madison.splitlines())}
    assert {("nvidia-driver-570-open", "570.172.08-1"), ("nvidia-driver-570-open", "570.195.03-1"),
            ("nvidia-container-toolkit", "1.17.8-1"), ("nvidia-container-toolkit", "1.17.7-1"),
            ("datacenter-gpu-manager-4-core", "1:4.2.3-1")} <= versions
    # the exact-version dependencies: the older meta alone does not resolve (apt picks the newest
    # utils), the meta with its utils pinned to the same version does; the newest resolves alone
    old = ["nvidia-driver-570-open=570.172.08-1"]
    sim = subprocess.run(["apt-get", *opts, "-s", "install", *old], capture_output=True, text=True)
    assert sim.returncode != 0 and "unmet dependencies" in sim.stdout
    pinned = [*old, "nvidia-utils-570=570.172.08-1", "nvidia-compute-utils-570=570.172.08-1"]
    sim = subprocess.run(["apt-get", *opts, "-s", "install", *pinned], capture_output=True, text=True)
    assert "Inst nvidia-utils-570 (570.172.08-1" in sim.stdout, sim.stdout + sim.stderr
    sim = subprocess.run(["apt-get", *opts, "-s", "install", "nvidia-driver-570-open", "nvidia-fabricmanager-570"],
                         capture_output=True, text=True)
    assert "Inst nvidia-fabricmanager-570 (570.195.03-1" in sim.stdout, sim.stdout + sim.stderr


# --------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_get(url: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_ctk_containerd_config_versions(host: Host) -> None:
    cfg = host.root / "etc/containerd/config.toml"
    cfg.parent.mkdir(parents=True)
    for text, path in (("", ["plugins", "io.containerd.grpc.v1.cri", "containerd"]),  # new file: version 2
                       ("[plugins.cri]\n  sandbox_image = \"pause\"\n", ["plugins", "cri", "containerd"]),  # v1
                       ("version = 3\n", ["plugins", "io.containerd.cri.v1.runtime", "containerd"])):
        cfg.write_text(text)
        assert host.run("nvidia-ctk", "runtime", "configure", "--runtime=containerd").returncode == 0
        doc = tomllib.loads(cfg.read_text())
        for key in path:
            doc = doc[key]
        assert doc["runtimes"]["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
