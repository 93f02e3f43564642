"""``llmcluster`` command line: thin — parse, call the library, print, exit meaningfully.

Exit codes: 0 success; 2 invalid input (spec, override, infeasible sizing, unknown stack
or host, a refused ``model`` input; ``plan``: a resource violates a security invariant, one
``<stack>: <urn>: <rule id>: <message>`` line each); 3 ``lab status``: a host is not healthy; 4 converge failed;
5 verification found a failing check (``model verify``/``model stage``: the tree does not match
its manifest); 6 ``model stage``: the source did not deliver a file of the manifest (missing,
corrupt, unreachable); ``diff``: 0 no change,
1 changes (docs/ci.md); 70 internal error (a bug: run with ``LLMCLUSTER_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from llmcluster.errors import InfeasibleError, LLMClusterError, PlanError, Problem, SpecError

EXIT_OK, EXIT_INVALID, EXIT_INTERNAL = 0, 2, 70
#: Bounds of the numeric options that are not sizing inputs (those: llmcluster.plan.capacity):
#: a preflight check waits at most as long as a bare-metal SSH timeout may be (baremetal.timeout_s).
MAX_TIMEOUT_S = 600.0
MAX_FORKS = 256
REPLACE_HELP = ("write into DIR although it holds files llmcluster did not write: they are kept, never "
                "overwritten; only files of a previous llmcluster output there are replaced")


# --------------------------------------------------------------------------- output helpers


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _fail(lines: Sequence[str]) -> int:
    for line in lines:
        sys.stderr.write(f"{line}\n")
    return EXIT_INVALID


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)  # pragma: no cover


# --------------------------------------------------------------------------- stack lookup


#: Pulumi's stack names: letters, digits, '-', '_' and '.', at most 100 characters.
STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def _path_option(option: str, value: str) -> Path:
    """A path given on the command line, its text checked (no NUL, names and length within limits)."""
    from llmcluster.outdir import check_path_text

    check_path_text(value, where=option)
    return Path(value)


def _stat_option(option: str, path: Path) -> os.stat_result | None:
    """``os.stat`` of an option's path: None when it does not exist, a clean error for anything else."""
    from llmcluster.outdir import os_reason

    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise SpecError(Problem(option, f"{path}: a symbolic link to nothing")) from None
        return None
    except OSError as exc:
        raise SpecError(Problem(option, f"{path}: {os_reason(exc)}")) from None


def _folder_option(option: str, value: str, *, must_exist: bool = True) -> Path:
    """A folder given on the command line: a folder, or (``must_exist=False``) nothing yet."""
    path = _path_option(option, value)
    st = _stat_option(option, path)
    if st is None:
        if must_exist:
            raise SpecError(Problem(option, f"{path}: no such folder"))
        return path
    if not stat.S_ISDIR(st.st_mode):
        raise SpecError(Problem(option, f"{path}: not a folder"))
    return path


def _file_option(option: str, value: str, what: str = "file", *, folder_ok: bool = False) -> Path:
    """An existing file given on the command line (``folder_ok``: or a folder, as Ansible inventories)."""
    path = _path_option(option, value)
    st = _stat_option(option, path)
    if st is None:
        raise SpecError(Problem(option, f"{path}: no such {what}"))
    if not (stat.S_ISREG(st.st_mode) or (folder_ok and stat.S_ISDIR(st.st_mode))):
        raise SpecError(Problem(option, f"{path}: not a {what}" + (" (a file or a folder)" if folder_ok else "")))
    return path


def stacks_dir(arg: str | None) -> Path:
    if arg is not None:
        return _folder_option("--stacks-dir", arg)
    env = os.environ.get("LLMCLUSTER_STACKS_DIR")
    if env:
        return _folder_option("LLMCLUSTER_STACKS_DIR", env)
    try:
        here = Path.cwd()
    except OSError as exc:
        raise SpecError(Problem("--stacks-dir", f"the current folder is gone ({exc.strerror}): cd somewhere or "
                                                "give --stacks-dir")) from None
    for d in (here, *here.parents):
        if (d / "Pulumi.yaml").is_file() and (d / "stacks").is_dir():
            return d / "stacks"
    return here / "stacks"


def stack_file(stack: str, directory: Path) -> Path:
    if not STACK_NAME.match(stack):
        raise SpecError(Problem("--stack", f"{stack[:100]!r} is not a stack name: letters, digits, '-', '_' and "
                                           "'.', at most 100 characters"))
    for ext in ("yaml", "yml"):
        p = directory / f"Pulumi.{stack}.{ext}"
        if _stat_option("--stack", p) is not None and p.is_file():
            return p
    try:
        known = sorted(p.name.split(".")[1] for p in directory.glob("Pulumi.*.y*ml"))
    except OSError:
        known = []
    from llmcluster.spec.loader import did_you_mean

    raise SpecError(Problem("--stack", f"no stack '{stack}' in {directory}{did_you_mean(stack, known)} "
                                       f"(known: {', '.join(known) or 'none'})"))


def _load(args) -> Any:
    from llmcluster.validate import load_stack_file

    path = stack_file(args.stack, stacks_dir(args.stacks_dir))
    return load_stack_file(path, getattr(args, "set", None) or [])


# --------------------------------------------------------------------------- validate


def _finding(problem: Problem, rule: str | None) -> dict[str, Any]:
    return {"rule": rule, "path": problem.path, "message": problem.message}


