"""The lab's base root filesystem: Debian bookworm (minbase) plus what Ansible needs, cached.

Built once with ``debootstrap --variant=minbase bookworm`` from the machine's own Debian
mirror (read from its apt sources), then the lab packages are installed in a chroot. The
result lives in the cache directory (``LLMCLUSTER_LAB_CACHE`` or ``~/.cache/llmcluster/lab``)
under a key derived from the suite, the package list and :data:`IMAGE_REVISION`, so changing
any of them builds a new image; the build goes into a temporary directory that is renamed
into place only when complete, under a lock file so that two runs never build at once.

Every host of the lab is an overlayfs over this read-only image (see
:mod:`llmcluster.lab.hosts`), so the image itself is never written after it is built.

Safety: everything that runs inside the image during the build runs in a private mount
namespace (its /proc, /dev, /sys mounts vanish with it), and the package configuration step
(maintainer scripts) runs with no network and in its own PID namespace, behind a
``policy-rc.d`` that forbids starting services, so nothing from the image can start on the
machine itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmcluster.lab._sys import LabError, run, safe_rmtree, which

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: What every lab host has on top of minbase: enough for SSH, Ansible and the network checks.
LAB_PACKAGES: tuple[str, ...] = (
    "openssh-server",
    "python3",
    "sudo",
    "iproute2",
    "nftables",
    "python3-cryptography",
    "iputils-ping",
    "chrony",  # lab hosts reach no mirror: what the common role installs must already be there
    # systemd as init for the hosts of kind nspawn (llmcluster.lab.nspawn); namespace hosts
    # ignore it (sshd is their init). One image for both kinds: +3 s build, +21 MB.
    "systemd-sysv",
    "dbus",
    # The mtls and gateway roles (system trust store, openssl, the HAProxy API front); curl for
    # the gateway checks of the verification suite.
    "ca-certificates",
    "openssl",
    "haproxy",
    "curl",
    # The audit_log role (the gateway's audit trail): systemd-journal-upload forwards the sealed
    # journal to a collector; lab hosts reach no mirror, so it is in the image.
    "systemd-journal-remote",
    # The GPU node stack (docs/gpu-stack.md): TensorRT-LLM goes into a venv (python3-venv), the
    # container toolkit configures containerd. The NVIDIA packages themselves come from the lab's
    # simulated repositories (llmcluster/lab/nvidia_sim), never from this image.
    "python3-venv",
    "containerd",
    "libopenmpi3",  # TensorRT-LLM's MPI runtime (the tensorrt_llm role installs it next to the venv)
    # The ceph role (Debian's Ceph 16.2; lab hosts reach no mirror): the daemons on the storage
    # hosts, ceph-common (the ceph/rados clients) on every host, the GPU nodes' client round trip
    # included. One image for all hosts: the daemons stay disabled where the role does not run.
    "ceph-mon",
    "ceph-mgr",
    "ceph-osd",
    "ceph-common",
    # Monitoring (docs/observability.md): node_exporter on every host, Prometheus and Alertmanager on
    # the monitor host (their units are disabled in the image: the roles enable them where they run).
    "prometheus-node-exporter",
    "prometheus",
    "prometheus-alertmanager",
)
#: Units the packages above enable that only their role may start (removed from the image's wants).
DISABLED_UNITS = ("prometheus.service", "prometheus-alertmanager.service")
#: Bump when the customisation in :func:`_customise` changes, so cached images are rebuilt.
IMAGE_REVISION = 3

#: The lab's sshd settings (a drop-in: Debian's sshd_config includes sshd_config.d/*.conf).
SSHD_DROPIN = """\
# llmcluster lab host (a lab, not production): key-only root login, no DNS lookups.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""

POLICY_RC_D = "#!/bin/sh\n# llmcluster lab image build: never start services while building\nexit 101\n"

Progress = Callable[[str], None]


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


