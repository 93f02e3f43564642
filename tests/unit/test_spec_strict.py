"""Strict typing of every field: the models are walked, and every field is tried with the values that
used to slip through.

* strings: a trailing newline or other control character, a trailing space where the field is not free
  text, non-ASCII digits (``"５７０.172.08"``, ``"tcp/٤٤٣"``; ``\\d`` and ``int()`` accept them) -- every one
  refused at the field's key path (free text: descriptions, the organization, may hold any script);
* integers: never a string, boolean or float; real numbers: never a string or boolean; booleans: never a
  string or number.

The samples are the shipped stacks, enriched so that every field of :class:`llmcluster.spec.models.Spec`
holds a value somewhere; :func:`test_every_field_of_the_models_is_tried` fails for a field added to the
models without one.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from llmcluster.errors import SpecError
from llmcluster.spec.loader import raw_from_stack_document
from llmcluster.spec.models import Spec
from llmcluster.validate import validate_raw
from tests.conftest import STACKS

HOST_KEY = "SHA256:" + "A" * 43
FPR = "0123456789ABCDEF0123456789ABCDEF01234567"


def _raw(stack: str) -> dict[str, Any]:
    return raw_from_stack_document(yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8")))


def _enriched() -> dict[str, dict[str, Any]]:
    """The shipped stacks plus every optional field the models have, all with valid values."""
    lab = _raw("lab")
    lab["site"].update(timezone="Europe/Berlin", ntp_servers=["ntp1.lab.example", "10.0.0.123"],
                       dns_servers=["10.0.0.53"], admin_min_prefix=24)
    lab["pools"]["gateway"]["labels"] = {"tier": "edge", "example.com/role": "api-gw"}
    lab["pools"]["gpu"]["nvme"]["model"] = "Samsung PM1743"
    lab["pools"]["gpu"]["gpu"]["driver_flavor"] = "open"
    lab["baremetal"].update(
        switch_mgmt={"leaf-01": "10.42.0.5"},
        switch_access={"username": "cumulus", "port": 22, "host_keys": {"leaf-01": HOST_KEY}, "timeout_s": 30},
        port_map={"leaf-01": {50: {"host": "gw-01", "port": 1, "vlans": ["mgmt", "inference"]},
                              "swp51": {"host": "storage-01", "port": 1}}},
    )
    lab["lab"]["hosts"] = {"gw-01": {"kind": "vm", "network": "tagged"}}
    lab["lab"]["vm"] = {"memory_mb": 2048, "cpus": 2, "disk_gb": 8, "accel": "tcg", "boot_timeout_s": 300}
    lab["serving"].update(revision="0123abcd", kv_dtype="fp8", port=8000, backend_port=8001)
    lab["serving"]["gateway"].update(hostname="api", rate_limit_rps=20, request_timeout_s=900, max_body_bytes=1048576)
    lab["access"]["policies"][1]["clients"] = ["lab-analyst"]
    lab["access"]["policies"][1]["models"] = ["deepseek-r1"]
    lab["pki"].update(renew_at_fraction=0.7, rsa_bits=3072, min_tls_version="1.3", crl_validity_days=7)
    lab["storage"]["raid"].update(chunk_kib=512, mount="/srv/models")
    lab["storage"]["ceph"].update(osds_per_drive=1, target_pgs_per_osd=100)
    lab["storage"]["ceph"]["pools"][0].update(size=3, min_size=2)
    lab["fabric"]["vlans"]["mgmt"]["reserved"] = 10
    lab["flows"][0]["description"] = "API clients"
    lab["nvidia"] = {
        "cuda_repo": {"url": "https://mirror.example/cuda", "key_url": "https://mirror.example/cuda.pub",
                      "key_fingerprint": FPR},
        "toolkit_repo": {"url": "file:/srv/mirror/toolkit", "key_url": "file:/srv/mirror/toolkit.pub",
                         "key_fingerprint": FPR},
        "container_toolkit_version": "1.17.8", "dcgm_version": "4.2.3", "dcgm_exporter_version": "4.1.3",
        "trtllm": {"version": "1.0.0", "cuda_version": "12.9", "pip_index_url": "https://pypi.example/simple",
                   "image": "registry.example:5000/nvidia/tensorrt-llm/release:1.0.0",
                   "registry_mirror": "registry.example:5000", "engine_cache_dir": "/var/lib/llmcluster/engines"},
    }
    lab["baremetal"].update(ssh_insecure_accept_host_key=False, switch_apply="render-only")
    lab["baremetal"]["switch_access"]["insecure_accept_host_key"] = False
    lab["baremetal"]["port_map"]["leaf-01"]["swp52"] = {"host": "gpu-01", "nic": "bf3", "port": 1}
    lab["lab"]["pools"]["gateway"]["network"] = "access"
    lab["nvidia"].update(container_runtime="containerd", dcgm_diag_level=1, kubernetes_drain=False, skip_reboot=False)
    lab["monitoring"].update(retention_days=30, audit_retention_days=365, slo={
        "ttft_p99_s": 2.0, "latency_p99_s": 120, "error_ratio": 0.02, "queue_depth": 32, "kv_cache_ratio": 0.95,
        "gpu_memory_ratio": 0.85})
    lab["nvidia"]["trtllm"]["install"] = "venv"
    lab["pki"].update(algorithm="ECDSA", allow_rsa=False, allow_tls12=False, ecdsa_curve="P256",
                      intermediate_validity_days=1825, root_validity_days=3650)
    lab["storage"]["ceph"].update(allow_reduced_redundancy=False, encrypt=True)
    lab["storage"]["raid"].update(encrypt=True, allow_raid0=False)
    prod = _raw("prod-baremetal")
    for i, vlan in enumerate(prod["fabric"]["vlans"].values()):
        vlan.update(subnet=f"10.64.{8 * i}.0/21", reserved=10)
    prod["fabric"]["qos"]["classes"] = [
        {"name": n, "traffic": n, "dscp": d, "pcp": p, "queue": p, "lossless": n == "roce",
         "ecn": n in ("roce", "storage"), "bandwidth_percent": b}
        for n, d, p, b in (("roce", 26, 3, 50), ("cnp", 48, 6, 0), ("inference", 34, 4, 20), ("storage", 10, 1, 20),
                           ("mgmt", 16, 2, 5), ("default", 0, 0, 5))]
    aws = _raw("dev-aws")
    aws["pools"]["gpu"]["aws"].update(ami="ami-0123456789abcdef0", capacity="odcr",
                                      capacity_reservation_id="cr-0123456789abcdef0")
    aws["aws"].update(secondary_availability_zones=["us-east-1b"], key_name="ops-2025", public_subnet="10.80.250.0/28",
                      eks={"version": "1.33", "log_retention_days": 365,
                           "admin_principals": ["arn:aws:iam::123456789012:role/platform-admin"]})
    aws["fabric"]["vlans"]["mgmt"]["subnet"] = aws["fabric"]["vlans"]["mgmt"].get("subnet") or "10.80.0.0/24"
    aws["fabric"]["vlans"]["mgmt"].pop("prefix", None)
    # the Kubernetes serving layer (docs/kubernetes.md), every field
    prod["serving"]["runtime"] = "kubernetes"
    prod["kubernetes"] = {
        "namespace": "llm", "version": "1.33", "kubeconfig_secret": "llmcluster-k8s:kubeconfig",
        "gpu_operator": {"chart_version": "v25.3.2", "driver": False, "toolkit": False, "dcgm_exporter": True},
        "lws_chart_version": "0.7.0", "gateway_image": "registry.example:5000/haproxy@sha256:" + "c" * 64,
        "pins": [{"model": "deepseek-r1", "revision": "0123abcd", "manifest_sha256": "2" * 64,
                  "image": "registry.example:5000/nvidia/tensorrt-llm/release@sha256:" + "b" * 64}],
        "active": 0, "keep_pins": 5, "model_volume": "pvc", "storage_class": "ceph-rbd",
        "prometheus_operator": True, "prometheus_namespace": "monitoring",
        "autoscaling": {"engine": "keda", "metric": "gateway_queue", "target": 8, "min_replicas": 2,
                        "max_replicas": 4, "prometheus_url": "http://prometheus.monitoring.svc:9090"}}
    return {"lab": lab, "dev-aws": aws, "prod-baremetal": prod}


STACK_DOCS = _enriched()


def test_the_enriched_samples_are_valid() -> None:
    for stack, raw in STACK_DOCS.items():
        validate_raw(copy.deepcopy(raw), stack)


# --------------------------------------------------------------------------- the models' fields


def _leaf_kind(tp: Any) -> str | None:
    if tp is bool:
        return "bool"
    if tp is int:
        return "int"
    if tp is float:
        return "float"
    if tp is str:
        return "str"
    return None


def model_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """``(path pattern, kind)`` of every scalar field (``*``: any list index or mapping key)."""
    for name, f in model.model_fields.items():
        if model is Spec and name == "stack":
            continue
        yield from _walk(f.annotation, (*prefix, f.alias or name))


def _walk(tp: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    origin = get_origin(tp)
    if origin is Annotated:
        yield from _walk(get_args(tp)[0], path)
    elif origin in (Union, types.UnionType):
        for a in get_args(tp):
            if a is not type(None):
                yield from _walk(a, path)
    elif origin is tuple:
        yield from _walk(get_args(tp)[0], (*path, "*"))
    elif origin is dict:
        key, value = get_args(tp)
        yield from ((p[:-1] + ("<key>",), k) for p, k in _walk(key, (*path, "*")))
        yield from _walk(value, (*path, "*"))
    elif origin is Literal:
        yield path, "literal"
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        yield from model_fields(tp, path)
    elif _leaf_kind(tp):
        yield path, _leaf_kind(tp)  # type: ignore[misc]
    else:  # pragma: no cover - a new kind of field: teach this walker
        raise AssertionError(f"unknown field type {tp!r} at {'.'.join(path)}")


FIELDS = dict(model_fields(Spec))


def _leaves(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any, bool]]:
    """``(path, value, is_key)`` of every scalar of a raw document (mapping keys included)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*path, str(k)), k, True
            yield from _leaves(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, str(i)))
    else:
        yield path, node, False


