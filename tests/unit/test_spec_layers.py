"""Direct tests of each validation layer: fields (models), whole-spec rules, error collection."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from llmcluster.errors import InfeasibleError, PlanError, Problem, SpecError
from llmcluster.spec import apply_overrides, parse_override, parse_raw
from llmcluster.spec.loader import (
    did_you_mean,
    raw_from_config_mapping,
    raw_from_stack_document,
    stack_name_from_path,
)
from llmcluster.spec.models import Flow, Pool, Site, Vlan, Vlans
from llmcluster.validate import validate_raw, validate_spec

STACKS = Path(__file__).resolve().parents[2] / "stacks"


def raw_of(stack: str) -> dict[str, Any]:
    doc = yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    return raw_from_stack_document(doc)


@pytest.fixture
def lab_raw() -> dict[str, Any]:
    return raw_of("lab")


@pytest.fixture
def prod() -> dict[str, Any]:
    return raw_of("prod-baremetal")


def problems(raw: dict[str, Any], *, whole_spec: bool = True) -> list[Problem]:
    with pytest.raises(SpecError) as ei:
        (validate_raw if whole_spec else parse_raw)(raw, "test")
    return ei.value.problems


def paths(raw: dict[str, Any], *, whole_spec: bool = True) -> list[str]:
    return [p.path for p in problems(raw, whole_spec=whole_spec)]


# --------------------------------------------------------------------------- layer 1: fields


def test_models_reject_out_of_range_and_loose_types() -> None:
    with pytest.raises(pydantic.ValidationError):
        Vlan(id=0, prefix=24)
    with pytest.raises(pydantic.ValidationError):
        Vlan(id="10", prefix=24)  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        Vlan(id=True, prefix=24)  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        Vlan(id=10)  # neither prefix nor subnet
    assert Vlan(id=10, subnet="10.0.0.0/24").prefixlen == 24
    assert Vlan(id=10, prefix=22).prefixlen == 22


def test_model_unknown_keys_forbidden() -> None:
    with pytest.raises(pydantic.ValidationError):
        Vlans(mgmt={"id": 10, "prefix": 24}, storage={"id": 11, "prefix": 24})  # type: ignore[call-arg]


def test_site_normalizes_and_checks_supernet() -> None:
    site = Site(name="lab", domain="lab.example.internal", supernet="10.42.0.0/16")
    assert site.supernet == "10.42.0.0/16"
    for bad in ("8.8.0.0/16", "10.42.0.0/25", "10.42.0.1/16", "10.42.0.0", "fd00::/8", "nonsense"):
        with pytest.raises(pydantic.ValidationError):
            Site(name="lab", domain="lab.example.internal", supernet=bad)


def test_flow_uses_from_alias() -> None:
    flow = Flow.model_validate({"name": "api", "from": "clients", "to": "gw", "ports": ["tcp/443"],
                                "vlan": "inference"})
    assert flow.from_ == "clients"
    with pytest.raises(pydantic.ValidationError):
        Flow.model_validate({"name": "api", "from": "c", "to": "g", "ports": ["tcp/0"], "vlan": "inference"})


def test_pool_minimal() -> None:
    pool = Pool(role="gateway", count=0, vlans=("mgmt",))
    assert pool.gpu is None and pool.nics == () and pool.labels == {}


def test_field_layer_paths_have_no_pydantic_noise(lab_raw: dict[str, Any]) -> None:
    lab_raw["zones"]["Bad Name"] = {"pools": ["gateway"]}
    lab_raw["fabric"]["vlans"]["oob"] = {"id": 0, "prefix": 24}
    lab_raw["pools"]["gpu"]["gpu"]["driver_version"] = "abc"
    got = {p.path: p.message for p in problems(lab_raw)}
    assert set(got) == {"zones.Bad Name", "fabric.vlans.oob.id", "pools.gpu.gpu.driver_version"}
    assert "not a valid name" in got["zones.Bad Name"]
    assert "not a version" in got["pools.gpu.gpu.driver_version"]
    for message in got.values():
        assert "function-after" not in message and "Input should be None" not in message
        assert "Value error," not in message


def test_type_errors_say_what_was_given(lab_raw: dict[str, Any]) -> None:
    lab_raw["pools"]["gpu"]["count"] = "2"
    lab_raw["fabric"]["vlans"]["mgmt"]["id"] = True
    lab_raw["serving"]["context"] = 1.5
    got = {p.path: p.message for p in problems(lab_raw)}
    assert "got string '2'" in got["pools.gpu.count"]
    assert "got boolean True" in got["fabric.vlans.mgmt.id"]
    assert "got number 1.5" in got["serving.context"]


def test_literal_errors_list_the_choices(lab_raw: dict[str, Any]) -> None:
    lab_raw["platform"] = "gcp"
    (p,) = problems(lab_raw)
    assert p == Problem("platform", "'gcp' is not allowed: expected 'baremetal' or 'aws'")


@pytest.mark.parametrize(("value", "ok"), [(1.3, "1.3"), (1.2, "1.2"), ("1.3", "1.3"), (1.25, None), (1.29, None),
                                          (13, None), ("1.30", None)])
def test_tls_version_yaml_number(lab_raw: dict[str, Any], value: Any, ok: str | None) -> None:
    """An unquoted 1.3 is a YAML float: it means "1.3", but 1.25 or 1.29 are not TLS versions."""
    lab_raw["pki"] = {"min_tls_version": value, "allow_tls12": True}
    if ok is None:
        assert paths(lab_raw, whole_spec=False) == ["pki.min_tls_version"]
    else:
        assert validate_raw(lab_raw, "test").pki.min_tls_version == ok


def test_missing_required_keys(lab_raw: dict[str, Any]) -> None:
    del lab_raw["serving"]
    del lab_raw["site"]["domain"]
    got = {p.path: p.message for p in problems(lab_raw)}
    assert got == {"serving": "missing: this key is required", "site.domain": "missing: this key is required"}


def test_one_bad_list_item_is_one_problem(lab_raw: dict[str, Any]) -> None:
    """A tuple with min_length whose only item is invalid: report the item, not 'too short'."""
    lab_raw["flows"][0]["ports"] = ["tcp/70000"]
    assert paths(lab_raw) == ["flows.0.ports.0"]
    lab_raw["flows"][0]["ports"] = []
    assert paths(lab_raw) == ["flows.0.ports"]


def test_field_layer_alone_skips_whole_spec_rules(lab_raw: dict[str, Any]) -> None:
    lab_raw["fabric"]["vlans"]["inference"]["id"] = 10  # duplicate VLAN id: a whole-spec rule
    spec = parse_raw(lab_raw, "test")
    assert spec.fabric.vlans.inference is not None and spec.fabric.vlans.inference.id == 10
    assert "fabric.vlans.inference.id" in paths(lab_raw)


def test_whole_spec_rules_do_not_run_after_field_errors(lab_raw: dict[str, Any]) -> None:
    lab_raw["fabric"]["vlans"]["inference"]["id"] = 10  # whole-spec problem ...
    lab_raw["pools"]["gpu"]["count"] = "two"  # ... hidden behind a field problem
    assert paths(lab_raw) == ["pools.gpu.count"]


# --------------------------------------------------------------------------- layer 2: whole spec


def test_validate_spec_on_a_valid_spec_is_empty(prod: dict[str, Any]) -> None:
    spec = validate_raw(prod, "prod-baremetal")
    assert validate_spec(spec) == []


def test_validate_spec_returns_every_problem(lab_raw: dict[str, Any]) -> None:
    lab_raw["pki"] = {"algorithm": "RSA", "min_tls_version": "1.2", "leaf_validity_days": 30}
    lab_raw["storage"]["raid"]["drives"] = 3
    lab_raw["flows"][1]["to"] = "gpus"
    spec = parse_raw(lab_raw, "test")
    found = validate_spec(spec)
    assert {"pki.algorithm", "pki.min_tls_version", "storage.raid.drives", "flows.1.to"} <= {p.path for p in found}
    # RAID 10 over 3 drives breaks two rules at one key.
    assert len([p for p in found if p.path == "storage.raid.drives"]) == 2


def test_whole_spec_problems_are_collected_into_one_error(lab_raw: dict[str, Any]) -> None:
    lab_raw["pki"] = {"algorithm": "RSA", "min_tls_version": "1.2"}
    lab_raw["serving"]["model"] = "deepseek-r2"
    got = paths(lab_raw)
    assert got == sorted(got)
    assert {"pki.algorithm", "pki.min_tls_version", "serving.model"} <= set(got)


def test_opt_ins_make_the_rules_pass(lab_raw: dict[str, Any]) -> None:
    lab_raw["pki"] = {"algorithm": "RSA", "allow_rsa": True, "min_tls_version": "1.2", "allow_tls12": True}
    lab_raw["storage"]["ceph"]["pools"][0].update(size=2, min_size=1)
    lab_raw["storage"]["ceph"]["allow_reduced_redundancy"] = True
    spec = validate_raw(lab_raw, "test")
    assert spec.pki.algorithm == "RSA"
    assert spec.storage.ceph is not None and spec.storage.ceph.pools[0].size == 2


def test_infeasible_serving_is_reported_at_serving(lab_raw: dict[str, Any]) -> None:
    lab_raw["pools"]["gpu"]["gpu"]["model"] = "a100-80gb"
    (p,) = [p for p in problems(lab_raw) if p.path == "serving"]
    assert "fp8" in p.message and "a100-80gb" in p.message


def test_unknown_gpu_is_reported_once(lab_raw: dict[str, Any]) -> None:
    lab_raw["pools"]["gpu"]["gpu"]["model"] = "h10"
    got = problems(lab_raw)
    assert [p.path for p in got] == ["pools.gpu.gpu.model"]
    assert "did you mean 'h100'" in got[0].message


def test_address_exhaustion_names_the_vlan_prefix(lab_raw: dict[str, Any]) -> None:
    lab_raw["pools"]["gpu"]["count"] = 300
    found = {p.path: p.message for p in problems(lab_raw)}
    p = found["fabric.vlans.mgmt.prefix"]
    assert "exhausted" in p and "use /23 or larger" in p
    # every VLAN that runs out is named in the same run, not only the first one
    assert {k for k in found if k.startswith("fabric.")} == {
        f"fabric.vlans.{role}.prefix" for role in ("mgmt", "inference", "storage_public", "rdma")}
    assert "set leaf_switches" in found["baremetal.leaf_switches"] or "spine" in found["baremetal.leaf_switches"]


def test_aws_pool_with_bmc_is_one_problem() -> None:
    raw = raw_of("prod-aws")
    raw["pools"]["gateway"]["bmc"] = True
    assert [p.message for p in problems(raw)] == ["EC2 instances have no BMC: remove it"]


def test_plan_and_infeasible_errors() -> None:
    err = PlanError("fabric.vlans.mgmt.prefix", "too small")
    assert err.problem == Problem("fabric.vlans.mgmt.prefix", "too small")
    assert str(err) == "fabric.vlans.mgmt.prefix: too small"
    assert InfeasibleError("x").exit_code == SpecError([]).exit_code == 2


# --------------------------------------------------------------------------- problems and errors


def test_problems_sorted_and_deduped() -> None:
    a, b, c = Problem("b", "x"), Problem("a", "z"), Problem("a", "y")
    err = SpecError([a, b, a, c, b])
    assert err.problems == [c, b, a]
    assert err.lines() == ["a: y", "a: z", "b: x"]
    assert str(err) == "a: y\na: z\nb: x"


def test_spec_error_from_one_problem_and_source() -> None:
    err = SpecError(Problem("", "malformed YAML: line 1"), source="stacks/Pulumi.x.yaml")
    assert err.problems == [Problem("", "malformed YAML: line 1")]
    assert err.lines() == ["stacks/Pulumi.x.yaml: malformed YAML: line 1"]
    assert str(Problem("", "m")) == "m" and str(Problem("a.b", "m")) == "a.b: m"


def test_problems_are_ordered_values() -> None:
    assert Problem("a", "b") < Problem("b", "a")
    assert Problem("a", "b") == Problem("a", "b") and hash(Problem("a", "b")) == hash(Problem("a", "b"))


# --------------------------------------------------------------------------- did you mean


@pytest.mark.parametrize(("word", "choices", "text"), [
    ("supernt", ["name", "domain", "supernet"], "; did you mean 'supernet'?"),
    ("vlan", ["mtu", "vlans", "qos"], "; did you mean 'vlans'?"),
    ("pool", ["site", "pools", "zones"], "; did you mean 'pools'?"),
    ("h10", ["h100", "h200", "l40s"], "; did you mean 'h100'?"),
    ("zzzzzz", ["name", "domain"], ""),
    (3, ["3x", "name"], "; did you mean '3x'?"),  # non-string keys (YAML ints) are compared as text
    (3, ["name"], ""),
    ("", ["a"], ""),
])
def test_did_you_mean(word: Any, choices: list[str], text: str) -> None:
    assert did_you_mean(word, choices) == text


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(lab_raw: dict[str, Any]) -> None:
    lab_raw["site"]["qqqqq"] = 1
    (p,) = problems(lab_raw)
    assert p.path == "site.qqqqq"
    assert p.message.startswith("unknown key (allowed: admin_min_prefix, dns_servers, domain, name, ")


def test_unknown_key_did_you_mean_at_depth(lab_raw: dict[str, Any]) -> None:
    lab_raw["pools"]["gpu"]["nics"][0]["speed"] = lab_raw["pools"]["gpu"]["nics"][0].pop("speed_gbps")
    lab_raw["flows"][2]["form"] = lab_raw["flows"][2].pop("from")
    got = {p.path: p.message for p in problems(lab_raw)}
    assert got["pools.gpu.nics.0.speed"] == "unknown key; did you mean 'speed_gbps'?"
    assert got["flows.2.form"] == "unknown key; did you mean 'from'?"


def test_unknown_section_did_you_mean() -> None:
    with pytest.raises(SpecError) as ei:
        raw_from_config_mapping({"llmcluster:pool": {}, "llmcluster:sevring": {}, "aws:region": "x"})
    assert ei.value.problems == [Problem("pool", "unknown section; did you mean 'pools'?"),
                                 Problem("sevring", "unknown section; did you mean 'serving'?")]


def test_unknown_stack_file_key_did_you_mean() -> None:
    with pytest.raises(SpecError) as ei:
        raw_from_stack_document({"config": {}, "secretprovider": "x"})
    assert ei.value.problems == [Problem("secretprovider", "unknown stack file key; did you mean 'secretsprovider'?")]


# --------------------------------------------------------------------------- raw config and overrides


def test_raw_from_config_mapping_strips_namespace_and_decodes_json() -> None:
    raw = raw_from_config_mapping({"llmcluster:site": '{"name": "x"}', "llmcluster:platform": "aws",
                                   "aws:region": "us-east-1"}, json_values=True)
    assert raw == {"site": {"name": "x"}, "platform": "aws"}


def test_raw_from_config_mapping_problems() -> None:
    with pytest.raises(SpecError) as ei:
        raw_from_config_mapping({"site": {}, 3: 4, "llmcluster:pki": {"secure": "v1:abc"}})
    assert [p.path for p in ei.value.problems] == ["3", "pki", "site"]


@pytest.mark.parametrize(("text", "path", "value"), [
    ("pools.gpu.count=1024", "pools.gpu.count", 1024),
    (" pools.gpu.count =3", "pools.gpu.count", 3),
    ("site.organization=Example Org", "site.organization", "Example Org"),
    ("serving.precision=", "serving.precision", ""),
    ("pki.allow_rsa=true", "pki.allow_rsa", True),
    ("pools.gpu.driver=570.1", "pools.gpu.driver", 570.1),
    ("flows.0.ports=[tcp/22, udp/53]", "flows.0.ports", ["tcp/22", "udp/53"]),
    ("serving.gateway={pool: gateway}", "serving.gateway", {"pool": "gateway"}),
    ("site.name=a=b", "site.name", "a=b"),
])
def test_parse_override(text: str, path: str, value: Any) -> None:
    assert parse_override(text) == (path, value)


@pytest.mark.parametrize("text", ["nokey", "=1", "a..b=1", "a b=1", ".a=1", "a.=1", "pools.gpu.count=[1"])
def test_parse_override_errors(text: str) -> None:
    with pytest.raises(SpecError):
        parse_override(text)


def test_apply_overrides_copies_and_creates(lab_raw: dict[str, Any]) -> None:
    before = copy.deepcopy(lab_raw)
    out = apply_overrides(lab_raw, ["pools.gpu.count=4", "pki.allow_rsa=true", ("serving.replicas", 2)])
    assert lab_raw == before  # the input is not modified
    assert out["pools"]["gpu"]["count"] == 4 and out["pki"]["allow_rsa"] is True
    assert out["serving"]["replicas"] == 2
    out = apply_overrides({}, ["storage.raid.pool=gpu"])
    assert out == {"storage": {"raid": {"pool": "gpu"}}}


@pytest.mark.parametrize(("override", "path"), [
    ("nosuch.x=1", "nosuch.x"),
    ("flows.19.name=x", "flows.19"),
    ("flows.x.name=x", "flows.x"),
    ("platform.x=1", "platform.x"),
    ("pools.gpu.vlans.7=mgmt", "pools.gpu.vlans.7"),
])
def test_apply_overrides_errors(lab_raw: dict[str, Any], override: str, path: str) -> None:
    with pytest.raises(SpecError) as ei:
        apply_overrides(lab_raw, [override])
    assert [p.path for p in ei.value.problems] == [path]


def test_stack_name_from_path() -> None:
    assert stack_name_from_path(Path("stacks/Pulumi.prod-baremetal.yaml")) == "prod-baremetal"
    assert stack_name_from_path(Path("Pulumi.lab.yml")) == "lab"
    assert stack_name_from_path(Path("other.yaml")) == "other"
