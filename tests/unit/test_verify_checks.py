"""The verification suite's pure parts: expectations from the plan, judging observations.

The nftables judge is fed real ``nft -j`` output: the rendered ruleset of a lab host is loaded
into a throw-away network namespace (root only), read back, then broken on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from llmcluster.inventory import build_inventory
from llmcluster.render.nftables import render_host_nftables
from llmcluster.verify import checks as C
from llmcluster.verify import matrix as M
from tests.conftest import load_plan


@pytest.fixture(scope="module")
def plan():
    return load_plan("lab")


@pytest.fixture(scope="module")
def hostvars(plan):
    return build_inventory(plan.in_lab())["_meta"]["hostvars"]


@pytest.fixture(scope="module")
def checks(plan, hostvars):
    return {c.id: c for c in C.host_checks(plan, hostvars)}


def test_every_host_gets_link_qos_and_nftables_checks_per_vlan(plan, checks):
    for host in plan.ip.hosts:
        assert f"{host.name}:nftables" in checks
        for role in host.addresses:
            assert f"{host.name}:link[{role}]" in checks
            assert f"{host.name}:qos[{role}]" in checks
    assert len(set(checks)) == len(checks), "check ids must be unique"


def test_pmtu_pings_the_next_host_with_a_full_size_payload(plan, checks):
    c = checks["gpu-01:pmtu[storage_public]"]
    assert c.params["payload"] == 8972 and c.params["mtu"] == 9000
    assert c.params["peer"] == "gpu-02" and c.params["source"] == plan.ip.host("gpu-01").addresses["storage_public"]
    # the ring closes: the last host on the VLAN pings the first
    assert checks["storage-01:pmtu[storage_public]"].params["peer"] == "storage-02"
    assert checks["storage-03:pmtu[storage_public]"].params["peer"] == "gpu-01"
    # no jumbo ping on the 1500-byte mgmt VLAN, none on a VLAN with a single host
    assert not any(k.endswith("pmtu[mgmt]") for k in checks)
    assert checks["storage-03:pmtu[storage_cluster]"].params["peer"] == "storage-01"


def test_only_hosts_in_the_inventory_are_checked(plan, hostvars):
    only = {"gpu-01": hostvars["gpu-01"]}
    got = C.host_checks(plan, only)
    assert {c.host for c in got} == {"gpu-01"}
    assert not any(c.kind == "pmtu" for c in got), "no peer in the inventory: no ping"


# --------------------------------------------------------------------------- link


def _ip_facts(ifname="stor-pub", state="UP", mtu=9000, addr="10.42.2.11", prefix=24, flags=("BROADCAST", "UP")):
    return {"ip": {"data": [{"ifname": ifname, "mtu": mtu, "operstate": state, "flags": list(flags),
                             "addr_info": [{"family": "inet", "local": addr, "prefixlen": prefix}]}]}}


def test_link_passes_when_address_mtu_and_state_match(checks):
    assert C.check_link(checks["gpu-01:link[storage_public]"], _ip_facts()) == []


@pytest.mark.parametrize(("facts", "says"), [
    (_ip_facts(state="DOWN", flags=("BROADCAST",)), "stor-pub is DOWN"),
    (_ip_facts(mtu=1500), "stor-pub MTU 1500, expected 9000"),
    (_ip_facts(addr="10.42.2.99"), "has 10.42.2.99/24, expected 10.42.2.11/24"),
    (_ip_facts(prefix=25), "expected 10.42.2.11/24"),
    (_ip_facts(ifname="eth0"), "interface stor-pub missing (host has eth0)"),
])
def test_link_names_what_it_observed(checks, facts, says):
    problems = C.check_link(checks["gpu-01:link[storage_public]"], facts)
    assert problems and says in problems[0], problems


def test_a_fact_that_could_not_be_gathered_is_an_error():
    with pytest.raises(C.FactsError, match="ip: Permission denied"):
        C.fact({"ip": {"error": "Permission denied"}}, "ip")


# --------------------------------------------------------------------------- qos

_TC_CLASSES = "\n".join(f"class htb 1:{m} parent 1:1 prio 3 rate 5Gbit ceil 100Gbit burst 0b cburst 0b"
                        for m in ("10", "11", "12", "13", "14", "15")) + "\nclass htb 1:1 root rate 100Gbit\n"


def _tc_facts(kind="htb", default="0x15", classes=_TC_CLASSES):
    return {"tc": {"stor-pub": {
        "qdisc": {"data": [{"kind": kind, "handle": "1:", "root": True, "options": {"default": default}}]},
        "class": {"data": classes}}}}


def test_qos_passes_with_the_planned_classes(checks):
    assert C.check_qos(checks["gpu-01:qos[storage_public]"], _tc_facts()) == []


@pytest.mark.parametrize(("facts", "says"), [
    (_tc_facts(kind="noqueue"), "root qdisc is noqueue, expected htb"),
    (_tc_facts(default="0x10"), "htb default 0x10, expected 15 (default)"),
    (_tc_facts(classes=_TC_CLASSES.replace("class htb 1:12 ", "")), "missing: 1:12 (inference)"),
    (_tc_facts(classes=""), "1:1 (root class)"),
])
def test_qos_names_what_it_observed(checks, facts, says):
    problems = C.check_qos(checks["gpu-01:qos[storage_public]"], facts)
    assert problems and says in " ".join(problems), problems


# --------------------------------------------------------------------------- nftables (real nft)


def _need_nft() -> None:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs root, nft and ip (loads a ruleset in a throw-away network namespace)")


@pytest.fixture
def netns():
    _need_nft()
    name = f"llmcluster-verify-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _nft(netns: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "nft", *args], input=stdin, capture_output=True,
                          text=True, check=True).stdout


def _loaded(netns: str) -> dict:
    return {"nft": {"data": json.loads(_nft(netns, "-j", "list", "table", "inet", "llmcluster"))}}


def test_nftables_accepts_the_rendered_ruleset_loaded_for_real(plan, checks, netns):
    _nft(netns, "-f", "-", stdin=render_host_nftables("gpu-01", plan.firewall, plan.qos))
    assert C.check_nftables(checks["gpu-01:nftables"], _loaded(netns)) == []


def test_nftables_reports_a_missing_rule_an_extra_rule_and_a_loosened_policy(plan, checks, netns):
    _nft(netns, "-f", "-", stdin=render_host_nftables("gpu-01", plan.firewall, plan.qos))
    listing = _nft(netns, "-a", "list", "chain", "inet", "llmcluster", "input")
    handle = next(line.rsplit("# handle ", 1)[1] for line in listing.splitlines() if 'comment "flow serve"' in line)
    _nft(netns, "delete", "rule", "inet", "llmcluster", "input", "handle", handle)
    _nft(netns, "insert", "rule", "inet", "llmcluster", "input", "ip", "saddr", "10.42.0.0/16", "ip", "daddr",
         "10.42.1.11", "tcp", "dport", "8000", "accept")
    _nft(netns, "add", "chain", "inet", "llmcluster", "forward", "{", "policy", "accept", ";", "}")
    problems = C.check_nftables(checks["gpu-01:nftables"], _loaded(netns))
    text = "\n".join(problems)
    assert "input rule for flow serve missing: tcp dport 8000 from 10.42.1.13/32 to 10.42.1.11/32" in text
    assert "input accepts tcp dport 8000 from 10.42.0.0/16 to 10.42.1.11/32: not in the plan" in text
    assert "chain forward: hook forward policy accept, expected hook forward policy drop" in text
    assert len(problems) == 3, problems


def test_nftables_without_the_table_is_a_failure(checks):
    problems = C.check_nftables(checks["gpu-01:nftables"], {"nft": {"error": "No such file or directory"}})
    assert problems == ["table inet llmcluster not loaded (nft: No such file or directory)"]


# --------------------------------------------------------------------------- firewall matrix


@pytest.fixture(scope="module")
def cases(plan, hostvars):
    from llmcluster.lab.probes import controller_address, probe_sources

    probes = {p.zone: p.to_dict() for p in probe_sources(plan)}
    return {c.id: c for c in M.matrix_cases(plan, hostvars, [controller_address(plan)], probes)}


def test_matrix_has_every_zone_pair_and_service(plan, cases):
    host_zones = [z.name for z in plan.firewall.zones if z.kind == "hosts"]
    services = [s.name for s in plan.firewall.services]
    want = {f"{s.name}->{d} {svc}" for s in plan.firewall.zones for d in host_zones for svc in services}
    assert set(cases) == want


def test_matrix_attempts_follow_the_plan(plan, cases):
    ssh = cases["admin->gpu tcp/22"]
    assert ssh.allowed and {a.destination for a in ssh.attempts} == {"gpu-01", "gpu-02"}
    assert all(a.source == "controller" and a.vlan == "mgmt" and a.flows == ("ssh-gpu",) for a in ssh.attempts)
    api = cases["clients->gateway tcp/443"]
    assert [a.describe() for a in api.attempts] == ["probe-clients 10.42.1.7 -> gw-01 10.42.1.13 tcp/443"]
    assert api.attempts[0].flows == ("api",)
    # port ranges: first and last port, denied ones have no flow
    ceph = cases["gateway->storage tcp/6800-7300"]
    assert [(a.destination, a.vlan, a.port, a.allowed) for a in ceph.attempts] == [
        (f"storage-0{i}", "mgmt", port, False) for i in (1, 2, 3) for port in (6800, 7300)]
    assert cases["clients->storage tcp/22"].skip_reason == "probe-clients shares no VLAN with a host of zone storage"
    nccl = cases["gpu->gpu tcp/29500-29510"]
    assert sorted({a.port for a in nccl.attempts}) == [29500, 29510]
    assert {a.vlan: a.allowed for a in nccl.attempts} == {"mgmt": False, "inference": False,
                                                         "storage_public": False, "rdma": True}
    assert cases["admin->gpu tcp/443"].attempts and not any(a.allowed for a in cases["admin->gpu tcp/443"].attempts)


def test_judge_accepts_only_what_the_plan_says(cases):
    allowed = cases["admin->gpu tcp/22"].attempts[0]
    denied = cases["admin->gpu tcp/8000"].attempts[0]
    assert M.judge(allowed, "open") is None and M.judge(denied, "timeout") is None
    assert "timeout, expected open (flow ssh-gpu)" in M.judge(allowed, "timeout")
    assert "connected, expected dropped" in M.judge(denied, "open")
    assert "the host answered (not filtered), expected dropped" in M.judge(denied, "refused")


def test_external_zone_without_a_source_is_skipped_with_the_reason(plan, hostvars):
    got = {c.id: c for c in M.matrix_cases(plan, hostvars, [], {})}
    assert "no source in external zone clients (10.42.1.0/29)" in got["clients->gateway tcp/443"].skip_reason
    assert "no source in external zone admin" in got["admin->gpu tcp/22"].skip_reason


def test_listeners_cover_every_attempted_port(cases):
    wanted = M.listeners(cases.values())
    for case in cases.values():
        for a in case.attempts:
            assert f"{a.proto}/{a.port}@{a.address}" in wanted[a.destination]
    assert set(wanted) == {"gpu-01", "gpu-02", "gw-01", "mon-01", "storage-01", "storage-02", "storage-03"}


def test_hostvars_match_the_lab_network_mode(plan, hostvars):
    for host in plan.ip.hosts:
        assert hostvars[host.name]["llmcluster_network_mode"] == plan.in_lab().hostnet.mode(host.name) == "access"


def test_the_matrix_listener_binds_the_attempted_address_beside_a_service_on_another(tmp_path):
    """A service holding the port on another address of the host (a Ceph OSD's cluster messenger on
    6800 after its public one re-bound elsewhere) must not leave the attempted address without a
    listener: a wildcard bind is refused there ("in use") while the per-address one listens."""
    import socket
    import sys

    from llmcluster.verify import scripts as S

    held = socket.socket()
    held.bind(("127.0.0.2", 0))
    held.listen(1)
    port = held.getsockname()[1]
    pidfile = str(tmp_path / "listener.pid")
    try:
        out = subprocess.run([sys.executable, "-c", S.LISTEN, pidfile, "30", f"tcp/{port}", f"tcp/{port}@127.0.0.1"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        report = json.loads(out)
        assert report == {f"tcp/{port}": "in use", f"tcp/{port}@127.0.0.1": "listening"}, report
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            assert c.recv(64) == b"llmcluster-verify\n"
    finally:
        subprocess.run([sys.executable, "-c", S.STOP, pidfile], check=False)
        held.close()
