"""The lab host runtime: real namespaced hosts, their network, SSH, and an exact teardown.

Tests with the ``lab`` fixture start real hosts (root only; skipped with the reason
elsewhere). The others check names, the mirror parser, the inventory and the root check
without touching the machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmcluster.errors import LLMClusterError
from llmcluster.lab import LabRuntime
from llmcluster.lab import network as N
from llmcluster.lab._sys import mounts_below, proc_info, wait_gone
from llmcluster.lab.image import DEFAULT_MIRROR, LAB_PACKAGES, debian_mirror, image_key
from llmcluster.lab.runtime import LAB_SSH_COMMON_ARGS
from tests.conftest import load_plan

pytestmark = pytest.mark.lab

VENV_BIN = Path(sys.executable).parent
OUTSIDE = "198.51.100.1"  # TEST-NET-2: documentation only, never a real host


# --------------------------------------------------------------------------- helpers


def _ip_o(netns: str, what: str) -> list[str]:
    proc = subprocess.run(["ip", "netns", "exec", netns, "ip", "-o", what], capture_output=True, text=True,
                          check=True)
    return proc.stdout.splitlines()


def _lab_processes(state_dir: Path) -> list[str]:
    """Live processes of a lab in ``state_dir``: host launchers or anything rooted in a host."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = proc_info(int(entry))
        if info is None or info.state == "Z":
            continue
        try:
            root = os.readlink(f"/proc/{entry}/root")
        except OSError:
            root = ""
        argv = " ".join(info.cmdline)
        if str(state_dir) in argv or root.startswith(str(state_dir)):
            found.append(f"{entry}: {argv}")
    return found


def assert_nothing_left(lab: LabRuntime) -> None:
    leftovers = {
        "netns": [ns for ns in N.netns_list() if ns.startswith(N.NETNS_PREFIX)],
        "links": N.lab_links(),
        "mounts": mounts_below(lab.state_dir),
        "guard": ["inet " + N.GUARD_TABLE] if N.guard_loaded() else [],
        "controller address": [
            f"{dev} {a}" for dev, addrs in N.ipv4_addresses().items() for a in addrs
            if a == N.controller_cidr(lab.plan.ip.vlans["mgmt"])
        ],
        "processes": _lab_processes(lab.state_dir),
        "state records": [f"{r.kind} {r.name}" for r in lab.state().records],
    }
    assert not any(leftovers.values()), f"left behind after down: {leftovers}"


def _init_pid(lab: LabRuntime, host: str) -> int:
    """The host's recorded init: sshd (namespace hosts) or the container's systemd (nspawn)."""
    ref = lab.init_process(host)
    assert ref is not None, f"no init recorded for {host}"
    return ref.pid


# --------------------------------------------------------------------------- pure (no root)


def test_interface_names_fit_and_are_deterministic():
    for stack in ("lab", "prod-baremetal"):
        plan = load_plan(stack)
        names = set()
        for host in plan.ip.hosts:
            for role in host.addresses:
                vlan = plan.ip.vlans[role]
                veth = N.veth_name(host.name, vlan)
                assert len(veth) <= N.IFNAMSIZ and veth.startswith(N.VETH_PREFIX), veth
                assert veth == N.veth_name(host.name, vlan)
                names.add(veth)
                assert len(N.host_ifname(role)) <= N.IFNAMSIZ
        assert len(names) == sum(len(h.addresses) for h in plan.ip.hosts), f"{stack}: veth names collide"
        for vlan in plan.ip.vlans.values():
            assert len(N.bridge_name(vlan)) <= N.IFNAMSIZ
    lab = load_plan("lab")
    assert [N.bridge_name(v) for v in lab.ip.vlans.values()] == ["llb-10", "llb-20", "llb-30", "llb-31", "llb-40"]
    assert {r: N.host_ifname(r) for r in lab.ip.host("storage-01").addresses} == {
        "mgmt": "mgmt", "storage_public": "stor-pub", "storage_cluster": "stor-clu"}


