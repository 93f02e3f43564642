"""Bring the lab up, report on it, tear it down: :class:`LabRuntime`.

``up`` is idempotent: on a running lab of the same plan it changes nothing, and it repairs
what is missing (a dead ``sshd``, a deleted namespace, an unmounted root). A lab built from
another plan in the same state dir is torn down (with its host disks) and built anew.
``down`` removes exactly what the state file lists, in a safe order, and is a no-op the
second time. Only one lab runs on a machine at a time: ``up`` refuses when lab-named objects
exist that its state file does not list.

Everything needs root (namespaces, bridges, mounts, nftables); the library itself needs no
TTY: pass ``progress`` (any ``Callable[[str], None]``), or use :func:`rich_progress` for a
live display.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmcluster.lab import hosts as H
from llmcluster.lab import network as N
from llmcluster.lab import nspawn as NS
from llmcluster.lab import vm as V
from llmcluster.lab._sys import LabError, mounts_below, require_root, safe_rmtree
from llmcluster.lab.probes import ensure_probes, probe_sources
from llmcluster.lab.image import BaseImage, SshKey, ensure_base_image, ensure_ssh_keypair
from llmcluster.lab.state import LabState, Record, plan_fingerprint, plan_layout, state_lock
from llmcluster.plan.build import Plan
from llmcluster.plan.ipam import HostPlan

Progress = Callable[[str], None]

#: What the lab's Ceph hosts get in the inventory (roles/ceph): OSDs on files (a lab simulation, the
#: only backend the role accepts with ceph_lab_simulation) and daemons kept small.
CEPH_LAB_VARS: dict[str, Any] = {
    "ceph_osd_backend": "file",
    "ceph_lab_simulation": True,
    "ceph_conf_overrides": {
        "osd": {"osd_memory_target": 939524096, "bluestore_cache_autotune": "false",
                "bluestore_cache_size": 67108864, "osd_op_num_shards": 2, "osd_op_num_threads_per_shard": 1},
        "mgr": {"mgr_stats_period": 10},
        # The lab's monitor stores share this machine's disk, which other work fills: warn below 10 %
        # free instead of 30 % (MON_DISK_LOW would keep the lab from HEALTH_OK). Lab only.
        "mon": {"mon_data_avail_warn": 10},
    },
}

#: Connection settings every lab host gets in the inventory (defined with the hosts).
LAB_SSH_COMMON_ARGS = H.LAB_SSH_COMMON_ARGS


def default_state_dir() -> Path:
    """``$LLMCLUSTER_LAB_STATE`` or ``~/.local/state/llmcluster/lab``."""
    env = os.environ.get("LLMCLUSTER_LAB_STATE")
    return Path(env).expanduser() if env else Path("~/.local/state/llmcluster/lab").expanduser()


@dataclass(frozen=True)
class HostStatus:
    name: str
    mgmt_ip: str
    netns: bool  # the host's network namespace exists (VM hosts and the leaf: their qemu process is alive)
    sshd: bool  # the host's recorded init is alive (sshd; systemd for nspawn hosts), same pid and start time
    ssh: bool  # a TCP connect from the root namespace to mgmt_ip:22 reads an SSH banner
    kind: str = "namespace"  # how the host runs: namespace (sshd as init) or nspawn (systemd)

    @property
    def ok(self) -> bool:
        return self.netns and self.sshd and self.ssh


@dataclass(frozen=True)
class UpReport:
    seconds: float
    image: BaseImage
    started: tuple[str, ...]  # hosts whose sshd was (re)started by this call
    timings: dict[str, float] = field(default_factory=dict)


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


@contextmanager
def rich_progress(title: str = "lab", console: Any = None) -> Iterator[Progress]:
    """A ``progress`` callback that drives a ``rich`` spinner and logs each step with its time; where
    stdout is no terminal (a CI log), no spinner: one ``[elapsed] title: step`` line a step."""
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    console = console or Console(highlight=False)
    if not console.is_terminal:
        started = time.monotonic()

        def line(message: str) -> None:
            console.print(f"[{time.monotonic() - started:7.1f}s] {title}: {message}", markup=False,
                          highlight=False, soft_wrap=True)
            console.file.flush()

        yield line
        return
    with RichProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console) as bar:
        task = bar.add_task(title, total=None)
        started = time.monotonic()

        def update(message: str) -> None:
            bar.update(task, description=f"{title}: {message}")
            bar.console.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {message}")

        yield update


# --------------------------------------------------------------------------- teardown


def _process_ref(rec: Record | None) -> H.ProcRef | None:
    return H.ProcRef.from_dict(rec.data) if rec is not None else None


def _remove(rec: Record, state: LabState) -> None:
    kind, name, data = rec.kind, rec.name, rec.data
    if kind == "process":
        ref = _process_ref(rec)
        if data.get("role") == "nspawn":
            NS.stop_recorded(data)
        elif data.get("role") == "unshare":
            H.stop_host(ref, _process_ref(state.find("process", f"{data.get('host')}:sshd")))
        else:
            H.stop_process(ref)
    elif kind == "mount":
        H.unmount_root(Path(name))
    elif kind == "netns":
        if N.netns_exists(name):
            H.kill_netns_processes(name)
            N.delete_netns(name)
    elif kind == "veth":
        N.delete_link(name)
    elif kind == "address":
        N.remove_controller_address(name, data["dev"])
    elif kind == "bridge":
        N.delete_link(name)
    elif kind == "guard":
        N.remove_guard()
    elif kind in V.RECORD_KINDS:  # VM taps and disk files
        V.remove_record(rec)
    else:  # pragma: no cover - a record kind this version does not know
        raise LabError(f"unknown lab object kind {kind!r} in {state.path}")


def lab_down(state_dir: Path | str, progress: Progress | None = None, *, purge: bool = False) -> list[str]:
    """Remove everything the state file in ``state_dir`` lists; return what was removed.

    Safe to call twice and after a crash in ``up``. With ``purge`` the hosts' disks (overlay
    upper layers), the lab key and the state file go too, so the next ``up`` starts afresh.
    """
    require_root()
    state_dir = Path(state_dir)
    removed: list[str] = []
    if not state_dir.exists():
        return removed
    started = time.monotonic()
    with state_lock(state_dir):
        state = LabState.load(state_dir)
        for rec in state.teardown_order():
            _say(progress, f"removing {rec.kind} {rec.name}")
            _remove(rec, state)
            removed.append(f"{rec.kind} {rec.name}")
            state.forget(rec)
        left = mounts_below(state_dir)
        if left:  # not ours by record, but under our state dir: never leave them behind
            for target in left:
                H.unmount_root(Path(target))
        if removed:
            state.timings["down_s"] = round(time.monotonic() - started, 3)
            state.save()
        if purge:
            _say(progress, f"purging host disks and key under {state_dir}")
            safe_rmtree(state_dir / "hosts")
            safe_rmtree(state_dir / "vms")
            safe_rmtree(state_dir / "ssh")
            state.path.unlink(missing_ok=True)
    return removed


# --------------------------------------------------------------------------- runtime


class LabRuntime:
    """The lab for one plan, kept in ``state_dir`` (host disks, lab key, state file, logs)."""

    def __init__(self, plan: Plan, state_dir: Path | str, *, cache: Path | None = None):
        self.plan = plan
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.cache = cache
        if "mgmt" not in plan.ip.vlans:
            raise LabError("the lab needs a mgmt VLAN (fabric.vlans.mgmt): the controller reaches hosts over it")

    # ------------------------------------------------------------------ names and paths
    @property
    def hosts(self) -> tuple[HostPlan, ...]:
        return self.plan.ip.hosts

    @property
    def key_dir(self) -> Path:
        return self.state_dir / "ssh"

    @property
    def private_key(self) -> Path:
        return self.key_dir / "id_ed25519"

    def netns(self, host: str) -> str:
        return N.netns_name(host)

    def gpu_hosts(self) -> list[str]:
        """Hosts whose pool has GPUs and that get the simulated NVIDIA hardware (not VMs)."""
        return [h.name for h in self.hosts
                if self.plan.spec.pools[h.pool].gpu is not None and self.kind(h.name) != "vm"]

    def vip_holdings(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """Host -> VLAN role -> the virtual IPs the lab places on that host's port.

        LAB STAND-IN: in a site, keepalived or BGP (the site's, not a role of ours) moves the API VIP
        between the gateways. The lab has no such mover: it puts the gateway's VIP on the first gateway
        host's port in the VIP's VLAN, so the address the product tells API clients to call
        (:func:`llmcluster.plan.serving.gateway_address`) answers in the lab as it would in a site.
        HAProxy binds it with ``transparent`` either way. VM hosts (no namespace) get none."""
        gw = self.plan.serving.gateway
        if gw is None or not gw.vip:
            return {}
        import netaddr

        hosts = [h for h in self.plan.ip.hosts_in_pool(gw.pool) if self.kind(h.name) != "vm"]
        for host in hosts[:1]:
            for role in host.addresses:
                if netaddr.IPAddress(gw.vip) in netaddr.IPNetwork(self.plan.ip.vlans[role].cidr):
                    return {host.name: {role: (gw.vip,)}}
        return {}

    def sim_repos(self):
        """The simulated NVIDIA repositories (llmcluster.lab.nvidia_sim), built once per cache."""
        from llmcluster.lab import nvidia_sim
        from llmcluster.lab.image import cache_dir

        return nvidia_sim.ensure_sim_repos(self.cache or cache_dir())

    def lab_engine(self, progress: Progress | None = None):
        """LAB STAND-IN ENGINE (opt-in, ``LLMCLUSTER_LAB_MODEL=smollm2``): llama.cpp and a real tiny
        model for the GPU hosts (llmcluster.lab.llama_engine; built once per cache), else None."""
        from llmcluster.lab import llama_engine
        from llmcluster.lab.image import cache_dir

        if not llama_engine.enabled():
            return None
        return llama_engine.ensure_engine(self.cache or cache_dir(), progress)

    def host_root(self, host: str) -> Path:
        """The host's root filesystem as seen from this machine (mounted while the lab is up)."""
        return H.host_paths(self.state_dir, host).root

    def kind(self, host: str) -> str:
        """How a host runs: its ``lab.hosts`` entry, else its pool's (``lab.pools``), else namespace."""
        if host == V.LEAF_NAME and self._leaf() is not None:
            return "leaf"  # the VM leaf switch of tagged VM hosts (llmcluster.lab.vm)
        lab = self.plan.spec.lab
        return lab.host(host, self.plan.ip.host(host).pool).kind if lab is not None else "namespace"

    def vms(self) -> list[V.VmHost]:
        """The lab's VMs (hosts of kind vm, then the leaf if a VM host is tagged)."""
        return V.vm_layout(self.plan)

    def _leaf(self) -> V.VmHost | None:
        return next((v for v in V.vm_layout(self.plan) if v.role == "leaf"), None)

    def init_process(self, host: str) -> H.ProcRef | None:
        """The recorded process whose namespaces are the host's: sshd, or the container's systemd."""
        state = self.state()
        if self.kind(host) == "nspawn":
            rec = state.find("process", NS.record_name(host))
            return NS.refs(rec.data if rec else None)[1]
        if self.kind(host) in ("vm", "leaf"):  # the qemu process
            return _process_ref(state.find("process", V.process_name(host)))
        return _process_ref(state.find("process", f"{host}:sshd"))

    def _mgmt_bridge(self) -> str:
        return N.bridge_name(self.plan.ip.vlans["mgmt"])

    # ------------------------------------------------------------------ up
    def _preflight(self, state: LabState) -> None:
        ours = {(r.kind, r.name) for r in state.records}
        foreign: list[str] = []
        for name in N.lab_links():
            kind = ("bridge" if name.startswith(N.BRIDGE_PREFIX)
                    else "tap" if name.startswith(N.TAP_PREFIX) else "veth")
            if (kind, name) not in ours:
                foreign.append(f"link {name}")
        for ns in N.netns_list():
            if ns.startswith(N.NETNS_PREFIX) and ("netns", ns) not in ours:
                foreign.append(f"netns {ns}")
        if foreign:
            raise LabError(
                f"lab objects exist that {state.path} does not list ({', '.join(sorted(foreign))}): another "
                "lab runs on this machine (or one was left behind); run 'down' with its state dir first"
            )
        N.check_controller_address(self.plan.ip.vlans["mgmt"], self._mgmt_bridge())

    def _host_healthy(self, state: LabState, host: HostPlan) -> bool:
        if self.kind(host.name) == "nspawn":
            rec = state.find("process", NS.record_name(host.name))
            return NS.healthy(rec.data if rec else None, self.netns(host.name), host.mgmt_ip)
        unshare = _process_ref(state.find("process", f"{host.name}:unshare"))
        sshd = _process_ref(state.find("process", f"{host.name}:sshd"))
        return bool(
            unshare and unshare.alive() and sshd and sshd.alive() and N.netns_exists(self.netns(host.name))
            and H.ssh_answers(host.mgmt_ip)
        )

    def up(self, progress: Progress | None = None) -> UpReport:
        """Create (or repair) the whole lab; return when every host's sshd answers."""
        require_root()
        if any(self.kind(h.name) == "nspawn" for h in self.hosts):
            NS.nspawn_binary()  # before anything is built: say what to install
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        fingerprint = plan_fingerprint(self.plan)
        previous = LabState.load(self.state_dir).fingerprint
        if previous and previous != fingerprint:
            _say(progress, "the lab in this state dir was built from another plan: tearing it down")
            lab_down(self.state_dir, progress, purge=True)
        with state_lock(self.state_dir):
            state = LabState.load(self.state_dir)
            state.fingerprint, state.layout = fingerprint, plan_layout(self.plan)
            state.save()

            t = time.monotonic()
            image = ensure_base_image(cache=self.cache, progress=progress)
            timings["image_s"] = round(time.monotonic() - t, 3)
            pinned = Path(state.image.get("rootfs", ""))
            lower = pinned if state.image.get("rootfs") and pinned.is_dir() else image.rootfs
            if lower == image.rootfs:
                state.image = {"key": image.key, "rootfs": str(image.rootfs)}
            key = ensure_ssh_keypair(self.key_dir)
            self._preflight(state)

            t = time.monotonic()
            self._network(state, progress)
            self._hosts(state, lower, key, progress)
            ensure_probes(self.plan, state, progress)
            timings["network_s"] = round(time.monotonic() - t, 3)

            t = time.monotonic()
            # VMs boot for tens of seconds: start them first, then the other hosts, then wait.
            booting = (V.up_vms(state, self.plan, self.state_dir, key.public_line(), cache=self.cache,
                                progress=progress, timings=timings) if V.any_vm(self.plan) else None)
            started = self._start(state, progress)
            if booting is not None:
                timings.update({f"vm_boot_s.{k}": v for k, v in booting.wait().items()})
                started += booting.names
            timings["start_s"] = round(time.monotonic() - t, 3)
            timings["up_s"] = round(time.monotonic() - t0, 3)
            state.timings.update(timings)
            state.save()
        _say(progress, f"lab up: {len(self.hosts)} hosts in {timings['up_s']:.1f}s")
        return UpReport(seconds=timings["up_s"], image=image, started=tuple(started), timings=timings)

    def _network(self, state: LabState, progress: Progress | None) -> None:
        # The guard goes first: no lab bridge or host exists without it.
        _say(progress, f"loading the nftables guard (table inet {N.GUARD_TABLE})")
        state.record("guard", N.GUARD_TABLE)
        N.load_guard()
        for vlan in self.plan.ip.vlans.values():
            br = N.bridge_name(vlan)
            _say(progress, f"bridge {br} (VLAN {vlan.role}, MTU {vlan.mtu})")
            state.record("bridge", br, vlan=vlan.role, mtu=vlan.mtu)
            N.ensure_bridge(br, vlan.mtu)
        mgmt, bridge = self.plan.ip.vlans["mgmt"], self._mgmt_bridge()
        state.record("address", N.controller_cidr(mgmt), dev=bridge)
        N.ensure_controller_address(mgmt, bridge)

    def _hosts(self, state: LabState, lower: Path, key: SshKey, progress: Progress | None) -> None:
        ip = self.plan.ip
        authorized = key.public_line()
        gpu_hosts = set(self.gpu_hosts())
        repos = self.sim_repos() if gpu_hosts else None
        engine = self.lab_engine(progress) if gpu_hosts else None
        for host in self.hosts:
            if self.kind(host.name) == "vm":  # llmcluster.lab.vm: a qemu guest, no namespace
                continue
            ns = self.netns(host.name)
            _say(progress, f"host {host.name}: namespace {ns}, {len(host.addresses)} interfaces, overlay root")
            state.record("netns", ns, host=host.name)
            N.ensure_netns(ns)
            vips = self.vip_holdings().get(host.name, {})
            for role, addr in host.addresses.items():
                vlan = ip.vlans[role]
                veth, ifname = N.veth_name(host.name, vlan), N.host_ifname(role)
                state.record("veth", veth, host=host.name, netns=ns, ifname=ifname, bridge=N.bridge_name(vlan))
                N.ensure_host_port(netns=ns, veth=veth, ifname=ifname, bridge=N.bridge_name(vlan),
                                   cidr=f"{addr}/{vlan.prefixlen}", mtu=vlan.mtu,
                                   extra_cidrs=tuple(f"{v}/32" for v in vips.get(role, ())))
            paths = H.host_paths(self.state_dir, host.name)
            state.record("mount", str(paths.root), host=host.name, lower=str(lower))
            H.mount_overlay(lower, paths)
            H.write_host_files(paths.root, host, self.hosts, authorized)
            if host.name in gpu_hosts:
                # SIMULATION: the GPUs, NVSwitches and the NVIDIA repositories of a real node.
                from llmcluster.lab import nvidia_sim

                _say(progress, f"host {host.name}: simulated HGX hardware, NVIDIA repositories")
                nvidia_sim.prepare_gpu_host(paths.root, self.plan, host.name, repos, engine)
            if self.kind(host.name) == "nspawn":
                NS.prepare_root(paths.root)

    def _start(self, state: LabState, progress: Progress | None) -> list[str]:
        starting: list[tuple[HostPlan, H.ProcRef]] = []
        for host in self.hosts:
            if self.kind(host.name) == "vm" or self._host_healthy(state, host):
                continue
            ns, paths = self.netns(host.name), H.host_paths(self.state_dir, host.name)
            if self.kind(host.name) == "nspawn":
                rec = state.find("process", NS.record_name(host.name))
                NS.stop_recorded(rec.data if rec else None)
                H.kill_netns_processes(ns)
                _say(progress, f"host {host.name}: starting systemd under {NS.NSPAWN_PROGRAM}")
                cgroups = NS.cgroup_dirs(host.name)
                state.record("process", NS.record_name(host.name), host=host.name, role="nspawn", pid=None,
                             init=None, cgroups=cgroups)
                ref = NS.start(ns, paths, host.name, cgroups)
                state.record("process", NS.record_name(host.name), **ref.to_dict())
                starting.append((host, ref))
                continue
            H.stop_host(_process_ref(state.find("process", f"{host.name}:unshare")),
                        _process_ref(state.find("process", f"{host.name}:sshd")))
            H.kill_netns_processes(ns)
            _say(progress, f"host {host.name}: starting sshd")
            name = f"{host.name}:unshare"
            state.record("process", name, host=host.name, role="unshare", pid=None)
            ref = H.start_host(ns, paths, host.name)
            state.record("process", name, **ref.to_dict())
            starting.append((host, ref))
        for host, ref in starting:
            if ref.program == NS.NSPAWN_PROGRAM:
                init = NS.wait_ready(ref, host.mgmt_ip, H.host_paths(self.state_dir, host.name))
                state.record("process", NS.record_name(host.name), init=init.to_dict())
                _say(progress, f"host {host.name}: systemd booted, sshd answers on {host.mgmt_ip}:{H.SSH_PORT}")
                continue
            sshd = H.wait_ready(ref, host.mgmt_ip, H.host_paths(self.state_dir, host.name))
            state.record("process", f"{host.name}:sshd", host=host.name, role="sshd", **sshd.to_dict())
            _say(progress, f"host {host.name}: sshd answers on {host.mgmt_ip}:{H.SSH_PORT}")
        return [h.name for h, _ in starting]

    # ------------------------------------------------------------------ down / status
    def down(self, progress: Progress | None = None, *, purge: bool = False) -> list[str]:
        """Remove exactly what the state file lists (see :func:`lab_down`)."""
        return lab_down(self.state_dir, progress, purge=purge)

    def state(self) -> LabState:
        return LabState.load(self.state_dir)

    def status(self) -> list[HostStatus]:
        """Per host: namespace present, init (sshd or systemd) alive, SSH answering on the mgmt address."""
        out = []
        for host in self.hosts:
            init = self.init_process(host.name)
            out.append(HostStatus(
                name=host.name,
                mgmt_ip=host.mgmt_ip,
                # a VM has no namespace here: its qemu process stands for it
                netns=(bool(init and init.alive()) if self.kind(host.name) == "vm"
                       else N.netns_exists(self.netns(host.name))),
                sshd=bool(init and init.alive()),
                ssh=H.ssh_answers(host.mgmt_ip),
                kind=self.kind(host.name),
            ))
        leaf = self._leaf()
        if leaf is not None:  # lab infrastructure, listed after the plan's hosts
            init = self.init_process(leaf.name)
            alive = bool(init and init.alive())
            out.append(HostStatus(leaf.name, leaf.mgmt_ip, alive, alive, H.ssh_answers(leaf.mgmt_ip), "leaf"))
        return out

    # ------------------------------------------------------------------ using hosts
    def exec(self, host: str, argv: Sequence[str], *, timeout: float = 60,
             check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command inside a host (all its namespaces and its root), like ``docker exec``."""
        require_root()
        init = self.init_process(host)
        if init is None or not init.alive():
            raise LabError(f"lab host {host} is not running (run up first)")
        if self.kind(host) in ("vm", "leaf"):  # a VM has its own kernel: in over SSH
            proc = subprocess.run(self.ssh_argv(host, shlex.join(argv)), capture_output=True, text=True,
                                  timeout=timeout, check=False)
            if check and proc.returncode != 0:
                raise LabError(f"{host}: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
            return proc
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}
        enter = NS.nsenter_argv if self.kind(host) == "nspawn" else H.nsenter_argv
        proc = subprocess.run(enter(init, list(argv)), capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
        if check and proc.returncode != 0:
            raise LabError(f"{host}: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def ssh_argv(self, host: str, *command: str) -> list[str]:
        """An ``ssh`` command line that logs in to a host as root with the lab key."""
        leaf = self._leaf() if host == V.LEAF_NAME else None
        address = leaf.mgmt_ip if leaf is not None else self.plan.ip.host(host).mgmt_ip
        return H.ssh_argv(self.private_key, address, *command)

    def inventory(self) -> dict[str, Any]:
        """The plan's dynamic inventory (``--list`` shape) plus the lab's connection settings."""
        from llmcluster.inventory import build_inventory

        # The hosts as the lab realises them: access mode unless lab.pools/lab.hosts ask for tagged.
        lab_plan = self.plan.in_lab()
        inv = build_inventory(lab_plan)
        # Lab hosts share this machine's kernel: roles must not apply kernel parameters there.
        inv["all"]["vars"]["common_sysctl_apply"] = False
        for name, hv in inv["_meta"]["hostvars"].items():
            kind = self.kind(name)
            hv["llmcluster_lab_kind"] = kind
            # Namespace hosts run sshd as init (no systemd): the roles manage no services there.
            hv["llmcluster_manage_services"] = kind != "namespace"
            if kind == "nspawn":
                # A container cannot set this machine's clock: chronyd runs with -x (lab only).
                hv["common_time_sync_set_clock"] = False
            if kind in ("namespace", "nspawn"):
                # This machine's kernel has no md RAID (nor device-mapper): the nvme_raid role leaves the
                # RAID out there and the model directory is a plain directory (VM hosts build it for real).
                hv["nvme_raid_enabled"] = False
                hv["nvme_raid_disabled_reason"] = (f"lab host of kind {kind} shares the lab machine's kernel, "
                                                   "which has no md RAID (the VM tier builds the RAID)")
                # This machine's kernel: no auditd (its audit rules would be the machine's), and of
                # the kernel hardening only the per-namespace keys (net.ipv4.conf.*, net.ipv6.conf.*).
                hv["common_auditd_enabled"] = False
                hv["common_sysctl_apply_netns"] = True
            if kind == "vm":
                hv.update(V.inventory_vars(lab_plan, name))
                if "nvme_raid_devices" in hv and lab_plan.storage.raid is not None and lab_plan.storage.raid.encrypt:
                    # LAB: the LUKS key of the RAID (a secret of the lab's state dir; write_inventory makes it)
                    hv["nvme_raid_luks_key_file"] = str(self.luks_key_file)
            hv["ansible_user"] = "root"
            hv["ansible_ssh_private_key_file"] = str(self.private_key)
            hv["ansible_ssh_common_args"] = LAB_SSH_COMMON_ARGS
            hv["ansible_python_interpreter"] = "/usr/bin/python3"
        if self.gpu_hosts():
            from llmcluster.lab import nvidia_sim

            # SIMULATION: the roles install from the lab's stand-in NVIDIA repositories; nothing
            # else about the GPU roles changes in the lab. Containers cannot reboot; the stand-in
            # server loads in about a second.
            inv["all"]["vars"].update(nvidia_sim.inventory_overrides(self.sim_repos()))
            inv["all"]["vars"]["nvidia_driver_skip_reboot"] = True
            inv["all"]["vars"]["tensorrt_llm_ready_timeout_s"] = 120
            # LAB FIXTURE: the model_store role stages a small model tree (random weights, a few MB)
            # from this machine and verifies it against its manifest (llmcluster.lab.model_fixture).
            from llmcluster.lab import model_fixture
            from llmcluster.lab.image import cache_dir

            engine = self.lab_engine()
            fixture = model_fixture.ensure_lab_model(self.cache or cache_dir(), self.plan.spec.serving.model,
                                                     engine.gguf if engine is not None else None)
            inv["all"]["vars"].update(model_fixture.inventory_overrides(fixture))
        ceph = lab_plan.storage.ceph
        if ceph is not None:
            for name in ceph.hosts:
                # LAB SIMULATION (roles/ceph): each planned NVMe device of a Ceph host is a file of
                # the host (BlueStore on a file, ceph-osd --mkfs): namespaced hosts have no LVM or
                # device-mapper for ceph-volume. Small daemons: the lab shares 2 cores with the suite.
                inv["_meta"]["hostvars"][name].update(CEPH_LAB_VARS)
        # Where the verification suite's firewall matrix starts for external zones (lab only).
        inv["all"]["vars"]["llmcluster_verify_probes"] = {p.zone: p.to_dict() for p in probe_sources(self.plan)}
        return inv

    @property
    def luks_key_file(self) -> Path:
        """LAB: the key file of the VM hosts' encrypted RAID (role nvme_raid, ``storage.raid.encrypt``)."""
        return self.state_dir / "secrets" / "nvme-raid-luks.key"

    def ensure_luks_key(self) -> Path:
        """Create :attr:`luks_key_file` once (64 random bytes, 0600, written atomically); reused after."""
        path = self.luks_key_file
        if not path.is_file():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(64))
            os.replace(tmp, path)
        return path

    def write_inventory(self, path: Path | str) -> Path:
        """Write the lab inventory as a static YAML inventory (Ansible's ``yaml`` plugin)."""
        inv = self.inventory()
        # The lab's PKI, certificates and keys, for the mtls role (lab only: an offline-issued
        # hierarchy, kept in the state dir and reused while it still matches the plan).
        from llmcluster.pki_export import ensure_lab_export

        inv["all"]["vars"]["llmcluster_pki_dir"] = str(ensure_lab_export(self.plan, self.state_dir / "pki"))
        if any("nvme_raid_luks_key_file" in hv for hv in inv["_meta"]["hostvars"].values()):
            self.ensure_luks_key()
        hostvars = inv["_meta"]["hostvars"]
        children = {
            group: {"hosts": {h: None for h in body.get("hosts", [])}}
            for group, body in inv.items()
            if group not in ("all", "ungrouped", "_meta")
        }
        doc = {"all": {"vars": inv["all"]["vars"], "hosts": hostvars, "children": children}}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"# llmcluster lab inventory for stack {self.plan.spec.stack!r}: a lab, not production\n"
            "# (host keys are not checked). Written by LabRuntime.write_inventory.\n"
        )
        path.write_text(header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
        return path