def _pattern(path: tuple[str, ...], is_key: bool) -> tuple[str, ...] | None:
    """The FIELDS pattern a concrete path (a value, or a mapping key) belongs to."""
    want = path[:-1] + ("<key>",) if is_key else path
    for pattern in FIELDS:
        if len(pattern) == len(want) and all(p in ("*", w) or (p == "<key>" and is_key and i == len(want) - 1)
                                             for i, (p, w) in enumerate(zip(pattern, want, strict=True))):
            return pattern
    return None


def _samples() -> list[tuple[str, tuple[str, ...], Any, bool, str]]:
    """``(stack, path, value, is_key, kind)`` for every scalar field value in the samples."""
    out = []
    for stack, raw in STACK_DOCS.items():
        for path, value, is_key in _leaves(raw):
            pattern = _pattern(path, is_key)
            if pattern is not None:
                out.append((stack, path, value, is_key, FIELDS[pattern]))
    return out


SAMPLES = _samples()
#: Free text: any script and spaces (control characters are still refused).
FREE_TEXT = {("site", "organization"), ("zones", "*", "description"), ("flows", "*", "description"),
             ("pools", "*", "nvme", "model"), ("access", "clients", "*", "description"),
             ("access", "policies", "*", "description")}


def test_every_field_of_the_models_is_tried() -> None:
    tried = {_pattern(path, is_key) for _, path, _, is_key, _ in SAMPLES}
    missing = sorted(".".join(p) for p in FIELDS if p not in tried)
    assert not missing, f"fields without a sample value (add one to _enriched()): {missing}"