# --------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """Where base images are cached: ``$LLMCLUSTER_LAB_CACHE`` or ``~/.cache/llmcluster/lab``."""
    env = os.environ.get("LLMCLUSTER_LAB_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/llmcluster/lab").expanduser()


def image_key(packages: Sequence[str] = LAB_PACKAGES, suite: str = SUITE) -> str:
    """Cache key of an image: suite, sorted package list and the customisation revision."""
    blob = json.dumps({"suite": suite, "packages": sorted(set(packages)), "revision": IMAGE_REVISION})
    return f"{suite}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


# --------------------------------------------------------------------------- mirror


@dataclass(frozen=True)
class AptSource:
    types: tuple[str, ...]
    uri: str
    suites: tuple[str, ...]


def _one_line_sources(text: str) -> Iterator[AptSource]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)  # [arch=amd64 signed-by=...]
        parts = line.split()
        if len(parts) >= 3:
            yield AptSource(types=(parts[0],), uri=parts[1], suites=(parts[2],))


def _deb822_sources(text: str) -> Iterator[AptSource]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last_key: str | None = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, last_key = {}, None
            continue
        if raw[0] in " \t" and last_key is not None:  # continuation line
            current[last_key] += "\n" + raw.strip()
            continue
        if ":" in raw:
            key, value = raw.split(":", 1)
            last_key = key.strip().lower()
            current[last_key] = value.strip()
    if current:
        stanzas.append(current)
    for st in stanzas:
        if st.get("enabled", "yes").strip().lower() == "no":
            continue
        types = tuple(st.get("types", "").split())
        suites = tuple(st.get("suites", "").split())
        for uri in st.get("uris", "").split():
            yield AptSource(types=types, uri=uri, suites=suites)


def apt_sources(
    sources_list: Path = Path("/etc/apt/sources.list"),
    sources_dir: Path = Path("/etc/apt/sources.list.d"),
) -> list[AptSource]:
    """The machine's apt sources (one-line ``.list`` files and deb822 ``.sources`` files)."""
    found: list[AptSource] = []
    files: list[Path] = [sources_list] if sources_list.is_file() else []
    if sources_dir.is_dir():
        files += sorted(p for p in sources_dir.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        parser = _deb822_sources if path.suffix == ".sources" else _one_line_sources
        found.extend(parser(text))
    return found


def debian_mirror(
    suite: str = SUITE,
    sources_list: Path = Path("/etc/apt/sources.list"),
    sources_dir: Path = Path("/etc/apt/sources.list.d"),
) -> str:
    """The Debian mirror URL this machine uses for ``suite`` (fallback :data:`DEFAULT_MIRROR`).

    An exact ``suite`` entry wins; else a mirror serving ``suite-updates`` and the like (not
    the security archive, which has no base suite). Only http(s) mirrors are considered.
    """
    candidates = [
        s for s in apt_sources(sources_list, sources_dir)
        if "deb" in s.types and re.match(r"https?://", s.uri) and "security" not in s.uri
    ]
    for s in candidates:
        if suite in s.suites:
            return s.uri.rstrip("/")
    for s in candidates:
        if any(x.startswith(f"{suite}-") for x in s.suites):
            return s.uri.rstrip("/")
    return DEFAULT_MIRROR


def _host_apt_options() -> list[str]:
    """apt options the machine itself relies on for its mirror (e.g. a snapshot mirror's
    ``Acquire::Check-Valid-Until "false"``), passed on to the builds' ``apt-get update``."""
    proc = run(["apt-config", "dump", "Acquire::Check-Valid-Until"], check=False)
    if proc.returncode == 0 and re.search(r'Acquire::Check-Valid-Until\s+"(false|0|no)"', proc.stdout):
        return ["-o", "Acquire::Check-Valid-Until=false"]
    return []


# --------------------------------------------------------------------------- build


def ensure_debootstrap(progress: Progress | None = None) -> str:
    """Path of ``debootstrap``, installing the Debian package on the machine if missing."""
    found = which("debootstrap")
    if found:
        return found
    _say(progress, "installing debootstrap on this machine")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=False, env=env, timeout=600).returncode != 0:
        run(["apt-get", "update", "-qq"], env=env, timeout=600)
        run(["apt-get", "install", "-y", "-qq", "debootstrap"], env=env, timeout=600)
    found = which("debootstrap")
    if not found:
        raise LabError("debootstrap is not available and could not be installed")
    return found


