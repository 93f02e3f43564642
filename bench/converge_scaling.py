#!/usr/bin/env python3
"""Benchmark: converge and re-converge wall time of ``ansible/site.yml`` on 2, 4, 8 and 16 lab hosts.

Method. For each size N the ``lab`` stack is resized with ``--set`` overrides (N >= 4: the
lab's shape, 1 storage node + 1 gateway + N-2 GPU nodes, without the Ceph cluster, which
needs the lab's 3 storage hosts; N = 2: 1 GPU node serving a distill model + 1 gateway, no
storage pool), a lab of N real hosts is brought up from the
cached base image (fresh host disks: the first converge starts from the bare image; host
kinds as the stack's ``lab`` section says, or all ``--kind namespace|nspawn``),
and the playbook runs twice through :func:`llmcluster.converge.run_playbook` with the
settings of ``ansible/ansible.cfg``:

* **converge**: the first run (installs packages, writes every file);
* **re-converge**: the second run, which must report ``changed=0`` on every host (asserted:
  the benchmark stops with the changed tasks otherwise).

Time, time per host and the ratio of each to the smallest size are reported from one run,
so the ratios are comparable. ``batches`` is the number of ``serial`` batches the plays of
site.yml make for that inventory (storage and gateways one at a time, GPU nodes 25 % at a
time, rounded down, at least 1): batches run one after the other, the hosts of a batch in
parallel. ``ctl CPU s`` is the CPU time of the controller side (ansible-playbook, its forks,
the ssh clients) and ``busy`` how busy all cores of the machine were during the run (lab
hosts and anything else running included): near 100 % means the run is CPU-bound here.

Settings sweep (at the largest size unless ``--sweep-size``; re-converges, each the median
of ``--repeat`` runs and each asserted ``changed=0``):

* site.yml as shipped, ``--forks`` x ``--pipelining`` (``N`` in ``--forks`` = as many
  forks as hosts). With ``serial`` Ansible never runs more hosts at once than the largest
  batch, so fork counts at or above it are one setting: they are grouped and measured once
  (``at once``), with ansible.cfg's ``forks`` where it is in the group;
* a copy of site.yml without ``serial`` (in a temporary directory, same roles), the same
  fork groups at site.yml's best pipelining (``--full-sweep``: every pipelining): what
  ``serial`` costs, and what forks would buy without it.

The size run's re-converge used ansible.cfg's own settings; with ``--repeat 1`` it stands
in the sweep for that setting (``(size run)``). Then, as observations only (site.yml and
ansible.cfg are never changed): site.yml at its best setting with SSH ControlMaster /
ControlPersist off, a copy of site.yml with Ansible's own ``linear`` strategy when ansible.cfg names
another (Mitogen's ``mitogen_linear``: what it buys), and the copy without ``serial`` with Ansible's
``strategy: free``. Slowest tasks
come from the runner's task-start events (wall time per task name, summed over batches).

Runtime on a quiet 2-core machine: ~9 s per host per playbook run; the default run took
16 minutes (sizes ~6, the sweep and observations at 16 hosts ~10), ``--quick`` (sizes 2 and
4, a small sweep at 4) ~3. Time spent waiting for the lab lock is reported, not counted.
``--render FILE`` prints (and with ``--markdown``, writes) the report of an earlier ``--json``.

Every lab is brought up while holding the lab lock (``<lab cache>/lab-tests.lock``, the one
the test suite's ``lab`` fixture takes: one lab per machine) and always torn down with
``down(purge=True)``. Needs root.

    python bench/converge_scaling.py [--sizes 2,4,8,16] [--forks 5,20,N] [--pipelining on,off]
        [--kind stack|namespace|nspawn] [--sweep-size N] [--full-sweep] [--no-sweep] [--no-variants]
        [--repeat 1] [--quick] [--json FILE] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STACK = ROOT / "stacks" / "Pulumi.lab.yaml"
PLAYBOOK = ROOT / "ansible" / "site.yml"
ANSIBLE_CFG = ROOT / "ansible" / "ansible.cfg"
ROLES = ROOT / "roles"
#: Never apply kernel parameters from the lab: namespace hosts share this machine's kernel.
LAB_EXTRAVARS = {"common_sysctl_apply": False}
#: The serving model of the 2-host lab (one GPU node cannot hold DeepSeek-R1 FP8).
SMALL_MODEL = "deepseek-r1-distill-qwen-7b"
DEFAULT_SIZES = (2, 4, 8, 16)
QUICK_SIZES = (2, 4)


class BenchError(RuntimeError):
    """A measurement that must not be reported (a failed or non-idempotent converge)."""


# --------------------------------------------------------------------------- pure parts


#: ``--kind``: how the lab runs the hosts. ``stack``: as the lab stack's ``lab`` section says.
KINDS = ("stack", "namespace", "nspawn")
POOLS = ("gpu", "storage", "gateway")


def overrides_for(n: int, kind: str = "stack") -> list[str]:
    """``--set`` overrides that turn the ``lab`` stack into a valid stack of exactly ``n`` hosts."""
    if n < 2:
        raise ValueError(f"a lab needs at least 2 hosts, not {n}")
    if kind not in KINDS:
        raise ValueError(f"kind is one of {', '.join(KINDS)}, not {kind!r}")
    if n == 2:  # no room for storage: one GPU node (a distill model fits on it) and the gateway
        out = ["pools.gpu.count=1", "pools.storage.count=0", "storage.ceph=null", f"serving.model={SMALL_MODEL}",
               "serving.replicas=1"]
    elif n == 3:
        out = ["pools.gpu.count=1", "pools.storage.count=1", "storage.ceph=null", f"serving.model={SMALL_MODEL}",
               "serving.replicas=1"]
    else:  # the lab's shape: 1 storage (no Ceph: it needs 3 hosts), 1 gateway, the rest GPU nodes
        out = [f"pools.gpu.count={n - 2}", "pools.storage.count=1", "storage.ceph=null"]
        if n > 8:  # the lab's one leaf takes 64 ports (9 per GPU node): leaf pairs under two spines
            out += ["baremetal.spine_switches=2", f"baremetal.leaf_switches={2 * -(-9 * n // 100)}"]
    # no monitor host: the bench's sizes count the hosts of the roles it times (docs/observability.md)
    out += ["monitoring=null", "pools.monitor.count=0"]
    if kind == "namespace":
        out.append("lab=null")
    elif kind == "nspawn":
        out += ["lab.hosts={}"] + [f"lab.pools.{pool}.kind=nspawn" for pool in POOLS]
    return out


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(s) for s in text.split(",") if s.strip()})
    if not sizes or sizes[0] < 2:
        raise argparse.ArgumentTypeError(f"sizes must be integers >= 2: {text!r}")
    return sizes


def parse_forks(text: str, hosts: int) -> list[int]:
    """``"5,10,20,N"`` -> sorted distinct fork counts (``N`` = ``hosts``)."""
    out: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        value = hosts if item.upper() == "N" else int(item)
        if value < 1:
            raise argparse.ArgumentTypeError(f"forks must be >= 1: {item!r}")
        out.add(value)
    return sorted(out)


def parse_pipelining(text: str) -> list[bool]:
    words = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}
    out: list[bool] = []
    for item in text.split(","):
        key = item.strip().lower()
        if key not in words:
            raise argparse.ArgumentTypeError(f"pipelining is on or off, not {item!r}")
        if words[key] not in out:
            out.append(words[key])
    return out


def _select(pattern: str, groups: Mapping[str, Sequence[str]], all_hosts: Sequence[str]) -> list[str]:
    """The hosts of a simple Ansible host pattern: ``group``, ``all``, ``a:b``, ``all:!a:!b``."""
    selected: list[str] = []
    for part in pattern.split(":"):
        part = part.strip()
        if not part:
            continue
        if part.startswith("!"):
            excluded = set(all_hosts if part[1:] == "all" else groups.get(part[1:], ()))
            selected = [h for h in selected if h not in excluded]
        elif part.startswith("&"):
            keep = set(all_hosts if part[1:] == "all" else groups.get(part[1:], ()))
            selected = [h for h in selected if h in keep]
        else:
            for h in all_hosts if part == "all" else groups.get(part, ()):
                if h not in selected:
                    selected.append(h)
    return selected


def batch_size(serial: Any, hosts: int) -> int:
    """Hosts per batch for a play's ``serial`` (Ansible: a percentage rounds down, at least 1)."""
    if hosts == 0:
        return 0
    if serial in (None, 0, "0", "0%"):
        return hosts
    text = str(serial).strip()
    if text.endswith("%"):
        size = int(float(text[:-1]) / 100.0 * hosts)
    else:
        size = int(text)
    return min(hosts, max(1, size))


