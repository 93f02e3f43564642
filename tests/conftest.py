"""Shared fixtures: the project root, the stacks, and loaded specs/plans (cached per session)."""

from __future__ import annotations

import fcntl
import functools
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STACKS = ROOT / "stacks"
STACK_NAMES = sorted(p.name.split(".")[1] for p in STACKS.glob("Pulumi.*.yaml"))


@functools.cache
def load_spec(stack: str, overrides: tuple[str, ...] = ()):
    from llmcluster.spec import load_stack_file

    return load_stack_file(STACKS / f"Pulumi.{stack}.yaml", list(overrides))


@functools.cache
def load_plan(stack: str, overrides: tuple[str, ...] = ()):
    from llmcluster.plan.build import build_plan

    return build_plan(load_spec(stack, overrides))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


#: Golden files of the renderer tests (regenerate with LLMCLUSTER_UPDATE_GOLDEN=1).
GOLDEN = ROOT / "tests" / "unit" / "golden"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LLMCLUSTER_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {name}: run with LLMCLUSTER_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs (LLMCLUSTER_UPDATE_GOLDEN=1 to accept)"


# --------------------------------------------------------------------------- the lab tier
# One lab per machine: the session fixture lives here so the lab and roles tiers share it
# (a second fixture instance in the same worker would wait on its own lock).

#: Timings measured by the session (printed in the terminal summary of a non-xdist run).
TIMINGS: dict[str, float | str] = {}
_REQUIRED_TOOLS = ("ip", "nft", "unshare", "nsenter", "mount", "umount", "chroot", "ssh")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lab: lab tier (namespaced hosts on this machine; the tests that start hosts need root, "
        "debootstrap and the Debian mirror or a cached base image)",
    )


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "lab timings")
        for key, value in TIMINGS.items():
            terminalreporter.write_line(f"{key}: {value}")


def _mirror_reachable(mirror: str, suite: str) -> str | None:
    url = f"{mirror}/dists/{suite}/Release"
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:  # the machine's own mirror
            resp.read(64)
        return None
    except OSError as exc:
        return f"the Debian mirror is not reachable ({url}: {exc})"


def lab_skip_reason() -> str | None:
    """Why the lab cannot run here, or ``None`` when it can."""
    from llmcluster.lab._sys import which
    from llmcluster.lab.image import SUITE, cache_dir, debian_mirror, ensure_debootstrap, image_key

    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, bridges, overlay mounts, nftables)"
    missing = [t for t in _REQUIRED_TOOLS if which(t) is None]
    if missing:
        return f"tools missing on this machine: {', '.join(missing)}"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "this kernel has no overlayfs"
    if (cache_dir() / image_key() / "image.json").is_file():
        return None  # cached base image: no debootstrap or mirror needed
    try:
        ensure_debootstrap()
    except Exception as exc:  # any failure means: cannot build here
        return f"debootstrap is not available and could not be installed: {exc}"
    return _mirror_reachable(debian_mirror(), SUITE)


@pytest.fixture(scope="session")
def lab_plan():
    return load_plan("lab")


@pytest.fixture(scope="session")
def lab(lab_plan, tmp_path_factory) -> Iterator:
    """The lab stack, up (state dir under the session's tmp dir, base image in the shared cache)."""
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    from llmcluster.lab import LabRuntime
    from llmcluster.lab.image import cache_dir, ensure_base_image

    lock_path = cache_dir() / "lab-tests.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:  # one lab per machine: xdist workers take turns
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            image = ensure_base_image()
            TIMINGS["image"] = f"{image.seconds:.1f}s ({'built' if image.built else 'cached'} {image.key})"
            if image.built:
                TIMINGS["image_build_debootstrap_s"] = image.meta.get("debootstrap_s", 0.0)
                TIMINGS["image_build_packages_s"] = image.meta.get("packages_s", 0.0)
            runtime = LabRuntime(lab_plan, tmp_path_factory.mktemp("lab-state"))
            try:
                report = runtime.up()
                TIMINGS["up (4 hosts)"] = f"{report.seconds:.2f}s"
                yield runtime
            finally:
                t = time.monotonic()
                runtime.down(purge=True)
                TIMINGS["down"] = f"{time.monotonic() - t:.2f}s"
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
