"""Bare metal under Pulumi's mocks: node pools and hosts, the switch fabric (render-only and
push), the inventory output, secrets, and bad input stopping the program before anything exists.

Assertion messages carry the URN of the offending resource.
"""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout

import pulumi
import pytest
import yaml

from llmcluster import outputs
from llmcluster.components.switches import RESOURCE_TYPE as SWITCH_CONFIG
from llmcluster.components.switches import sha256_text
from llmcluster.inventory import build_inventory
from llmcluster.offline import evaluate
from llmcluster.render.switch import render_switch
from llmcluster.spec.secrets import SwitchCredentials
from tests.conftest import ROOT, STACKS, load_spec

COMPUTE, POOL, HOST, FABRIC = ("llmcluster:baremetal:Compute", "llmcluster:baremetal:NodePool",
                               "llmcluster:baremetal:Host", "llmcluster:baremetal:Fabric")
PASSWORD = "s3cr3t-switch-password-7f1d"
PUSH_PROD = ("baremetal.switch_apply=push",
             'baremetal.switch_mgmt={"leaf-01": "10.64.8.2", "leaf-02": "10.64.8.5", "leaf-03": "10.64.8.6", '
             '"leaf-04": "10.64.8.7", "spine-01": "10.64.8.8", "spine-02": "10.64.8.9"}')


@functools.cache
def ev(stack: str, overrides: tuple[str, ...] = ()):
    return evaluate(load_spec(stack, overrides))


@functools.cache
def ev_push():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()

    def creds():
        return SwitchCredentials(password=pulumi.Output.secret(PASSWORD), private_key=pulumi.Output.secret(key))

    return evaluate(load_spec("prod-baremetal", PUSH_PROD), switch_credentials=creds), key


def _one(e, type_):
    found = [r for r in e.resources if r.type == type_]
    assert len(found) == 1, [r.urn for r in found]
    return found[0]


@pytest.mark.parametrize("stack", ["lab", "prod-baremetal"])
def test_node_pools_and_hosts_are_registered_with_their_facts(stack):
    e = ev(stack)
    plan = e.plan
    compute = _one(e, COMPUTE)
    assert compute.name == "compute" and compute.parent.endswith("::" + f"llmcluster-{stack}"), compute.urn
    pools = {r.name: r for r in e.resources if r.type == POOL}
    assert set(pools) == {f"compute-{p}" for p in plan.spec.pools}
    for r in pools.values():
        assert r.parent == compute.urn, f"{r.urn}: parent {r.parent!r}, expected the Compute component"
    hosts = {r.name: r for r in e.resources if r.type == HOST}
    assert set(hosts) == {f"compute-{h.name}" for h in plan.ip.hosts}
    for h in plan.ip.hosts:
        r = hosts[f"compute-{h.name}"]
        assert r.parent == pools[f"compute-{h.pool}"].urn, f"{r.urn}: not parented to its pool"
        assert r.inputs["mgmtAddress"] == h.mgmt_ip and r.inputs["addresses"] == h.addresses, r.urn
        assert r.inputs.get("bmcAddress") == h.bmc, r.urn
        pool = plan.spec.pools[h.pool]
        if pool.gpu is not None:
            assert (r.inputs["gpu"]["model"], r.inputs["gpu"]["count"]) == (pool.gpu.model, pool.gpu.count), r.urn
        if pool.nvme is not None:
            assert r.inputs["nvme"]["count"] == pool.nvme.count, r.urn
            assert r.inputs["nvme"]["devices"][0] == "/dev/nvme0n1", r.urn
        assert r.inputs["os"] == plan.spec.baremetal.os, r.urn


def test_prod_gpu_host_facts():
    r = next(x for x in ev("prod-baremetal").resources if x.name == "compute-gpu-02")
    assert r.inputs["bmcAddress"] == "10.64.8.12", r.urn
    assert r.inputs["gpu"] == {"model": "h200", "name": "NVIDIA H200 SXM 141GB", "count": 8, "nvswitch": True,
                               "driverVersion": "580.95.05"}, r.urn
    assert r.inputs["nvme"]["count"] == 8 and r.inputs["nvme"]["model"] == "Samsung PM1743", r.urn
    assert [n["name"] for n in r.inputs["nics"]] == ["cx7", "bf3"], r.urn


