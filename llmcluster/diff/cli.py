"""The ``diff``, ``pr-comment`` and ``diagram`` subcommands (registered by :func:`register`).

``llmcluster diff --stack S --base REV [--head REV]``: exit 0 no change, 1 changes, 2 error.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcluster.errors import Problem, SpecError

from llmcluster.diff.files import write_atomic

EXIT_NO_CHANGE, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2
FORMATS = ("rich", "markdown", "json")


def _check_out(option: str, value: str | None, replace: bool) -> Path | None:
    """An output file checked before any work: nothing is evaluated for an output that will be refused."""
    if value is None:
        return None
    from llmcluster.outdir import check_path_text

    check_path_text(value, where=option)
    p = Path(value)
    if os.path.lexists(p) and (not replace or not p.is_file() or p.is_symlink()):
        raise SpecError(Problem(option, f"{p}: exists" + ("" if replace else " (pass --replace to replace it)")))
    if not (p.parent if str(p.parent) else Path(".")).is_dir():
        raise SpecError(Problem(option, f"{p.parent}: no such folder"))
    return p


def _load_plans(paths: list[str]) -> tuple[Any, Any]:
    from llmcluster.diff.core import load_path

    sides = []
    for i, value in enumerate(paths):
        p = Path(value)
        label = value
        if not p.exists():
            raise SpecError(Problem("--plans", f"{value}: no such file or folder"))
        try:
            sides.append(load_path(p, label))
        except FileNotFoundError:
            raise SpecError(Problem("--plans", f"{value}: a folder without plan.json (not a plan --out "
                                               "folder)")) from None
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            what = "JSON" if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise SpecError(Problem("--plans", f"{value}: {'not valid ' + what if what == 'JSON' else what}"
                                    .rstrip())) from None
        del i
    return sides[0], sides[1]


def _infra_report(args) -> dict[str, Any]:
    from llmcluster.diff import revs

    stacks_dir, STACK_NAME = args.ctx.stacks_dir, args.ctx.stack_name
    from llmcluster.diff.core import compare

    if args.plans:
        a, b = _load_plans(args.plans)
        if args.stack and args.stack not in (a.stack, b.stack):
            raise SpecError(Problem("--stack", f"the plans are of stack {b.stack or a.stack}, not {args.stack}"))
        return compare(a, b)
    if not args.stack:
        raise SpecError(Problem("--stack", "give --stack S with --base REV (or two plans: --plans A B)"))
    if not STACK_NAME.match(args.stack):
        raise SpecError(Problem("--stack", f"{args.stack[:100]!r} is not a stack name"))
    if not args.base:
        raise SpecError(Problem("--base", "give the base revision (e.g. --base origin/main) or --plans A B"))
    sdir = stacks_dir(args.stacks_dir).resolve()
    root = revs.repo_root(sdir if sdir.is_dir() else Path.cwd(), "--base")
    try:
        stacks_rel = sdir.relative_to(root)
    except ValueError:
        raise SpecError(Problem("--stacks-dir", f"{sdir}: not inside the repository {root}")) from None
    revs.resolve(root, args.base, "--base")
    if args.head:
        revs.resolve(root, args.head, "--head")
    base = revs.evaluate_rev(root, args.base, stacks_rel, args.stack, "--base")
    head = (revs.evaluate_rev(root, args.head, stacks_rel, args.stack, "--head") if args.head
            else revs.evaluate_tree(root, stacks_rel, args.stack, "working tree", "--head"))
    if not base.exists and not head.exists:
        raise SpecError(Problem("--stack", f"no stack '{args.stack}' at {base.label} or at {head.label}"))
    report = compare(base, head)
    if args.pulumi_preview:
        from llmcluster.diff.preview import apply_preview

        p = Path(args.pulumi_preview)
        try:
            doc = json.loads(sys.stdin.read() if args.pulumi_preview == "-" else p.read_text(encoding="utf-8"))
            report = apply_preview(report, doc)
        except (OSError, ValueError) as exc:
            raise SpecError(Problem("--pulumi-preview", f"{args.pulumi_preview}: {exc}"[:300])) from None
    return report


def _secret_values_from_roles(red, playbook: Path) -> None:
    """Role defaults, role vars and group_vars (the project's and those beside the playbook) whose keys name
    secrets: their values are redacted by value wherever they show up (a template rendering one)."""
    import yaml

    from llmcluster.converge import ANSIBLE_DIR, ROOT

    files = []
    for base in dict.fromkeys((ROOT, ANSIBLE_DIR, playbook.parent, playbook.parent.parent)):
        files += sorted(base.glob("roles/*/defaults/main.yml")) + sorted(base.glob("roles/*/vars/*.yml"))
        files += sorted(base.glob("group_vars/**/*.yml")) + sorted(base.glob("host_vars/**/*.yml"))
    for f in dict.fromkeys(files):
        try:
            red.collect(yaml.safe_load(f.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError):
            continue


def _hosts_report(args) -> tuple[dict[str, Any], bool]:
    from llmcluster.converge import ANSIBLE_DIR, run_playbook
    from llmcluster.diff.hosts import summarise_events
    from llmcluster.diff.redact import Redactor

    if args.base or args.head or args.plans:
        raise SpecError(Problem("--layer", "the hosts layer runs converge --check --diff on the current tree: "
                                           "no --base/--head/--plans"))
    if not args.stack and args.inventory is None:
        raise SpecError(Problem("--stack", "give --stack S (dynamic inventory) or --inventory FILE"))
    ctx = args.ctx
    playbook = (ctx.file_option("--playbook", args.playbook, "playbook") if args.playbook
                else ANSIBLE_DIR / "site.yml")
    red = Redactor()
    _secret_values_from_roles(red, Path(playbook).resolve())
    if args.inventory is not None:
        inventory = ctx.file_option("--inventory", args.inventory, "inventory", folder_ok=True)
        env: dict[str, str] = {}
    else:
        ctx.load(args)  # unknown stack or invalid spec: a clean error before touching any host
        inventory = ANSIBLE_DIR / "inventory" / "llmcluster.py"
        env = {"LLMCLUSTER_STACK": args.stack, "LLMCLUSTER_STACKS_DIR": str(ctx.stacks_dir(args.stacks_dir))}
    events: list[dict[str, Any]] = []
    result = run_playbook(playbook, inventory, check=True, diff=True, tags=args.tags or (), limit=args.limit,
                          envvars=env, on_event=events.append)
    label = f"{args.stack or inventory} --check --diff"
    report = summarise_events(events, label=label, stack=args.stack or str(inventory), redactor=red)
    return report, result.ok


def cmd_diff(args) -> int:
    from llmcluster.diff import render

    save = _check_out("--save", args.save, args.replace)
    md_out = _check_out("--markdown", args.markdown, args.replace)
    ok = True
    if args.layer == "hosts":
        report, ok = _hosts_report(args)
    else:
        report = _infra_report(args)
    if save is not None:
        write_atomic(save, render.to_json(report).encode(), replace=args.replace, option="--save")
    if md_out is not None:
        write_atomic(md_out, render.markdown(report).encode(), replace=args.replace, option="--markdown")
    if args.format == "json":
        sys.stdout.write(render.to_json(report))
    elif args.format == "markdown":
        sys.stdout.write(render.markdown(report) + "\n")
    else:
        render.print_rich(report, args.ctx.console())
    if not ok:
        failed = report["summary"]["hosts"]
        sys.stderr.write(f"hosts: {failed['failed']} host(s) failed, {failed['unreachable']} unreachable: the "
                         "diff is incomplete\n")
        return EXIT_ERROR
    return EXIT_CHANGES if report["summary"]["changed"] else EXIT_NO_CHANGE


def cmd_pr_comment(args) -> int:
    from llmcluster.diff.comment import GitHub, upsert

    reports = []
    for value in args.report:
        try:
            doc = json.loads(Path(value).read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or "summary" not in doc or "layer" not in doc:
                raise ValueError("not a report of 'llmcluster diff --save'")
        except FileNotFoundError:
            raise SpecError(Problem("--report", f"{value}: no such file")) from None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise SpecError(Problem("--report", f"{value}: {exc}"[:300])) from None
        reports.append(doc)
    repo = args.repo or os.environ.get("GITHUB_REPOSITORY", "")
    if not repo or repo.count("/") != 1:
        raise SpecError(Problem("--repo", "give owner/name (or set GITHUB_REPOSITORY)"))
    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise SpecError(Problem("GITHUB_TOKEN", "not set: the comment needs a token with pull-requests: write"))
    api = args.api_url or os.environ.get("GITHUB_API_URL") or "https://api.github.com"
    gh = GitHub(api, token, repo)
    for report in reports:
        action, cid = upsert(gh, args.pr, report, artifact=args.artifact, run_url=args.run_url)
        sys.stdout.write(f"{report.get('stack')} ({report.get('layer')}): {action}"
                         + (f" comment {cid}" if cid else "") + "\n")
    return 0


def cmd_diagram(args) -> int:
    from llmcluster.diagram import FORMATS as DFORMATS
    from llmcluster.diagram import render as draw
    from llmcluster.offline import evaluate

    out = _check_out("-o", args.out, args.replace)
    if out.suffix.lstrip(".").lower() not in DFORMATS:
        raise SpecError(Problem("-o", f"{out}: name a .svg, .png or .dot file"))
    if args.plan:
        from llmcluster.diff.core import load_path

        try:
            doc = load_path(Path(args.plan), args.plan).document
        except (OSError, ValueError) as exc:
            raise SpecError(Problem("--plan", f"{args.plan}: {exc}"[:300])) from None
    else:
        if not args.stack:
            raise SpecError(Problem("--stack", "give --stack S (or --plan FILE)"))
        doc = evaluate(args.ctx.load(args)).document()
    draw(doc, out, replace=args.replace)
    sys.stdout.write(f"wrote {out}\n")
    return 0


@dataclass(frozen=True)
class Context:
    """What these commands use of :mod:`llmcluster.cli` (handed in by its parser: no import cycle)."""

    load: Callable[[Any], Any]            # args -> the validated spec of --stack
    stacks_dir: Callable[[str | None], Path]
    stack_name: Any                       # the compiled pattern of a stack name
    file_option: Callable[..., Path]
    console: Callable[[], Any]


def register(sub, ctx: Context) -> None:
    """Add ``diff``, ``pr-comment`` and ``diagram`` to the top-level subparsers."""
    d = sub.add_parser("diff", help="preview diff of a stack between two revisions (exit 0 none, 1 changes, 2 error)")
    d.add_argument("--stack", "-s", help="stack name (stacks/Pulumi.<stack>.yaml)")
    d.add_argument("--stacks-dir")
    d.add_argument("--base", metavar="REV", help="git revision to compare against (e.g. origin/main)")
    d.add_argument("--head", metavar="REV", help="git revision to compare (default: the working tree)")
    d.add_argument("--plans", nargs=2, metavar=("A", "B"),
                   help="compare two plans instead: plan --json files or plan --out folders")
    d.add_argument("--layer", choices=("infra", "hosts"), default="infra",
                   help="infra: the offline evaluation at both revisions; hosts: converge --check --diff now")
    d.add_argument("--inventory", "-i", help="hosts layer: an inventory instead of the stack's dynamic one")
    d.add_argument("--playbook", help="hosts layer: playbook (default: ansible/site.yml)")
    d.add_argument("--tags", action="append", help="hosts layer: only these tags (repeatable)")
    d.add_argument("--limit", help="hosts layer: only these hosts")
    d.add_argument("--pulumi-preview", metavar="FILE", help="resources from 'pulumi preview --diff --json' output "
                                                           "(FILE or -) instead of the offline forecast")
    d.add_argument("--format", choices=FORMATS, default="rich", help="what to print (default rich)")
    d.add_argument("--save", metavar="FILE", help="also write the JSON report to FILE (for pr-comment)")
    d.add_argument("--markdown", metavar="FILE", help="also write the full markdown report to FILE")
    d.add_argument("--replace", action="store_true", help="replace existing --save/--markdown files")
    d.set_defaults(func=cmd_diff, set=None, ctx=ctx)

    c = sub.add_parser("pr-comment", help="create or update the sticky pull-request comment of diff reports "
                                          "(GITHUB_TOKEN from the environment)")
    c.add_argument("--report", action="append", required=True, metavar="FILE", help="a diff --save report "
                                                                                     "(repeatable)")
    c.add_argument("--pr", type=int, required=True, help="pull request number")
    c.add_argument("--repo", help="owner/name (default: GITHUB_REPOSITORY)")
    c.add_argument("--api-url", help="GitHub API (default: GITHUB_API_URL, else https://api.github.com)")
    c.add_argument("--artifact", help="name of the workflow artifact holding the full reports")
    c.add_argument("--run-url", help="link to the workflow run")
    c.set_defaults(func=cmd_pr_comment)

    g = sub.add_parser("diagram", help="topology picture of a stack (Graphviz): pools, switches, VLANs, zones, flows")
    g.add_argument("--stack", "-s", help="stack name")
    g.add_argument("--stacks-dir")
    g.add_argument("--set", action="append", metavar="KEY.PATH=VALUE")
    g.add_argument("--plan", help="draw a plan --json file or plan --out folder instead of evaluating --stack")
    g.add_argument("-o", "--out", required=True, metavar="FILE", help="FILE.svg, FILE.png or FILE.dot")
    g.add_argument("--replace", action="store_true", help="replace an existing FILE")
    g.set_defaults(func=cmd_diagram, ctx=ctx)