@dataclass(frozen=True)
class BaseImage:
    """A built base image: ``rootfs`` is the read-only lower layer of every lab host."""

    key: str
    rootfs: Path
    built: bool  # True when this call built it, False when it came from the cache
    seconds: float  # time this call spent (build or cache hit)
    meta: dict

    @property
    def directory(self) -> Path:
        return self.rootfs.parent


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_CHROOT_WRAPPER = (
    'R="$1"; shift; set -e; '
    'mount -t proc proc "$R/proc"; mount -t sysfs -o ro sysfs "$R/sys"; mount --rbind /dev "$R/dev"; '
    'exec chroot "$R" "$@"'
)


def _chroot(rootfs: Path, argv: Sequence[str], *, network: bool, timeout: float = 1200) -> None:
    """Run ``argv`` chrooted into ``rootfs`` in a private mount namespace.

    Without ``network`` it also gets an empty network namespace and its own PID namespace, so
    a maintainer script can neither reach anything nor leave a process behind.
    """
    ns = ["--mount", "--propagation", "private"]
    if not network:
        ns += ["--net", "--pid", "--fork", "--kill-child"]
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C",
        "HOME": "/root",
    }
    run(["unshare", *ns, "--", "/bin/sh", "-c", _CHROOT_WRAPPER, "lab-chroot", str(rootfs), *argv],
        env=env, timeout=timeout)


def _customise(rootfs: Path) -> None:
    """Make the image a lab host template: no host keys of its own, lab sshd settings."""
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = rootfs / "etc/ssh/sshd_config.d/10-llmcluster-lab.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(SSHD_DROPIN)
    ssh_dir = rootfs / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    ssh_dir.chmod(0o700)
    (rootfs / "etc/resolv.conf").write_text("")  # hosts have no DNS: fact gathering must not wait on it
    (rootfs / "etc/hostname").write_text("localhost\n")
    for unit in DISABLED_UNITS:
        for link in (rootfs / "etc/systemd/system").glob(f"*.wants/{unit}"):
            link.unlink()
    for stale in ("etc/machine-id", "var/lib/dbus/machine-id"):
        p = rootfs / stale
        if p.is_file():
            p.write_text("")


