"""Lab hosts of kind ``nspawn``: systemd as init under systemd-nspawn, on the shared lab.

The tests with the ``lab`` fixture boot real containers (root only; skipped with the reason
elsewhere). The others check the flags, the cgroup discovery, the host layer and the inventory
without touching the machine.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from llmcluster.lab import LabRuntime
from llmcluster.lab import nspawn as NS
from llmcluster.lab._sys import LabError, proc_info, wait_gone
from llmcluster.lab.hosts import HostPaths
from tests.conftest import ROOT, load_plan

pytestmark = pytest.mark.lab

HYBRID = """\
24 31 0:22 / /sys rw,relatime shared:7 - sysfs sysfs rw
25 24 0:23 / /sys/fs/cgroup rw,relatime shared:8 - tmpfs tmpfs rw,mode=755
30 25 0:28 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
35 25 0:33 / /sys/fs/cgroup/systemd rw,relatime shared:18 - cgroup cgroup rw,xattr,name=systemd
36 25 0:34 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw,nsdelegate
"""
UNIFIED = "29 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def nspawn_hosts(lab: LabRuntime) -> list[str]:
    hosts = [h.name for h in lab.hosts if lab.kind(h.name) == "nspawn"]
    if not hosts:
        pytest.skip("the lab stack has no host of kind nspawn")
    return hosts


def in_host(lab: LabRuntime, host: str, *argv: str) -> str:
    proc = lab.exec(host, list(argv), timeout=30)
    return (proc.stdout + proc.stderr).strip()


def record(lab: LabRuntime, host: str) -> dict:
    rec = lab.state().find("process", NS.record_name(host))
    assert rec is not None, f"no nspawn record for {host}"
    return rec.data


def wait_not_ok(lab: LabRuntime, host: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and {s.name: s.ok for s in lab.status()}[host]:
        time.sleep(0.05)
    assert not {s.name: s.ok for s in lab.status()}[host], f"{host} still reported up"


def container_leftovers(lab: LabRuntime) -> dict[str, list[str]]:
    """What a stopped nspawn host could leave: its processes, cgroups and nspawn's /run dirs."""
    cgroups = [d for h in lab.hosts for d in NS.cgroup_dirs(h.name) if Path(d).exists()]
    procs = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = proc_info(int(entry))
        if info is None or info.state == "Z":
            continue
        try:
            cgroup = Path(f"/proc/{entry}/cgroup").read_text()
        except OSError:
            continue
        argv = " ".join(info.cmdline)
        if NS.CGROUP_PREFIX in cgroup or (NS.NSPAWN_PROGRAM in argv and str(lab.state_dir) in argv):
            procs.append(f"{entry}: {argv}")
    run_dirs = [str(p) for h in lab.hosts
                if (p := Path("/run/systemd/nspawn/propagate") / NS.machine_name(h.name)).exists()]
    return {"cgroups": cgroups, "processes": procs, "nspawn run dirs": run_dirs}


# --------------------------------------------------------------------------- pure (no root)


def test_the_lab_stack_boots_the_gateway_and_gpu_pools_with_systemd(tmp_path):
    runtime = LabRuntime(load_plan("lab"), tmp_path / "state")
    kinds = {h.name: runtime.kind(h.name) for h in runtime.hosts}
    assert kinds["gw-01"] == "nspawn" and kinds["gpu-01"] == "nspawn", kinds
    defaults = LabRuntime(load_plan("lab", ("lab=null",)), tmp_path / "state")
    assert {defaults.kind(h.name) for h in defaults.hosts} == {"namespace"}


def test_inventory_manages_services_only_where_systemd_runs(tmp_path):
    runtime = LabRuntime(load_plan("lab"), tmp_path / "state")
    inv = runtime.inventory()
    assert "llmcluster_manage_services" not in inv["all"]["vars"]
    assert inv["all"]["vars"]["common_sysctl_apply"] is False  # a shared kernel, whatever the kind
    assert sorted(inv["_meta"]["hostvars"]) == sorted(h.name for h in runtime.plan.ip.hosts)
    for name, hv in inv["_meta"]["hostvars"].items():
        kind = runtime.kind(name)
        assert hv["llmcluster_lab_kind"] == kind
        if kind == "nspawn":
            assert hv["llmcluster_manage_services"] is True, name
            assert hv["common_time_sync_set_clock"] is False, name  # a container cannot set the clock
        elif kind == "namespace":
            assert hv["llmcluster_manage_services"] is False, name
            assert "common_time_sync_set_clock" not in hv, name
        # this machine's kernel either way: no auditd, and only the per-namespace hardening keys
        assert hv["common_auditd_enabled"] is False and hv["common_sysctl_apply_netns"] is True, name


