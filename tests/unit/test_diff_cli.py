"""``llmcluster diff`` and ``llmcluster diagram`` from the command line: revisions evaluated in temporary
git worktrees (always removed), exit codes 0 / 1 / 2, one-line errors with nothing written, and the
topology picture rendered by Graphviz."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from llmcluster.cli import main
from tests.conftest import ROOT


def _run(args, capsys):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _worktrees(repo) -> list[str]:
    return subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.split("\n\n")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A clone of this project's committed tree with one more commit: the lab stack's gpu flow gains a port."""
    d = tmp_path_factory.mktemp("repo") / "clone"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(ROOT), str(d)], check=True)
    env = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    stack = d / "stacks" / "Pulumi.lab.yaml"
    text = stack.read_text()
    assert "tcp/9100, tcp/9400]" in text
    stack.write_text(text.replace("tcp/9100, tcp/9400]", "tcp/9100, tcp/9400, tcp/9401]"))
    subprocess.run(["git", *env, "commit", "--quiet", "-am", "open a port"], cwd=d, check=True)
    return d


def test_diff_between_revisions(repo, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(repo)
    before = _worktrees(repo)
    save = tmp_path / "r.json"
    rc, out, err = _run(["diff", "--stack", "lab", "--base", "HEAD~1", "--head", "HEAD", "--format", "markdown",
                         "--save", str(save)], capsys)
    assert rc == 1, err
    assert "| firewall flows opened / closed | 1 / 0 |" in out
    assert "- + `admin` -> `gpu` tcp/9401 (vlan mgmt) opened" in out
    report = json.loads(save.read_text())
    assert report["base"]["label"].startswith("HEAD~1 (") and report["head"]["label"].startswith("HEAD (")
    assert _worktrees(repo) == before  # the temporary worktrees are gone
    rc, out, err = _run(["diff", "--stack", "lab", "--base", "HEAD", "--head", "HEAD", "--format", "json"], capsys)
    assert rc == 0 and json.loads(out)["summary"]["changed"] is False
    # the working tree (no --head) is the clone as checked out: HEAD
    rc, out, _ = _run(["diff", "--stack", "lab", "--base", "HEAD~1"], capsys)
    assert rc == 1 and "flow admin -> gpu tcp/9401 (vlan mgmt) opened" in out
    assert _worktrees(repo) == before


@pytest.mark.parametrize("args,expected", [
    (["--stack", "lab", "--base", "no-such-rev"], "--base: unknown revision 'no-such-rev'"),
    (["--stack", "lab", "--base", "HEAD", "--head", "nope~9"], "--head: unknown revision 'nope~9'"),
    (["--stack", "nosuch", "--base", "HEAD"], "--stack: no stack 'nosuch' at HEAD"),
    (["--stack", "../x", "--base", "HEAD"], "--stack: '../x' is not a stack name"),
    (["--stack", "lab", "--base", "--oops"], "--base: expected one argument"),
    (["--stack", "lab"], "--base: give the base revision"),
    (["--base", "HEAD"], "--stack: give --stack S"),
])
def test_diff_bad_input(repo, capsys, monkeypatch, tmp_path, args, expected):
    monkeypatch.chdir(repo)
    before = _worktrees(repo)
    save = tmp_path / "r.json"
    rc, out, err = _run(["diff", *args, "--save", str(save)], capsys)
    assert rc == 2
    assert err.startswith(expected), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not save.exists() and _worktrees(repo) == before


def test_diff_not_a_git_repo(tmp_path, capsys, monkeypatch):
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks")
    (tmp_path / "Pulumi.yaml").write_text("name: llmcluster\n")
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(["diff", "--stack", "lab", "--base", "HEAD"], capsys)
    assert rc == 2 and err.startswith("--base: ") and "not inside a git repository" in err


def test_diff_plans_and_errors(tmp_path, capsys):
    from llmcluster.cli import main as cli

    a = tmp_path / "a"
    b = tmp_path / "b.json"
    assert cli(["plan", "--stack", "lab", "--out", str(a)]) == 0
    capsys.readouterr()
    assert cli(["plan", "--stack", "lab", "--set", "pki.leaf_validity_days=14", "--json"]) == 0
    b.write_text(capsys.readouterr().out)
    rc, out, err = _run(["diff", "--plans", str(a), str(a), "--format", "json"], capsys)
    assert rc == 0, err
    rc, out, err = _run(["diff", "--plans", str(a / "plan.json"), str(b), "--format", "json"], capsys)
    assert rc == 1
    assert json.loads(out)["summary"]["resources"]["replace"] == 12
    (tmp_path / "junk.json").write_text("{")
    for args, expected in (([str(a), str(tmp_path / "none")], "--plans: "),
                           ([str(a), str(tmp_path / "junk.json")], "--plans: "),
                           ([str(a), str(tmp_path)], "--plans: ")):
        rc, _, err = _run(["diff", "--plans", *args], capsys)
        assert rc == 2 and err.startswith(expected) and len(err.strip().splitlines()) == 1, err
    # an existing --save file is not overwritten (nothing is evaluated either)
    keep = tmp_path / "keep.json"
    keep.write_text("mine")
    rc, _, err = _run(["diff", "--plans", str(a), str(b), "--save", str(keep)], capsys)
    assert rc == 2 and err.startswith("--save: ") and keep.read_text() == "mine"


def test_pulumi_preview_through_the_same_renderer(tmp_path, capsys):
    from llmcluster.diff.preview import resources_from_preview

    urn = "urn:pulumi:prod::llmcluster::aws:ec2/instance:Instance::gpu-01"
    doc = {"steps": [
        {"op": "same", "urn": "urn:pulumi:prod::llmcluster::aws:ec2/vpc:Vpc::vpc"},
        {"op": "update", "urn": urn, "oldState": {"type": "aws:ec2/instance:Instance",
                                                  "inputs": {"instanceType": "p5.48xlarge", "tags": {"a": "b"}}},
         "newState": {"type": "aws:ec2/instance:Instance", "inputs": {"instanceType": "p5e.48xlarge",
                                                                      "tags": {"a": "b"}}},
         "diffReasons": ["instanceType"], "detailedDiff": {"instanceType": {"kind": "update"}}},
        {"op": "create-replacement", "urn": "urn:pulumi:prod::llmcluster::aws:ec2/subnet:Subnet::s",
         "oldState": {"type": "aws:ec2/subnet:Subnet", "inputs": {"cidrBlock": "10.0.0.0/24"}},
         "newState": {"type": "aws:ec2/subnet:Subnet", "inputs": {"cidrBlock": "10.0.1.0/24"}},
         "replaceReasons": ["cidrBlock"]},
        {"op": "delete-replaced", "urn": "urn:pulumi:prod::llmcluster::aws:ec2/subnet:Subnet::s"},
        {"op": "create", "urn": "urn:pulumi:prod::llmcluster::tls:index/privateKey:PrivateKey::k",
         "newState": {"type": "tls:index/privateKey:PrivateKey",
                      "inputs": {"algorithm": "ECDSA", "privateKeyPem": "[secret]"}}},
    ]}
    res = resources_from_preview(doc)
    assert [(r["op"], r["urn"].rsplit("::", 1)[-1]) for r in res] == [
        ("update", "gpu-01"), ("replace", "s"), ("create", "k")]
    assert res[0]["changes"] == [{"path": "instanceType", "before": "p5.48xlarge", "after": "p5e.48xlarge"}]
    assert res[1]["replace_reasons"] == ["cidrBlock"]
    assert res[2]["changes"][1] == {"path": "privateKeyPem", "before": None, "absent": "before",
                                    "after": "<redacted>"}


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz (dot) is not installed: apt-get install graphviz")
def test_diagram(tmp_path, capsys):
    svg = tmp_path / "lab.svg"
    rc, out, err = _run(["diagram", "--stack", "lab", "-o", str(svg)], capsys)
    assert rc == 0, err
    text = svg.read_text().replace("&#45;", "-")
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    for label in ("zone gpu", "zone clients", "pool gpu", "VLAN 20 inference", "switch leaf-01", "tcp/8000 (inference)",
                  "10.42.1.0/29"):
        assert label in text, label
    rc, _, err = _run(["diagram", "--stack", "lab", "-o", str(svg)], capsys)
    assert rc == 2 and err.startswith("-o: ") and svg.read_text().replace("&#45;", "-") == text
    rc, _, err = _run(["diagram", "--stack", "lab", "-o", str(tmp_path / "x.gif")], capsys)
    assert rc == 2 and err.startswith("-o: ") and not (tmp_path / "x.gif").exists()
    png = tmp_path / "aws.png"
    assert _run(["diagram", "--stack", "dev-aws", "-o", str(png)], capsys)[0] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_diagram_is_the_labs(tmp_path):
    """docs/lab-topology.svg (shown in the README) is what `llmcluster diagram --stack lab` draws now."""
    from llmcluster.diagram import dot_source
    from llmcluster.offline import evaluate
    from tests.conftest import load_spec

    committed = (ROOT / "docs" / "lab-topology.dot").read_text()
    assert dot_source(evaluate(load_spec("lab")).document()) == committed, \
        "regenerate: llmcluster diagram --stack lab -o docs/lab-topology.dot and -o docs/lab-topology.svg"
    assert "lab-topology.svg" in (ROOT / "README.md").read_text()