def _build(rootfs: Path, *, mirror: str, packages: Sequence[str], suite: str, progress: Progress | None) -> dict:
    debootstrap = ensure_debootstrap(progress)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    _say(progress, f"debootstrap --variant=minbase {suite} from {mirror}")
    # A private mount namespace: if debootstrap dies, its /proc and /sys mounts die with it.
    run(["unshare", "--mount", "--propagation", "private", "--",
         debootstrap, "--variant=minbase", suite, str(rootfs), mirror], timeout=1800)
    timings["debootstrap_s"] = round(time.monotonic() - t0, 1)

    t1 = time.monotonic()
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    apt = ["apt-get", "-y", "-q", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confold"]
    _say(progress, f"installing {' '.join(packages)}")
    _chroot(rootfs, ["apt-get", "-q", *_host_apt_options(), "update"], network=True)
    _chroot(rootfs, [*apt, "--download-only", "install", *packages], network=True)
    _chroot(rootfs, [*apt, "install", *packages], network=False)
    _chroot(rootfs, ["apt-get", "clean"], network=False)
    policy.unlink()
    _customise(rootfs)
    timings["packages_s"] = round(time.monotonic() - t1, 1)
    return timings


def ensure_base_image(
    *,
    cache: Path | None = None,
    packages: Sequence[str] = LAB_PACKAGES,
    suite: str = SUITE,
    mirror: str | None = None,
    progress: Progress | None = None,
) -> BaseImage:
    """Return the cached base image for (suite, packages), building it first if needed."""
    started = time.monotonic()
    cache = cache or cache_dir()
    key = image_key(packages, suite)
    final = cache / key
    with _locked(cache / ".lock"):
        meta_path = final / "image.json"
        if meta_path.is_file() and (final / "rootfs/usr/sbin/sshd").exists():
            meta = json.loads(meta_path.read_text())
            return BaseImage(key, final / "rootfs", False, time.monotonic() - started, meta)
        # Leftovers of an interrupted build (ours only: named .build-*) go first.
        for stale in cache.glob(".build-*"):
            safe_rmtree(stale)
        if final.exists():
            safe_rmtree(final)
        mirror = mirror or debian_mirror(suite)
        work = cache / f".build-{key}-{os.getpid()}"
        work.mkdir(parents=True)
        try:
            timings = _build(work / "rootfs", mirror=mirror, packages=packages, suite=suite, progress=progress)
            meta = {
                "key": key,
                "suite": suite,
                "packages": sorted(set(packages)),
                "revision": IMAGE_REVISION,
                "mirror": mirror,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **timings,
            }
            (work / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
            os.rename(work, final)  # atomic: a half-built image is never visible under its key
        except BaseException:
            safe_rmtree(work)
            raise
        _say(progress, f"base image {key} built")
        return BaseImage(key, final / "rootfs", True, time.monotonic() - started, meta)


# --------------------------------------------------------------------------- ssh key


@dataclass(frozen=True)
class SshKey:
    private: Path
    public: Path

    def public_line(self) -> str:
        return self.public.read_text().strip()


def ensure_ssh_keypair(directory: Path, comment: str = "llmcluster-lab") -> SshKey:
    """The lab's SSH key (ed25519, OpenSSH format), created on first use in ``directory``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private, public = directory / "id_ed25519", directory / "id_ed25519.pub"
    if private.is_file() and public.is_file():
        return SshKey(private, public)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public.write_text(f"{pub.decode()} {comment}\n")
    return SshKey(private, public)


# --------------------------------------------------------------------------- make lab: beside setup


def main(argv: Sequence[str] | None = None) -> int:
    """``python3 -m llmcluster.lab.image [--phase NAME]``: find or build the base image, one line per step.

    ``make lab`` runs it with the machine's own python3 (this module and :mod:`llmcluster.lab._sys` need
    only the standard library) in the background of ``scripts/setup.sh``, right after setup's apt step, so
    the image downloads and unpacks while pip installs the venv; ``lab up`` then finds it, or waits for it
    on the cache's lock. ``--phase NAME``: when it built the image, add the row ``NAME<TAB>seconds`` to
    make lab's phase table (``$LLMCLUSTER_PHASES``). Exit status 1 with the reason when the build fails:
    ``lab up`` tries again and reports the error itself."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(prog="python3 -m llmcluster.lab.image", description=main.__doc__)
    parser.add_argument("--phase", metavar="NAME", help="record a build as this row of make lab's phase table")
    args = parser.parse_args(argv)
    # A background job of a non-interactive shell starts with SIGINT ignored: Ctrl-C on make must stop
    # the build too (ensure_base_image removes its half-built tree).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] base image: {message}", flush=True)

    try:
        image = ensure_base_image(progress=say)
    except (LabError, OSError) as e:
        print(f"base image: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("base image: interrupted", file=sys.stderr, flush=True)
        return 130
    say(f"{image.key} {'built' if image.built else 'found in the cache'} in {image.seconds:.1f} s "
        f"({image.directory})")
    if image.built and args.phase:
        from llmcluster.lab.phases import append_phases, phases_file

        path = phases_file()
        if path is not None:
            problem = append_phases(path, [(args.phase, image.seconds)])
            if problem is not None:
                print(f"base image: phase table: {problem}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
