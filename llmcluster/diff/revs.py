"""Evaluating a stack at a git revision: a temporary ``git worktree`` of that revision, whose own
code and stack file run ``llmcluster plan --out`` (the offline evaluation under Pulumi mocks: no
cloud credentials), read back as a :class:`~llmcluster.diff.core.Side`. The worktree and the
output folder are removed in every case, an error included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from llmcluster.diff.core import Side, load_folder
from llmcluster.errors import Problem, SpecError

#: The longest an evaluation at one revision may take (seconds).
EVAL_TIMEOUT_S = 900


def _git(args: list[str], cwd: Path, option: str) -> str:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise SpecError(Problem(option, "git is not installed")) from None
    if p.returncode != 0:
        raise SpecError(Problem(option, (p.stderr.strip().splitlines() or [f"git {args[0]} failed"])[-1][:300]))
    return p.stdout.strip()


def repo_root(folder: Path, option: str = "--base") -> Path:
    """The git work tree holding ``folder``."""
    try:
        p = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=folder, capture_output=True, text=True,
                           timeout=60, check=False)
    except FileNotFoundError:
        raise SpecError(Problem(option, "git is not installed")) from None
    if p.returncode != 0:
        raise SpecError(Problem(option, f"{folder}: not inside a git repository (a revision needs one; or diff "
                                        "two plan files: --plans A B)"))
    return Path(p.stdout.strip())


def resolve(root: Path, rev: str, option: str) -> str:
    """The commit ``rev`` names (a clean error for an unknown one)."""
    if not rev or rev.startswith("-") or "\0" in rev or len(rev) > 250:
        raise SpecError(Problem(option, f"{rev[:60]!r} is not a revision"))
    p = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root,
                       capture_output=True, text=True, timeout=60, check=False)
    if p.returncode != 0:
        raise SpecError(Problem(option, f"unknown revision '{rev[:100]}' in {root.name}"))
    return p.stdout.strip()


def _stack_config(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return dict(doc.get("config") or {}) if isinstance(doc, dict) else {}


def evaluate_tree(tree: Path, stacks_rel: Path, stack: str, label: str, option: str) -> Side:
    """``llmcluster plan --stack S --out`` run by ``tree``'s own code on its stack file."""
    stacks = tree / stacks_rel
    stack_file = next((stacks / f"Pulumi.{stack}.{e}" for e in ("yaml", "yml")
                       if (stacks / f"Pulumi.{stack}.{e}").is_file()), None)
    if stack_file is None:
        return Side(label=label, stack=stack)  # the stack does not exist at this revision
    out = Path(tempfile.mkdtemp(prefix="llmcluster-diff-out-"))
    try:
        env = {**os.environ, "PYTHONPATH": str(tree), "LLMCLUSTER_STACKS_DIR": str(stacks)}
        env.pop("LLMCLUSTER_DEBUG", None)
        try:
            p = subprocess.run([sys.executable, "-m", "llmcluster.cli", "plan", "--stack", stack,
                                "--stacks-dir", str(stacks), "--out", str(out / "plan"), "--json"],
                               cwd=tree, env=env, capture_output=True, text=True, timeout=EVAL_TIMEOUT_S,
                               check=False)
        except subprocess.TimeoutExpired:
            raise SpecError(Problem(option, f"evaluating stack {stack} at {label} took over {EVAL_TIMEOUT_S} s")) \
                from None
        if p.returncode != 0:
            first = (p.stderr.strip().splitlines() or ["no message"])
            raise SpecError(Problem(option, f"stack {stack} at {label} does not evaluate: {first[0][:300]}"))
        side = load_folder(out / "plan", label)
        side.config = _stack_config(stack_file)
        return side
    finally:
        shutil.rmtree(out, ignore_errors=True)


def evaluate_rev(root: Path, rev: str, stacks_rel: Path, stack: str, option: str) -> Side:
    """The stack at revision ``rev`` of the repository at ``root`` (a temporary worktree, always removed)."""
    commit = resolve(root, rev, option)
    parent = Path(tempfile.mkdtemp(prefix="llmcluster-diff-wt-"))
    tree = parent / "tree"
    try:
        _git(["worktree", "add", "--detach", "--quiet", str(tree), commit], root, option)
        label = rev if rev == commit[:len(rev)] else f"{rev} ({commit[:12]})"
        return evaluate_tree(tree, stacks_rel, stack, label, option)
    finally:
        if tree.exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True,
                           timeout=120, check=False)
        if tree.exists():  # git could not remove it: remove it, then its record (only records of gone trees)
            shutil.rmtree(parent, ignore_errors=True)
            subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True, timeout=120, check=False)
        shutil.rmtree(parent, ignore_errors=True)