def cmd_validate(args) -> int:
    from llmcluster.validate import load_stack_file

    if args.list_rules:
        return _list_rules(args)
    for p in args.paths:
        _path_option(p or "''", p)
    paths = [Path(p) for p in args.paths] or sorted(stacks_dir(args.stacks_dir).glob("Pulumi.*.y*ml"))
    if not paths:
        return _fail([f"{stacks_dir(args.stacks_dir)}: no stack files (Pulumi.<stack>.yaml) found"])
    errors: list[str] = []
    rows: list[dict[str, Any]] = []
    for p in paths:
        try:
            spec = load_stack_file(p, args.set or [])
        except SpecError as exc:
            errors.extend(exc.lines())
            rows.append({"file": str(p), "valid": False, "problems": [str(x) for x in exc.problems],
                         "findings": [_finding(x, exc.rules.get(x)) for x in exc.problems]})
            continue
        findings = []
        if args.preflight:
            from llmcluster.validate.preflight import preflight_findings

            findings = preflight_findings(spec, timeout=args.timeout)
            errors.extend(f"{p}: {x.problem}" for x in findings)
        rows.append({"file": str(p), "stack": spec.stack, "valid": not findings, "platform": spec.platform,
                     "nodes": sum(pool.count for pool in spec.pools.values()), "model": spec.serving.model,
                     "problems": [str(x.problem) for x in findings],
                     "findings": [_finding(x.problem, x.rule) for x in findings]})
    if args.json:
        _print_json({"valid": not errors, "stacks": rows})
    else:
        from rich.table import Table

        table = Table(title="llmcluster validate")
        for col in ("stack file", "platform", "nodes", "model", "result"):
            table.add_column(col)
        for r in rows:
            table.add_row(Path(r["file"]).name, r.get("platform", "-"), str(r.get("nodes", "-")), r.get("model", "-"),
                          "[green]valid[/]" if r["valid"] else f"[red]{len(r['problems'])} problem(s)[/]")
        _console().print(table)
    if errors:
        return _fail(errors)
    return EXIT_OK


def _list_rules(args) -> int:
    from llmcluster.validate import rules

    registry = rules()
    if args.json:
        _print_json([{"rule": r.id, "layer": r.layer, "domain": r.domain, "summary": r.summary,
                      "requires": list(r.requires), "unless": list(r.unless)} for r in registry])
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f"llmcluster validation rules ({len(registry)}, in run order)")
    for col in ("rule", "layer", "checks"):
        table.add_column(col)
    for r in registry:
        table.add_row(r.id, r.layer, r.summary)
    _console().print(table)
    return EXIT_OK


# --------------------------------------------------------------------------- size


def cmd_size(args) -> int:
    from llmcluster.plan.capacity import size_deployment

    plan = size_deployment(model=args.model, gpu=args.gpu, precision=args.precision, context=args.context,
                           concurrency=args.concurrency, gpus_per_node=args.gpus_per_node, kv_dtype=args.kv_dtype)
    d = plan.to_dict()
    from llmcluster.plan.engine import engine_config  # the trtllm-serve options (NVIDIA's recipes + workload)

    d["engine"] = engine_config(plan).to_dict()
    if args.json:
        _print_json(d)
        return EXIT_OK
    from rich.table import Table

    t = Table(title=f"{d['model']} on {d['gpu']} ({d['precision']})", show_header=False)
    t.add_column("key")
    t.add_column("value")
    for key, val in (
        ("deployment", f"{d['gpus']} GPUs on {d['nodes']} node(s) | tp={d['tp']} pp={d['pp']} ep={d['ep']}"
                       f"{' | attention DP' if d['attention_dp'] else ''}"),
        ("engine configuration", f"from recipe {d['engine']['recipe']}" if d["engine"]["recipe"]
         else "from rules (no published recipe)"),
        ("weights", _human_bytes(d["weights_bytes"])),
        ("KV cache / token", f"{d['kv_bytes_per_token']:,} B ({d['kv_dtype']})"),
        ("backend", d["backend"]),
        ("max_batch_size / max_num_tokens", f"{d['engine']['options']['max_batch_size']}"
         f"{' per rank' if d['attention_dp'] else ''} / {d['engine']['options']['max_num_tokens']}"),
        ("kv_cache_free_gpu_memory_fraction", str(d["kv_cache_free_gpu_memory_fraction"])),
        ("decode bound (aggregate)", f"{d['decode_tokens_per_s_bound']} tokens/s"),
        ("decode bound (per user)", f"{d.get('decode_tokens_per_s_per_user_bound', '-')} tokens/s"),
    ):
        t.add_row(key, val)
    c = _console()
    c.print(t)
    for w in d.get("warnings", []):
        c.print(f"[yellow]note:[/] {w}")
    return EXIT_OK


# --------------------------------------------------------------------------- plan


def cmd_plan(args) -> int:
    from llmcluster.offline import evaluate

    if args.out is not None:
        from llmcluster.outdir import inspect
        from llmcluster.render.artifacts import legacy_files

        inspect(args.out, "plan", replace=args.replace, legacy=legacy_files)  # refuse before any work
    spec = _load(args)
    ev = evaluate(spec)
    from llmcluster.policy import check_evaluation

    violations = check_evaluation(ev)  # the security invariants (docs/policy.md): refuse before writing anything
    if violations:
        return _fail([f"{spec.stack}: {v.resource}: {v.rule}: {v.text}" for v in violations])
    doc = ev.document()
    if args.out is not None:
        from llmcluster.render.artifacts import write_artifacts

        written = write_artifacts(ev, Path(args.out), replace=args.replace)
        if not args.json:
            _console().print(f"wrote {len(written)} artifact(s) to {args.out}")
    if args.json:
        _print_json(doc)
        return EXIT_OK
    from rich.table import Table

    c = _console()
    counts = Table(title=f"stack {spec.stack}: {len(ev.resources)} resources")
    counts.add_column("type")
    counts.add_column("count", justify="right")
    for typ, n in ev.by_type().items():
        counts.add_row(typ, str(n))
    c.print(counts)
    vl = Table(title=f"address plan ({ev.plan.ip.supernet})")
    for col in ("vlan", "id", "cidr", "gateway", "mtu", "used/capacity"):
        vl.add_column(col)
    for role, v in ev.plan.ip.vlans.items():
        vl.add_row(role, str(v.id), v.cidr, v.gateway, str(v.mtu), f"{v.used}/{v.capacity}")
    c.print(vl)
    cap = ev.plan.capacity
    c.print(f"capacity: {spec.serving.model} {cap.precision} -> {cap.gpus} GPUs ({cap.nodes} node(s)), "
            f"tp={cap.tp} pp={cap.pp} ep={cap.ep}, backend {cap.backend}, x{spec.serving.replicas} replica(s)")
    raid = ev.plan.storage.raid
    if raid is not None:
        c.print(_raid_table(raid))
    if ev.plan.aws is not None:
        a = ev.plan.aws
        c.print(f"aws: {a.region} zones {', '.join(a.zones)}; {len(a.subnets)} subnets, "
                f"{len(a.security_groups)} security groups, {len(a.rules)} rules, {len(a.instances)} instances, "
                f"entry {'internal NLB' if a.entry else 'none'}, EKS {'on' if a.eks else 'off'}")
        for w in a.warnings:
            c.print(f"[yellow]warning:[/] {w}")
    return EXIT_OK


