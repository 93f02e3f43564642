"""The switch-config dynamic provider without a switch: input checks, diff, apply procedures,
serialisation, and connection errors (real sockets on loopback only).

The apply procedures come from the switch OS registry (llmcluster.nos). The provider's
create/update/delete/read against a real SSH server are in tests/lab/test_switch_provider_lab.py.
"""

from __future__ import annotations

import base64
import socket

import pytest

from llmcluster.components import switches as S
from llmcluster.nos import get
from llmcluster.render.switch import file_name, render_switch
from tests.conftest import load_plan


def _text(overrides: tuple[str, ...] = (), nos: str = "cumulus") -> str:
    plan = load_plan("lab", overrides)
    return render_switch(plan.switches.switches[0], nos, plan.switches.stack)


def props(**kw) -> dict:
    p = {"switch": "leaf-01", "nos": "cumulus", "host": "192.0.2.10", "port": 22, "username": "admin",
         "password": "pw", "fileName": "leaf-01.nvue.yaml", "config": _text(), "timeoutSeconds": 5,
         "insecureAcceptHostKey": False}
    p.update(kw)
    return p


def test_check_accepts_good_inputs_and_names_each_bad_one():
    assert S.SwitchConfigProvider().check({}, props()).failures == []
    bad = props(nos="junos", config="  ", port=70000, host="")
    bad.pop("password")
    failures = {f.property: f.reason for f in S.SwitchConfigProvider().check({}, bad).failures}
    assert set(failures) == {"nos", "config", "port", "host", "password"}
    assert "'junos' is not a supported switch OS (cumulus, sonic, eos)" in failures["nos"]
    assert "llmcluster-switches:password" in failures["password"]


def test_diff_is_empty_for_identical_text():
    old = {**props(), "sha256": "x", "runningSha256": "y", "stagedPath": "/tmp/llmcluster-leaf-01.nvue.yaml"}
    d = S.SwitchConfigProvider().diff("leaf-01", old, props())
    assert d.changes is False and d.config_diff == "" and d.detailed_diff == {}


def test_diff_shows_exactly_the_changed_lines():
    old_text, new_text = _text(), _text(("fabric.vlans.rdma.mtu=9100",))
    d = S.SwitchConfigProvider().diff("leaf-01", props(config=old_text), props(config=new_text))
    assert d.changes is True and d.detailed_diff == {"config": "update"}
    lines = d.config_diff.splitlines()
    assert lines[:2] == ["--- leaf-01 (applied)", "+++ leaf-01 (rendered)"]
    removed = [x for x in lines[2:] if x.startswith("-")]
    added = [x for x in lines[2:] if x.startswith("+")]
    assert removed and len(removed) == len(added)
    assert all("9000" in x for x in removed) and all("9100" in x for x in added)
    assert [x.replace("9000", "9100")[1:] for x in removed] == [x[1:] for x in added]


def test_diff_on_target_and_credentials_only():
    p = S.SwitchConfigProvider()
    d = p.diff("leaf-01", props(), props(host="192.0.2.11"))
    assert d.changes and d.detailed_diff == {"host": "update"} and d.config_diff == ""
    d = p.diff("leaf-01", props(), props(password="rotated"))
    assert d.changes and d.detailed_diff == {"password": "update"}


def test_update_of_credentials_only_pushes_nothing(monkeypatch):
    def no_connect(_props):
        raise AssertionError("a credential change must not push the configuration")

    monkeypatch.setattr(S, "connect", no_connect)
    old = {**props(), "sha256": "abc", "runningSha256": "def", "stagedPath": "/tmp/x"}
    outs = S.SwitchConfigProvider().update("leaf-01", old, props(password="rotated")).outs
    assert outs["password"] == "rotated" and (outs["sha256"], outs["runningSha256"]) == ("abc", "def")