def _set(raw: dict[str, Any], path: tuple[str, ...], value: Any, is_key: bool) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    node: Any = out
    for part in path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part if part in node else _key(node, part)]
    last = path[-1]
    if is_key:
        k = _key(node, last)
        node[value] = node.pop(k)
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[_key(node, last)] = value
    return out


def _key(node: dict[Any, Any], text: str) -> Any:
    return next(k for k in node if str(k) == text)


def _refused_at(stack: str, raw: dict[str, Any], path: tuple[str, ...], is_key: bool) -> list[str]:
    """The problems of ``raw``; asserts one of them is at ``path`` (a key: at or under it)."""
    with pytest.raises(SpecError) as ei:
        validate_raw(raw, stack)
    want = ".".join(path[:-1] if is_key else path)
    paths = [p.path for p in ei.value.problems]
    assert any(p == want or p.startswith(want + ".") for p in paths), (want, ei.value.problems)
    assert ei.value.exit_code == 2
    return paths


STRINGS = [s for s in SAMPLES if s[4] in ("str", "literal") and isinstance(s[2], str)]
SUFFIXES = ["\n", "\r\n", "\t", "\x00", "\x0b", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("suffix", SUFFIXES, ids=[repr(s) for s in SUFFIXES])
def test_no_string_field_takes_a_control_character(suffix: str) -> None:
    for stack, path, value, is_key, _ in STRINGS:
        _refused_at(stack, _set(STACK_DOCS[stack], path, value + suffix, is_key), path, is_key)


def test_no_structured_string_field_takes_surrounding_space() -> None:
    for stack, path, value, is_key, _ in STRINGS:
        if _pattern(path, is_key) in FREE_TEXT:
            continue
        for bad in (value + " ", " " + value):
            _refused_at(stack, _set(STACK_DOCS[stack], path, bad, is_key), path, is_key)


DIGITS = {"fullwidth": "０１２３４５６７８９", "arabic-indic": "٠١٢٣٤٥٦٧٨٩", "devanagari": "०१२३४५६७८९"}


@pytest.mark.parametrize("script", DIGITS)
def test_no_structured_string_field_takes_non_ascii_digits(script: str) -> None:
    table = str.maketrans("0123456789", DIGITS[script])
    tried = 0
    for stack, path, value, is_key, _ in STRINGS:
        if _pattern(path, is_key) in FREE_TEXT or not any(c.isdigit() for c in value):
            continue
        tried += 1
        _refused_at(stack, _set(STACK_DOCS[stack], path, value.translate(table), is_key), path, is_key)
    assert tried >= 20


WRONG_TYPES = {
    "int": lambda v: [str(v), True, float(v) + 0.5, None],
    "float": lambda v: [str(v), True, None],
    "bool": lambda v: [str(v).lower(), int(v), None],
}


@pytest.mark.parametrize("kind", WRONG_TYPES)
def test_numbers_and_booleans_take_only_their_own_type(kind: str) -> None:
    tried = 0
    for stack, path, value, is_key, k in SAMPLES:
        if k != kind or is_key or isinstance(value, str):
            continue
        for bad in WRONG_TYPES[kind](value):
            if bad is None and path[-1] not in ("count", "id", "read_gbps", "nvswitch", "bmc"):
                continue  # null means "the default" for optional fields
            tried += 1
            _refused_at(stack, _set(STACK_DOCS[stack], path, bad, is_key), path, is_key)
    assert tried >= 10


def test_integer_literals_take_no_boolean() -> None:
    raw = _set(STACK_DOCS["lab"], ("storage", "raid", "level"), True, False)
    _refused_at("lab", raw, ("storage", "raid", "level"), False)
    raw = _set(STACK_DOCS["lab"], ("pki", "rsa_bits"), True, False)
    _refused_at("lab", raw, ("pki", "rsa_bits"), False)


def test_real_numbers_take_integers_but_not_infinity() -> None:
    validate_raw(_set(STACK_DOCS["lab"], ("pools", "gpu", "nvme", "read_gbps"), 7, False), "lab")
    for bad in (float("inf"), float("nan")):
        _refused_at("lab", _set(STACK_DOCS["lab"], ("pools", "gpu", "nvme", "read_gbps"), bad, False),
                    ("pools", "gpu", "nvme", "read_gbps"), False)


# --------------------------------------------------------------------------- random variants

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=150,
                suppress_health_check=[HealthCheck.too_slow])
