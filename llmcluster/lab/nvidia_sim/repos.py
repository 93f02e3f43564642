"""LAB SIMULATION: local, signed apt repositories of the stand-in NVIDIA packages.

:func:`ensure_sim_repos` builds, once per content hash of the builder sources and version lists,
under ``<cache>/nvidia-sim-<hash>/``:

* ``cuda/`` and ``libnvidia-container/``: flat apt repositories (``deb [signed-by=KEY]
  file:/srv/llmcluster-sim/cuda ./``) with ``Packages``, ``Packages.gz``, a hand-written
  ``Release`` and its signatures ``InRelease`` (clear-signed) and ``Release.gpg``;
* ``wheels/``: the stand-in Python wheels (:func:`llmcluster.lab.nvidia_sim.wheels.build_wheels`);
* ``llmcluster-sim-archive-keyring.asc`` (the lab signing key, armored) and ``keyring.fingerprint``.

The signing key is generated once per cache (``<cache>/nvidia-sim-gnupg``, a private GNUPGHOME,
no passphrase) so its fingerprint stays stable across rebuilds. Builds go to a temporary folder
renamed into place, under a file lock. Tools used: ``dpkg-deb``, ``dpkg-scanpackages``, ``gpg``.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from llmcluster.lab.nvidia_sim import debs as D

log = logging.getLogger(__name__)

KEY_NAME = "llmcluster-sim-archive-keyring.asc"
FINGERPRINT_NAME = "keyring.fingerprint"
KEY_UID = "llmcluster lab simulation archive (SIMULATED NVIDIA repositories) <lab-simulation@llmcluster.invalid>"
#: Bump to force a rebuild when something outside the hashed sources changes the output.
BUILD_REVISION = 1
#: Where the lab copies the repositories on a GPU host (see :func:`inventory_overrides`).
HOST_DIR = "/srv/llmcluster-sim"


@dataclass(frozen=True)
class SimRepos:
    """Paths of one built set of simulated repositories (all under ``root``)."""

    root: Path
    cuda: Path
    libnvidia_container: Path
    wheels: Path
    key: Path
    fingerprint_file: Path
    fingerprint: str


def _content_hash() -> str:
    h = hashlib.sha256()
    pkg = Path(__file__).parent
    for path in sorted(pkg.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        h.update(str(path.relative_to(pkg)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(json.dumps({
        "drivers": D.DRIVER_VERSIONS, "dcgm": D.DCGM_VERSION, "exporter": D.DCGM_EXPORTER_VERSION,
        "toolkit": D.TOOLKIT_VERSIONS, "revision": BUILD_REVISION,
    }, sort_keys=True).encode())
    return h.hexdigest()[:16]


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _gpg(home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GNUPGHOME": str(home), "LC_ALL": "C"}
    proc = subprocess.run(["gpg", "--batch", "--no-tty", *args], input=input, capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def _stop_agent(home: Path) -> None:
    subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)},
                   capture_output=True, check=False, timeout=30)


def ensure_key(cache: Path) -> tuple[Path, str]:
    """The lab signing key's GNUPGHOME and fingerprint (generated on first use). Caller holds the lock."""
    home = cache / "nvidia-sim-gnupg"
    fp_file = home / "fingerprint"
    if fp_file.exists():
        return home, fp_file.read_text().strip()
    if home.exists():
        shutil.rmtree(home)
    tmp = cache / f".nvidia-sim-gnupg.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700, parents=True)
    try:
        _gpg(tmp, "--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key", KEY_UID,
             "ed25519", "sign", "never")
        out = _gpg(tmp, "--with-colons", "--list-secret-keys").stdout
        fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
        (tmp / "fingerprint").write_text(fpr + "\n")
    finally:
        _stop_agent(tmp)
    os.replace(tmp, home)
    return home, fpr


def _release(repo: Path, label: str, files: list[str]) -> str:
    lines = [
        "Origin: llmcluster-sim",
        f"Label: {label}",
        "Suite: stable",
        "Codename: llmcluster-sim",
        f"Date: {formatdate(time.time(), usegmt=True)}",
        "Architectures: amd64 all",
        f"Description: SIMULATED {label} (llmcluster lab stand-in packages, no NVIDIA software)",
    ]
    for algo, name in (("md5", "MD5Sum"), ("sha256", "SHA256")):
        lines.append(f"{name}:")
        for f in files:
            data = (repo / f).read_bytes()
            lines.append(f" {hashlib.new(algo, data).hexdigest()} {len(data):>16} {f}")
    return "\n".join(lines) + "\n"