def _raid_table(raid):
    """The model cache per node (plan.storage.raid): geometry, the read bound, the model load time
    it gives and the space the model needs there (upper bounds: llmcluster/plan/storage.py)."""
    from rich.table import Table

    def gb(n: int | None) -> str:
        return "-" if n is None else f"{n / 10**9:,.0f} GB"

    t = Table(title=f"model cache: local NVMe RAID of pool {raid.pool} (per node; read and load time are upper "
                    "bounds of sequential reads)")
    for col in ("node", "raid", "usable", "needed", "read", "load time"):
        t.add_column(col, justify="left" if col in ("node", "raid") else "right")
    level = f"RAID {raid.level}, {raid.drives} x {gb(raid.drive_bytes)}" + (", LUKS" if raid.encrypt else "")
    needed = gb(raid.required_bytes) + ("" if raid.fits is not False else " (does not fit)")
    load = "-" if raid.load_time_s is None else f"{raid.load_time_s:.1f} s"
    for h in raid.hosts:
        t.add_row(h.host, level, gb(raid.usable_bytes), needed, f"{raid.read_gbps:g} GB/s", load)
    return t


# --------------------------------------------------------------------------- inventory


def cmd_inventory(args) -> int:
    from llmcluster.inventory import build_inventory, host_vars
    from llmcluster.plan.build import build_plan
    from llmcluster.spec.loader import did_you_mean

    if args.host is not None and (len(args.host) > 253 or "\0" in args.host):
        raise SpecError(Problem("--host", f"{args.host[:40]!r}...: not a host name (at most 253 characters)"))
    plan = build_plan(_load(args))
    if args.host is not None:
        names = [h.name for h in plan.ip.hosts]
        if args.host not in names:
            raise SpecError(Problem("--host", f"no host '{args.host}' in stack {plan.spec.stack}"
                                              f"{did_you_mean(args.host, names)}"))
        _print_json(host_vars(plan, args.host))
    else:
        _print_json(build_inventory(plan))
    return EXIT_OK


# --------------------------------------------------------------------------- converge


def cmd_converge(args) -> int:
    from rich.live import Live
    from rich.table import Table

    from llmcluster.converge import ANSIBLE_DIR, Lane, RoleTimes, merge_role_times, recap_rows, run_lanes, site_lanes

    if not args.stack and args.inventory is None:
        raise SpecError(Problem("--stack", "give --stack S (dynamic inventory) or --inventory FILE"))
    if args.playbook is not None:
        playbook = _file_option("--playbook", args.playbook, "playbook")
    else:
        playbook = ANSIBLE_DIR / "site.yml"
        if not playbook.is_file():
            raise SpecError(Problem("--playbook", f"{playbook}: no such playbook"))
    if args.inventory is not None:
        inventory = _file_option("--inventory", args.inventory, "inventory", folder_ok=True)
        env = {}
    else:
        spec = _load(args)  # unknown stack or invalid spec: a clean error before touching any host
        if args.playbook is None and not args.limit and not getattr(args, "sequential", False):
            from llmcluster.plan.build import build_plan

            args.host_roles = {h.name: h.role for h in build_plan(spec).ip.hosts}  # the lanes' hosts
        inventory = ANSIBLE_DIR / "inventory" / "llmcluster.py"
        env = {"LLMCLUSTER_STACK": args.stack, "LLMCLUSTER_STACKS_DIR": str(stacks_dir(args.stacks_dir))}

    def table(hosts) -> Table:
        t = Table(title=f"converge {args.stack or inventory}" + (" (check)" if args.check else ""))
        for col in ("host", "task", "ok", "changed", "failed", "unreachable"):
            t.add_column(col)
        for h in sorted(hosts.values(), key=lambda x: x.host):
            t.add_row(h.host, h.task[:60], str(h.ok), str(h.changed), str(h.failed), str(h.unreachable))
        return t

    console = _console()
    run = dict(check=args.check, diff=args.diff, tags=args.tags or (), limit=args.limit, forks=args.forks, envvars=env)
    # Lanes (llmcluster.converge.site_lanes): site.yml on a known plan's hosts, with no --limit, runs the
    # storage and GPU plays and the other plays at the same time; --sequential keeps site.yml's one run.
    host_roles = getattr(args, "host_roles", None)
    if args.playbook is None and not args.limit and not getattr(args, "sequential", False) and host_roles:
        lanes = site_lanes(host_roles)
    else:
        lanes = [Lane("site", ())]
    times: dict[Lane, RoleTimes] = {lane: RoleTimes() for lane in lanes}  # wall time per role and lane
    if len(lanes) > 1:
        console.print(f"converge: {len(lanes)} lanes at once: "
                      + "; ".join(f"{lane.name} ({len(lane.hosts)} hosts)" for lane in lanes)
                      + " (--sequential: site.yml as one run)", markup=False, highlight=False, soft_wrap=True)
    if console.is_terminal:  # the live per-host table
        with Live(table({}), console=console, refresh_per_second=4, transient=True) as live:
            result = run_lanes(playbook, inventory, lanes, **run, on_progress=lambda hosts: live.update(table(hosts)),
                               on_event_for=lambda lane: times[lane])
    else:  # a log (CI): a line per play and host milestone, with the elapsed time
        import time

        from llmcluster.converge import PlainProgress

        def line(text: str) -> None:
            console.print(text, markup=False, highlight=False, soft_wrap=True)
            console.file.flush()

        started = time.monotonic()

        def on_event_for(lane: Lane):
            plain = PlainProgress(line, prefix=f"[{lane.name}] " if len(lanes) > 1 else "", start=started)
            roles_of_lane = times[lane]

            def on_event(event) -> None:
                plain(event)
                roles_of_lane(event)

            return on_event

        result = run_lanes(playbook, inventory, lanes, **run, on_event_for=on_event_for)
    for t in times.values():
        t.finish()
    roles = merge_role_times(list(times.values()))
    recap = Table(title="recap")
    for col in ("host", "ok", "changed", "failed", "unreachable", "skipped"):
        recap.add_column(col)
    for row in recap_rows(result):
        recap.add_row(*(str(x) for x in row))
    console.print(recap)
    if roles.per_play:
        console.print(roles.slowest_line(), markup=False, highlight=False, soft_wrap=True)
    roles_out = getattr(args, "roles_out", None)  # lab converge: the state dir's converge-roles.json
    if roles_out is not None:
        from llmcluster.lab.phases import save_role_times

        save_role_times(roles_out, roles.to_dict(), ok=result.ok, check=bool(args.check), tags=list(args.tags or ()))
    for h in result.failed_hosts:
        hp = result.hosts.get(h)
        sys.stderr.write(f"{h}: {hp.last_error if hp else 'failed'}\n")
    if not result.ok:
        sys.stderr.write(f"converge failed (ansible-playbook rc={result.rc})\n")
        return 4
    return EXIT_OK


