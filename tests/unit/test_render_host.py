"""Host renderers: nftables rulesets and tc scripts.

Golden files (``tests/unit/golden``; regenerate with ``LLMCLUSTER_UPDATE_GOLDEN=1``), semantic
checks, and real checkers: ``nft -c -f`` for every host of every bare-metal stack, ``sh -n``
for the tc scripts, and (as root, where network namespaces work) the rendered ruleset and
script applied in throwaway namespaces: real connections must succeed or be dropped exactly
as the firewall plan says, the DSCP marks must arrive, and the htb classes must exist.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from llmcluster.errors import PlanError
from llmcluster.plan.firewall import build_firewall_plan
from llmcluster.plan.ipam import build_ip_plan
from llmcluster.plan.qos import build_qos_plan
from llmcluster.render.nftables import nft_set, render_host_nftables
from llmcluster.render.tc import parse_speed, render_host_tc
from llmcluster.spec import parse_stack_file
from tests.conftest import STACKS, check_golden

BAREMETAL = ("lab", "prod-baremetal")
NFT = shutil.which("nft")
IP = shutil.which("ip")
TC = shutil.which("tc")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@functools.cache
def plans(stack: str):
    spec = parse_stack_file(STACKS / f"Pulumi.{stack}.yaml")
    ip = build_ip_plan(spec)
    return spec, ip, build_firewall_plan(spec, ip), build_qos_plan(spec)


def nft_text(stack: str, host: str) -> str:
    _, _, fw, qos = plans(stack)
    return render_host_nftables(host, fw, qos)


def interfaces(stack: str, host: str) -> dict[str, str]:
    _, ip, _, _ = plans(stack)
    return {role: f"vlan{ip.vlans[role].id}" for role in ip.host(host).addresses}


def all_hosts(stacks=BAREMETAL):
    return [(s, h.name) for s in stacks for h in plans(s)[1].hosts]


def chain(text: str, name: str) -> str:
    m = re.search(rf"\n\tchain {name} {{\n(.*?)\n\t}}", text, re.DOTALL)
    assert m, f"no chain {name}"
    return m.group(1)


# --------------------------------------------------------------------------- nftables: golden + semantics


@pytest.mark.parametrize(("stack", "host"), [
    ("lab", "gpu-01"), ("lab", "gpu-02"), ("lab", "storage-01"), ("lab", "gw-01"),
    ("prod-baremetal", "gpu-01"), ("prod-baremetal", "storage-01"), ("prod-baremetal", "gw-01"),
])
def test_nftables_golden(stack, host):
    check_golden(f"nftables-{stack}-{host}.nft", nft_text(stack, host))


@pytest.mark.parametrize(("stack", "host"), all_hosts(("lab", "prod-baremetal", "dev-aws", "prod-aws")))
def test_nftables_semantics(stack, host):
    spec, ip, fw, _ = plans(stack)
    text = nft_text(stack, host)
    assert text.startswith("#!/usr/sbin/nft -f\n")
    assert "flush ruleset" not in text
    assert "table inet llmcluster {}\ndelete table inet llmcluster\n\ntable inet llmcluster {\n" in text
    inp, fwd, out = chain(text, "input"), chain(text, "forward"), chain(text, "output")
    assert "type filter hook input priority filter; policy drop;" in inp
    assert "type filter hook forward priority filter; policy drop;" in fwd
    assert "policy accept;" in out
    assert 'log prefix "llmcluster-drop "' in inp and "limit rate 5/second" in inp
    assert 'iif "lo" accept' in inp
    assert "icmp code frag-needed accept" in inp and "icmpv6 type packet-too-big accept" in inp
    # PMTU messages are accepted before conntrack may call them invalid.
    assert inp.index("frag-needed") < inp.index("ct state invalid drop")
    # Every accept rule beyond the base policy names its sources: no empty or "any" source.
    flow_lines = [ln.strip() for ln in inp.splitlines() if 'comment "flow ' in ln]
    for ln in flow_lines:
        assert ln.startswith("ip saddr { ") and "{ }" not in ln and "0.0.0.0/0" not in ln, ln
        assert " ip daddr { " in ln and ln.split(" accept ")[0].count("{") >= 2, ln
    # Every flow that ends on this host's zone appears, with its ports.
    me = ip.host(host)
    zone = next(z for z, spec_zone in spec.zones.items() if me.pool in spec_zone.pools)
    for flow in spec.flows:
        if flow.to != zone:
            continue
        src = fw.zone(flow.from_)
        if src.kind == "hosts" and not src.addresses.get(flow.vlan):
            continue  # a source zone without hosts admits nobody
        lines = [ln for ln in flow_lines if re.search(rf'comment "flow [^"]*\b{re.escape(flow.name)}\b', ln)]
        assert lines, f"{stack}/{host}: flow {flow.name} missing"
        assert any(me.addresses[flow.vlan] in ln for ln in lines)
        for port in flow.ports:
            proto, _, rng = port.partition("/")
            assert any(f"{proto} dport" in ln and rng in ln for ln in lines), (flow.name, port)
    assert len(flow_lines) == len(fw.host(host).rules)


def test_nftables_marks_dscp_per_qos_plan():
    text = nft_text("prod-baremetal", "gpu-01")
    post = chain(text, "postrouting")
    assert "type filter hook postrouting priority mangle; policy accept;" in post
    assert ("ip saddr { 10.64.16.11 } tcp sport { 443, 8000 } ip dscp set af41" in post)
    assert ("ip saddr { 10.64.24.11 } tcp dport { 3300, 6789, 6800-7300 } ip dscp set af11" in post)
    assert "ip saddr { 10.64.0.11 } tcp sport { 22, 8000, 9100, 9283, 9400, 19532 } ip dscp set cs2" in post
    assert "10.64.40.11" not in post  # nothing on the RDMA VLAN: the NIC marks RoCE
    # storage-01 is on storage_cluster: replication traffic is marked there too.
    st = chain(nft_text("prod-baremetal", "storage-01"), "postrouting")
    assert "ip saddr { 10.64.32.11 } tcp sport { 6800-7300 } ip dscp set af11" in st
    # The gateway marks the API VIP's replies as well.
    gw = chain(nft_text("prod-baremetal", "gw-01"), "postrouting")
    assert "ip saddr { 10.64.16.15, 10.64.16.2 } tcp sport { 443, 8000 } ip dscp set af41" in gw


def test_nft_set_refuses_empty():
    assert nft_set(("10.0.0.1/32", "10.0.1.0/24")) == "{ 10.0.0.1, 10.0.1.0/24 }"
    with pytest.raises(ValueError, match="empty"):
        nft_set(())


def test_source_zone_without_hosts_renders_no_open_rule():
    spec = parse_stack_file(STACKS / "Pulumi.lab.yaml", ["pools.gateway.count=0"])
    ip = build_ip_plan(spec)
    text = render_host_nftables("gpu-01", build_firewall_plan(spec, ip), build_qos_plan(spec))
    assert "tcp dport { 8000 }" not in chain(text, "input")
    assert 'flow serve"' not in text


# --------------------------------------------------------------------------- nftables: the real checker


def _need_nft_check():
    if NFT is None:
        pytest.skip("nft is not installed (apt-get install nftables): cannot run 'nft -c'")
    if not IS_ROOT:
        pytest.skip("'nft -c' needs CAP_NET_ADMIN: run the tests as root to check the rulesets")


@pytest.mark.parametrize(("stack", "host"), all_hosts())
def test_nft_check_accepts_every_baremetal_host(stack, host, tmp_path):
    _need_nft_check()
    path = tmp_path / f"{host}.nft"
    path.write_text(nft_text(stack, host), encoding="utf-8")
    r = subprocess.run([NFT, "-c", "-f", str(path)], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"nft -c rejected {stack}/{host}:\n{r.stderr}"


# --------------------------------------------------------------------------- tc


@pytest.mark.parametrize(("stack", "host", "speed"), [
    ("lab", "gpu-01", "100gbit"), ("prod-baremetal", "gpu-01", "200gbit"), ("prod-baremetal", "storage-01", "100gbit"),
])
def test_tc_golden(stack, host, speed):
    _, ip, _, qos = plans(stack)
    check_golden(f"tc-{stack}-{host}.sh", render_host_tc(host, ip, qos, interfaces(stack, host), link_speed=speed))


@pytest.mark.parametrize(("stack", "host"), all_hosts())
def test_tc_script_is_valid_sh(stack, host, tmp_path):
    _, ip, _, qos = plans(stack)
    text = render_host_tc(host, ip, qos, interfaces(stack, host))
    path = tmp_path / "qos.sh"
    path.write_text(text, encoding="utf-8")
    r = subprocess.run(["sh", "-n", str(path)], check=False, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # One htb class and one DSCP filter per QoS class, per interface.
    dry = subprocess.run(["sh", str(path)], check=False, capture_output=True, text=True, timeout=30,
                         env={**os.environ, "TC": "echo tc"})
    assert dry.returncode == 0, dry.stderr
    cmds = dry.stdout.splitlines()
    n_if = len(ip.host(host).addresses)
    n_cls = len(qos.classes)
    assert sum("htb rate" in c and "parent 1:1 " in c for c in cmds) == n_cls * n_if
    assert sum(" u32 match ip dsfield " in c for c in cmds) == n_cls * n_if
    assert sum(c.startswith("tc qdisc replace") for c in cmds) == n_if


def test_tc_rates_and_filters():
    _, ip, _, qos = plans("lab")
    text = render_host_tc("gpu-01", ip, qos, {"inference": "eth1"}, link_speed="100gbit")
    # roce 50 % of 100gbit; tos 0x68 = DSCP 26 << 2
    assert "classid 1:10 htb rate 50gbit ceil 100gbit prio 4 " in text
    assert "u32 match ip dsfield 0x68 0xfc flowid 1:10" in text
    # cnp: no share -> 0.1 %, strict (prio 0); DSCP 48 -> 0xc0
    assert "classid 1:11 htb rate 100mbit ceil 100gbit prio 0 " in text
    assert "u32 match ip dsfield 0xc0 0xfc flowid 1:11" in text
    # inference AF41 (34 -> 0x88) 20 %; storage AF11 (10 -> 0x28) 20 %
    assert "classid 1:12 htb rate 20gbit" in text and "match ip dsfield 0x88 0xfc flowid 1:12" in text
    assert "classid 1:13 htb rate 20gbit" in text and "match ip dsfield 0x28 0xfc flowid 1:13" in text
    assert "htb default 15" in text  # the default class (1:15)
    assert "llmcluster_qos eth1\n" in text and "llmcluster_qos eth0" not in text


def test_tc_rejects_bad_interfaces_and_speeds():
    _, ip, _, qos = plans("lab")
    with pytest.raises(PlanError, match="no address on VLAN 'storage_cluster'"):
        render_host_tc("gpu-01", ip, qos, {"storage_cluster": "eth3"})
    with pytest.raises(PlanError, match="not an interface name"):
        render_host_tc("gpu-01", ip, qos, {"mgmt": "eth0; reboot"})
    with pytest.raises(ValueError, match="not a tc rate"):
        render_host_tc("gpu-01", ip, qos, {"mgmt": "eth0"}, link_speed="fast")
    assert parse_speed("25gbit") == 25 * 10**9


# --------------------------------------------------------------------------- applied in namespaces (root)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=60)
    if check and r.returncode:
        raise subprocess.CalledProcessError(r.returncode, args, r.stdout, r.stderr)
    return r


@pytest.fixture
def netns_pair():
    if not IS_ROOT or IP is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = uuid.uuid4().hex[:6]
    host, peer = f"llmct-h-{tag}", f"llmct-p-{tag}"
    try:
        _run(IP, "netns", "add", host)
        _run(IP, "netns", "add", peer)
        _run(IP, "-n", host, "link", "add", "vh0", "type", "veth", "peer", "name", "vp0", "netns", peer)
    except subprocess.CalledProcessError as exc:
        _run(IP, "netns", "del", host, check=False)
        _run(IP, "netns", "del", peer, check=False)
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.strip()}")
    try:
        yield host, peer
    finally:
        _run(IP, "netns", "del", host, check=False)
        _run(IP, "netns", "del", peer, check=False)


LISTENER = """
import socket, sys
socks = []
for spec in sys.argv[1:]:
    a, p = spec.rsplit(":", 1)
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((a, int(p))); s.listen(16)
    socks.append(s)
