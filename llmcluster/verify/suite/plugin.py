"""The verification suite's hooks and fixtures: checks the provisioned result of a stack against its plan.

The suite ships in the package (``llmcluster/verify/suite``: this plugin, the ``test_*`` modules,
a ``conftest.py`` and a ``pytest.ini``). Two ways to run it:

* ``llmcluster verify --stack S [--inventory I]`` (:mod:`llmcluster.verify.run` runs pytest on
  the package's suite folder, from an installation or a checkout; or ``pytest
  llmcluster/verify/suite --llmcluster-stack S --llmcluster-inventory I``): verifies the hosts
  of any inventory (a real one, or a running lab's) against the plan of stack ``S``; nothing
  is brought up;
* ``pytest tests/verify`` (part of ``make test``, from a checkout): tests/verify re-exports the
  suite's modules and this plugin, and the checks run on the lab the session brings up (the
  shared ``lab`` fixture of tests/conftest.py), converged once.

Tests are parametrised per host and check at collection time (from the plan and the
inventory); observations are gathered once per host (one SSH round trip) and the firewall
matrix runs all its connection attempts in one batch per source.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llmcluster.verify import checks as C
from llmcluster.verify import matrix as M
from llmcluster.verify import scripts as S
from llmcluster.verify.remote import Inventory, LocalHost, local_ipv4_addresses


#: Timings measured by the session (tests/conftest.py prints them with the lab's own).
TIMINGS: dict[str, float | str] = {}
#: The suite's test modules (the results file lists their tests only).
SUITE_MODULES = ("test_hosts.py", "test_firewall_matrix.py", "test_gateway.py", "test_gpu.py", "test_audit.py",
                 "test_model.py", "test_storage_raid.py", "test_storage_ceph.py", "test_monitoring.py")

#: Seconds a probe waits for a connection (denied flows are dropped: they all take this long).
PROBE_TIMEOUT = 2.0
LISTENER_LIFETIME = 180
LISTENER_PIDFILE = "/tmp/llmcluster-verify-listener.pid"


@dataclass
class Collected:
    stack: str
    plan: Any
    inventory_path: Path | None
    hostvars: dict[str, dict[str, Any]]
    probes: dict[str, Any]
    local_addresses: list[str]
    host_checks: list[C.HostCheck] = field(default_factory=list)
    matrix: list[M.MatrixCase] = field(default_factory=list)


def _collect(config: pytest.Config) -> Collected:
    cached = getattr(config, "_llmcluster_verify", None)
    if cached is not None:
        return cached
    from llmcluster.errors import LLMClusterError
    from llmcluster.plan.build import build_plan
    from llmcluster.validate import load_stack_file

    stack = config.getoption("--llmcluster-stack") or "lab"
    if config.getoption("--llmcluster-stacks-dir"):
        stacks = Path(config.getoption("--llmcluster-stacks-dir"))
    else:  # the CLI's lookup: LLMCLUSTER_STACKS_DIR, else the project around the working directory
        from llmcluster.cli import stacks_dir

        stacks = stacks_dir(None)
    try:
        plan = build_plan(load_stack_file(stacks / f"Pulumi.{stack}.yaml"))
    except LLMClusterError as exc:
        raise pytest.UsageError(f"stack {stack}: {exc}") from None
    inventory = config.getoption("--llmcluster-inventory")
    if inventory:
        from llmcluster.verify.run import check_inventory

        inv = Inventory(inventory)
        try:  # the CLI's own rule: readable, and only hosts the plan knows
            check_inventory(inventory, [h.name for h in plan.ip.hosts])
            hostvars = inv.all_hostvars
        except LLMClusterError as exc:
            raise pytest.UsageError(f"stack {stack}: {exc}") from None
        except Exception as exc:  # ansible-inventory failed: a usage error, not a test failure
            raise pytest.UsageError(f"inventory {inventory}: {exc}") from None
        probes = inv.group_var("llmcluster_verify_probes", {}) or {}
        local = local_ipv4_addresses()
    else:  # the lab this session brings up: its inventory is known before it exists
        from llmcluster.lab.probes import controller_address
        from llmcluster.lab.runtime import LabRuntime

        lab_inv = LabRuntime(plan, Path("lab-state-not-used")).inventory()
        hostvars = lab_inv["_meta"]["hostvars"]
        probes = lab_inv["all"]["vars"].get("llmcluster_verify_probes", {})
        local = [controller_address(plan)]
    c = Collected(stack, plan, Path(inventory) if inventory else None, hostvars, probes, local)
    c.host_checks = C.host_checks(plan, hostvars)
    c.matrix = M.matrix_cases(plan, hostvars, local, probes)
    config._llmcluster_verify = c
    return c


def add_options(parser: pytest.Parser) -> None:
    """The suite's command-line options (registered once, by the conftest that loads the suite)."""
    group = parser.getgroup("llmcluster verify", "the verification suite (llmcluster/verify/suite)")
    if any("--llmcluster-stack" in o.names() for o in group.options):
        return
    group.addoption("--llmcluster-stack", default=None,
                    help="stack whose plan the verification suite checks (default: lab)")
    group.addoption("--llmcluster-stacks-dir", default=None, help="directory of Pulumi.<stack>.yaml files")
    group.addoption("--llmcluster-inventory", default=None,
                    help="verify the hosts of this Ansible inventory (file or script) instead of bringing up the lab")
    group.addoption("--llmcluster-results", default=None, help="write the verification results (JSON) here")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "host_check" in metafunc.fixturenames:
        c = _collect(metafunc.config)
        metafunc.parametrize("host_check", c.host_checks, ids=[h.id for h in c.host_checks])
    if "matrix_case" in metafunc.fixturenames:
        c = _collect(metafunc.config)
        metafunc.parametrize("matrix_case", c.matrix, ids=[m.id for m in c.matrix])