@pytest.mark.parametrize("stack", ["lab", "prod-baremetal"])
def test_inventory_output_is_what_the_cli_and_the_dynamic_inventory_serve(stack):
    """One structure: the Pulumi output, build_inventory(plan), `llmcluster inventory --list`, the script."""
    from llmcluster.cli import main

    e = ev(stack)
    exported = json.loads(json.dumps(e.outputs[outputs.INVENTORY], sort_keys=True))
    assert exported == json.loads(json.dumps(build_inventory(e.plan), sort_keys=True))
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["inventory", "--stack", stack, "--stacks-dir", str(STACKS), "--list"]) == 0
    assert json.loads(buf.getvalue()) == exported
    env = {**os.environ, "LLMCLUSTER_STACK": stack, "LLMCLUSTER_STACKS_DIR": str(STACKS)}
    r = subprocess.run([sys.executable, str(ROOT / "ansible" / "inventory" / "llmcluster.py"), "--list"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == exported


@pytest.mark.parametrize("stack", ["lab", "prod-baremetal"])
def test_render_only_registers_nothing_that_connects_and_exports_the_configs(stack):
    e = ev(stack)
    assert load_spec(stack).baremetal.switch_apply == "render-only"
    assert not [r.urn for r in e.resources if r.type.startswith("pulumi-python:dynamic")]
    fabric = _one(e, FABRIC)
    assert fabric.name == "fabric" and fabric.inputs["mode"] == "render-only", fabric.urn
    sw = e.plan.switches
    assert not [r.urn for r in e.resources if r.parent == fabric.urn], "render-only: the fabric has no children"
    configs = e.outputs[outputs.SWITCH_CONFIGS]
    assert list(configs) == [s.name for s in sw.switches]
    for s in sw.switches:
        assert configs[s.name] == render_switch(s, sw.nos, sw.stack)
    # the component's inputs carry the hashes: a preview shows which switches would change
    assert fabric.inputs["configSha256"] == {n: sha256_text(t) for n, t in configs.items()}, fabric.urn
    assert e.outputs[outputs.SWITCH_APPLIED] == {}
    assert e.document()["outputs"][outputs.SWITCH_CONFIGS] == configs


def test_aws_stacks_have_no_fabric_and_empty_switch_outputs():
    e = ev("dev-aws")
    assert not [r for r in e.resources if r.type in (COMPUTE, FABRIC, HOST, POOL)]
    assert e.outputs[outputs.SWITCH_CONFIGS] == {} and e.outputs[outputs.SWITCH_APPLIED] == {}


def test_push_registers_one_switch_config_per_switch_under_the_fabric():
    e, _ = ev_push()
    fabric = _one(e, FABRIC)
    assert fabric.inputs["mode"] == "push", fabric.urn
    sw = e.plan.switches
    res = {r.name: r for r in e.resources if r.type == SWITCH_CONFIG}
    assert set(res) == {f"fabric-{s.name}" for s in sw.switches}
    spec = e.plan.spec
    for s in sw.switches:
        r = res[f"fabric-{s.name}"]
        assert r.custom and r.parent == fabric.urn, f"{r.urn}: parent {r.parent!r}"
        text = render_switch(s, sw.nos, sw.stack)
        assert r.inputs["config"] == text, f"{r.urn}: the rendered text is the input diff compares"
        assert (r.inputs["switch"], r.inputs["nos"], r.inputs["host"], r.inputs["fileName"]) == (
            s.name, "cumulus", spec.baremetal.switch_mgmt[s.name], f"{s.name}.nvue.yaml"), r.urn
        assert r.inputs["username"] == "admin" and r.inputs["insecureAcceptHostKey"] is False, r.urn
    applied = e.outputs[outputs.SWITCH_APPLIED]
    assert applied == {s.name: sha256_text(render_switch(s, sw.nos, sw.stack)) for s in sw.switches}


def test_switch_credentials_are_secret_in_inputs_state_and_outputs():
    e, key = ev_push()
    doc = e.document()
    text = json.dumps(doc)
    assert PASSWORD not in text and "PRIVATE KEY" not in text
    configs = [x for x in doc["resources"] if x["type"] == SWITCH_CONFIG]
    assert len(configs) == len(e.plan.switches.switches) > 0
    for r in configs:
        assert r["inputs"]["password"] == "<secret>", r["urn"]
        assert r["inputs"]["privateKey"] == "<secret>", r["urn"]
        assert r["inputs"]["__provider"] == "<secret>", r["urn"]  # the serialised provider
    for k, v in e.outputs.items():
        if k not in outputs.SECRET:
            dumped = json.dumps(v, default=str)
            assert PASSWORD not in dumped and key.strip().splitlines()[1] not in dumped, k


def test_offline_placeholder_credentials_when_none_are_given():
    e = ev("prod-baremetal", PUSH_PROD)
    res = [r for r in e.resources if r.type == SWITCH_CONFIG]
    assert len(res) == 6
    assert all(x["inputs"]["password"] == "<secret>" for x in e.document()["resources"] if x["type"] == SWITCH_CONFIG)


# --------------------------------------------------------------------------- the real entry point


def _stack_config(stack: str, baremetal_extra: dict | None = None) -> dict[str, str]:
    doc = yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text())
    cfg = dict(doc["config"])
    if baremetal_extra:
        cfg["llmcluster:baremetal"] = {**cfg["llmcluster:baremetal"], **baremetal_extra}
    return {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in cfg.items()}


def _run_main(stack: str, config: dict[str, str], secret_keys: list[str] | None = None):
    """program.main() as `pulumi up` runs it, under the recording mocks."""
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import settings

    from llmcluster import program
    from llmcluster.offline import RecordingMocks, RecordingMonitor

    mocks = RecordingMocks()
    pulumi.runtime.set_all_config(config, secret_keys or [])
    settings.ROOT.set(None)
    pmocks.set_mocks(mocks, project="llmcluster", stack=stack, monitor=RecordingMonitor(mocks))
    try:
        pulumi.runtime.test(program.main)()
    finally:
        pulumi.runtime.set_all_config({}, [])
    return mocks


PROD_MGMT = {"leaf-01": "10.64.8.2", "leaf-02": "10.64.8.5", "leaf-03": "10.64.8.6", "leaf-04": "10.64.8.7",
             "spine-01": "10.64.8.8", "spine-02": "10.64.8.9"}


def test_main_reads_the_switch_password_as_a_secret_and_pushes():
    cfg = _stack_config("prod-baremetal", {"switch_apply": "push", "switch_mgmt": PROD_MGMT})
    cfg["llmcluster-switches:password"] = PASSWORD
    mocks = _run_main("prod-baremetal", cfg, ["llmcluster-switches:password"])
    res = [r for r in mocks.records if r.type == SWITCH_CONFIG]
    assert len(res) == 6
    from llmcluster.offline import _is_secret

    for r in res:
        assert _is_secret(r.inputs["password"]), f"{r.urn}: the password input is not a secret"
        assert "privateKey" not in r.inputs, r.urn


@pytest.mark.parametrize(("extra", "expected"), [
    ({"switch_mgmt": {"leaf-09": "10.64.8.2"}}, "baremetal.switch_mgmt.leaf-09: unknown switch"),
    ({"switch_mgmt": {"leaf-01": "192.168.7.7"}}, "baremetal.switch_mgmt.leaf-01: 192.168.7.7 is outside the oob VLAN"),
    ({"switch_apply": "push", "switch_mgmt": {"leaf-01": "10.64.8.2"}},
     "baremetal.switch_mgmt: switch_apply 'push' needs the management address of every switch"),
    ({"switch_apply": "push", "switch_mgmt": PROD_MGMT}, "llmcluster-switches:password: baremetal.switch_apply is"),
])
def test_bad_switch_settings_stop_the_program_before_anything_is_registered(extra, expected):
    with pytest.raises(pulumi.RunError) as ei:
        _run_main("prod-baremetal", _stack_config("prod-baremetal", extra))
    assert expected in str(ei.value)
    assert "Traceback" not in str(ei.value)


def test_bad_input_registers_nothing():
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import settings

    from llmcluster import program
    from llmcluster.offline import RecordingMocks, RecordingMonitor

    mocks = RecordingMocks()
    pulumi.runtime.set_all_config(_stack_config("prod-baremetal", {"switch_mgmt": {"leaf-01": "10.64.0.11"}}))
    settings.ROOT.set(None)
    pmocks.set_mocks(mocks, project="llmcluster", stack="prod-baremetal", monitor=RecordingMonitor(mocks))
    try:
        with pytest.raises(pulumi.RunError) as ei:
            program.main()
    finally:
        pulumi.runtime.set_all_config({})
    assert "10.64.0.11 is outside the oob VLAN 10.64.8.0/21" in str(ei.value)
    assert mocks.records == []