def play_batches(plays: Sequence[Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
                 all_hosts: Sequence[str]) -> list[tuple[str, int, int]]:
    """(play hosts pattern, hosts, batches) for each play of a playbook (``serial`` as a scalar)."""
    out = []
    for play in plays:
        hosts = _select(str(play.get("hosts", "")), groups, all_hosts)
        size = batch_size(play.get("serial"), len(hosts))
        out.append((str(play.get("hosts", "")), len(hosts), -(-len(hosts) // size) if size else 0))
    return out


def inventory_groups(inventory: Mapping[str, Any]) -> tuple[dict[str, list[str]], list[str]]:
    """Groups and all hosts of a ``--list`` style inventory (as :func:`build_inventory` returns it)."""
    groups = {g: list(body.get("hosts", [])) for g, body in inventory.items()
              if g not in ("_meta", "all", "ungrouped") and isinstance(body, Mapping)}
    all_hosts = sorted(inventory.get("_meta", {}).get("hostvars", {}))
    return groups, all_hosts


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ratios of each size's converge/re-converge time and time per host to the first row's."""
    if not rows:
        return rows
    base = rows[0]
    for r in rows:
        for key in ("converge_s", "reconverge_s"):
            r[f"{key[:-2]}_ratio"] = round(r[key] / base[key], 3) if base[key] else None
            per = f"{key[:-2]}_s_per_host"
            r[per] = round(r[key] / r["hosts"], 3)
            r[f"{key[:-2]}_per_host_ratio"] = round(r[per] / (base[key] / base["hosts"]), 3) if base[key] else None
    return rows


SIZE_COLUMNS = ("hosts", "batches", "tasks/host", "up s", "converge s", "s/host", "ratio", "per-host ratio",
                "re-converge s", "s/host", "ratio", "per-host ratio", "CPU s/host", "others' CPU s")


def _f(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _cpu(d: Mapping[str, Any] | None) -> str:
    """``controller/hosts/others`` CPU seconds of a run (see :class:`Run`)."""
    if not d or d.get("controller_cpu_s") is None:
        return "-"
    return "/".join(f"{d.get(k, 0):.0f}" for k in ("controller_cpu_s", "hosts_cpu_s", "others_cpu_s"))


def _cpu_per_host(d: Mapping[str, Any] | None, hosts: int) -> str:
    """The run's own CPU seconds (controller + lab hosts) per host: the work, whatever the contention."""
    if not d or d.get("controller_cpu_s") is None:
        return "-"
    return f"{(d['controller_cpu_s'] + d['hosts_cpu_s']) / hosts:.1f}"


def _others(d: Mapping[str, Any] | None) -> str:
    return "-" if not d or d.get("others_cpu_s") is None else f"{d['others_cpu_s']:.0f}"


def size_table_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The size table as strings (columns: :data:`SIZE_COLUMNS`; the CPU columns: converge / re-converge)."""
    return [[str(r["hosts"]), str(r["batches"]), _f(r.get("tasks_per_host"), 0), _f(r["up_s"], 1),
             _f(r["converge_s"], 1), _f(r["converge_s_per_host"]), _f(r["converge_ratio"]),
             _f(r["converge_per_host_ratio"]),
             _f(r["reconverge_s"], 1), _f(r["reconverge_s_per_host"]), _f(r["reconverge_ratio"]),
             _f(r["reconverge_per_host_ratio"]),
             " / ".join(_cpu_per_host(r.get(k), r["hosts"]) for k in ("converge_cpu", "reconverge_cpu")),
             f"{_others(r.get('converge_cpu'))} / {_others(r.get('reconverge_cpu'))}"]
            for r in rows]


SWEEP_COLUMNS = ("playbook", "forks", "at once", "pipelining", "re-converge s", "vs best",
                 "CPU s ctl/hosts/others", "busy", "runs s")


def setting_label(forks: int, pipelining: bool) -> str:
    return f"forks={forks} pipelining={'on' if pipelining else 'off'}"


def best_setting(sweep: Sequence[Mapping[str, Any]], playbook: str | None = None) -> Mapping[str, Any] | None:
    """The sweep row with the lowest re-converge time (of ``playbook``; ties: fewer forks, pipelining on)."""
    rows = [r for r in sweep if playbook is None or r["playbook"] == playbook]
    if not rows:
        return None
    return min(rows, key=lambda r: (r["reconverge_s"], r["run_forks"], not r["pipelining"]))


def sweep_table_rows(sweep: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The sweep as strings; ``vs best`` is against the best row of the same playbook."""
    out = []
    for r in sweep:
        best = best_setting(sweep, r["playbook"])
        vs = r["reconverge_s"] / best["reconverge_s"] if best and best["reconverge_s"] else None
        runs = " ".join(f"{t:.1f}" for t in r["runs"]) + (" (size run)" if r.get("reused") else "")
        out.append([r["playbook"], ",".join(str(f) for f in r["forks"]), str(r["effective_forks"]),
                    "on" if r["pipelining"] else "off", _f(r["reconverge_s"]), _f(vs),
                    _cpu(r), _pct(r.get("busy")), runs])
    return out


VARIANT_COLUMNS = ("variant", "forks", "pipelining", "re-converge s", "vs best", "CPU s ctl/hosts/others", "busy")


def variant_table_rows(variants: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [[v["variant"], str(v["forks"]), "on" if v["pipelining"] else "off", _f(v["reconverge_s"]),
             _f(v["vs_best"]), _cpu(v), _pct(v.get("busy"))] for v in variants]


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    align = [":---" if i == 0 else "---:" for i in range(len(columns))]  # names left, numbers right
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def current_settings(cfg: Path = ANSIBLE_CFG) -> dict[str, Any]:
    """forks, pipelining and ssh_args of ``ansible.cfg`` (Ansible's defaults where unset)."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(cfg)
    return {
        "forks": parser.getint("defaults", "forks", fallback=5),
        "pipelining": parser.getboolean("ssh_connection", "pipelining", fallback=False),
        "ssh_args": parser.get("ssh_connection", "ssh_args", fallback=""),
        "strategy": parser.get("defaults", "strategy", fallback="linear"),
    }


def playbook_variant(plays: Sequence[Mapping[str, Any]], *, drop_serial: bool = False,
                     strategy: str | None = None) -> list[dict[str, Any]]:
    """A copy of the plays with ``serial`` removed and/or ``strategy`` set."""
    out = []
    for play in plays:
        p = dict(play)
        if drop_serial:
            p.pop("serial", None)
        if strategy:
            p["strategy"] = strategy
        out.append(p)
    return out


# --------------------------------------------------------------------------- task timings


@dataclass
class TaskClock:
    """Wall time per task name, from the runner's task-start events (summed over batches).

    With the linear strategy every host of a batch runs a task together, so the time from one
    task's first start to the next task's first start is that task's wall time (approximate:
    the last task of a play also carries the play's end).
    """

    spans: dict[str, float] = field(default_factory=dict)
    _current: tuple[str, float] | None = None
    _seen: dict[str, str] = field(default_factory=dict)

    def on_progress(self, hosts: Mapping[str, Any]) -> None:
        now = time.monotonic()
        for name, hp in hosts.items():
            task = getattr(hp, "task", "")
            if task and self._seen.get(name) != task:
                self._seen[name] = task
                if self._current is None or self._current[0] != task:
                    self._close(now)
                    self._current = (task, now)

    def _close(self, now: float) -> None:
        if self._current is not None:
            task, started = self._current
            self.spans[task] = self.spans.get(task, 0.0) + now - started
            self._current = None

    def finish(self) -> None:
        self._close(time.monotonic())

    def top(self, n: int = 5) -> list[tuple[str, float]]:
        return sorted(((t, round(s, 2)) for t, s in self.spans.items()), key=lambda x: -x[1])[:n]


# --------------------------------------------------------------------------- the lab side


def foreign_lab_objects() -> list[str]:
    """Lab-named namespaces and links on this machine (call with no lab of ours up)."""
    from llmcluster.lab import network as N

    found = [f"netns {ns}" for ns in N.netns_list() if ns.startswith(N.NETNS_PREFIX)]
    return found + [f"link {name}" for name in N.lab_links()]


#: How long (seconds, summed) to wait for lab objects that are not ours to go away (``--wait-foreign``).
FOREIGN_WAIT_S = 3600.0
FOREIGN_POLL_S = 15.0


@contextmanager
def lab_lock(say: Callable[[str], None] = lambda _m: None, wait_s: float = FOREIGN_WAIT_S) -> Iterator[float]:
    """Hold the machine's lab lock (the test suite's) with no foreign lab objects; yields seconds waited.

    Lab objects found while holding the lock are not ours (another lab that outlives its hold
    on the lock, or one left behind): they are never touched. The lock is released and taken
    again until they are gone; after ``wait_s`` of seeing them, :class:`BenchError`.
    """
    from llmcluster.lab.image import cache_dir

    path = cache_dir() / "lab-tests.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    t, seen = time.monotonic(), 0.0
    with open(path, "a+") as fh:
        while True:
            fcntl.flock(fh, fcntl.LOCK_EX)
            leftovers = foreign_lab_objects()
            if not leftovers:
                break
            fcntl.flock(fh, fcntl.LOCK_UN)
            if seen >= wait_s:
                raise BenchError("lab objects exist that this benchmark did not make (another lab, or one left "
                                 f"behind; not touched): {', '.join(leftovers)}")
            if seen == 0 or seen % 300 < FOREIGN_POLL_S:
                say(f"waiting: lab objects that are not ours exist ({', '.join(leftovers[:4])}"
                    f"{', ...' if len(leftovers) > 4 else ''})")
            time.sleep(FOREIGN_POLL_S)
            seen += FOREIGN_POLL_S
        try:
            yield time.monotonic() - t
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ansible_env(pipelining: bool | None = None, ssh_args: str | None = None) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "ANSIBLE_CONFIG": str(ANSIBLE_CFG),
        "ANSIBLE_CACHE_PLUGIN": "memory",  # every run gathers its facts; no facts from an earlier lab
        "ANSIBLE_ROLES_PATH": str(ROLES),  # for the playbook variants written to a temporary dir
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if pipelining is not None:
        env["ANSIBLE_PIPELINING"] = "True" if pipelining else "False"
    if ssh_args is not None:
        env["ANSIBLE_SSH_ARGS"] = ssh_args
    return env


@dataclass(frozen=True)
class Run:
    """One playbook run: wall time and where the machine's CPU went during it.

    ``controller_cpu_s``: ansible-playbook, its forks and the ssh clients (not the detached
    ControlPersist masters); ``hosts_cpu_s``: every process in the lab's network namespaces
    (sshd, the modules' python); ``others_cpu_s``: the rest of the machine's busy time (other
    work on this machine, the ssh masters, the kernel's softirqs) -- high values mean the
    measurement competed for the cores. ``busy``: all cores' busy share over the run.
    """

    seconds: float
    controller_cpu_s: float
    hosts_cpu_s: float
    others_cpu_s: float
    busy: float
    tasks_per_host: float


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot, from /proc/stat ((0, 0) where there is none)."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return (sum(fields) - idle) / _TICK, sum(fields) / _TICK


def children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def netns_cpu_s(inodes: frozenset[int]) -> float:
    """CPU seconds (own and reaped children's) of the live processes in these network namespaces.

    Short-lived module processes are counted when a live process of the host reaps them (as
    ``cutime``), so the difference of two snapshots is the hosts' CPU time in between.
    """
    total = 0.0
    if not inodes:
        return total
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ns = os.readlink(entry / "ns" / "net")
            if int(ns[ns.index("[") + 1:-1]) not in inodes:
                continue
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += sum(int(x) for x in fields[11:15]) / _TICK  # utime stime cutime cstime
    return total


def lab_netns_inodes(runtime: Any) -> frozenset[int]:
    out = set()
    for host in runtime.hosts:
        try:
            out.add(os.stat(Path("/run/netns") / runtime.netns(host.name)).st_ino)
        except OSError:  # a VM host has no namespace here
            continue
    return frozenset(out)


def timed_converge(playbook: Path, inventory: Path, what: str, *, forks: int | None = None,
                   pipelining: bool | None = None, ssh_args: str | None = None, expect_no_change: bool = False,
                   clock: TaskClock | None = None, netns: frozenset[int] = frozenset()) -> Run:
    """Run the playbook once and time it. Raises :class:`BenchError` on failure or drift."""
    from llmcluster.converge import run_playbook

    busy0, total0 = machine_busy_s()
    ctl0, hosts0 = children_cpu_s(), netns_cpu_s(netns)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    t = time.perf_counter()
    try:  # during the run, ansible-runner's handlers turn SIGINT/SIGTERM into a cancelled run
        result = run_playbook(playbook, inventory, forks=forks, extravars=LAB_EXTRAVARS,
                              envvars=ansible_env(pipelining, ssh_args),
                              on_progress=clock.on_progress if clock else None, quiet=True)
    finally:  # ... and they stay installed: put ours back, so a signal still ends (and cleans up) the run
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    seconds = time.perf_counter() - t
    busy1, total1 = machine_busy_s()
    ctl, hosts = children_cpu_s() - ctl0, netns_cpu_s(netns) - hosts0
    if clock:
        clock.finish()
    if not result.ok or not result.stats:
        errors = {h: f"{hp.task}: {hp.last_error}" for h, hp in result.hosts.items() if hp.last_error}
        raise BenchError(f"{what}: rc {result.rc} ({result.status}); failed {result.failed_hosts}: {errors}")
    if expect_no_change and result.changed():
        changed = {h: n for h, s in result.stats.items() if (n := s.get("changed", 0))}
        raise BenchError(f"{what}: not idempotent, changed {changed}: {result.changed_tasks}")
    tasks = [s.get("ok", 0) + s.get("skipped", 0) for s in result.stats.values()]
    return Run(seconds=round(seconds, 2), controller_cpu_s=round(ctl, 1), hosts_cpu_s=round(hosts, 1),
               others_cpu_s=round(max(0.0, busy1 - busy0 - ctl - hosts), 1),
               busy=round((busy1 - busy0) / (total1 - total0), 3) if total1 > total0 else 0.0,
               tasks_per_host=round(statistics.mean(tasks), 1) if tasks else 0.0)


CPU_KEYS = ("controller_cpu_s", "hosts_cpu_s", "others_cpu_s", "busy")


def median_reconverge(playbook: Path, inventory: Path, what: str, repeat: int, **kw: Any) -> dict[str, Any]:
    """``repeat`` re-converges (each asserted changed=0): the median time, every run, mean CPU split."""
    runs = [timed_converge(playbook, inventory, f"{what} (run {i + 1})", expect_no_change=True, **kw)
            for i in range(repeat)]
    out: dict[str, Any] = {"reconverge_s": round(statistics.median(r.seconds for r in runs), 2),
                           "runs": [r.seconds for r in runs]}
    out.update({k: round(statistics.mean(getattr(r, k) for r in runs), 3) for k in CPU_KEYS})
    return out


@dataclass
class SweepPlan:
    forks: list[str]
    pipelining: list[bool]
    repeat: int
    variants: bool
    full: bool  # forks x pipelining on the copy without serial too (else: its forks at the best pipelining)


def max_batch(batches: Sequence[tuple[str, int, int]], plays: Sequence[Mapping[str, Any]]) -> int:
    """The most hosts any play runs at once (its ``serial`` batch size): forks beyond it change nothing."""
    return max((batch_size(play.get("serial"), count) for play, (_, count, _) in zip(plays, batches, strict=True)),
               default=1)


def fork_groups(forks: Sequence[int], biggest_batch: int) -> list[tuple[int, list[int]]]:
    """Group fork counts by what Ansible actually runs in parallel: ``min(forks, biggest batch)``."""
    groups: dict[int, list[int]] = {}
    for f in sorted(set(forks)):
        groups.setdefault(min(f, biggest_batch), []).append(f)
    return sorted(groups.items())


def host_kind(runtime: Any, host: str) -> str:
    """How the lab runs a host (namespace, nspawn, vm), where the runtime says so."""
    kind = getattr(runtime, "kind", None)
    return kind(host) if callable(kind) else "namespace"


def measure_size(n: int, sweep: SweepPlan | None, say: Callable[[str], None], kind: str = "stack",
                 wait_foreign: float = FOREIGN_WAIT_S) -> dict[str, Any]:
    """Bring up an n-host lab (holding the lab lock), converge, re-converge, sweep; always tear down."""
    from llmcluster.inventory import build_inventory
    from llmcluster.lab import LabRuntime
    from llmcluster.plan.build import build_plan
    from llmcluster.validate import load_stack_file

    overrides = overrides_for(n, kind)
    plan = build_plan(load_stack_file(STACK, overrides))
    if len(plan.ip.hosts) != n:
        raise BenchError(f"overrides for {n} hosts gave {len(plan.ip.hosts)}: {overrides}")
    plays = yaml.safe_load(PLAYBOOK.read_text())
    groups, all_hosts = inventory_groups(build_inventory(plan.in_lab()))
    batches = play_batches(plays, groups, all_hosts)
    row: dict[str, Any] = {"hosts": n, "overrides": overrides,
                           "batches": sum(b for _, _, b in batches),
                           "plays": [{"hosts": p, "count": c, "batches": b} for p, c, b in batches]}
    with tempfile.TemporaryDirectory(prefix="llmcluster-bench-") as tmp, lab_lock(say, wait_foreign) as waited:
        row["lock_wait_s"] = round(waited, 1)
        runtime = LabRuntime(plan, Path(tmp) / "state")
        row["kinds"] = dict(sorted(Counter(host_kind(runtime, h.name) for h in plan.ip.hosts).items()))
        try:
            say(f"{n} hosts: lab up")
            row["up_s"] = round(runtime.up().seconds, 2)
            inventory = runtime.write_inventory(Path(tmp) / "inventory.yml")
            netns = lab_netns_inodes(runtime)
            clock = TaskClock()
            say(f"{n} hosts: converge")
            first = timed_converge(PLAYBOOK, inventory, f"converge ({n} hosts)", clock=clock, netns=netns)
            row.update(converge_s=first.seconds, converge_slowest_tasks=clock.top(),
                       converge_cpu={k: getattr(first, k) for k in CPU_KEYS})
            clock = TaskClock()
            say(f"{n} hosts: re-converge")
            again = timed_converge(PLAYBOOK, inventory, f"re-converge ({n} hosts)", expect_no_change=True,
                                   clock=clock, netns=netns)
            row.update(reconverge_s=again.seconds, reconverge_slowest_tasks=clock.top(),
                       reconverge_cpu={k: getattr(again, k) for k in CPU_KEYS}, tasks_per_host=again.tasks_per_host)
            if sweep is not None:
                row["sweep"], row["variants"] = run_sweep(n, inventory, plays, batches, sweep, again, Path(tmp), say,
                                                          netns)
        finally:
            say(f"{n} hosts: lab down")
            runtime.down(purge=True)
    return row


SITE = "site.yml"
NOSERIAL = "site.yml without serial (copy)"


def run_sweep(n: int, inventory: Path, plays: list[dict[str, Any]], batches: Sequence[tuple[str, int, int]],
              sweep: SweepPlan, baseline: Run, tmp: Path, say: Callable[[str], None],
              netns: frozenset[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """forks x pipelining on site.yml, forks on a copy without ``serial``; then the variants."""
    current = current_settings()
    noserial = tmp / "site-noserial.yml"
    noserial.write_text(yaml.safe_dump(playbook_variant(plays, drop_serial=True), sort_keys=False))
    forks = parse_forks(",".join(sweep.forks), n)
    rows: list[dict[str, Any]] = []

    def measure(name: str, playbook: Path, biggest: int, pipelinings: Sequence[bool]) -> None:
        for effective, group in fork_groups(forks, biggest):
            chosen = current["forks"] if current["forks"] in group else group[-1]
            for pipelining in pipelinings:
                label = setting_label(chosen, pipelining)
                if (name == SITE and chosen == current["forks"] and pipelining == current["pipelining"]
                        and sweep.repeat == 1):  # the size run's re-converge had exactly these settings
                    m = {"reconverge_s": baseline.seconds, "runs": [baseline.seconds],
                         **{k: getattr(baseline, k) for k in CPU_KEYS}}
                    reused = True
                else:
                    say(f"{n} hosts: re-converge {name}, {label}")
                    m = median_reconverge(playbook, inventory, f"re-converge ({n} hosts, {name}, {label})",
                                          sweep.repeat, forks=chosen, pipelining=pipelining, netns=netns)
                    reused = False
                rows.append({"playbook": name, "forks": group, "effective_forks": effective, "run_forks": chosen,
                             "pipelining": pipelining, **m, "reused": reused})

    measure(SITE, PLAYBOOK, max_batch(batches, plays), sweep.pipelining)
    site = best_setting(rows, SITE)
    measure(NOSERIAL, noserial, max(c for _, c, _ in batches),
            sweep.pipelining if sweep.full or site is None else [site["pipelining"]])
    variants: list[dict[str, Any]] = []
    free_best = best_setting(rows, NOSERIAL)
    if not sweep.variants or site is None or free_best is None:
        return rows, variants
    free = tmp / "site-noserial-free.yml"
    free.write_text(yaml.safe_dump(playbook_variant(plays, drop_serial=True, strategy="free"), sort_keys=False))
    observed = [
        (f"{SITE}, SSH without ControlMaster/ControlPersist", PLAYBOOK, "-o ControlMaster=no", site),
        (f"{NOSERIAL}, strategy: free (Ansible's)", free, None, free_best),
    ]
    strategy = current.get("strategy", "linear")
    if strategy != "linear":  # what ansible.cfg's strategy buys over Ansible's own linear one
        linear = tmp / "site-linear.yml"
        linear.write_text(yaml.safe_dump(playbook_variant(plays, strategy="linear"), sort_keys=False))
        observed.insert(0, (f"{SITE} (a copy) with Ansible's linear strategy, not ansible.cfg's {strategy}",
                            linear, None, site))
    for name, playbook, ssh_args, best in observed:
        label = setting_label(best["run_forks"], best["pipelining"])
        say(f"{n} hosts: re-converge {name}, {label}")
        m = median_reconverge(playbook, inventory, f"re-converge ({n} hosts, {name})", sweep.repeat,
                              forks=best["run_forks"], pipelining=best["pipelining"], ssh_args=ssh_args,
                              netns=netns)
        variants.append({"variant": name, "forks": best["run_forks"], "pipelining": best["pipelining"], **m,
                         "vs": best["playbook"], "vs_best": round(m["reconverge_s"] / best["reconverge_s"], 3)})
    return rows, variants


# --------------------------------------------------------------------------- report


#: A run whose "others" used more than this share of all cores competed for them.
CONTENDED = 0.15


def conclusions(rows: Sequence[Mapping[str, Any]], sweep: Sequence[Mapping[str, Any]],
                variants: Sequence[Mapping[str, Any]], current: Mapping[str, Any]) -> list[str]:
    out = []
    if len(rows) > 1:
        small, big = rows[0], rows[-1]
        for key, what in (("converge_s", "converge"), ("reconverge_s", "re-converge")):
            out.append(f"{what}: {big[key] / small[key]:.1f}x the time for {big['hosts'] / small['hosts']:.0f}x the "
                       f"hosts ({small['hosts']} -> {big['hosts']}) and {big['batches'] / small['batches']:.1f}x "
                       "the serial batches")
    with_cpu = [r for r in rows if r.get("converge_cpu") and r.get("reconverge_cpu")]
    if len(with_cpu) > 1:
        small, big = with_cpu[0], with_cpu[-1]

        def work(r: Mapping[str, Any], key: str) -> float:
            return (r[key]["controller_cpu_s"] + r[key]["hosts_cpu_s"]) / r["hosts"]

        out.append(f"work per host (CPU s of the controller and the lab hosts, whatever else runs): converge "
                   f"{work(small, 'converge_cpu'):.1f} -> {work(big, 'converge_cpu'):.1f}, re-converge "
                   f"{work(small, 'reconverge_cpu'):.1f} -> {work(big, 'reconverge_cpu'):.1f} "
                   f"({small['hosts']} -> {big['hosts']} hosts)")
    cores = os.cpu_count() or 1
    contended = [f"{r['hosts']} hosts {what} ({r[key]['others_cpu_s']:.0f} CPU s)"
                 for r in rows for key, what, wall in (("converge_cpu", "converge", "converge_s"),
                                                      ("reconverge_cpu", "re-converge", "reconverge_s"))
                 if r.get(key) and r[key]["others_cpu_s"] > CONTENDED * r[wall] * cores]
    if contended:
        out.append(f"competed with other work on this machine (others' CPU > {CONTENDED:.0%} of the cores): "
                   f"{', '.join(contended)}: those wall times (and ratios built on them) overstate")
    site, free = best_setting(sweep, SITE), best_setting(sweep, NOSERIAL)
    if site is not None:
        cur = next((r for r in sweep if r["playbook"] == SITE and current["forks"] in r["forks"]
                    and r["pipelining"] == current["pipelining"]), None)
        line = (f"site.yml as shipped: fastest with {setting_label(site['run_forks'], site['pipelining'])} "
                f"({site['reconverge_s']:.1f}s); serial lets at most {site['effective_forks']} host(s) run at once, "
                f"so any forks >= {site['effective_forks']} is the same setting")
        if cur is not None and cur is not site:
            line += (f"; ansible.cfg's {setting_label(current['forks'], current['pipelining'])} took "
                     f"{cur['reconverge_s']:.1f}s ({cur['reconverge_s'] / site['reconverge_s']:.2f}x)")
        elif cur is site:
            line += "; that is ansible.cfg's setting"
        out.append(line)
        off = [r for r in sweep if r["playbook"] == SITE and not r["pipelining"]]
        on = [r for r in sweep if r["playbook"] == SITE and r["pipelining"]]
        if off and on:
            ratio = min(r["reconverge_s"] for r in off) / min(r["reconverge_s"] for r in on)
            out.append(f"pipelining off costs {ratio:.2f}x the re-converge time of pipelining on")
    if free is not None:
        label = setting_label(free["run_forks"], free["pipelining"])
        line = f"without serial (a copy of site.yml): fastest with {label} ({free['reconverge_s']:.1f}s)"
        if site is not None:
            speedup = site["reconverge_s"] / free["reconverge_s"]
            line += (f", {speedup:.2f}x faster than site.yml's serial batches" if speedup >= 1.05 else
                     f", no faster than site.yml's serial batches ({speedup:.2f}x): more hosts at once do not "
                     "shorten a run whose cores are already busy")
        out.append(line)
    for v in variants:
        out.append(f"{v['variant']}: {v['reconverge_s']:.1f}s, {v['vs_best']:.2f}x the best {v['vs']} run")
    return out


def _console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def print_report(rows: Sequence[Mapping[str, Any]], current: Mapping[str, Any]) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title="converge wall time vs. lab size (ansible.cfg: "
                  f"{setting_label(current['forks'], current['pipelining'])})")
    for i, col in enumerate(SIZE_COLUMNS):
        table.add_column(col, justify="right", style="bold" if i in (3, 7) else None)
    for r in size_table_rows(rows):
        table.add_row(*r)
    console.print(table)
    for r in rows:
        if "sweep" in r:
            t = Table(title=f"re-converge of {r['hosts']} hosts: forks x pipelining (median)")
            for col in SWEEP_COLUMNS:
                t.add_column(col, justify="right")
            for s in sweep_table_rows(r["sweep"]):
                t.add_row(*s)
            console.print(t)
            if r.get("variants"):
                v = Table(title="observations: one thing varied, at that playbook's best setting")
                for col in VARIANT_COLUMNS:
                    v.add_column(col, justify="right")
                for var in variant_table_rows(r["variants"]):
                    v.add_row(*var)
                console.print(v)
    for r in rows:
        slow = ", ".join(f"{t} {s:.1f}s" for t, s in r["converge_slowest_tasks"][:3])
        console.print(f"{r['hosts']} hosts ({_kinds(r)}), slowest converge tasks: {slow}")


def _kinds(row: Mapping[str, Any]) -> str:
    return ", ".join(f"{n} {k}" for k, n in (row.get("kinds") or {}).items()) or "kinds not recorded"


def markdown_report(doc: Mapping[str, Any]) -> str:
    rows = doc["rows"]
    lines = [
        "# Converge scaling (bench/converge_scaling.py)",
        "",
        f"Measured {doc['date']} on {doc['machine']}; ansible-core {doc['ansible']}; "
        f"ansible.cfg: {setting_label(doc['current']['forks'], doc['current']['pipelining'])}, "
        f"ssh_args `{doc['current']['ssh_args']}`. Total benchmark time {doc['total_s']:.0f}s "
        f"({doc.get('lock_wait_s', 0):.0f}s of it waiting for the lab lock).",
        "",
        "## Converge and re-converge vs. lab size",
        "",
        markdown_table(SIZE_COLUMNS, size_table_rows(rows)),
        "",
        "Overrides per size (and how the lab ran the hosts): "
        + "; ".join(f"{r['hosts']}: `{' '.join(r['overrides'])}` ({_kinds(r)})" for r in rows) + ".",
    ]
    for r in rows:
        if "sweep" in r:
            lines += ["", f"## Settings sweep: re-converge of {r['hosts']} hosts", "",
                      markdown_table(SWEEP_COLUMNS, sweep_table_rows(r["sweep"]))]
            if r.get("variants"):
                lines += ["", "Observations (one thing varied, at that playbook's best setting; site.yml and "
                          "ansible.cfg unchanged):", "",
                          markdown_table(VARIANT_COLUMNS, variant_table_rows(r["variants"]))]
    lines += ["", "## Slowest tasks (wall s, summed over batches)", ""]
    for r in rows:
        lines.append(f"- {r['hosts']} hosts, converge: "
                     + ", ".join(f"{t} {s:.1f}" for t, s in r["converge_slowest_tasks"]))
        lines.append(f"- {r['hosts']} hosts, re-converge: "
                     + ", ".join(f"{t} {s:.1f}" for t, s in r["reconverge_slowest_tasks"]))
    lines += ["", "## Conclusions", ""] + [f"- {c}" for c in doc["conclusions"]]
    return "\n".join(lines) + "\n"


def report(doc: Mapping[str, Any], markdown: str | None = None) -> None:
    """Print the tables and conclusions; write the markdown report too where asked."""
    print_report(doc["rows"], doc["current"])
    for line in doc["conclusions"]:
        print(line)
    print(f"total benchmark time {doc['total_s']:.0f}s "
          f"({doc.get('lock_wait_s', 0):.0f}s of it waiting for the lab lock)")
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown).write_text(markdown_report(doc))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=parse_sizes, default=None, help="lab sizes (hosts), default 2,4,8,16")
    ap.add_argument("--forks", default=None, help="forks to sweep, N = hosts (default 5,20,N)")
    ap.add_argument("--pipelining", type=parse_pipelining, default=None, help="default on,off")
    ap.add_argument("--kind", choices=KINDS, default="stack",
                    help="how the lab runs the hosts (default: as the lab stack says)")
    ap.add_argument("--wait-foreign", type=float, default=FOREIGN_WAIT_S,
                    help="seconds to wait for another lab's objects to go away (never touched) before giving up")
    ap.add_argument("--sweep-size", type=int, default=None, help="size to sweep at (default the largest)")
    ap.add_argument("--no-sweep", action="store_true", help="sizes only")
    ap.add_argument("--full-sweep", action="store_true",
                    help="forks x pipelining on the copy without serial too (default: its forks, best pipelining)")
    ap.add_argument("--no-variants", action="store_true",
                    help="skip the ControlPersist, linear-strategy and strategy: free observations")
    ap.add_argument("--repeat", type=int, default=1, help="re-converges per sweep setting (the median is reported)")
    ap.add_argument("--quick", action="store_true", help="smoke run: sizes 2,4, forks 1,20, no variants")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--markdown", help="also write a markdown report to this file")
    ap.add_argument("--render", metavar="JSON", help="measure nothing: report the results of an earlier --json")
    args = ap.parse_args(argv)

    if args.render:
        doc = json.loads(Path(args.render).read_text())
        rows = add_ratios(doc["rows"])
        doc["conclusions"] = conclusions(rows, next((r["sweep"] for r in rows if "sweep" in r), []),
                                         next((r["variants"] for r in rows if "variants" in r), []), doc["current"])
        report(doc, args.markdown)
        return 0

    if os.geteuid() != 0:
        print("converge_scaling: the lab needs root", file=sys.stderr)
        return 2
    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    sweep_size = args.sweep_size or sizes[-1]
    if sweep_size not in sizes:
        ap.error(f"--sweep-size {sweep_size} is not one of --sizes {sizes}")
    sweep = None if args.no_sweep else SweepPlan(
        forks=(args.forks or ("1,20" if args.quick else "5,20,N")).split(","),
        pipelining=args.pipelining or [True, False],
        repeat=max(1, args.repeat),
        variants=not (args.no_variants or args.quick),
        full=args.full_sweep,
    )
    for n in sizes:
        overrides_for(n, args.kind)
    current = current_settings()
    started = time.monotonic()

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through every finally: the lab is taken down

    signal.signal(signal.SIGTERM, terminate)

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    from ansible.release import __version__ as ansible_version

    def document(rows: list[dict[str, Any]]) -> dict[str, Any]:
        rows = add_ratios([dict(r) for r in rows])
        sweep_rows = next((r["sweep"] for r in rows if "sweep" in r), [])
        variant_rows = next((r["variants"] for r in rows if "variants" in r), [])
        return {
            "date": dt.date.today().isoformat(),
            "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}",
            "ansible": ansible_version,
            "current": current,
            "rows": rows,
            "best": {SITE: best_setting(sweep_rows, SITE), NOSERIAL: best_setting(sweep_rows, NOSERIAL)},
            "conclusions": conclusions(rows, sweep_rows, variant_rows, current),
            "lock_wait_s": round(sum(r.get("lock_wait_s", 0.0) for r in rows), 1),
            "total_s": round(time.monotonic() - started, 1),
        }

    rows: list[dict[str, Any]] = []
    try:
        for n in sizes:
            rows.append(measure_size(n, sweep if n == sweep_size else None, say, args.kind, args.wait_foreign))
            if args.json:  # after every size: a partial result survives a later failure
                Path(args.json).write_text(json.dumps({**document(rows), "partial": True}, indent=2) + "\n")
    except BenchError as exc:
        print(f"converge_scaling: {exc}", file=sys.stderr)
        return 1
    doc = document(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    report(doc, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
