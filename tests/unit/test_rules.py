"""The rule registry (:mod:`llmcluster.validate`): well-formed, ordered, layered, and every rule tested.

* ids are unique ``<domain>.<name>``, the domain being the rule's module;
* the layers run in order (field -> spec -> plan): nothing runs after a field failure, every
  whole-spec rule runs before any plan-aware one, and a rule gated by ``requires``/``unless``
  does not run when its gate says so;
* every rule rejects at least one input in a test: the malformed corpus for the field, spec and
  plan layers (``tests/unit/malformed``), ``tests/unit/test_preflight.py`` for preflight.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmcluster.errors import Problem, SpecError
from llmcluster.spec.loader import raw_from_stack_document
from llmcluster.validate import (
    DOMAINS,
    FIELD,
    LAYERS,
    PLAN,
    PREFLIGHT,
    RULES,
    SPEC,
    check_spec,
    load_stack_file,
    registry,
    rules,
    validate_raw,
)
from tests.conftest import STACKS, load_spec
from tests.helpers.corpus import FILES, expectation

PACKAGE = Path(registry.__file__).parent
ID = re.compile(r"^[a-z]+\.[a-z0-9]+(-[a-z0-9]+)*$")

#: The preflight rules and the test in test_preflight.py that shows each rejecting an environment.
PREFLIGHT_TESTS = {
    "baremetal.hosts-reachable": "test_baremetal_preflight_reports_each_unreachable_host",
    "baremetal.host-facts": "test_host_facts_rule_reports_each_difference",
    "aws.instance-types-offered": "test_aws_preflight_without_access_is_a_problem_not_a_crash",
}


def raw_of(stack: str) -> dict[str, Any]:
    return raw_from_stack_document(yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8")))


# --------------------------------------------------------------------------- the registry


def test_ids_are_unique_and_well_formed() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for r in RULES:
        assert ID.match(r.id), r.id
        assert r.id.partition(".")[0] == r.domain, r.id


def test_every_rule_has_a_domain_module_a_layer_and_a_summary() -> None:
    for r in RULES:
        assert r.domain in DOMAINS, r.id
        assert r.layer in LAYERS, r.id
        assert r.check.__module__ == f"llmcluster.validate.{r.domain}", r.id
        assert r.summary and "\n" not in r.summary, r.id
    for domain in DOMAINS:
        assert (PACKAGE / f"{domain}.py").is_file(), domain
        assert rules(domain=domain), f"domain {domain} has no rule"
    assert {r.layer for r in RULES} == set(LAYERS)


def test_run_order_is_layer_by_layer() -> None:
    order = rules()
    assert sorted(order, key=lambda r: LAYERS.index(r.layer)) == order
    assert [r.id for r in order[:2]] == ["fields.stack-file", "fields.models"]


def test_gates_name_earlier_rules() -> None:
    position = {r.id: i for i, r in enumerate(rules())}
    for r in RULES:
        for required in r.requires:
            assert required in position, f"{r.id} requires unknown rule {required}"
            assert position[required] < position[r.id], f"{r.id} runs before {required}, which it requires"
        assert all(isinstance(prefix, str) and prefix for prefix in r.unless), r.id


def test_registering_a_malformed_rule_fails() -> None:
    def check(spec):  # pragma: no cover - never registered
        return []

    check.__module__ = "llmcluster.validate.fabric"
    for bad_id, kwargs in (("fabric.Bad_Name", {}), ("qos.in-the-wrong-module", {}),
                           ("fabric.vlan-ids-unique", {}), ("fabric.new-rule", {"layer": "later"})):
        with pytest.raises(ValueError):
            registry.rule(bad_id, **kwargs)(check)
    assert all(r.check is not check for r in RULES)


# --------------------------------------------------------------------------- layer semantics


@pytest.fixture()
def spied(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace every spec/plan/preflight rule by a spy that records its id, then runs the rule."""
    ran: list[str] = []

    def spy(r):
        def check(arg):
            ran.append(r.id)
            return r.check(arg)

        return check

    monkeypatch.setattr(registry, "RULES", [r if r.layer == FIELD else dataclasses.replace(r, check=spy(r))
                                            for r in registry.RULES])
    return ran


def test_no_rule_runs_after_a_field_failure(spied: list[str]) -> None:
    raw = raw_of("lab")
    raw["fabric"]["vlans"]["inference"]["id"] = 10  # a whole-spec problem ...
    raw["pools"]["gpu"]["count"] = "two"  # ... behind a field problem
    with pytest.raises(SpecError) as ei:
        validate_raw(raw, "lab")
    assert [p.path for p in ei.value.problems] == ["pools.gpu.count"]
    assert ei.value.rules == {ei.value.problems[0]: "fields.models"}
    assert spied == []


def test_every_whole_spec_rule_runs_before_any_plan_aware_rule(spied: list[str]) -> None:
    spec = load_spec("prod-baremetal")
    spied.clear()  # loading (when not cached) ran them once already
    assert check_spec(spec) == []
    layers = [registry.get(rule_id).layer for rule_id in spied]
    assert layers == sorted(layers, key=LAYERS.index)
    assert set(spied) == {r.id for r in RULES if r.layer in (SPEC, PLAN)}


