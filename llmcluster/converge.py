"""The converge driver: run an Ansible playbook through ansible-runner and report per host.

Used by ``llmcluster converge --stack S`` (and by the lab). It streams runner events into
per-host progress (current task, ok/changed/failed counters), supports ``--check``,
``--diff``, tags and limits, and returns the recap that tests assert on (a second converge
must report ``changed=0`` everywhere).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = ROOT / "ansible"
STAT_KEYS = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")


@dataclass
class HostProgress:
    host: str
    task: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    last_error: str = ""


@dataclass
class ConvergeResult:
    rc: int
    status: str
    stats: dict[str, dict[str, int]]  # host -> ok/changed/failures/dark/skipped/...
    hosts: dict[str, HostProgress] = field(default_factory=dict)
    changed_tasks: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failed_hosts

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, s in self.stats.items() if s.get("failures") or s.get("dark"))

    def changed(self, host: str | None = None) -> int:
        if host is not None:
            return self.stats.get(host, {}).get("changed", 0)
        return sum(s.get("changed", 0) for s in self.stats.values())


def _collect_stats(raw: Mapping[str, Any] | None) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key in STAT_KEYS:
        for host, n in ((raw or {}).get(key) or {}).items():
            out.setdefault(host, {k: 0 for k in STAT_KEYS})[key] = int(n)
    return out


def run_playbook(
    playbook: str | Path,
    inventory: str | Path,
    *,
    check: bool = False,
    diff: bool = False,
    tags: Sequence[str] = (),
    skip_tags: Sequence[str] = (),
    limit: str | None = None,
    forks: int | None = None,
    extravars: Mapping[str, Any] | None = None,
    envvars: Mapping[str, str] | None = None,
    on_progress: Callable[[dict[str, HostProgress]], None] | None = None,
    quiet: bool = True,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> ConvergeResult:
    """Run ``playbook`` against ``inventory`` (a file or a dynamic inventory script); ``on_event``
    sees every ansible-runner event (``llmcluster diff --layer hosts`` summarises their diffs)."""
    import ansible_runner

    playbook = Path(playbook).resolve()
    hosts: dict[str, HostProgress] = {}
    changed_tasks: dict[str, list[str]] = {}

    def handler(event: dict[str, Any]) -> bool:
        if on_event is not None:
            on_event(event)
        data = event.get("event_data") or {}
        host = data.get("host")
        kind = event.get("event", "")
        if host:
            hp = hosts.setdefault(host, HostProgress(host))
            if kind == "runner_on_start":
                hp.task = data.get("task", "")
            elif kind == "runner_on_ok":
                hp.ok += 1
                if (data.get("res") or {}).get("changed"):
                    hp.changed += 1
                    changed_tasks.setdefault(host, []).append(data.get("task", ""))
            elif kind == "runner_on_failed" and not data.get("ignore_errors"):
                hp.failed += 1
                hp.last_error = str((data.get("res") or {}).get("msg", ""))[:300]
            elif kind == "runner_on_unreachable":
                hp.unreachable += 1
                hp.last_error = str((data.get("res") or {}).get("msg", ""))[:300]
            elif kind == "runner_on_skipped":
                hp.skipped += 1
            if on_progress is not None:
                on_progress(hosts)
        return True

    cmdline: list[str] = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    if tags:
        cmdline += ["--tags", ",".join(tags)]
    if skip_tags:
        cmdline += ["--skip-tags", ",".join(skip_tags)]
    if not (ANSIBLE_DIR / "ansible.cfg").is_file() or not (ROOT / "roles").is_dir():
        from llmcluster.errors import LLMClusterError

        # An installed package has no playbook or roles: they live in the project checkout.
        raise LLMClusterError(f"no playbook and roles beside this llmcluster ({ROOT}): converge runs from the "
                              "project checkout (ansible/ and roles/); install it with 'pip install -e <checkout>'")
    env = {"ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env.update(envvars or {})
    # Prefer the ansible-playbook installed beside this interpreter (the project's venv).
    local = Path(sys.executable).parent / "ansible-playbook"
    binary = str(local) if local.exists() else shutil.which("ansible-playbook")
    if binary is None:
        from llmcluster.errors import LLMClusterError

        raise LLMClusterError("ansible-playbook is not installed: run 'make setup' (pip install -e .)")
    env.setdefault("PATH", f"{Path(binary).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    private = Path(tempfile.mkdtemp(prefix="llmcluster-runner-"))
    # ansible-runner installs its own SIGINT/SIGTERM handlers and leaves them behind: restore ours.
    main = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        r = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(playbook.parent),
            playbook=str(playbook),
            inventory=str(Path(inventory).resolve()),
            extravars=dict(extravars or {}),
            envvars=env,
            cmdline=" ".join(cmdline) or None,
            limit=limit,
            forks=forks,
            event_handler=handler,
            quiet=quiet,
            json_mode=False,
        )
        stats = _collect_stats(r.stats)
        return ConvergeResult(rc=int(r.rc), status=str(r.status), stats=stats, hosts=hosts,
                              changed_tasks=changed_tasks)
    finally:
        for sig, handler_before in saved.items():
            if handler_before is not None:
                signal.signal(sig, handler_before)
        if not os.environ.get("LLMCLUSTER_KEEP_RUNNER_DIR"):
            shutil.rmtree(private, ignore_errors=True)


# --------------------------------------------------------------------------- lanes


#: The roles whose plays (site.yml: storage, then the GPU nodes) form the first lane of a converge; the
#: plays of every other role (gateways, monitor hosts, the rest) form the second. The GPU nodes need the
#: Ceph cluster that the storage play builds (its client keys, the model store's objects), so the two
#: stay in one lane, in site.yml's order. Nothing on a gateway or a monitor host needs either at converge
#: time: HAProxy health-checks its backends when it runs, Prometheus scrapes whatever answers, and both
#: roles check only their own host. So the two lanes run at the same time, each one ansible-playbook of
#: site.yml limited to its hosts, each play keeping its ``serial`` and ``any_errors_fatal``.
FIRST_LANE_ROLES = ("storage", "gpu")


@dataclass(frozen=True)
class Lane:
    name: str  # its roles, for the progress lines: "storage, gpu"
    hosts: tuple[str, ...]  # its --limit; empty: no limit (the only lane)


def site_lanes(host_roles: Mapping[str, str]) -> list[Lane]:
    """The lanes of site.yml for hosts ``name -> role`` (a host has one role): two when both have hosts,
    else one lane without a limit (site.yml as one run)."""
    first = tuple(sorted(h for h, r in host_roles.items() if r in FIRST_LANE_ROLES))
    rest = tuple(sorted(h for h, r in host_roles.items() if r not in FIRST_LANE_ROLES))
    if not first or not rest:
        return [Lane("site", ())]

    def name(hosts: tuple[str, ...]) -> str:
        order = {r: i for i, r in enumerate(FIRST_LANE_ROLES)}  # site.yml's order, then by name
        return ", ".join(sorted({host_roles[h] for h in hosts}, key=lambda r: (order.get(r, len(order)), r)))

    return [Lane(name(first), first), Lane(name(rest), rest)]


def merge_results(results: Sequence[ConvergeResult]) -> ConvergeResult:
    """One result for runs over disjoint hosts: the first non-zero rc, every host's stats and progress."""
    rc = next((r.rc for r in results if r.rc != 0), 0)
    status = next((r.status for r in results if r.rc != 0), results[0].status if results else "successful")
    merged = ConvergeResult(rc=rc, status=status, stats={})
    for r in results:
        merged.stats.update(r.stats)
        merged.hosts.update(r.hosts)
        merged.changed_tasks.update(r.changed_tasks)
    return merged