# --------------------------------------------------------------------------- fixtures


class Target:
    """The hosts under verification, with per-host facts gathered once."""

    def __init__(self, collected: Collected, inventory: Inventory):
        self.c = collected
        self.plan = collected.plan
        self.inventory = inventory
        self._hosts: dict[str, Any] = {}
        self._facts: dict[str, dict[str, Any]] = {}

    def host(self, name: str):
        if name not in self._hosts:
            self._hosts[name] = self.inventory.host(name)
        return self._hosts[name]

    def facts(self, name: str) -> dict[str, Any]:
        if name not in self._facts:
            ifnames = sorted(set(C.interface_names(self.plan, name, self.c.hostvars.get(name)).values()))
            res = self.host(name).python(S.GATHER, *ifnames)
            self._facts[name] = res.json(f"{name}: gathering facts")
        return self._facts[name]

    def source(self, src: M.Source):
        if src.kind == M.HOST:
            return self.host(src.name)
        return LocalHost(src.name, src.netns)


@pytest.fixture(scope="session")
def verify_target(request) -> Target:
    c = _collect(request.config)
    if c.inventory_path is not None:
        return Target(c, Inventory(c.inventory_path))
    try:  # the lab this session brings up: tests/conftest.py's fixture, in a checkout's tests/verify
        inventory = request.getfixturevalue("lab_converged")
    except pytest.FixtureLookupError:
        pytest.fail("no --llmcluster-inventory: give the inventory to verify (the lab mode, which brings a "
                    "lab up, runs from a checkout: pytest tests/verify)", pytrace=False)
    return Target(c, Inventory(inventory))


@pytest.fixture(scope="session")
def matrix_results(verify_target: Target) -> dict[M.Attempt, str]:
    """Run every connection attempt of the matrix: listeners up, all sources in parallel, listeners down."""
    c, t0 = verify_target.c, time.monotonic()
    cases = [m for m in c.matrix if m.attempts]
    wanted = M.listeners(cases)
    srcs = {s.name: s for s in M.sources(c.plan, c.hostvars, c.local_addresses, c.probes).values()
            if isinstance(s, M.Source)}
    started: list[str] = []
    try:
        def listen(host: str) -> None:
            res = verify_target.host(host).python(S.LISTEN, LISTENER_PIDFILE, str(LISTENER_LIFETIME), *wanted[host])
            report = res.json(f"{host}: starting the matrix listener")
            bad = {k: v for k, v in report.items() if v not in ("listening", "in use")}
            if res.rc != 0 or bad:
                raise RuntimeError(f"{host}: matrix listener failed (exit {res.rc}): {bad or res.stderr}")
            started.append(host)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(listen, wanted))
        by_source = M.attempts_by_source(cases)

        def probe(name: str) -> list[tuple[M.Attempt, str]]:
            attempts = by_source[name]
            res = verify_target.source(srcs[name]).python(
                S.PROBE, str(PROBE_TIMEOUT), json.dumps([a.to_probe() for a in attempts]),
                timeout=PROBE_TIMEOUT * 4 + 30)
            return list(zip(attempts, res.json(f"{name}: probing"), strict=True))

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = dict(pair for pairs in pool.map(probe, sorted(by_source)) for pair in pairs)
    finally:
        for host in started:
            verify_target.host(host).python(S.STOP, LISTENER_PIDFILE)
    TIMINGS["verify firewall matrix"] = f"{time.monotonic() - t0:.1f}s ({len(results)} attempts)"
    return results


# --------------------------------------------------------------------------- results


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    props = dict(report.user_properties)
    if "check" not in props and report.nodeid.split("::", 1)[0].rsplit("/", 1)[-1] not in SUITE_MODULES:
        return
    message = ""
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(report.longrepr)
    elif report.skipped and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2])
    result = {
        "nodeid": report.nodeid,
        "host": props.get("host", ""),
        "check": props.get("check", report.nodeid.split("[", 1)[-1].rstrip("]")),
        "outcome": report.outcome,
        "message": message,
    }
    if props.get("detail"):  # what a passing check measured (e.g. model[manifest]'s GB/s)
        result["detail"] = props["detail"]
    _RESULTS.append(result)


_RESULTS: list[dict[str, Any]] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--llmcluster-results")
    if path:
        c = getattr(session.config, "_llmcluster_verify", None)
        Path(path).write_text(json.dumps({"stack": c.stack if c else None, "results": _RESULTS}, indent=1))