def test_capacity_sizing_waits_for_the_serving_references(spied: list[str]) -> None:
    raw = raw_of("lab")
    raw["serving"]["model"] = "deepseek-r2"
    with pytest.raises(SpecError) as ei:
        validate_raw(raw, "lab")
    assert set(ei.value.rules.values()) == {"serving.model-known"}
    assert "serving.capacity" not in spied and "addresses.ip-plan" in spied


def test_the_ip_plan_waits_for_vlans_supernet_and_pools(spied: list[str]) -> None:
    raw = raw_of("lab")
    raw["fabric"]["vlans"]["inference"]["id"] = 10
    raw["pools"]["gpu"]["count"] = 300  # would exhaust the mgmt /24: not reported behind the VLAN problem
    with pytest.raises(SpecError) as ei:
        validate_raw(raw, "lab")
    # (the lab's single leaf has no ports for 300 nodes: that is not behind the VLAN problem)
    assert set(ei.value.rules.values()) == {"fabric.vlan-ids-unique", "switches.port-capacity"}
    assert "addresses.ip-plan" not in spied and "serving.capacity" in spied


def test_the_ip_plan_runs_beside_unrelated_problems(spied: list[str]) -> None:
    raw = raw_of("lab")
    raw["pools"]["gpu"]["count"] = 300
    raw["pki"] = {"algorithm": "RSA"}
    with pytest.raises(SpecError) as ei:
        validate_raw(raw, "lab")
    assert {(p.path, ei.value.rules[p]) for p in ei.value.problems} == {
        ("pki.algorithm", "pki.rsa-opt-in"), ("baremetal.leaf_switches", "switches.port-capacity"),
        *((f"fabric.vlans.{role}.prefix", "addresses.ip-plan")
          for role in ("mgmt", "inference", "storage_public", "rdma"))}


def test_lab_rules_wait_for_the_platform(spied: list[str]) -> None:
    raw = raw_of("dev-aws")
    raw["lab"] = {"pools": {"nosuch": {"kind": "nspawn"}}}
    with pytest.raises(SpecError) as ei:
        validate_raw(raw, "dev-aws")
    assert [p.path for p in ei.value.problems] == ["lab"]
    assert "lab.baremetal-only" in spied and "lab.pools-known" not in spied


def test_every_problem_names_its_rule() -> None:
    raw = raw_of("lab")
    raw["pki"] = {"algorithm": "RSA", "min_tls_version": "1.2"}
    raw["storage"]["raid"]["drives"] = 3
    with pytest.raises(SpecError) as ei:
        validate_raw(raw, "lab")
    assert set(ei.value.rules) == set(ei.value.problems)
    assert ei.value.rules[Problem("storage.raid.drives", "RAID 10 needs an even number of drives, not 3")] \
        == "storage.raid-drives"


# --------------------------------------------------------------------------- every rule rejects something


def _corpus_rules() -> dict[str, list[str]]:
    """Rule id -> corpus files whose expected problem that rule reports."""
    found: dict[str, list[str]] = {}
    for path in FILES:
        want = expectation(path)
        try:
            load_stack_file(path)
        except SpecError as exc:
            for p in exc.problems:
                if p.path == want.path and (want.message is None or want.message in p.message) and p in exc.rules:
                    found.setdefault(exc.rules[p], []).append(path.name)
    return found


def test_every_rule_has_a_rejecting_case() -> None:
    covered = _corpus_rules()
    missing = [r.id for r in RULES if r.layer != PREFLIGHT and r.id not in covered]
    assert not missing, ("rules without a malformed-corpus case (add tests/unit/malformed/NNN-<name>.yaml with "
                         f"'# rule: <id>'): {missing}")
    preflight_tests = {n.name for n in ast.walk(ast.parse((Path(__file__).parent / "test_preflight.py").read_text()))
                       if isinstance(n, ast.FunctionDef)}
    for r in rules(PREFLIGHT):
        assert PREFLIGHT_TESTS.get(r.id, "-") in preflight_tests, \
            f"preflight rule {r.id} needs a rejecting test in test_preflight.py (and a PREFLIGHT_TESTS entry)"


def test_corpus_rule_headers_name_registered_rules() -> None:
    ids = {r.id for r in RULES}
    named = {p.name: expectation(p).rule for p in FILES if expectation(p).rule}
    assert named, "the corpus names rules"
    assert set(named.values()) <= ids, set(named.values()) - ids


# --------------------------------------------------------------------------- the command line


def _cli(*argv: str) -> tuple[int, str, str]:
    from llmcluster.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_cli_lists_the_rules() -> None:
    rc, out, _ = _cli("validate", "--list-rules", "--json")
    assert rc == 0
    listed = json.loads(out)
    assert [r["rule"] for r in listed] == [r.id for r in rules()]
    assert {r["layer"] for r in listed} == set(LAYERS)
    rc, out, _ = _cli("validate", "--list-rules")
    assert rc == 0 and "fabric.vlan-ids-unique" in out


def test_cli_json_names_the_rule_of_each_problem_and_plain_output_is_unchanged() -> None:
    bad = Path(__file__).parent / "malformed" / "053-duplicate-vlan-id.yaml"
    rc, out, err = _cli("validate", "--json", str(bad))
    assert rc == 2
    (row,) = json.loads(out)["stacks"]
    assert {f["rule"] for f in row["findings"]} == {"fabric.vlan-ids-unique"}
    assert [f"{f['path']}: {f['message']}" for f in row["findings"]] == row["problems"]
    assert err.splitlines() == [f"{bad}: {line}" for line in row["problems"]]
