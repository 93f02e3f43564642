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

from llmcluster.verify.suite.plugin import TIMINGS

# Test modules import their shared helpers from tests/helpers: rewrite their asserts as in a test module.
pytest.register_assert_rewrite("tests.helpers")

ROOT = Path(__file__).resolve().parents[1]
STACKS = ROOT / "stacks"
STACK_NAMES = sorted(p.name.split(".")[1] for p in STACKS.glob("Pulumi.*.yaml"))
#: The collections folder of the llmcluster.hosts collection (ansible/ansible.cfg's collections_path).
COLLECTIONS = ROOT / "llmcluster" / "collections"
COLLECTION = COLLECTIONS / "ansible_collections" / "llmcluster" / "hosts"


@functools.cache
def init_ansible_plugins() -> None:
    """Ansible's plugin loaders in this process, with the llmcluster.hosts collection (as
    ansible/ansible.cfg configures the ansible commands): the first initialisation wins, so every
    test that loads Ansible plugins calls this one."""
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader([str(COLLECTIONS)])


@functools.cache
def load_spec(stack: str, overrides: tuple[str, ...] = ()):
    from llmcluster.validate import load_stack_file

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

#: Timings measured by the session (``TIMINGS``, printed in the terminal summary of a non-xdist run)
#: are the verification suite's dict: one dict, although this module is imported twice (as pytest's
#: ``conftest`` and as ``tests.conftest``).
_REQUIRED_TOOLS = ("ip", "nft", "unshare", "nsenter", "mount", "umount", "chroot", "ssh")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--lab-vms", action="store_true", default=False,
                     help="the VM tier (make test-vm): the session lab has VM hosts (LAB_VM_OVERRIDES)")
    from llmcluster.verify.suite.plugin import add_options

    add_options(parser)  # the packaged verification suite's options (tests/verify runs it)