def test_the_lab_places_the_api_vip_on_the_first_gateway_host_only(tmp_path):
    # LAB STAND-IN for the site's VIP mover (keepalived/BGP): the address the summary, `llmcluster chat`
    # and the docs tell clients to call must answer in the lab
    for overrides in ((), ("pools.gateway.count=2",)):
        plan = load_plan("lab", overrides)
        holdings = LabRuntime(plan, tmp_path).vip_holdings()
        assert holdings == {"gw-01": {"inference": (plan.serving.gateway.vip,)}}
        assert plan.serving.gateway.vip == plan.ip.vips["api"]


def test_mirror_comes_from_apt_sources(tmp_path):
    lst, d = tmp_path / "sources.list", tmp_path / "sources.list.d"
    d.mkdir()
    assert debian_mirror("bookworm", lst, d) == DEFAULT_MIRROR  # nothing configured
    (d / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb deb-src\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\nSigned-By:\n -----BEGIN PGP-----\n .\n\n"
        "Types: deb\nEnabled: no\nURIs: http://disabled.example/debian\nSuites: bookworm\n"
    )
    assert debian_mirror("bookworm", lst, d) == "http://mirror.example/debian"
    (d / "debian.sources").unlink()
    lst.write_text("# deb http://commented.example/debian bookworm main\n"
                   "deb [arch=amd64 signed-by=/k.gpg] https://one-line.example/debian bookworm main contrib\n")
    assert debian_mirror("bookworm", lst, d) == "https://one-line.example/debian"
    (d / "other.list.disabled").write_text("deb http://ignored.example/debian bookworm main\n")
    assert debian_mirror("bookworm", lst, d) == "https://one-line.example/debian"


def test_image_key_follows_packages_and_suite():
    assert image_key() == image_key(tuple(reversed(LAB_PACKAGES)))
    extra = "llmcluster-no-such-package"
    assert extra not in LAB_PACKAGES
    assert image_key() != image_key((*LAB_PACKAGES, extra))
    assert image_key(suite="trixie") != image_key()


def test_the_lab_needs_root(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    runtime = LabRuntime(load_plan("lab"), tmp_path / "state")
    for call in (runtime.up, runtime.down):
        with pytest.raises(LLMClusterError, match="the lab needs root: "):
            call()
    assert not (tmp_path / "state").exists()


def test_lab_tests_skip_with_the_reason_without_root(monkeypatch):
    from tests.conftest import lab_skip_reason

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root" in (lab_skip_reason() or "")


def test_inventory_has_the_lab_connection_settings(tmp_path):
    runtime = LabRuntime(load_plan("lab"), tmp_path / "state")
    path = runtime.write_inventory(tmp_path / "inventory.yml")
    proc = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(path), "--list"],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    hostvars = listed["_meta"]["hostvars"]
    assert sorted(hostvars) == ["gpu-01", "gpu-02", "gw-01", "mon-01", "storage-01", "storage-02", "storage-03"]
    for name, hv in hostvars.items():
        assert hv["ansible_user"] == "root"
        assert hv["ansible_ssh_private_key_file"] == str(runtime.private_key)
        assert hv["ansible_ssh_common_args"] == LAB_SSH_COMMON_ARGS
        assert "-o StrictHostKeyChecking=no" in hv["ansible_ssh_common_args"]
        assert "-o UserKnownHostsFile=/dev/null" in hv["ansible_ssh_common_args"]
        assert hv["ansible_host"] == runtime.plan.ip.host(name).mgmt_ip
        assert hv["llmcluster_addresses"] == runtime.plan.ip.host(name).addresses
    assert sorted(listed["gpu"]["hosts"]) == ["gpu-01", "gpu-02"]
    assert listed["all"]["children"]  # groups survive the static format


def test_rich_progress_works_without_a_tty(capsys):
    from llmcluster.lab import rich_progress

    with rich_progress("lab") as progress:
        progress("step one")
        progress("step two")
    assert "step two" in capsys.readouterr().out