def run_lanes(
    playbook: str | Path,
    inventory: str | Path,
    lanes: Sequence[Lane],
    *,
    on_progress: Callable[[dict[str, HostProgress]], None] | None = None,
    on_event_for: Callable[[Lane], Callable[[dict[str, Any]], None] | None] | None = None,
    **kwargs: Any,
) -> ConvergeResult:
    """Run ``playbook`` once per lane, all lanes at the same time (a thread each, each its own
    ansible-playbook limited to the lane's hosts); ``on_progress`` sees every lane's hosts together,
    ``on_event_for(lane)`` gives the event callback of a lane. One lane without hosts is one plain run."""
    if len(lanes) == 1:
        lane = lanes[0]
        return run_playbook(playbook, inventory, limit=",".join(lane.hosts) or kwargs.pop("limit", None),
                            on_progress=on_progress, on_event=on_event_for(lane) if on_event_for else None,
                            **kwargs)
    if kwargs.get("limit"):
        raise ValueError("lanes set their own --limit")
    kwargs.pop("limit", None)
    lock = threading.Lock()
    seen: list[dict[str, HostProgress]] = [{} for _ in lanes]
    results: list[ConvergeResult | None] = [None] * len(lanes)
    errors: list[BaseException | None] = [None] * len(lanes)

    def progress_of(i: int) -> Callable[[dict[str, HostProgress]], None] | None:
        if on_progress is None:
            return None

        def update(hosts: dict[str, HostProgress]) -> None:
            with lock:
                seen[i] = hosts
                merged: dict[str, HostProgress] = {}
                for part in seen:
                    merged.update(part)
                on_progress(merged)

        return update

    def work(i: int, lane: Lane) -> None:
        try:
            results[i] = run_playbook(playbook, inventory, limit=",".join(lane.hosts), on_progress=progress_of(i),
                                      on_event=on_event_for(lane) if on_event_for else None, **kwargs)
        except BaseException as e:  # re-raised in the caller's thread
            errors[i] = e

    threads = [threading.Thread(target=work, args=(i, lane), name=f"converge lane {lane.name}", daemon=True)
               for i, lane in enumerate(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)  # short joins: Ctrl-C reaches this thread (the playbooks get it from the terminal)
    for e in errors:
        if e is not None:
            raise e
    return merge_results([r for r in results if r is not None])


class PlainProgress:
    """Converge progress for a log (stdout is no terminal: CI): an ``on_event`` callback that writes
    one line per play (when it starts, its hosts) and per host milestone (a task failed, a host
    unreachable, a host's counts when its play ends), each with the elapsed time.
    ``write``: where lines go (one string each, without the newline)."""

    def __init__(self, write: Callable[[str], None], clock: Callable[[], float] | None = None, *,
                 prefix: str = "", start: float | None = None):
        import time

        self.write = write
        self.clock = clock or time.monotonic
        self.prefix = prefix  # a lane's name, "[storage, gpu] ", when lanes run at once
        self.start = self.clock() if start is None else start
        self.play: str | None = None
        self.play_start = self.start
        self.counts: dict[str, dict[str, int]] = {}
        # In a lane (prefix set), most of site.yml's plays match none of the lane's hosts: a play's line
        # waits for its first host event, so those plays print nothing.
        self.pending: str | None = None

    def _line(self, text: str) -> None:
        self.write(f"[{self.clock() - self.start:7.1f}s] {self.prefix}{text}")

    def _end_play(self) -> None:
        if self.play is None:
            return
        took = self.clock() - self.play_start
        for host, c in sorted(self.counts.items()):
            extra = "".join(f", {k} {c[k]}" for k in ("failed", "unreachable") if c[k])
            self._line(f"  {host}: play {self.play!r} done in {took:.1f}s: ok {c['ok']}, changed {c['changed']}"
                       f"{extra}")
        self.play, self.counts, self.pending = None, {}, None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            self._end_play()
            self.play = str(data.get("play") or data.get("name") or "unnamed")
            self.play_start = self.clock()
            line = f"play {self.play!r} on {data.get('play_pattern') or 'all'}"
            if self.prefix:
                self.pending = line
            else:
                self._line(line)
        elif kind == "playbook_on_stats":
            self._end_play()
            self._line("playbook done")
        elif kind.startswith("runner_on_") and data.get("host"):
            if self.pending is not None:
                self._line(self.pending)
                self.pending = None
            host = str(data["host"])
            c = self.counts.setdefault(host, {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0})
            if kind == "runner_on_ok":
                c["ok"] += 1
                c["changed"] += bool((data.get("res") or {}).get("changed"))
            elif kind == "runner_on_failed" and not data.get("ignore_errors"):
                c["failed"] += 1
                msg = str((data.get("res") or {}).get("msg", ""))[:300]
                self._line(f"  {host}: FAILED {data.get('task', '')!r}: {msg}")
            elif kind == "runner_on_unreachable":
                c["unreachable"] += 1
                msg = str((data.get("res") or {}).get("msg", ""))[:300]
                self._line(f"  {host}: UNREACHABLE: {msg}")


def recap_rows(result: ConvergeResult) -> list[tuple[str, int, int, int, int, int]]:
    """(host, ok, changed, failed, unreachable, skipped) for every host, sorted."""
    return [
        (h, s.get("ok", 0), s.get("changed", 0), s.get("failures", 0), s.get("dark", 0), s.get("skipped", 0))
        for h, s in sorted(result.stats.items())
    ]


#: The name under which tasks of no role (a play's own ``tasks:``, fact gathering) are counted.
PLAY_LEVEL = "(play tasks)"
_TASK_START = ("playbook_on_task_start", "playbook_on_handler_task_start")
_SEGMENT_END = ("playbook_on_play_start", "playbook_on_stats")


class RoleTimes:
    """Wall time per role from ansible-runner events: an ``on_event`` callback.

    A task start (handlers too) opens a segment, the next task start, play start or the playbook's
    stats closes it; a segment counts for the role of its task (``PLAY_LEVEL`` for a task of no role).
    So a role's time in a play runs from its first task start to the next task start of another role,
    and a role's total sums its plays. Times come from the events' ``created`` stamps (ansible-runner's
    own clock), else from ``clock``. ``finish()`` closes a run that ended without its stats (a crash)."""

    def __init__(self, clock: Callable[[], float] | None = None):
        import time

        self.clock = clock or time.time
        self.per_play: dict[tuple[str, str], float] = {}  # (play, role) -> seconds, in order of first start
        self.play = ""
        self._open: tuple[str, str, float] | None = None  # (play, role, started)
        self._last: float | None = None

    def _when(self, event: Mapping[str, Any]) -> float:
        from datetime import UTC, datetime

        created = event.get("created")
        if isinstance(created, str):
            try:
                stamp = datetime.fromisoformat(created)
            except ValueError:
                pass
            else:
                return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
        return self.clock()

    def _close(self, now: float) -> None:
        if self._open is not None:
            play, role, started = self._open
            self.per_play[(play, role)] = self.per_play.get((play, role), 0.0) + max(0.0, now - started)
            self._open = None

    def __call__(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event", "")
        if kind not in _TASK_START and kind not in _SEGMENT_END:
            return
        now = self._when(event)
        self._last = now
        data = event.get("event_data") or {}
        self._close(now)
        if kind == "playbook_on_play_start":
            self.play = str(data.get("play") or data.get("name") or "unnamed")
        elif kind in _TASK_START:
            role = str(data.get("role") or PLAY_LEVEL)
            self.per_play.setdefault((self.play, role), 0.0)
            self._open = (self.play, role, now)

    def finish(self) -> None:
        if self._open is not None and self._last is not None:
            self._close(self._last)

    @property
    def per_role(self) -> dict[str, float]:
        """Seconds per role, summed over plays, the slowest first."""
        out: dict[str, float] = {}
        for (_, role), s in self.per_play.items():
            out[role] = out.get(role, 0.0) + s
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def slowest_line(self, n: int = 5) -> str:
        """``slowest roles: a 41.2 s, b 30.1 s, ... (of 95.3 s)``; empty when no task ran."""
        roles = self.per_role
        if not roles:
            return ""
        total = sum(roles.values())
        top = ", ".join(f"{r} {s:.1f} s" for r, s in list(roles.items())[:n])
        return f"slowest roles: {top} (of {total:.1f} s in tasks)"

    def to_dict(self) -> dict[str, Any]:
        return {"roles": {r: round(s, 1) for r, s in self.per_role.items()},
                "plays": [{"play": p, "role": r, "seconds": round(s, 1)} for (p, r), s in self.per_play.items()]}


def merge_role_times(times: Sequence[RoleTimes]) -> RoleTimes:
    """The role times of lanes that ran at the same time, summed per (play, role): seconds in tasks,
    so their total can exceed the converge's wall time."""
    merged = RoleTimes()
    for t in times:
        for key, seconds in t.per_play.items():
            merged.per_play[key] = merged.per_play.get(key, 0.0) + seconds
    return merged