def build_repo(repo: Path, packages: list[D.Deb], label: str, gnupg: Path, fingerprint: str) -> None:
    """Build the flat repository ``repo`` of ``packages`` and sign its Release file."""
    repo.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="nvsim-deb-") as work, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda d: D.build_deb(d, Path(work), repo), packages))
    scan = subprocess.run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=repo,
                          capture_output=True, text=True, check=True, timeout=300)
    (repo / "Packages").write_text(scan.stdout, encoding="utf-8")
    with gzip.GzipFile(repo / "Packages.gz", "wb", mtime=0) as gz:
        gz.write(scan.stdout.encode())
    (repo / "Release").write_text(_release(repo, label, ["Packages", "Packages.gz"]), encoding="utf-8")
    try:
        common = ["--local-user", fingerprint, "--digest-algo", "SHA256", "--yes"]
        _gpg(gnupg, *common, "--clearsign", "--output", str(repo / "InRelease"), str(repo / "Release"))
        _gpg(gnupg, *common, "--armor", "--detach-sign", "--output", str(repo / "Release.gpg"), str(repo / "Release"))
    finally:
        _stop_agent(gnupg)


def _build_wheels(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        from llmcluster.lab.nvidia_sim.wheels import build_wheels
    except ImportError as exc:
        log.warning("nvidia_sim: the stand-in wheels builder is missing (%s); wheels/ stays empty", exc)
        return []
    return list(build_wheels(dest))


def _repos_at(root: Path, fingerprint: str) -> SimRepos:
    return SimRepos(root=root, cuda=root / "cuda", libnvidia_container=root / "libnvidia-container",
                    wheels=root / "wheels", key=root / KEY_NAME, fingerprint_file=root / FINGERPRINT_NAME,
                    fingerprint=fingerprint)


def ensure_sim_repos(cache: Path) -> SimRepos:
    """Build (or reuse) the simulated NVIDIA repositories under ``cache/nvidia-sim-<hash>/``."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"nvidia-sim-{_content_hash()}"
    with _lock(cache / "nvidia-sim.lock"):
        if (final / ".complete").exists():
            return _repos_at(final, (final / FINGERPRINT_NAME).read_text().strip())
        started = time.monotonic()
        gnupg, fingerprint = ensure_key(cache)
        for stale in cache.glob(".nvidia-sim-*.tmp*"):  # left by an interrupted build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = cache / f".{final.name}.tmp{os.getpid()}"
        tmp.mkdir()
        try:
            build_repo(tmp / "cuda", D.cuda_debs(), "NVIDIA CUDA repository stand-in", gnupg, fingerprint)
            build_repo(tmp / "libnvidia-container", D.toolkit_debs(), "libnvidia-container repository stand-in",
                       gnupg, fingerprint)
            _build_wheels(tmp / "wheels")
            (tmp / KEY_NAME).write_text(_gpg(gnupg, "--armor", "--export", fingerprint).stdout, encoding="utf-8")
            (tmp / FINGERPRINT_NAME).write_text(fingerprint + "\n", encoding="utf-8")
            (tmp / "README").write_text(
                "SIMULATION (llmcluster lab): apt repositories of stand-in packages with the real NVIDIA\n"
                "package names and versions. They contain no NVIDIA software.\n", encoding="utf-8")
            (tmp / ".complete").write_text(f"{time.monotonic() - started:.1f}s\n")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("nvidia_sim: built %s in %.1fs", final, time.monotonic() - started)
        return _repos_at(final, fingerprint)


def inventory_overrides(repos: SimRepos) -> dict[str, str]:
    """The ``all.vars`` the lab inventory adds so the roles install from the simulated repositories."""
    key_url = f"file://{HOST_DIR}/{KEY_NAME}"
    return {
        "nvidia_driver_repo_url": f"file:{HOST_DIR}/cuda",
        "nvidia_driver_repo_key_url": key_url,
        "nvidia_driver_repo_key_fingerprint": repos.fingerprint,
        "nvidia_driver_repo_origin": "",
        "nvidia_container_toolkit_repo_url": f"file:{HOST_DIR}/libnvidia-container",
        "nvidia_container_toolkit_repo_key_url": key_url,
        "nvidia_container_toolkit_repo_key_fingerprint": repos.fingerprint,
        "nvidia_container_toolkit_repo_origin": "",
        "tensorrt_llm_pip_find_links": f"{HOST_DIR}/wheels",
        "tensorrt_llm_pip_index_url": "",
        "nvidia_fabricmanager_nvswitch_devices_path": "/etc/llmcluster-sim/proc/driver/nvidia-nvswitch/devices",
    }