# --------------------------------------------------------------------------- the running lab


def test_guard_is_loaded_before_any_host_exists(lab):
    order = lab.state().creation_order()
    kinds = [kind for kind, _ in order]
    assert kinds[0] == "guard", order
    first_host_object = min(i for i, k in enumerate(kinds) if k in ("netns", "veth", "mount", "process"))
    assert kinds.index("guard") < first_host_object
    ruleset = subprocess.run(["nft", "list", "table", "inet", N.GUARD_TABLE], capture_output=True, text=True,
                             check=True).stdout
    assert re.search(r'iifname "llb-\*" oifname != "llb-\*" .*drop', ruleset), ruleset
    assert "hook forward" in ruleset


def test_every_host_answers(lab):
    status = lab.status()
    assert [s.name for s in status] == ["gpu-01", "gpu-02", "storage-01", "storage-02", "storage-03", "gw-01", "mon-01"]
    assert all(s.ok for s in status), status


def test_hosts_have_exactly_the_planned_addresses_and_mtu(lab):
    ip = lab.plan.ip
    for host in ip.hosts:
        ns = lab.netns(host.name)
        addrs: dict[str, set[str]] = {}
        for line in _ip_o(ns, "addr"):
            _, ifname, family, cidr = line.split()[:4]
            addrs.setdefault(ifname, set()).add(f"{family} {cidr}")
        expected = {"lo": {"inet 127.0.0.1/8"}}
        vips = lab.vip_holdings().get(host.name, {})
        for role, addr in host.addresses.items():
            expected[N.host_ifname(role)] = {f"inet {addr}/{ip.vlans[role].prefixlen}",
                                             *(f"inet {v}/32" for v in vips.get(role, ()))}
        assert addrs == expected, f"{host.name}: {addrs}"
        mtus = {}
        for line in _ip_o(ns, "link"):
            m = re.match(r"\d+: ([^:@]+)[@:].* mtu (\d+)", line)
            assert m, line
            mtus[m.group(1)] = int(m.group(2))
        assert mtus == {"lo": 65536, **{N.host_ifname(r): ip.vlans[r].mtu for r in host.addresses}}, host.name
        routes = subprocess.run(["ip", "-n", ns, "route", "show", "default"], capture_output=True, text=True,
                                check=True).stdout
        assert routes.strip() == "", f"{host.name} has a default route: {routes}"
    # the lab's stand-in for the site's VIP mover: the API VIP is on the first gateway host only
    assert lab.vip_holdings() == {"gw-01": {"inference": (lab.plan.serving.gateway.vip,)}}


def test_jumbo_frames_cross_storage_public(lab):
    target = lab.plan.ip.host("storage-01").addresses["storage_public"]
    ok = lab.exec("gpu-01", ["ping", "-M", "do", "-s", "8972", "-c", "1", "-W", "2", target])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    too_big = lab.exec("gpu-01", ["ping", "-M", "do", "-s", "9000", "-c", "1", "-W", "2", target])
    assert too_big.returncode != 0, too_big.stdout
    assert "message too long" in (too_big.stdout + too_big.stderr)


def test_hosts_cannot_reach_outside_the_lab(lab):
    ns = lab.netns("gpu-01")
    route = subprocess.run(["ip", "-n", ns, "route", "get", OUTSIDE], capture_output=True, text=True, check=False)
    assert route.returncode != 0, f"gpu-01 has a route to {OUTSIDE}: {route.stdout}"  # never ping with a route
    proc = lab.exec("gpu-01", ["ping", "-c", "1", "-W", "1", OUTSIDE], timeout=10)
    assert proc.returncode != 0
    assert "unreachable" in (proc.stdout + proc.stderr).lower()