def test_nspawn_command_line_has_the_proven_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(NS, "which", lambda name: f"/usr/bin/{name}")
    paths = HostPaths("gpu-01", tmp_path / "hosts" / "gpu-01")
    argv = NS.nspawn_argv("llh-gpu-01", paths, "gpu-01")
    assert argv[0] == "/usr/bin/systemd-nspawn"
    for flag in ("--boot", "--register=no", "--keep-unit", "--resolv-conf=off", "--link-journal=no",
                 "--capability=CAP_NET_ADMIN", "--network-namespace-path=/run/netns/llh-gpu-01",
                 "--machine=llh-gpu-01", "--hostname=gpu-01", f"--directory={paths.root}"):
        assert flag in argv, flag
    assert NS._ENV["SYSTEMD_NSPAWN_API_VFS_WRITABLE"] == "network"


def test_a_missing_nspawn_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(NS, "which", lambda name: None)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    runtime = LabRuntime(load_plan("lab"), tmp_path / "state")
    with pytest.raises(LabError, match=r"systemd-nspawn is missing.*install the systemd-container package"):
        runtime.up()
    assert not (tmp_path / "state").exists()  # said before anything was made


def test_cgroup_roots_follow_the_machine_layout():
    assert NS.cgroup_roots(HYBRID) == [Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd")]
    assert NS.cgroup_roots(UNIFIED) == [Path("/sys/fs/cgroup")]


def test_host_layer_gets_the_ssh_dropin_and_masks(tmp_path):
    NS.prepare_root(tmp_path)
    NS.prepare_root(tmp_path)  # idempotent
    assert (tmp_path / NS.SSH_DROPIN_PATH).read_text() == NS.SSH_DROPIN
    assert "ExecStartPre=/usr/bin/ssh-keygen -A" in NS.SSH_DROPIN
    for unit in NS.MASKED_UNITS:
        assert os.readlink(tmp_path / "etc/systemd/system" / unit) == "/dev/null"


def test_console_tail_drops_colour_codes(tmp_path):
    log = tmp_path / "console.log"
    log.write_text("[\x1b[0;32m  OK  \x1b[0m] Started ssh.service\n\n[\x1b[0;1;31mFAILED\x1b[0m] Failed to start x\n")
    assert NS.tail(log) == "[  OK  ] Started ssh.service | [FAILED] Failed to start x"
    assert NS.tail(tmp_path / "missing.log") == "(no console log)"


# --------------------------------------------------------------------------- the running lab


def test_nspawn_hosts_boot_systemd_and_run_sshd_as_a_service(lab):
    for host in nspawn_hosts(lab):
        state = in_host(lab, host, "systemctl", "is-system-running")
        failed = in_host(lab, host, "systemctl", "--failed", "--plain", "--no-legend", "--no-pager")
        assert state == "running", f"{host}: system {state}; failed units: {failed}"
        assert in_host(lab, host, "cat", "/proc/1/comm") == "systemd"
        assert in_host(lab, host, "hostname") == host
        assert in_host(lab, host, "systemctl", "is-active", "ssh.service") == "active"
        main_pid = in_host(lab, host, "systemctl", "show", "--value", "-p", "MainPID", "ssh.service")
        assert int(main_pid) > 1, f"{host}: sshd is not systemd's service"
        listening = in_host(lab, host, "python3", "-c",
                            "print(open('/proc/net/tcp').read())")
        assert ":0016 " in listening, f"{host}: nothing listens on port 22"
    status = {s.name: s for s in lab.status()}
    assert all(status[h].ok and status[h].kind == "nspawn" for h in nspawn_hosts(lab)), status


def test_nspawn_process_is_tracked_with_its_init_and_cgroups(lab):
    for host in nspawn_hosts(lab):
        data = record(lab, host)
        assert data["role"] == "nspawn" and data["program"] == NS.NSPAWN_PROGRAM
        info = proc_info(int(data["pid"]))
        assert info is not None and info.starttime == int(data["starttime"])
        assert f"--directory={lab.host_root(host)}" in info.cmdline
        init = data["init"]
        assert init["program"] == NS.INIT_PROGRAM and proc_info(int(init["pid"])).ppid == int(data["pid"])
        assert data["cgroups"] == NS.cgroup_dirs(host)
        cgroup = Path(f"/proc/{init['pid']}/cgroup").read_text()
        assert f"/{NS.CGROUP_PREFIX}{host}/" in cgroup, cgroup  # its own tree, never shared


def test_a_killed_nspawn_host_is_repaired_by_up(lab):
    host = nspawn_hosts(lab)[-1]
    data = record(lab, host)
    pid, start = int(data["init"]["pid"]), int(data["init"]["starttime"])
    os.kill(pid, signal.SIGKILL)  # the container's init dies: the whole host goes
    assert wait_gone(pid, start, 10)
    wait_not_ok(lab, host)
    report = lab.up()
    assert report.started == (host,)
    assert all(s.ok for s in lab.status())
    assert in_host(lab, host, "systemctl", "is-system-running") == "running"


def test_a_boot_that_never_answers_reports_the_console(lab, monkeypatch):
    host = nspawn_hosts(lab)[0]
    NS.stop_recorded(record(lab, host))
    monkeypatch.setattr(NS, "BOOT_TIMEOUT", 3.0)
    monkeypatch.setattr(NS, "ssh_answers", lambda *a, **kw: False)
    with pytest.raises(LabError, match=rf"host {host}: sshd did not answer .* within 3s") as err:
        lab.up()
    assert "console (" in str(err.value) and "system " in str(err.value), err.value
    monkeypatch.undo()
    report = lab.up()
    assert host in report.started
    assert all(s.ok for s in lab.status())


def test_down_stops_containers_cleanly_and_leaves_nothing(lab):
    hosts = nspawn_hosts(lab)
    removed = lab.down()
    assert any(r.endswith(":nspawn") for r in removed)
    assert not any(container_leftovers(lab).values()), container_leftovers(lab)
    for host in hosts:  # an orderly shutdown (SIGRTMIN+3 to systemd), not a kill
        log = NS.tail(HostPaths(host, lab.state_dir / "hosts" / host).log, 3)
        assert f"Container {NS.machine_name(host)} has been shut down." in log, f"{host}: {log}"
    assert lab.down() == []
    lab.up()
    assert all(s.ok for s in lab.status())


#: The roles whose systemd paths nspawn hosts exercise (tags of their three phases).
ROLE_TAGS = tuple(f"{role}_{phase}" for role in ("common", "network", "firewall")
                  for phase in ("install", "configure", "run"))


def test_role_services_run_and_come_back_after_a_restart(lab, tmp_path):
    """After converge the roles' units are active; after a container restart the boot path
    (nftables.service, llmcluster-qos.service, chrony) brings the host back the same."""
    from llmcluster.converge import run_playbook

    host = nspawn_hosts(lab)[0]
    inventory = lab.write_inventory(tmp_path / "inventory.yml")
    result = run_playbook(ROOT / "ansible" / "site.yml", inventory, limit=host, tags=ROLE_TAGS,
                          extravars={"common_sysctl_apply": False})
    assert result.ok, f"converge of {host} failed: {[(h, p.last_error) for h, p in result.hosts.items()]}"
    assert in_host(lab, host, "systemctl", "is-active", "chrony", "llmcluster-qos").split() == ["active"] * 2
    assert in_host(lab, host, "systemctl", "is-enabled", "nftables", "chrony", "llmcluster-qos").split() == [
        "enabled"] * 3
    assert "Disabled control of system clock" in in_host(lab, host, "journalctl", "-b", "-u", "chrony", "--no-pager")
    NS.stop_recorded(record(lab, host))  # an orderly shutdown, then a fresh boot
    assert lab.up().started == (host,)
    state = in_host(lab, host, "systemctl", "is-system-running")
    failed = in_host(lab, host, "systemctl", "--failed", "--plain", "--no-legend", "--no-pager")
    assert state == "running", f"{host}: system {state}; failed units: {failed}"
    assert in_host(lab, host, "systemctl", "is-active", "nftables", "chrony", "llmcluster-qos", "ssh").split() == [
        "active"] * 4
    assert "table inet llmcluster" in in_host(lab, host, "nft", "list", "tables")
    qdiscs = in_host(lab, host, "tc", "qdisc", "show")
    ifnames = lab.inventory()["_meta"]["hostvars"][host]["llmcluster_interface_names"].values()
    assert ifnames, f"{host}: the inventory names no interfaces"
    for ifname in ifnames:
        assert f"qdisc htb 1: dev {ifname} root" in qdiscs, f"{host}: no htb root on {ifname}: {qdiscs}"
    assert "Not synchronised" in in_host(lab, host, "chronyc", "tracking")  # no NTP in the lab: said, not faked
