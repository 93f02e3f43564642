"""Preflight for bare metal (``baremetal.host-facts``): log in to every host over SSH and compare it
with its pool's spec.

For each planned host (its management address, ``baremetal.ssh_user``) the check gathers,
read-only:

* **GPUs** — ``nvidia-smi --query-gpu=name --format=csv,noheader`` (count and model). Without
  ``nvidia-smi`` (a fresh host before the driver is installed) it counts the NVIDIA display
  and 3D controllers on the PCI bus (``/sys/bus/pci/devices``, vendor ``0x10de``, class
  ``0x0300``/``0x0302``; NVSwitches are bridges and not counted) and checks the count only;
* **NVMe drives** — ``lsblk -J -d -o NAME,TYPE,TRAN,SIZE`` (disks whose transport is
  ``nvme``), or ``/sys/block/nvme*`` where lsblk is missing;
* **OS release** — ``/etc/os-release`` (``ID`` and ``VERSION_ID``).

Each difference is a :class:`~llmcluster.errors.Problem` such as
``pools.gpu: gpu-02 has 7 GPUs (NVIDIA H100 80GB HBM3), spec says 8 h100``,
``pools.storage: storage-01 has 0 NVMe drives, spec says 3`` or
``baremetal.os: gpu-01 runs Ubuntu 22.04.4 LTS (ubuntu 22.04), spec says ubuntu-24.04``.

Authentication: the key in ``LLMCLUSTER_SSH_KEY`` (or ``key_filename``), else the SSH agent
and the default keys. Host keys must be in ``~/.ssh/known_hosts`` unless
``baremetal.ssh_insecure_accept_host_key`` says otherwise (labs only). The GPU probe is
injectable (``gpu_probe``) so a test can stand in for GPUs a machine does not have; the SSH
session and everything else stay real.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from llmcluster.errors import Problem
from llmcluster.plan.ipam import build_ip_plan
from llmcluster.spec.models import Spec

#: Runs one command on the host: (exit status, stdout, stderr).
Runner = Callable[[str], tuple[int, str, str]]

NVIDIA_SMI = "nvidia-smi --query-gpu=name --format=csv,noheader"
LSBLK = "lsblk -J -d -o NAME,TYPE,TRAN,SIZE"
_GPU_SCRIPT = (
    "if command -v nvidia-smi >/dev/null 2>&1; then echo source=nvidia-smi; " + NVIDIA_SMI + "; "
    "else echo source=pci; for d in /sys/bus/pci/devices/*; do "
    "[ -r \"$d/vendor\" ] || continue; v=$(cat \"$d/vendor\"); c=$(cat \"$d/class\"); "
    "case \"$v:$c\" in 0x10de:0x0300*|0x10de:0x0302*) echo \"pci $(cat \"$d/device\")\";; esac; done; fi"
)
_NVME_SCRIPT = (
    "if command -v lsblk >/dev/null 2>&1; then echo source=lsblk; " + LSBLK + "; "
    "else echo source=sys; for d in /sys/block/nvme*; do [ -e \"$d\" ] && basename \"$d\"; done; fi"
)
#: How ``nvidia-smi`` names each catalog GPU (``NVIDIA H100 80GB HBM3``, ``NVIDIA A100-SXM4-80GB``).
GPU_NAME_PATTERNS: dict[str, str] = {
    "h100": r"\bH100\b",
    "h200": r"\bH200\b",
    "h20": r"\bH20\b",
    "a100-80gb": r"\bA100\b.*\b80GB\b",
    "a100-40gb": r"\bA100\b.*\b40GB\b",
    "l40s": r"\bL40S\b",
    "b200": r"\bB200\b",
}


@dataclass(frozen=True)
class GpuReport:
    names: tuple[str, ...]  # one entry per GPU
    source: str  # "nvidia-smi" | "pci" | "injected"
    error: str | None = None


@dataclass(frozen=True)
class HostFacts:
    host: str
    address: str
    gpu: GpuReport
    nvme: tuple[str, ...]
    os_id: str
    os_version: str
    os_pretty: str


GpuProbe = Callable[[str, Runner], GpuReport]


def gpu_model_matches(model: str, name: str) -> bool:
    pattern = GPU_NAME_PATTERNS.get(model)
    if pattern is None:  # a model without a pattern: its catalog name in the reported one
        return model.split("-")[0].lower() in name.lower()
    return re.search(pattern, name, re.IGNORECASE) is not None


def probe_gpus(_host: str, run: Runner) -> GpuReport:
    rc, out, err = run(_GPU_SCRIPT)
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    source = lines[0].removeprefix("source=") if lines and lines[0].startswith("source=") else "nvidia-smi"
    body = lines[1:] if lines and lines[0].startswith("source=") else lines
    if rc != 0:
        detail = (err.strip() or "\n".join(body) or "no output").splitlines()[-1]
        return GpuReport((), source, f"nvidia-smi failed (exit {rc}): {detail}")
    if source == "pci":
        return GpuReport(tuple(f"NVIDIA PCI device {line.split()[-1]}" for line in body), "pci")
    return GpuReport(tuple(body), "nvidia-smi")


def probe_nvme(run: Runner) -> tuple[str, ...]:
    rc, out, err = run(_NVME_SCRIPT)
    if rc != 0:
        raise RuntimeError(f"cannot list block devices (exit {rc}): {err.strip()}")
    head, _, rest = out.partition("\n")
    if head.strip() == "source=lsblk":
        devices = json.loads(rest or "{}").get("blockdevices", [])
        return tuple(sorted(d["name"] for d in devices if d.get("type") == "disk" and d.get("tran") == "nvme"))
    return tuple(sorted(line.strip() for line in rest.splitlines() if line.strip()))


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            try:
                out[key.strip()] = shlex.split(value)[0] if value.strip() else ""
            except ValueError:
                out[key.strip()] = value.strip().strip("\"'")
    return out


# --------------------------------------------------------------------------- SSH


def _connect(address: str, username: str, *, key_filename: str | None, insecure: bool, timeout: float):
    import paramiko

    client = paramiko.SSHClient()
    for path in ("/etc/ssh/ssh_known_hosts", os.path.expanduser("~/.ssh/known_hosts")):
        if os.path.isfile(path):
            client.load_system_host_keys(path)  # read-only
    class AcceptAny(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            return None  # explicitly insecure (baremetal.ssh_insecure_accept_host_key): accept, remember nothing

    client.set_missing_host_key_policy(AcceptAny() if insecure else paramiko.RejectPolicy())
    client.connect(address, username=username, key_filename=key_filename, look_for_keys=key_filename is None,
                   allow_agent=key_filename is None, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
    return client


def _runner(client, timeout: float) -> Runner:
    def run(command: str) -> tuple[int, str, str]:
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        return stdout.channel.recv_exit_status(), out, err

    return run


def gather(host: str, address: str, username: str, *, key_filename: str | None = None, insecure: bool = False,
           timeout: float = 10.0, gpu_probe: GpuProbe | None = None) -> HostFacts:
    """Log in to one host and gather its facts (raises on SSH or command failures)."""
    client = _connect(address, username, key_filename=key_filename, insecure=insecure, timeout=timeout)
    try:
        run = _runner(client, timeout)
        gpu = (gpu_probe or probe_gpus)(host, run)
        nvme = probe_nvme(run)
        rc, out, err = run("cat /etc/os-release")
        if rc != 0:
            raise RuntimeError(f"cannot read /etc/os-release (exit {rc}): {err.strip()}")
        osr = parse_os_release(out)
    finally:
        client.close()
    return HostFacts(host=host, address=address, gpu=gpu, nvme=nvme, os_id=osr.get("ID", "?"),
                     os_version=osr.get("VERSION_ID", "?"), os_pretty=osr.get("PRETTY_NAME", "?"))


# --------------------------------------------------------------------------- comparison


def _gpu_summary(names: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{c}x {n}" for n, c in counts.items())


def compare(spec: Spec, pool_name: str, facts: HostFacts) -> list[Problem]:
    """The differences between one host's gathered facts and its pool's spec."""
    pool = spec.pools[pool_name]
    out: list[Problem] = []
    path = f"pools.{pool_name}"
    want = pool.gpu.count if pool.gpu is not None else 0
    want_text = f"{want} {pool.gpu.model}" if pool.gpu is not None else "0 (the pool has no gpu section)"
    g = facts.gpu
    if g.error:
        out.append(Problem(path, f"{facts.host}: cannot count GPUs: {g.error}"))
    else:
        got = len(g.names)
        if g.source == "pci":
            what = "no NVIDIA driver (nvidia-smi missing): counted on the PCI bus" if got else \
                "no nvidia-smi and no NVIDIA GPU on the PCI bus"
        else:
            what = _gpu_summary(g.names) if got else "nvidia-smi lists none"
        wrong_model = (pool.gpu is not None and g.source != "pci"
                       and any(not gpu_model_matches(pool.gpu.model, n) for n in g.names))
        if got != want or wrong_model:
            out.append(Problem(path, f"{facts.host} has {got} GPUs ({what}), spec says {want_text}"))
    want_nvme = pool.nvme.count if pool.nvme is not None else 0
    if len(facts.nvme) != want_nvme:
        found = f" ({', '.join(facts.nvme)})" if facts.nvme else ""
        out.append(Problem(path, f"{facts.host} has {len(facts.nvme)} NVMe drives{found}, spec says {want_nvme}"))
    if spec.baremetal is not None:
        want_id, _, want_version = spec.baremetal.os.partition("-")
        if (facts.os_id, facts.os_version) != (want_id, want_version):
            out.append(Problem("baremetal.os", f"{facts.host} runs {facts.os_pretty} ({facts.os_id} "
                                               f"{facts.os_version}), spec says {spec.baremetal.os}"))
    return out


def check_host_facts(spec: Spec, *, hosts: Sequence[str] | None = None, key_filename: str | None = None,
                     insecure_accept_host_key: bool | None = None, timeout: float = 10.0,
                     gpu_probe: GpuProbe | None = None, max_workers: int = 16) -> list[Problem]:
    """Log in to every planned host (or ``hosts``) and report each difference from the spec."""
    bm = spec.baremetal
    username = bm.ssh_user if bm is not None else "root"
    insecure = (bm.ssh_insecure_accept_host_key if bm is not None else False) \
        if insecure_accept_host_key is None else insecure_accept_host_key
    key_filename = key_filename or os.environ.get("LLMCLUSTER_SSH_KEY") or None
    planned = [h for h in build_ip_plan(spec).hosts if hosts is None or h.name in hosts]

    def one(h) -> list[Problem]:
        try:
            facts = gather(h.name, h.mgmt_ip, username, key_filename=key_filename, insecure=insecure,
                           timeout=timeout, gpu_probe=gpu_probe)
        except Exception as exc:  # paramiko and socket errors: a finding about this host, not a crash
            return [Problem(f"pools.{h.pool}", f"{h.name} ({h.mgmt_ip}): cannot gather facts over SSH as "
                                               f"{username}: {exc.__class__.__name__}: {exc}")]
        return compare(spec, h.pool, facts)

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(planned) or 1))) as pool:
        return [p for found in pool.map(one, planned) for p in found]