# --------------------------------------------------------------------------- verify


def _verify(stack: str, inventory: Path, args, planned_hosts, save_to: Path | None = None) -> int:
    """Run the suite; print the summary and the failures (``--all``: every row; ``--json``: the
    document); ``save_to``: also write the JSON document there (the lab keeps its last report)."""
    from llmcluster.verify.output import print_report
    from llmcluster.verify.run import EXIT_FAILED, check_inventory, report_document, run_verify, save_report

    check_inventory(inventory, planned_hosts)
    with _console(stderr=True).status(f"verifying {stack} ({inventory})"):
        report = run_verify(stack, inventory, stacks_dir=stacks_dir(args.stacks_dir), keyword=args.k)
    if save_to is not None:
        save_report(report, save_to)
    if args.json:
        _print_json(report_document(report))
    else:
        print_report(_console(), report, show_all=args.all)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_verify(args) -> int:
    from llmcluster.converge import ANSIBLE_DIR

    from llmcluster.plan.ipam import build_ip_plan

    spec = _load(args)  # unknown stack or invalid spec: a clean error before touching any host
    if args.inventory is not None:
        inventory = _file_option("--inventory", args.inventory, "file", folder_ok=True)
    else:
        inventory = ANSIBLE_DIR / "inventory" / "llmcluster.py"
        os.environ["LLMCLUSTER_STACK"] = args.stack
        os.environ["LLMCLUSTER_STACKS_DIR"] = str(stacks_dir(args.stacks_dir))
    return _verify(args.stack, inventory, args, [h.name for h in build_ip_plan(spec).hosts])


# --------------------------------------------------------------------------- lab

#: ``lab up``'s timings (llmcluster.lab.runtime.LabRuntime.up) as parts of make lab's ``lab up`` phase.
UP_PHASES = (("image_s", "base image"), ("network_s", "network and host disks"), ("start_s", "host start"))


def _record_up_phases(timings: dict[str, float]) -> None:
    """Under make lab (``$LLMCLUSTER_PHASES``): ``lab up``'s split into the phase table."""
    from llmcluster.lab.phases import PART, append_phases, phases_file

    path = phases_file()
    if path is None:
        return
    rows = [(f"lab up{PART}{name}", float(timings[key])) for key, name in UP_PHASES if key in timings]
    problem = append_phases(path, rows)
    if problem is not None:
        sys.stderr.write(f"lab up: phase table: {problem}\n")


def cmd_lab(args) -> int:
    from llmcluster.lab import LabRuntime, default_state_dir, lab_down, rich_progress

    if args.state_dir is not None:
        state_dir = _folder_option("--state-dir", args.state_dir, must_exist=False)
    else:
        state_dir = default_state_dir()
    if args.action == "down":
        with rich_progress("lab down") as progress:
            removed = lab_down(state_dir, progress, purge=args.purge)
        _console().print(f"lab down: removed {len(removed)} object(s)")
        return EXIT_OK
    from llmcluster.plan.build import build_plan

    plan = build_plan(_load(args))
    if args.action == "summary":  # reads the plan and the state dir's files: no root needed
        from llmcluster.lab.summary import print_summary

        from llmcluster.lab.phases import PHASES_ENV, phases_file

        artifacts = _path_option("--artifacts", args.artifacts) if args.artifacts is not None else None
        if args.phases is not None:
            phases = _file_option("--phases", args.phases, "phases file")
        else:  # make lab names it in the environment; a file that is not there: no phase table
            phases = phases_file()
            if phases is not None and phases.exists() and not phases.is_file():
                raise SpecError(Problem(PHASES_ENV, f"{phases}: not a file"))
        print_summary(_console(), plan, state_dir.expanduser().resolve(), artifacts=artifacts,
                      state_dir_option=args.state_dir is not None, phases=phases)
        return EXIT_OK
    if args.action in ("up", "converge"):  # a bad LLMCLUSTER_LAB_MODEL stops here, before anything starts
        from llmcluster.lab.llama_engine import enabled as lab_model_enabled

        lab_model_enabled()
    lab = LabRuntime(plan, state_dir)
    if args.action == "up":
        with rich_progress("lab up") as progress:
            report = lab.up(progress)
        inv = lab.write_inventory(state_dir / "inventory.yml")
        _console().print(f"lab up: {len(plan.ip.hosts)} host(s) in {report.seconds:.1f}s; inventory {inv}")
        _record_up_phases(report.timings)
        return EXIT_OK
    if args.action in ("converge", "verify"):
        inventory = state_dir / "inventory.yml"
        if not inventory.is_file() or not all(r.ok for r in lab.status()):
            raise LLMClusterError(f"the lab in {state_dir} is not up (or not healthy): run 'llmcluster lab up' first")
        if args.action == "verify":
            from llmcluster.verify.run import LAB_REPORT

            return _verify(plan.spec.stack, inventory, args, [h.name for h in plan.ip.hosts],
                           save_to=state_dir / LAB_REPORT)
        from llmcluster.lab.phases import CONVERGE_ROLES

        args.inventory, args.playbook, args.limit, args.forks = str(inventory), None, None, None
        args.host_roles = {h.name: h.role for h in plan.ip.hosts}  # the lanes' hosts
        args.stack = args.stack or "lab"
        args.roles_out = state_dir / CONVERGE_ROLES
        return cmd_converge(args)
    rows = lab.status()
    if args.json:
        _print_json([{"host": r.name, "kind": r.kind, "mgmt_ip": r.mgmt_ip, "netns": r.netns, "sshd": r.sshd,
                      "ssh": r.ssh, "ok": r.ok} for r in rows])
    else:
        from rich.table import Table

        t = Table(title=f"lab {plan.spec.stack} ({state_dir})")
        for col in ("host", "kind", "mgmt", "netns", "init", "ssh"):  # init: sshd, or systemd (nspawn)
            t.add_column(col)
        for r in rows:
            t.add_row(r.name, r.kind, r.mgmt_ip,
                      *("[green]yes[/]" if x else "[red]no[/]" for x in (r.netns, r.sshd, r.ssh)))
        _console().print(t)
    return EXIT_OK if all(r.ok for r in rows) else 3


