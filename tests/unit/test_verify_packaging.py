"""``llmcluster verify`` from an installed package: the suite ships in the wheel, and run.py finds
everything it needs without a checkout (or names what is missing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from llmcluster.errors import LLMClusterError
from llmcluster.verify import run as R
from tests.conftest import ROOT

#: One planned host behind an address and port nothing listens on: every SSH attempt is refused.
UNREACHABLE_INVENTORY = """\
all:
  hosts:
    gpu-01:
      ansible_host: 127.0.0.2
      ansible_port: 1
      ansible_user: root
"""


def test_the_suite_is_in_the_package_not_in_tests():
    assert R.SUITE == ROOT / "llmcluster" / "verify" / "suite"
    assert sorted(p.name for p in R.SUITE.iterdir() if p.suffix in (".py", ".ini")) == sorted(
        ("__init__.py", *R.SUITE_FILES))
    R.check_suite()


def test_an_incomplete_installation_names_what_is_missing(tmp_path, monkeypatch):
    (tmp_path / "conftest.py").write_text("")
    monkeypatch.setattr(R, "SUITE", tmp_path)
    with pytest.raises(LLMClusterError, match=r"missing pytest\.ini, plugin\.py, test_hosts\.py.*reinstall"):
        R.check_suite()


def test_ansible_config_from_a_checkout_only(tmp_path, monkeypatch):
    assert R.project_ansible_config() == ROOT / "ansible" / "ansible.cfg"  # this checkout
    monkeypatch.setattr(R, "ROOT", tmp_path / "site-packages")  # an installation
    assert R.project_ansible_config(tmp_path / "ops" / "stacks") is None
    (tmp_path / "proj" / "ansible").mkdir(parents=True)
    (tmp_path / "proj" / "ansible" / "ansible.cfg").write_text("[defaults]\n")
    assert R.project_ansible_config(tmp_path / "proj" / "stacks") is None  # not a project: no Pulumi.yaml
    (tmp_path / "proj" / "Pulumi.yaml").write_text("name: x\n")
    assert R.project_ansible_config(tmp_path / "proj" / "stacks") == tmp_path / "proj" / "ansible" / "ansible.cfg"


def test_a_missing_default_inventory_says_it_belongs_to_the_checkout(monkeypatch, tmp_path):
    import llmcluster.converge as conv

    monkeypatch.setattr(conv, "ANSIBLE_DIR", tmp_path / "ansible")
    with pytest.raises(LLMClusterError, match=r"no such file \(the stack's dynamic inventory is part of the "
                                              r"project checkout.*pass --inventory\)"):
        R.check_inventory(tmp_path / "ansible" / "inventory" / "llmcluster.py", ["gpu-01"])
    with pytest.raises(LLMClusterError, match=r"nope\.yml: no such file$"):
        R.check_inventory(tmp_path / "nope.yml", ["gpu-01"])


def _run(argv, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, **kw)
    assert "Traceback" not in r.stderr, f"{argv}: {r.stdout}{r.stderr}"
    return r


@pytest.mark.slow
def test_verify_runs_the_suite_from_an_installed_wheel(tmp_path):
    """Build a wheel (from a copy of the sources: no build/ in the checkout), install it into a fresh
    venv (its dependencies: this environment's site-packages, after the venv's own), and run
    ``llmcluster verify`` outside any checkout against an unreachable host: the suite runs and fails
    on SSH, not on a missing file or import."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "llmcluster", src / "llmcluster", ignore=shutil.ignore_patterns("__pycache__"))
    r = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "wheel"), str(src)])
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = (tmp_path / "wheel").glob("llmcluster-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in R.SUITE_FILES if f"llmcluster/verify/suite/{f}" not in names]
    assert not missing, f"{wheel.name} lacks the suite's {missing}"

    venv = tmp_path / "venv"
    r = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    r = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(wheel)])
    assert r.returncode == 0, r.stdout + r.stderr
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]  # pytest, testinfra, pydantic, ... (llmcluster's own finder stays off)
    Path(purelib, "zz_llmcluster_deps.pth").write_text(
        f"import sys; sys.path.insert(sys.path.index({purelib!r}) + 1, {deps!r})\n")

    ops = tmp_path / "ops"  # an operator's folder: the stack files and an inventory, no checkout
    shutil.copytree(ROOT / "stacks", ops / "stacks")
    (ops / "inventory.yml").write_text(UNREACHABLE_INVENTORY)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ANSIBLE_CONFIG", "LLMCLUSTER_STACKS_DIR")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), os.path.dirname(sys.executable), env.get("PATH", "")])
    where = _run([str(py), "-c", "import llmcluster.verify.run as r; print(r.SUITE)"], cwd=ops, env=env)
    assert where.stdout.strip() == str(Path(purelib, "llmcluster", "verify", "suite")), where.stdout + where.stderr

    r = _run([str(venv / "bin" / "llmcluster"), "verify", "--stack", "lab", "--inventory", "inventory.yml", "--json"],
             cwd=ops, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == R.EXIT_FAILED, f"exit {r.returncode}, expected {R.EXIT_FAILED} (checks failed):\n{out}"
    doc = json.loads(r.stdout)
    failed = [x for x in doc["results"] if x["outcome"] == "failed"]
    # Every failure is about the one (unreachable) inventory host: its own checks, and when this machine
    # sits in a lab zone (a lab is up beside the test), firewall rows towards its zone ("admin -> gpu").
    assert doc["stack"] == "lab" and failed, out
    assert {x["host"] for x in failed} - {"gpu-01"} <= {f"{z} -> gpu" for z in ("admin", "clients", "gateway",
                                                                                  "storage", "gpu")}, out
    assert any(x["host"] == "gpu-01" for x in failed), out
    assert all("127.0.0.2" in x["message"] or "Connection refused" in x["message"] for x in failed), out
    assert not [x for x in doc["results"] if "ImportError" in x["message"] or "not found" in x["message"]], out