def test_ssh_with_the_lab_key(lab):
    for host in lab.plan.ip.hosts:
        proc = subprocess.run(
            ["ssh", "-i", str(lab.private_key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"root@{host.mgmt_ip}", "hostname"],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert proc.returncode == 0, f"{host.name}: {proc.stderr}"
        assert proc.stdout.strip() == host.name


def test_ansible_reaches_every_host(lab, tmp_path):
    inv = lab.write_inventory(tmp_path / "inventory.yml")
    proc = subprocess.run(
        [str(VENV_BIN / "ansible"), "all", "-i", str(inv), "-m", "ansible.builtin.ping"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in lab.plan.ip.hosts:
        assert f"{host.name} | SUCCESS" in proc.stdout, proc.stdout


def test_up_again_changes_nothing(lab):
    before = {h.name: _init_pid(lab, h.name) for h in lab.plan.ip.hosts}
    report = lab.up()
    assert report.started == ()
    assert {h.name: _init_pid(lab, h.name) for h in lab.plan.ip.hosts} == before


def test_up_repairs_a_dead_host(lab):
    # A namespace host (sshd as init); tests/lab/test_nspawn.py kills an nspawn host.
    names = [h.name for h in lab.plan.ip.hosts if lab.kind(h.name) == "namespace"]
    if not names:
        pytest.skip("the lab stack has no namespace host")
    host = names[-1]
    rec = lab.state().find("process", f"{host}:sshd")
    assert rec is not None
    pid, start = int(rec.data["pid"]), int(rec.data["starttime"])
    os.kill(pid, signal.SIGTERM)
    assert wait_gone(pid, start, 5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and {s.name: s.ok for s in lab.status()}[host]:
        time.sleep(0.05)
    assert not {s.name: s.ok for s in lab.status()}[host]
    report = lab.up()
    assert report.started == (host,)
    assert all(s.ok for s in lab.status())


def test_down_leaves_nothing_and_twice_is_a_no_op(lab):
    removed = lab.down()
    assert removed
    assert_nothing_left(lab)
    assert lab.down() == []
    assert_nothing_left(lab)
    lab.up()  # back up for the rest of the session
    assert all(s.ok for s in lab.status())


class _Crash(Exception):
    pass


# "host gw-01: starting" is the start of its sshd or, for an nspawn host, of systemd-nspawn.
@pytest.mark.parametrize("crash_at", ["host gw-01: starting", "veth of storage-01"])
def test_down_cleans_up_after_a_crash_in_up(lab, monkeypatch, crash_at):
    lab.down()

    def progress(message: str) -> None:
        if message.startswith(crash_at):
            raise _Crash(message)

    if crash_at.startswith("veth"):  # crash between recording a veth and creating it
        real = N.ensure_host_port

        def flaky(**kw):
            if kw["netns"] == N.netns_name("storage-01"):
                raise _Crash(crash_at)
            real(**kw)

        monkeypatch.setattr(N, "ensure_host_port", flaky)
    with pytest.raises(_Crash):
        lab.up(progress=progress)
    monkeypatch.undo()
    state = lab.state()
    assert state.find("netns", N.netns_name("gpu-01")) is not None
    assert N.netns_exists(N.netns_name("gpu-01"))
    lab.down()
    assert_nothing_left(lab)
    lab.up()
    assert all(s.ok for s in lab.status())


def test_up_with_another_plan_replaces_the_lab(lab):
    bigger = LabRuntime(load_plan("lab", ("pools.gateway.count=2",)), lab.state_dir)
    try:
        report = bigger.up()
        assert report.started == ("gpu-01", "gpu-02", "storage-01", "storage-02", "storage-03",
                                  "gw-01", "gw-02", "mon-01")
        assert all(s.ok for s in bigger.status())
        assert N.netns_exists(N.netns_name("gw-02"))
    finally:
        # the session's plan again, whatever failed above: the eight-host lab goes, the seven-host one
        # comes back (a failure here must not leave the later lab tests on another plan's lab)
        lab.up()
    assert not N.netns_exists(N.netns_name("gw-02"))
    assert not (lab.state_dir / "hosts" / "gw-02").exists()
    assert all(s.ok for s in lab.status())