# --------------------------------------------------------------------------- pki


def cmd_pki(args) -> int:
    """``pki export``: certificates and private keys for the mtls role (llmcluster.pki_export)."""
    from llmcluster import pki_export as X
    from llmcluster.outdir import inspect
    from llmcluster.plan.build import build_plan

    inspect(args.out, "pki", replace=args.replace, legacy=X.legacy_files)  # refuse before any work
    spec = _load(args)
    if args.offline:
        plan, material = X.from_offline(spec)
    else:
        plan, material = build_plan(spec), X.from_pulumi(spec.stack)
    notes: list[str] = []
    written = X.export(plan, material, Path(args.out), lab_tests=args.offline, replace=args.replace, notes=notes)
    note = " (offline: a NEW lab-only hierarchy, never for a real cluster)" if args.offline else ""
    err = _console(stderr=True)
    for line in notes:
        err.print(f"note: {line}", markup=False)
    err.print(f"wrote {len(written)} file(s) to {args.out} (keys 0600){note}; "
              f"converge with llmcluster_pki_dir={args.out}", markup=False)
    return EXIT_OK


def _pki_dir(args) -> Path:
    if args.stack is not None and not STACK_NAME.match(args.stack):
        raise SpecError(Problem("--stack", f"{args.stack[:100]!r} is not a stack name: letters, digits, '-', '_' "
                                           "and '.', at most 100 characters"))
    return _folder_option("--pki-dir", args.pki_dir)


def _push_hint(d) -> str:
    from llmcluster.pki_crl import PUSH_TAGS

    converge = (f"llmcluster lab converge --stack {d.stack}" if d.source == "offline"
                else f"llmcluster converge --stack {d.stack}")
    return (f"next: push the CRL to every host (the mtls role installs it, the gateway reloads): "
            f"{converge} --tags {PUSH_TAGS} (or ansible-playbook site.yml --tags {PUSH_TAGS}) "
            f"with llmcluster_pki_dir={d.shown}")


def _until(t) -> str:
    return f"{t:%Y-%m-%d %H:%M}Z"


def cmd_pki_revoke(args) -> int:
    """``pki revoke``: add certificates to the export's revoked.json and re-sign its crl.pem."""
    from llmcluster import pki_crl as C

    folder = _pki_dir(args)
    with C.locked(folder, args.pki_dir):
        d = C.open_export(folder, args.pki_dir)
        targets = C.resolve(d, args.name or [], args.serial or [], args.cert or [])
        outcome = C.revoke(d, targets, args.reason, lambda: C.signing_key(d, args.stack))
    for r in outcome.already:
        sys.stdout.write(f"{C.serial_hex(r.serial)} ({r.name or 'unnamed'}) is already revoked ({r.reason}, "
                         f"{r.revoked_at:%Y-%m-%d %H:%M}Z): nothing to do\n")
    for r in outcome.revoked:
        sys.stdout.write(f"revoked {C.serial_hex(r.serial)} ({r.name or 'unnamed'}, {r.reason}): {d.shown}/"
                         f"{C.CRL_FILE} #{outcome.number}, valid until {_until(outcome.next_update)}\n")
    if outcome.revoked:
        sys.stdout.write(_push_hint(d) + "\n")
    return EXIT_OK


def cmd_pki_crl(args) -> int:
    """``pki crl``: re-sign the export's CRL with a new nextUpdate (run it from cron or CI)."""
    from llmcluster import pki_crl as C

    folder = _pki_dir(args)
    with C.locked(folder, args.pki_dir):
        d = C.open_export(folder, args.pki_dir)
        outcome = C.resign(d, C.signing_key(d, args.stack))
    n = len(d.revoked)
    sys.stdout.write(f"signed {d.shown}/{C.CRL_FILE} #{outcome.number} ({n} revoked certificate(s)), valid until "
                     f"{_until(outcome.next_update)}: re-sign it again well before then (an expired CRL refuses "
                     f"every client)\n")
    sys.stdout.write(_push_hint(d) + "\n")
    return EXIT_OK


# --------------------------------------------------------------------------- model


def cmd_model_manifest(args) -> int:
    """``model manifest``: the manifest of a model folder (llmcluster.modelstore)."""
    from llmcluster import modelstore as M

    root = _folder_option("DIR", args.dir)
    out = _path_option("--out", args.out) if args.out is not None else None
    manifest = M.make_manifest(root, out, workers=args.workers, model=args.model, version=args.version,
                               replace=args.replace)
    if out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(manifest.to_json())
    else:
        sys.stderr.write(f"wrote {out}: {len(manifest.files)} files, {manifest.total_bytes} bytes "
                         f"({_human_bytes(manifest.total_bytes)})\n")
    return EXIT_OK


def _model_problems(lines: Sequence[str], code: int) -> int:
    for line in lines:
        sys.stderr.write(f"{line}\n")
    return code