@pytest.mark.parametrize(("nos", "want"), [
    ("cumulus", ["nv config replace /tmp/llmcluster-leaf-01.nvue.yaml", "nv config apply -y"]),
    ("sonic", ["sudo config load -y /tmp/llmcluster-leaf-01.config_db.json", "sudo config save -y"]),
    ("eos", ["configure replace flash:llmcluster-leaf-01.eos.cfg", "copy running-config startup-config"]),
])
def test_apply_procedure_per_switch_os(nos, want):
    path = S.staged_path(nos, file_name("leaf-01", nos))
    assert get(nos).procedure.commands(path) == want


def test_running_config_normalisation():
    eos, sonic = get("eos").procedure, get("sonic").procedure
    assert eos.normalise("! Command: show running-config\n! Time: x\nhostname a\n") == "hostname a\n"
    assert sonic.normalise('{"b": 1, "a": {"y": 1, "x": 2}}') == sonic.normalise('{"a": {"x": 2, "y": 1}, "b": 1}')
    assert get("cumulus").procedure.normalise("a: 1\n") == "a: 1\n"
    assert S.running_sha256("sonic", '{"b": 1, "a": 2}') == S.running_sha256("sonic", '{"a": 2, "b": 1}')


def test_provider_serialises_by_reference_for_the_dynamic_provider_host():
    import dill
    from pulumi.dynamic.dynamic import serialize_provider

    blob = serialize_provider(S.SwitchConfigProvider())
    assert len(blob) < 2000, "the provider class is pickled by reference (importable module), not by value"
    assert isinstance(dill.loads(base64.b64decode(blob)), S.SwitchConfigProvider)


def test_provider_host_loads_the_provider_with_the_standard_library_and_the_nos_registry():
    """What the dynamic-provider host does: unpickle the provider in a fresh process. It imports this
    module and llmcluster.nos (the apply procedures), and nothing heavy: no jinja2, netaddr, pydantic,
    jsonschema, hier_config, and nothing from the plan, renderers or the spec."""
    import json
    import os
    import subprocess
    import sys

    from pulumi.dynamic.dynamic import serialize_provider

    from tests.conftest import ROOT

    code = ("import base64, json, sys, dill\n"
            "p = dill.loads(base64.b64decode(sys.argv[1]))\n"
            "print(json.dumps([type(p).__name__, p.check({}, {'nos': 'junos'}).failures[0].reason,"
            " sorted(sys.modules)]))\n")
    out = subprocess.run([sys.executable, "-c", code, serialize_provider(S.SwitchConfigProvider())],
                         capture_output=True, text=True, check=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    name, reason, modules = json.loads(out.stdout)
    assert name == "SwitchConfigProvider" and "(cumulus, sonic, eos)" in reason
    assert not [m for m in modules if m.split(".")[0] in ("jinja2", "netaddr", "pydantic", "jsonschema",
                                                           "hier_config", "paramiko")]
    ours = {m for m in modules if m.startswith("llmcluster")}
    assert ours == {"llmcluster", "llmcluster.components", "llmcluster.components.switches", "llmcluster.nos",
                    "llmcluster.nos.base", "llmcluster.nos.cumulus", "llmcluster.nos.eos", "llmcluster.nos.sonic"}


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_switch_is_a_clear_error_and_delete_tolerates_it():
    p = props(host="127.0.0.1", port=_closed_port())
    with pytest.raises(S.SwitchApplyError, match=r"leaf-01 \(127\.0\.0\.1:\d+\): cannot connect over SSH"):
        S.SwitchConfigProvider().create(p)
    S.SwitchConfigProvider().delete("leaf-01", p)  # nothing to undo on a switch that is gone


def test_bad_private_key_is_a_clear_error():
    with pytest.raises(S.SwitchApplyError, match="not an unencrypted Ed25519, ECDSA or RSA key"):
        S.connect(props(privateKey="-----BEGIN NONSENSE-----\nabc\n-----END NONSENSE-----\n"))


def test_offline_outputs():
    from llmcluster.standins.switch import offline_outputs

    out = offline_outputs(props())
    assert out["sha256"] == S.sha256_text(props()["config"])
    assert out["stagedPath"] == "/tmp/llmcluster-leaf-01.nvue.yaml"