#: Test paths that use the converged lab (``lab_converged``): they run after every other lab test.
_AFTER_CONVERGE = ("tests/lab/test_ceph.py", "tests/lab/test_diff_hosts_lab.py", "tests/lab/test_first_request.py",
                   "tests/lab/test_lab_model.py", "tests/lab/test_model_store_rados.py",
                   "tests/roles/", "tests/verify/")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything that uses the session's lab is marked ``lab_session``: ``make test`` runs those in
    # one process of their own (one lab per machine, brought up once) beside a second process for
    # the rest (scripts/test.sh). xdist's ``--dist loadgroup`` cannot do it with pytest 9: xdist 3.8
    # groups by rewriting ``item._nodeid``, which pytest 9 no longer reads, so the lab tests were
    # spread over both workers, the second one waiting on the lab's lock for the first one's whole
    # session and then bringing up a lab of its own. Tests that reach the lab through
    # ``request.getfixturevalue`` carry ``xdist_group("lab")`` in their module.
    for item in items:
        grouped = any(m.args[:1] == ("lab",) or m.kwargs.get("name") == "lab"
                      for m in item.iter_markers("xdist_group"))
        if grouped or "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("lab"))
            item.add_marker(pytest.mark.lab_session)
    # The lab's own tests (they take it down and up, look at unconverged hosts) before the session's
    # converge; the tests that use the converged lab after them (stable: collection order otherwise).
    # The converge's idempotence test first among those: nothing else has touched the hosts since.
    def order(item: pytest.Item) -> tuple[bool, bool]:
        after = item.get_closest_marker("lab_session") is not None and item.nodeid.startswith(_AFTER_CONVERGE)
        return after, not item.nodeid.startswith("tests/roles/test_roles_converge.py")

    items.sort(key=order)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run in the same xdist worker (with --dist loadgroup)")
    config.addinivalue_line("markers", "lab_session: uses the session's lab (set by tests/conftest.py): make test "
                                       "runs these in a process of their own, beside the rest (scripts/test.sh)")
    config.addinivalue_line(
        "markers",
        "lab: lab tier (namespaced hosts on this machine; the tests that start hosts need root, "
        "debootstrap and the Debian mirror or a cached base image)",
    )
    config.addinivalue_line(
        "markers",
        "vm: VM tier (qemu guests in the lab: md RAID, device-mapper, 802.1Q, vlan_filtering); the tests on "
        "running VMs need --lab-vms (make test-vm), qemu-system-x86 and qemu-utils",
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
    spec = load_spec("lab")
    if spec.lab is not None and any(e.kind == "nspawn" for e in (*spec.lab.pools.values(), *spec.lab.hosts.values())):
        from llmcluster.lab.nspawn import NSPAWN_PACKAGE, NSPAWN_PROGRAM

        if which(NSPAWN_PROGRAM) is None:
            return (f"the lab stack boots hosts with {NSPAWN_PROGRAM}, which is missing: install the "
                    f"{NSPAWN_PACKAGE} package (apt-get install {NSPAWN_PACKAGE}, or scripts/setup.sh as root)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "this kernel has no overlayfs"
    if (cache_dir() / image_key() / "image.json").is_file():
        return None  # cached base image: no debootstrap or mirror needed
    try:
        ensure_debootstrap()
    except Exception as exc:  # any failure means: cannot build here
        return f"debootstrap is not available and could not be installed: {exc}"
    return _mirror_reachable(debian_mirror(), SUITE)


#: The VM tier's lab (``--lab-vms``, ``make test-vm``): the storage node as an access-mode VM
#: (md RAID, device-mapper) and one GPU node as a tagged VM behind the VM leaf (802.1Q,
#: vlan_filtering). See docs/lab.md, "VM hosts".
LAB_VM_OVERRIDES: tuple[str, ...] = (
    "lab.hosts.storage-01={kind: vm}",
    "lab.hosts.gpu-02={kind: vm, network: tagged}",
    # One storage host and no Ceph: the VM tier's tests need none of it, and three more systemd
    # hosts would take CPU from the VMs' software emulation (make test runs the Ceph lab).
    "pools.storage.count=1",
    "storage.ceph=null",
)


@pytest.fixture(scope="session")
def lab_plan(request):
    return load_plan("lab", LAB_VM_OVERRIDES if request.config.getoption("--lab-vms") else ())


@pytest.fixture(scope="session")
def lab(lab_plan, tmp_path_factory) -> Iterator:
    """The lab stack, up (state dir under the session's tmp dir, base image in the shared cache)."""
    reason = lab_skip_reason()
    if not reason and lab_plan.spec.lab is not None:
        from llmcluster.lab.vm import any_vm
        from llmcluster.lab.vm_image import require_vm_tools

        try:
            if any_vm(lab_plan):
                require_vm_tools()
        except Exception as exc:  # the VM tools are missing: say which
            reason = str(exc)
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
                TIMINGS[f"up ({len(lab_plan.ip.hosts)} hosts)"] = f"{report.seconds:.2f}s"
                yield runtime
            finally:
                t = time.monotonic()
                runtime.down(purge=True)
                TIMINGS["down"] = f"{time.monotonic() - t:.2f}s"
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def lab_inventory_file(lab, tmp_path_factory) -> Path:
    """The running lab's static inventory (connection settings, lab variables, probes)."""
    return lab.write_inventory(tmp_path_factory.mktemp("lab-inventory") / "inventory.yml")


@pytest.fixture(scope="session")
def lab_converged(lab, lab_inventory_file):
    """The lab after one converge of ``ansible/site.yml`` (fails the requesting test if it fails), in the
    lanes ``llmcluster lab converge`` (make lab) runs: the storage and GPU plays and the other plays at once."""
    from llmcluster.converge import run_lanes, site_lanes

    t = time.monotonic()
    lanes = site_lanes({h.name: h.role for h in lab.plan.ip.hosts})
    result = run_lanes(ROOT / "ansible" / "site.yml", lab_inventory_file, lanes)
    TIMINGS["converge (verify tier)"] = f"{time.monotonic() - t:.1f}s"
    if not result.ok:
        errors = "; ".join(f"{h}: {p.last_error}" for h, p in sorted(result.hosts.items()) if p.last_error)
        pytest.fail(f"converging the lab failed (rc {result.rc}, failed hosts {result.failed_hosts}): {errors}")
    return lab_inventory_file