STRUCTURED = [s for s in STRINGS if _pattern(s[1], s[3]) not in FREE_TEXT]
WITH_DIGITS = [s for s in STRUCTURED if any(c.isdigit() for c in s[2])]
NON_ASCII_DIGIT = st.characters(categories=["Nd"]).filter(lambda c: not ("0" <= c <= "9"))
#: Whitespace and invisible characters a copy-paste brings along.
TAIL = st.sampled_from(["\n", "\r", "\t", " ", "\x0c", "\x0b", "\xa0", "\u2028", "\u200b", "\u3000", "\ufeff"])


@FUZZ
@given(sample=st.sampled_from(WITH_DIGITS), digit=NON_ASCII_DIGIT, where=st.integers(min_value=0))
def test_random_unicode_digit_in_any_field(sample, digit: str, where: int) -> None:
    stack, path, value, is_key, _ = sample
    positions = [i for i, c in enumerate(value) if c.isdigit()]
    i = positions[where % len(positions)]
    _refused_at(stack, _set(STACK_DOCS[stack], path, value[:i] + digit + value[i + 1:], is_key), path, is_key)


@FUZZ
@given(sample=st.sampled_from(STRUCTURED), tail=st.text(TAIL, min_size=1, max_size=3), front=st.booleans())
def test_random_invisible_characters_around_any_field(sample, tail: str, front: bool) -> None:
    stack, path, value, is_key, _ = sample
    bad = tail + value if front else value + tail
    _refused_at(stack, _set(STACK_DOCS[stack], path, bad, is_key), path, is_key)
