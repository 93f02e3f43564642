"""The switch-config provider's create/diff/update/read/delete over real SSH, against a lab host
running the switch stand-in (llmcluster/lab/switch_standin.py: a SIMULATION of the NVUE, SONiC
and EOS command lines, labelled as such, that parses what it is given with the project's real
config parsers and keeps a "running configuration" file).

The provider methods are called directly, which is how pulumi.dynamic providers are tested:
the Pulumi engine would call exactly these with the same property bags.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from llmcluster.components import switches as S
from llmcluster.lab import switch_standin as standin
from llmcluster.render.switch import file_name, render_switch
from tests.conftest import load_plan

pytestmark = pytest.mark.lab

def standin_host(lab) -> str:
    """The lab host that plays the switch: the lightest kind there is (a namespace host, sshd as init)."""
    order = {"namespace": 0, "nspawn": 1, "vm": 2}
    return min((h.name for h in lab.hosts), key=lambda n: (order.get(lab.kind(n), 3), n))


@pytest.fixture(scope="module")
def switch(lab):
    address = lab.plan.ip.host(standin_host(lab)).mgmt_ip
    client = standin.connect(address, lab.private_key)
    standin.install(client)
    fingerprint = S.host_key_fingerprint(client.get_transport().get_remote_server_key())
    try:
        yield SimpleNamespace(address=address, port=22, client=client, key=lab.private_key.read_text(),
                              fingerprint=fingerprint)
    finally:
        standin.uninstall(client)
        client.close()


def read(sw, path: str) -> str | None:
    sftp = sw.client.open_sftp()
    try:
        with sftp.open(path) as f:
            return f.read().decode()
    except OSError:
        return None
    finally:
        sftp.close()


def write(sw, path: str, text: str) -> None:
    sftp = sw.client.open_sftp()
    try:
        with sftp.open(path, "w") as f:
            f.write(text.encode())
    finally:
        sftp.close()


def commands(sw) -> list[str]:
    return (read(sw, standin.LOG) or "").splitlines()


def clear_state(sw) -> None:
    standin._run(sw.client, f"rm -f {standin.STATE_DIR}/running.* {standin.STATE_DIR}/startup.* "
                            f"{standin.STATE_DIR}/pending.* {standin.LOG}")


def rendered(nos: str, overrides: tuple[str, ...] = ()) -> str:
    plan = load_plan("lab", overrides)
    return render_switch(plan.switches.switches[0], nos, plan.switches.stack)


def props(sw, nos: str = "cumulus", **kw) -> dict:
    p = {"switch": "leaf-01", "nos": nos, "host": sw.address, "port": sw.port, "username": "root",
         "privateKey": sw.key, "insecureAcceptHostKey": True, "timeoutSeconds": 30,
         "fileName": file_name("leaf-01", nos), "config": rendered(nos)}
    p.update(kw)
    return p


def test_create_diff_update_read_delete_cumulus(switch):
    clear_state(switch)
    provider = S.SwitchConfigProvider()
    p1 = props(switch)
    assert provider.check({}, p1).failures == []

    created = provider.create(p1)
    assert created.id == "leaf-01"
    outs = created.outs
    staged = "/tmp/llmcluster-leaf-01.nvue.yaml"
    assert outs["sha256"] == S.sha256_text(p1["config"]) and outs["stagedPath"] == staged
    assert read(switch, standin.running_path("cumulus")) == p1["config"]
    assert read(switch, staged) == p1["config"]
    assert commands(switch) == [f"nv config replace {staged}", "nv config apply -y", "nv config show -o yaml"]
    assert outs["runningSha256"] == S.sha256_text(p1["config"])

    # Same text: no change.
    same = provider.diff("leaf-01", outs, props(switch))
    assert same.changes is False and same.config_diff == ""

    # One VLAN's MTU changes: the diff names exactly those lines.
    p2 = props(switch, config=rendered("cumulus", ("fabric.vlans.rdma.mtu=9100",)))
    d = provider.diff("leaf-01", outs, p2)
    assert d.changes is True and d.detailed_diff == {"config": "update"}
    changed = [x for x in d.config_diff.splitlines()[2:] if x[:1] in "+-"]
    assert changed and all(("9000" in x) if x[0] == "-" else ("9100" in x) for x in changed)

    updated = provider.update("leaf-01", outs, p2).outs
    assert read(switch, standin.running_path("cumulus")) == p2["config"]
    assert updated["sha256"] == S.sha256_text(p2["config"]) != outs["sha256"]

    # Refresh: unchanged running config reads back clean; a hand edit is drift.
    assert provider.read("leaf-01", updated).outs["config"] == p2["config"]
    write(switch, standin.running_path("cumulus"), p2["config"] + "# edited by hand\n")
    drifted = provider.read("leaf-01", updated).outs
    assert drifted["config"].startswith("# llmcluster: the running configuration of leaf-01 changed outside Pulumi")
    assert provider.diff("leaf-01", drifted, p2).changes is True
    provider.update("leaf-01", drifted, p2)
    assert read(switch, standin.running_path("cumulus")) == p2["config"]

    # Delete removes the staged file and leaves the switch's configuration.
    provider.delete("leaf-01", updated)
    assert read(switch, staged) is None
    assert read(switch, standin.running_path("cumulus")) == p2["config"]


def test_a_refused_configuration_fails_with_the_switch_stderr(switch):
    clear_state(switch)
    provider = S.SwitchConfigProvider()
    good = provider.create(props(switch)).outs
    broken = props(switch, config=good["config"].replace("nvue_v1", "nvue_v0"))
    with pytest.raises(S.SwitchApplyError) as ei:
        provider.update("leaf-01", good, broken)
    msg = str(ei.value)
    assert msg.startswith("leaf-01: `nv config replace /tmp/llmcluster-leaf-01.nvue.yaml` failed with exit status 1:")
    # the stand-in's stderr, from the project's real NVUE parser
    assert msg.endswith("not a valid NVUE configuration: header.nvue-api-version must be nvue_v1")
    assert read(switch, standin.running_path("cumulus")) == good["config"], "a refused config changes nothing"
    assert commands(switch)[3:] == ["nv config replace /tmp/llmcluster-leaf-01.nvue.yaml"], \
        "nothing runs after a failed command"


@pytest.mark.parametrize(("nos", "expected"), [
    ("sonic", ["sudo config load -y /tmp/llmcluster-leaf-01.config_db.json", "sudo config save -y",
               "show runningconfiguration all"]),
    ("eos", ["configure replace flash:llmcluster-leaf-01.eos.cfg", "copy running-config startup-config",
             "show running-config"]),
])
def test_sonic_and_eos_apply_sequences(switch, nos, expected):
    import json

    clear_state(switch)
    provider = S.SwitchConfigProvider()
    p = props(switch, nos)
    outs = provider.create(p).outs
    log = [c.removeprefix("sudo ") for c in commands(switch)]
    assert log == [c.removeprefix("sudo ") for c in expected]
    running = read(switch, standin.running_path(nos))
    if nos == "sonic":
        assert json.loads(running) == json.loads(p["config"])
        assert read(switch, standin.startup_path(nos)) == running
    else:
        assert running == p["config"] and read(switch, standin.startup_path(nos)) == running
    assert outs["runningSha256"] == S.running_sha256(nos, running)
    assert provider.read("leaf-01", outs).outs["config"] == p["config"]


def test_sonic_config_load_merges(switch):
    """What the module docstring states: `config load` adds and updates, it does not remove."""
    import json

    clear_state(switch)
    provider = S.SwitchConfigProvider()
    db = json.loads(rendered("sonic"))
    outs = provider.create(props(switch, "sonic", config=json.dumps(db, indent=1))).outs
    vlan_key = sorted(db["VLAN"])[-1]
    smaller = {**db, "VLAN": {k: v for k, v in db["VLAN"].items() if k != vlan_key}}
    smaller["VLAN_MEMBER"] = {k: v for k, v in db.get("VLAN_MEMBER", {}).items() if not k.startswith(vlan_key + "|")}
    smaller["VLAN_INTERFACE"] = {k: v for k, v in db.get("VLAN_INTERFACE", {}).items()
                                 if not k.startswith(vlan_key)}
    try:
        provider.update("leaf-01", outs, props(switch, "sonic", config=json.dumps(smaller, indent=1)))
    except S.SwitchApplyError as exc:  # the schema may insist on cross-references: then nothing merged
        pytest.skip(f"the reduced config_db does not pass the schema: {exc}")
    running = json.loads(read(switch, standin.running_path("sonic")))
    assert vlan_key in running["VLAN"], "an entry removed from the rendered document stays after config load"


def test_host_key_pinned_known_hosts_and_insecure(switch, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty ~/.ssh/known_hosts
    S.connect(props(switch, insecureAcceptHostKey=False, hostKeyFingerprint=switch.fingerprint)).close()
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(S.SwitchApplyError, match="does not match the pinned fingerprint"):
        S.connect(props(switch, insecureAcceptHostKey=False, hostKeyFingerprint=wrong))
    with pytest.raises(S.SwitchApplyError, match=r"is not in known_hosts: add it \(ssh-keyscan\), pin it in "
                                                 r"baremetal\.switch_access\.host_keys\.leaf-01"):
        S.connect(props(switch, insecureAcceptHostKey=False))
    (tmp_path / ".ssh").mkdir()
    key = switch.client.get_transport().get_remote_server_key()
    host = switch.address if switch.port == 22 else f"[{switch.address}]:{switch.port}"
    (tmp_path / ".ssh" / "known_hosts").write_text(f"{host} {key.get_name()} {key.get_base64()}\n")
    S.connect(props(switch, insecureAcceptHostKey=False)).close()
    S.connect(props(switch)).close()  # insecure: explicit, lab only


def test_wrong_credentials_are_a_clear_error(switch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
    with pytest.raises(S.SwitchApplyError, match=r"leaf-01 \(.*:\d+\): authentication as 'root' failed"):
        S.SwitchConfigProvider().create(props(switch, privateKey=other))