def cmd_model_verify(args) -> int:
    """``model verify``: a model folder against its manifest (the nodes' model-verify check)."""
    from llmcluster import modelstore as M

    manifest_path = _path_option("--manifest", args.manifest)
    manifest = M.load(manifest_path)
    root = _folder_option("DIR", args.dir)
    report = M.verify(root, manifest, manifest_path, workers=args.workers)
    for line in report.lines():
        sys.stderr.write(f"{line}\n")
    if args.json:
        _print_json(report.to_dict())
    elif report.ok:
        sys.stdout.write(report.summary() + "\n")
    return EXIT_OK if report.ok else M.EXIT_MISMATCH


def cmd_model_stage(args) -> int:
    """``model stage``: copy a manifest's files from a folder, an HTTP(S) mirror or S3 into a folder."""
    from llmcluster import modelstore as M

    manifest_path = _path_option("--manifest", args.manifest)
    manifest = M.load(manifest_path)
    dest = _path_option("--to", args.to)
    source = M.open_source(args.source, s3_endpoint_url=args.s3_endpoint_url, timeout=args.timeout,
                           workers=args.workers or 4)

    def progress(rel: str, size: int, seconds: float) -> None:
        if not args.json:
            sys.stderr.write(f"fetched {rel} ({_human_bytes(size)}, {size / 1e6 / max(seconds, 1e-6):.0f} MB/s)\n")

    try:
        report = M.stage(manifest, source, dest, workers=args.workers, replace=args.replace,
                         keep_partial=args.keep_partial, manifest_path=manifest_path, on_file=progress)
    except M.StageError as exc:
        kept = " (kept: the files fetched and verified before it)" if args.keep_partial else \
            " (removed: every file this run had written)"
        return _model_problems([*exc.lines(), f"stage from {source.shown} failed{kept}"], M.EXIT_FETCH)
    except M.Mismatch as exc:
        return _model_problems([*exc.report.lines(), f"{dest}: the staged tree does not match the manifest"],
                               M.EXIT_MISMATCH)
    if args.json:
        _print_json(report.to_dict())
        return EXIT_OK
    d = report.to_dict()
    sys.stdout.write(f"staged {d['fetched']} file(s), {_human_bytes(report.bytes_fetched)} from {report.source} "
                     f"in {report.fetch_seconds:.2f} s ({d['fetch_mbps']} MB/s); {d['present']} already present"
                     + (f", {len(report.replaced)} replaced" if report.replaced else "") + "\n")
    sys.stdout.write(report.verify.summary() + "\n")
    return EXIT_OK


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``<option>: <message> (see '<prog> --help')``, exit 2."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument "):
            option, _, rest = message.removeprefix("argument ").partition(": ")
            line = f"{option.split('/')[0]}: {rest}"
        else:
            line = f"{self.prog}: {message}"
        self.exit(EXIT_INVALID, f"{line} (see '{self.prog} --help')\n")