print("ready", flush=True)
import selectors
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        c, _ = key.fileobj.accept(); c.sendall(b"x"); c.close()
"""

PROBE = """
import json, socket, sys
out = []
for spec in sys.argv[1:]:
    src, dst, port = spec.split(",")
    s = socket.socket(); s.settimeout(0.7); s.bind((src, 0))
    try:
        s.connect((dst, int(port))); out.append(True)
    except OSError:
        out.append(False)
    finally:
        s.close()
print(json.dumps(out))
"""


def test_ruleset_enforces_the_plan_in_a_namespace(netns_pair, tmp_path):
    if NFT is None:
        pytest.skip("nft is not installed")
    host_ns, peer_ns = netns_pair
    _, _, fw, qos = plans("lab")
    ruleset = tmp_path / "gpu-01.nft"
    ruleset.write_text(render_host_nftables("gpu-01", fw, qos), encoding="utf-8")
    # gpu-01 (mgmt 10.42.0.11, inference 10.42.1.11) on one side; on the other an admin
    # address (10.42.0.2, inside 10.42.0.0/29), a stranger on mgmt (10.42.0.20), gw-01's
    # inference address (10.42.1.13) and a client (10.42.1.3, zone clients).
    for ns, dev, addrs in ((host_ns, "vh0", ("10.42.0.11/24", "10.42.1.11/24")),
                           (peer_ns, "vp0", ("10.42.0.2/24", "10.42.0.20/24", "10.42.1.13/24", "10.42.1.3/24"))):
        for a in addrs:
            _run(IP, "-n", ns, "addr", "add", a, "dev", dev)
        _run(IP, "-n", ns, "link", "set", dev, "up")
        _run(IP, "-n", ns, "link", "set", "lo", "up")
    _run(IP, "netns", "exec", host_ns, NFT, "-f", str(ruleset))
    probe_table = (
        "table inet probe {\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority 0; policy accept;\n"
        "\t\tip saddr 10.42.1.11 tcp sport 8000 ip dscp af41 counter\n"
        "\t\tip saddr 10.42.0.11 tcp sport 22 ip dscp cs2 counter\n"
        "\t}\n"
        "}\n"
    )
    (tmp_path / "probe.nft").write_text(probe_table, encoding="utf-8")
    _run(IP, "netns", "exec", peer_ns, NFT, "-f", str(tmp_path / "probe.nft"))

    listener = subprocess.Popen(
        [IP, "netns", "exec", host_ns, sys.executable, "-c", LISTENER,
         "10.42.0.11:22", "10.42.0.11:9100", "10.42.0.11:8000", "10.42.1.11:8000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert listener.stdout is not None
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline and "ready" not in line:
            line = listener.stdout.readline()
            if not line and listener.poll() is not None:
                pytest.fail(f"listener died: {listener.stderr.read() if listener.stderr else ''}")
        cases = [
            ("10.42.0.2", "10.42.0.11", 22),  # admin -> ssh-gpu
            ("10.42.0.20", "10.42.0.11", 22),  # not admin
            ("10.42.0.2", "10.42.0.11", 9100),  # admin -> metrics-gpu
            ("10.42.1.13", "10.42.1.11", 8000),  # gateway -> serve
            ("10.42.1.3", "10.42.1.11", 8000),  # clients -> gpu: denied
            ("10.42.0.2", "10.42.0.11", 8000),  # admin -> 8000 on mgmt: no flow in the lab
        ]
        expected = [bool(fw.allows(s, d, "tcp", p)) for s, d, p in cases]
        assert expected == [True, False, True, True, False, False]
        r = _run(IP, "netns", "exec", peer_ns, sys.executable, "-c", PROBE,
                 *[f"{s},{d},{p}" for s, d, p in cases])
        assert json.loads(r.stdout) == expected
        counters = _run(IP, "netns", "exec", peer_ns, NFT, "list", "table", "inet", "probe").stdout
        marked = [int(n) for n in re.findall(r"counter packets (\d+)", counters)]
        assert len(marked) == 2 and all(n > 0 for n in marked), counters  # af41 and cs2 replies arrived
    finally:
        listener.kill()
        listener.wait(timeout=10)


def test_tc_script_applies_in_a_namespace(netns_pair, tmp_path):
    if TC is None:
        pytest.skip("tc is not installed")
    host_ns, _ = netns_pair
    _, ip, _, qos = plans("lab")
    script = tmp_path / "qos.sh"
    script.write_text(render_host_tc("gpu-01", ip, qos, {"mgmt": "vh0"}), encoding="utf-8")
    for _ in range(2):  # re-applying is fine
        r = _run(IP, "netns", "exec", host_ns, "sh", str(script), check=False)
        assert r.returncode == 0, r.stderr
    classes = _run(IP, "netns", "exec", host_ns, TC, "class", "show", "dev", "vh0").stdout
    assert len(re.findall(r"class htb 1:1[0-9a-f] parent 1:1 ", classes)) == len(qos.classes)
    filters = _run(IP, "netns", "exec", host_ns, TC, "filter", "show", "dev", "vh0").stdout
    assert len(re.findall(r"\*flowid 1:1[0-9a-f]", filters)) == len(qos.classes), filters
    assert "match 00880000/00fc0000" in filters  # AF41 -> the inference class