def _bounded(kind: type, lo: float, hi: float, unit: str = "", *, low_open: bool = False):
    """An argparse type: a ``kind`` number within [lo, hi] (``low_open``: above lo), checked at parsing."""

    def parse(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a{'n integer' if kind is int else ' number'}") \
                from None
        low = f"> {lo:g}" if low_open else f">= {lo:g}"
        if (isinstance(value, float) and not math.isfinite(value)) or value > hi or value < lo \
                or (low_open and value == lo):
            raise argparse.ArgumentTypeError(f"{text[:40]} is out of range: {low} and <= {hi:g}{unit}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def cmd_rollback(args) -> int:
    """Point the stack's Kubernetes serving layer at an earlier pin (llmcluster.rollback)."""
    from llmcluster.rollback import rollback

    r = rollback(stack_file(args.stack, stacks_dir(args.stacks_dir)), args.to)
    if args.json:
        _print_json({"stack": args.stack, "file": str(r.path), "active": {"from": r.before, "to": r.after},
                     "pin": r.pin})
    else:
        _console().print(f"{args.stack}: kubernetes.active {r.before} -> {r.after}: {r.pin['model']} "
                         f"{r.pin['revision']} manifest {r.pin['manifest_sha256'][:12]} image "
                         f"{r.pin['image'].rsplit('@', 1)[-1][:19]} (run pulumi up to apply)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from llmcluster.plan import capacity as C

    p = _Parser(prog="llmcluster", description="Private DeepSeek serving clusters as code.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def stack_args(sp, with_set: bool = True):
        sp.add_argument("--stack", "-s", required=True, help="stack name (stacks/Pulumi.<stack>.yaml)")
        sp.add_argument("--stacks-dir", help="folder of stack files (default: ./stacks of the project)")
        if with_set:
            sp.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                            help="override a spec value, validated like the file (repeatable)")

    v = sub.add_parser("validate", help="validate stack files (all of stacks/ by default)")
    v.add_argument("paths", nargs="*", help="stack files (default: stacks/Pulumi.*.yaml)")
    v.add_argument("--stacks-dir")
    v.add_argument("--set", action="append", metavar="KEY.PATH=VALUE")
    v.add_argument("--preflight", action="store_true", help="also check the environment (hosts, AWS offerings)")
    v.add_argument("--timeout", type=_bounded(float, 0, MAX_TIMEOUT_S, " s", low_open=True), default=3.0,
                   help=f"preflight timeout per check (seconds, at most {MAX_TIMEOUT_S})")
    v.add_argument("--json", action="store_true")
    v.add_argument("--list-rules", action="store_true", help="print the validation rules (id, layer, what each checks)")
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser("size", help="minimum feasible deployment for a model on a GPU")
    s.add_argument("--model", required=True)
    s.add_argument("--gpu", required=True)
    s.add_argument("--precision")
    s.add_argument("--context", type=_bounded(int, C.MIN_CONTEXT, C.MAX_CONTEXT, " tokens"),
                   help=f"tokens per request ({C.MIN_CONTEXT}..{C.MAX_CONTEXT}; default: min(32768, the model's))")
    s.add_argument("--concurrency", type=_bounded(int, C.MIN_CONCURRENCY, C.MAX_CONCURRENCY), default=16,
                   help=f"concurrent requests ({C.MIN_CONCURRENCY}..{C.MAX_CONCURRENCY})")
    s.add_argument("--gpus-per-node", type=_bounded(int, C.MIN_GPUS_PER_NODE, C.MAX_GPUS_PER_NODE),
                   help=f"GPUs per node ({C.MIN_GPUS_PER_NODE}..{C.MAX_GPUS_PER_NODE}; "
                        "default: the GPU's usual server)")
    s.add_argument("--kv-dtype", choices=("bf16", "fp8"))
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_size)

    pl = sub.add_parser("plan", help="offline plan: run the Pulumi program under mocks")
    stack_args(pl)
    pl.add_argument("--json", action="store_true", help="print the plan document")
    pl.add_argument("--out", metavar="DIR", help="write rendered artifacts to DIR (new, empty, or a previous "
                                                 "plan --out)")
    pl.add_argument("--replace", action="store_true", help=REPLACE_HELP)
    pl.set_defaults(func=cmd_plan)

    rb = sub.add_parser("rollback", help="render an earlier pin (model, manifest, image) of the Kubernetes serving "
                                         "layer: rewrites kubernetes.active in the stack file")
    stack_args(rb, with_set=False)
    rb.add_argument("--to", type=_bounded(int, 0, 63), metavar="N",
                    help="the pin to render (0: the newest; default: one older than the active pin)")
    rb.add_argument("--json", action="store_true")
    rb.set_defaults(func=cmd_rollback)

    inv = sub.add_parser("inventory", help="Ansible dynamic inventory (--list / --host)")
    stack_args(inv)
    g = inv.add_mutually_exclusive_group(required=True)
    g.add_argument("--list", action="store_true")
    g.add_argument("--host")
    inv.set_defaults(func=cmd_inventory)
    cv = sub.add_parser("converge", help="run the Ansible playbook against a stack's hosts")
    cv.add_argument("--stack", "-s", help="stack name (uses the dynamic inventory)")
    cv.add_argument("--stacks-dir")
    cv.add_argument("--inventory", "-i", help="an inventory file instead of the stack's dynamic inventory")
    cv.add_argument("--playbook", help="playbook (default: ansible/site.yml)")
    cv.add_argument("--check", action="store_true", help="dry run (ansible --check)")
    cv.add_argument("--diff", action="store_true")
    cv.add_argument("--tags", action="append", help="only these tags (repeatable)")
    cv.add_argument("--limit")
    cv.add_argument("--forks", type=_bounded(int, 1, MAX_FORKS), help=f"parallel hosts (1..{MAX_FORKS})")
    cv.add_argument("--sequential", action="store_true",
                    help="site.yml as one run, play after play (default with --stack: the storage and GPU plays "
                         "and the other plays run at the same time)")
    cv.set_defaults(func=cmd_converge, set=None)

    vf = sub.add_parser("verify", help="verify provisioned hosts against the plan (the verification suite)")
    vf.add_argument("--stack", "-s", required=True, help="stack whose plan is the expectation")
    vf.add_argument("--stacks-dir")
    vf.add_argument("--inventory", "-i", help="inventory to verify (default: the stack's dynamic inventory)")
    vf.add_argument("-k", metavar="EXPR", help="only checks matching this pytest -k expression")
    vf.add_argument("--all", action="store_true", help="every check's row, not only the failures")
    vf.add_argument("--failures-only", action="store_true", help="the failures only (the default: kept for scripts)")
    vf.add_argument("--json", action="store_true")
    vf.set_defaults(func=cmd_verify, set=None)

    pk = sub.add_parser("pki", help="the cluster PKI: export it for the mtls role, revoke certificates, re-sign "
                                    "the CRL")
    pks = pk.add_subparsers(dest="action", required=True)
    ex = pks.add_parser("export", help="export the PKI (certificates, private keys, CRL) for the mtls role")
    stack_args(ex)
    ex.add_argument("--out", required=True, metavar="DIR",
                    help="folder to write (0700; keys 0600): new, empty, or a previous export (whose "
                         "revocations are kept while the intermediate CA is the same)")
    ex.add_argument("--replace", action="store_true", help=REPLACE_HELP)
    ex.add_argument("--offline", action="store_true",
                    help="LAB ONLY: issue a fresh hierarchy with the offline evaluation instead of reading "
                         "`pulumi stack output --show-secrets`")
    ex.set_defaults(func=cmd_pki)

    def key_args(sp):
        sp.add_argument("--pki-dir", required=True, metavar="DIR", help="the folder `llmcluster pki export` wrote")
        sp.add_argument("--stack", "-s", help="Pulumi-sourced export: the stack whose secret output holds the "
                                              "intermediate CA key (read in memory only); not for a lab export, "
                                              "signed with its lab-tests/intermediate-ca.key")

    from llmcluster.pki_crl import DEFAULT_REASON, REASONS

    rv = pks.add_parser("revoke", help="revoke certificates: add them to revoked.json and re-sign crl.pem")
    key_args(rv)
    which = rv.add_mutually_exclusive_group(required=True)
    which.add_argument("--name", action="append", metavar="LEAF", help="a certificate of the export "
                                                                      "(certs/LEAF.pem; repeatable)")
    which.add_argument("--serial", action="append", metavar="HEX", help="a serial (hex, as `openssl x509 -serial` "
                                                                       "prints it; repeatable)")
    which.add_argument("--cert", action="append", metavar="FILE", help="a certificate file issued by the export's "
                                                                      "intermediate (e.g. found on a compromised "
                                                                      "machine; repeatable)")
    rv.add_argument("--reason", choices=REASONS, default=DEFAULT_REASON, help=f"CRL reason (default {DEFAULT_REASON})")
    rv.set_defaults(func=cmd_pki_revoke)
    cr = pks.add_parser("crl", help="re-sign crl.pem with a new nextUpdate (run it from cron/CI well before the "
                                    "old one: an expired CRL refuses every client)")
    key_args(cr)
    cr.set_defaults(func=cmd_pki_crl)

    from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.model_manifest import (
        MAX_WORKERS,
    )

    workers = _bounded(int, 1, MAX_WORKERS)
    workers_help = f"files hashed or fetched at once (1..{MAX_WORKERS}; default: min(16, CPUs))"
    md = sub.add_parser("model", help="model weights: manifests, verification, stage-in from a mirror")
    mds = md.add_subparsers(dest="action", required=True)
    mm = mds.add_parser("manifest", help="the manifest of a model folder (sizes, sha256, safetensors layout)")
    mm.add_argument("dir", metavar="DIR")
    mm.add_argument("--out", metavar="FILE", help="write it to FILE (atomically) instead of stdout")
    mm.add_argument("--replace", "--force", action="store_true", help="replace an existing --out FILE")
    mm.add_argument("--model", help="model name (default: DIR's name)")
    mm.add_argument("--version", help="model version (revision, tag)")
    mm.add_argument("--workers", type=workers, help=workers_help)
    mm.set_defaults(func=cmd_model_manifest)
    mv = mds.add_parser("verify", help="verify a model folder against its manifest (exit 5 on a mismatch)")
    mv.add_argument("dir", metavar="DIR")
    mv.add_argument("--manifest", required=True, metavar="FILE")
    mv.add_argument("--workers", type=workers, help=workers_help)
    mv.add_argument("--json", action="store_true")
    mv.set_defaults(func=cmd_model_verify)
    ms = mds.add_parser("stage", help="stage a model's files into a folder from a folder, an http(s):// mirror "
                                      "or s3://bucket/prefix, verified")
    ms.add_argument("--manifest", required=True, metavar="FILE")
    ms.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                    help="a folder, an http(s):// mirror base URL, or s3://bucket/prefix")
    ms.add_argument("--to", required=True, metavar="DIR", help="the model folder to fill (created if missing)")
    ms.add_argument("--workers", type=workers, help=workers_help)
    ms.add_argument("--replace", action="store_true",
                    help="replace a file of the manifest that exists in DIR with other bytes (never anything else)")
    ms.add_argument("--keep-partial", action="store_true",
                    help="on a failure keep the files fetched and verified so far (a re-run fetches the rest)")
    ms.add_argument("--s3-endpoint-url", metavar="URL", help="S3 endpoint (default: AWS_ENDPOINT_URL, else AWS)")
    ms.add_argument("--timeout", type=_bounded(float, 0, MAX_TIMEOUT_S, " s", low_open=True), default=60.0,
                    help=f"network timeout per request (seconds, at most {MAX_TIMEOUT_S})")
    ms.add_argument("--json", action="store_true")
    ms.set_defaults(func=cmd_model_stage)

    # llmcluster bench serve (llmcluster.bench_serve): the load-test harness
    from llmcluster import bench_serve

    bench_serve.add_parser(sub, _bounded, _load)

    # llmcluster chat (llmcluster.chat): one streamed chat completion through the gateway
    from llmcluster import chat

    def _cmd_chat(a):
        from llmcluster.lab.runtime import default_state_dir

        return chat.cmd_chat(a, load=_load, default_state_dir=default_state_dir)

    chat.add_parser(sub, _bounded, stack_args)
    sub.choices["chat"].set_defaults(func=_cmd_chat)

    lab = sub.add_parser("lab", help="the local lab: real isolated Linux hosts (needs root)")
    lab.add_argument("action", choices=("up", "converge", "verify", "down", "status", "summary"))
    lab.add_argument("--stack", "-s", default="lab")
    lab.add_argument("--stacks-dir")
    lab.add_argument("--state-dir", help="where the lab keeps its state (default: ~/.local/state/llmcluster/lab)")
    lab.add_argument("--purge", action="store_true", help="with down: also delete host disks and the lab key")
    lab.add_argument("--json", action="store_true")
    lab.add_argument("--artifacts", metavar="DIR", help="with summary: where `llmcluster plan --out` wrote the "
                                                        "lab's rendered artifacts (make lab: out/lab)")
    lab.add_argument("--phases", metavar="FILE", help="with summary: make lab's phase table (default: "
                                                      "$LLMCLUSTER_PHASES; make lab: out/lab-phases.tsv)")
    lab.add_argument("--check", action="store_true", help="with converge: dry run")
    lab.add_argument("--diff", action="store_true", help="with converge: show diffs")
    lab.add_argument("--tags", action="append", help="with converge: only these tags (repeatable)")
    lab.add_argument("--sequential", action="store_true", help="with converge: site.yml as one run, play after "
                                                               "play (default: two lanes at the same time)")
    lab.add_argument("-k", metavar="EXPR", help="with verify: only checks matching this pytest -k expression")
    lab.add_argument("--all", action="store_true", help="with verify: every check's row, not only the failures")
    lab.add_argument("--failures-only", action="store_true", help="with verify: the failures only (the default)")
    lab.set_defaults(func=cmd_lab, set=None)

    # monitoring: the central audit store (docs/observability.md)
    from llmcluster.monitoring import audit_cli

    audit_cli.add_parser(sub).set_defaults(func=lambda a: audit_cli.cmd_audit(
        a, console=_console, load=_load, print_json=_print_json))

    from llmcluster.diff.cli import Context
    from llmcluster.diff.cli import register as register_diff  # diff, pr-comment, diagram

    register_diff(sub, Context(load=_load, stacks_dir=stacks_dir, stack_name=STACK_NAME, file_option=_file_option,
                               console=_console))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse usage errors exit 2 already; keep its code
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except SpecError as exc:
        return _fail(exc.lines())
    except (InfeasibleError, PlanError) as exc:
        return _fail([f"error: {exc}"])
    except LLMClusterError as exc:  # a keyed error is already ``key.path: what is wrong``
        return _fail([str(exc) if getattr(exc, "keyed", False) else f"error: {exc}"])
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # pragma: no cover - a bug, not a user mistake
        if os.environ.get("LLMCLUSTER_DEBUG"):
            raise
        sys.stderr.write(f"internal error: {exc.__class__.__name__}: {exc}\n"
                         "this is a bug in llmcluster; rerun with LLMCLUSTER_DEBUG=1 for details\n")
        return EXIT_INTERNAL


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entrypoint()
