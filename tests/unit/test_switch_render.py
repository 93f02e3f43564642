"""Switch configurations for Cumulus NVUE, SONiC and EOS: golden files, real parses, semantic checks.

Every switch of every bare-metal stack is rendered for all three OSes; each output is parsed
for real (``yaml.safe_load`` + structure, ``json`` + the config_db JSON schema, hier_config's
EOS parser) and compared with the plan. The negative tests mutate a rendered configuration the
way a hand edit would (drop a VLAN from a trunk, widen an ACL, enable PFC elsewhere...) and
prove the checker names the switch, the port and the VLAN or entry.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from llmcluster.nos import NOSES, REGISTRY, ConfigParseError, get
from llmcluster.nos.cumulus import parse_nvue
from llmcluster.nos.eos import parse_eos, parse_eos_acl_line
from llmcluster.nos.sonic import parse_sonic
from llmcluster.render.switch import file_name, render_all, render_switch
from llmcluster.render.switch.check import check_switch
from tests.conftest import check_golden, load_plan

BAREMETAL = ("lab", "prod-baremetal")
GOLDEN = [("lab", "leaf-01"), ("prod-baremetal", "leaf-01"), ("prod-baremetal", "spine-01")]


def text(stack: str, switch: str, nos: str) -> str:
    plan = load_plan(stack)
    return render_switch(plan.switches.switch(switch), nos, stack)


def problems(stack: str, switch: str, nos: str, config: str) -> list[str]:
    plan = load_plan(stack)
    return check_switch(plan.switches.switch(switch), config, nos, plan.firewall)


def every_switch():
    return [(s, sw.name, nos) for s in BAREMETAL for sw in load_plan(s).switches.switches for nos in NOSES]


# --------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("nos", NOSES)
@pytest.mark.parametrize(("stack", "switch"), GOLDEN)
def test_switch_config_golden(stack, switch, nos):
    check_golden(f"switch/{stack}-{file_name(switch, nos)}", text(stack, switch, nos))


# --------------------------------------------------------------------------- real parse + semantics


@pytest.mark.parametrize(("stack", "switch", "nos"), every_switch())
def test_every_switch_config_parses_and_matches_the_plan(stack, switch, nos):
    config = text(stack, switch, nos)
    assert "/work/" not in config and "\t" not in config
    assert problems(stack, switch, nos, config) == []


def test_render_all_names_files_per_nos():
    plan = load_plan("prod-baremetal")
    assert sorted(render_all(plan)) == sorted(f"{s.name}.nvue.yaml" for s in plan.switches.switches)
    for nos, switch_os in REGISTRY.items():
        out = render_all(plan, nos)
        assert set(out) == {f"{s.name}.{switch_os.extension}" for s in plan.switches.switches}
        assert out == render_all(plan.switches, nos)  # same text from the plan or the switch plan alone
    assert render_all(load_plan("dev-aws")) == {}
    with pytest.raises(ValueError, match="unknown switch OS"):
        render_switch(plan.switches.switches[0], "junos")


def test_nvue_structure():
    doc = yaml.safe_load(text("prod-baremetal", "leaf-01", "cumulus"))
    assert doc[0]["header"]["nvue-api-version"] == "nvue_v1"
    cfg = doc[1]["set"]
    assert cfg["system"]["hostname"] == "leaf-01"
    swp1 = cfg["interface"]["swp1"]
    assert swp1["link"]["mtu"] == 9216 and swp1["bridge"]["domain"]["br_default"]["access"] == 140
    trunk = cfg["interface"]["swp3"]["bridge"]["domain"]["br_default"]
    assert trunk["untagged"] == "none" and set(trunk["vlan"]) == {"110", "120", "130"}
    assert cfg["interface"]["uplink"]["acl"] == {"LLMC_FABRIC_IN": {"inbound": {}}}
    qos = cfg["qos"]
    assert qos["mapping"]["default-global"]["trust"] == "l3"
    assert qos["mapping"]["default-global"]["dscp"]["26"] == {"switch-priority": 3}
    assert qos["mapping"]["default-global"]["dscp"]["48"] == {"switch-priority": 6}
    assert list(qos["pfc"]["default-global"]["switch-priority"]) == ["3"]
    assert qos["congestion-control"]["default-global"]["traffic-class"]["3"]["ecn"] == "enable"
    assert qos["egress-scheduler"]["default-global"]["traffic-class"]["6"] == {"mode": "strict"}
    spine = yaml.safe_load(text("prod-baremetal", "spine-01", "cumulus"))[1]["set"]
    assert spine["interface"]["vlan120"]["ip"]["vrr"]["address"] == {"10.64.16.1/21": {}}
    assert spine["interface"]["leaf-01"]["bond"]["mlag"] == {"id": 1}
    assert spine["mlag"]["peer-ip"] == "linklocal" and "acl" not in spine


def test_sonic_tables_and_schema():
    db = json.loads(text("prod-baremetal", "leaf-01", "sonic"))
    parse_sonic(json.dumps(db))  # the schema accepts what we render
    assert db["PORT"]["Ethernet0"]["mtu"] == "9216" and db["PORT"]["Ethernet0"]["speed"] == "400000"
    assert db["VLAN_MEMBER"]["Vlan140|Ethernet0"] == {"tagging_mode": "untagged"}
    assert db["VLAN_MEMBER"]["Vlan120|Ethernet16"] == {"tagging_mode": "tagged"}
    assert db["PORT_QOS_MAP"]["Ethernet0"]["pfc_enable"] == "3"
    assert db["DSCP_TO_TC_MAP"]["LLMC"]["26"] == "3" and db["DSCP_TO_TC_MAP"]["LLMC"]["48"] == "6"
    assert db["QUEUE"]["Ethernet0|3"]["wred_profile"] == "LLMC_ECN_Q3"
    assert db["SCHEDULER"]["LLMC_Q6"] == {"type": "STRICT"}
    assert db["BUFFER_PG"]["Ethernet0|3"] == {"profile": "NULL"}
    assert db["ACL_TABLE"]["LLMC_FABRIC_IN"]["stage"] == "ingress"
    assert "PortChannel1" in db["ACL_TABLE"]["LLMC_FABRIC_IN"]["ports"]
    rules = db["ACL_RULE"]
    lowest = min(rules.values(), key=lambda r: int(r["PRIORITY"]))
    assert lowest == {"ETHER_TYPE": "0x0800", "PACKET_ACTION": "DROP", "PRIORITY": "1"}
    spine = json.loads(text("prod-baremetal", "spine-01", "sonic"))
    assert spine["MCLAG_DOMAIN"]["1"]["peer_link"] == "PortChannel1000"
    assert "Vlan120|10.64.16.1/21" in spine["VLAN_INTERFACE"] and "ACL_TABLE" not in spine


def test_sonic_schema_rejects_what_config_db_would_not_load():
    db = json.loads(text("lab", "leaf-01", "sonic"))
    for mutate, needle in [
        (lambda d: d["PORT"]["Ethernet0"].__setitem__("mtu", 9216), "is not of type 'string'"),
        (lambda d: d["VLAN"].__setitem__("Vlan5000", {"vlanid": "5000"}), "does not match"),
        (lambda d: d.__setitem__("BGP_NEIGHBOR", {}), "Additional properties"),
        (lambda d: d["ACL_RULE"]["LLMC_FABRIC_IN|RULE_10"].__setitem__("PACKET_ACTION", "ACCEPT"), "ACCEPT"),
        (lambda d: d["PORT_QOS_MAP"]["Ethernet0"].__setitem__("pfc_enable", "3,8"), "does not match"),
    ]:
        bad = json.loads(json.dumps(db))
        mutate(bad)
        with pytest.raises(ConfigParseError, match=needle):
            parse_sonic(json.dumps(bad))
    bad = json.loads(json.dumps(db))
    bad["VLAN_MEMBER"]["Vlan10|Ethernet999"] = {"tagging_mode": "tagged"}
    with pytest.raises(ConfigParseError, match="neither a PORT nor a PORTCHANNEL"):
        parse_sonic(json.dumps(bad))


def test_eos_parse():
    view = parse_eos(text("prod-baremetal", "leaf-01", "eos"))
    assert view.hostname == "leaf-01" and view.vlans == {110, 120, 130, 131, 140}
    p = view.ports["Ethernet3/1"]
    assert p.vlans == {110, 120, 130} and not p.untagged and p.mtu == 9216 and p.pfc == {3} and p.trust_dscp
    assert view.ports["Ethernet61/1"].bond == "Port-Channel1"
    assert view.ports["Port-Channel1"].acl_in == {"LLMC_FABRIC_IN"}
    assert view.dscp_map[26] == 3 and view.strict == {6} and view.ecn[3] == (150 * 1024, 1500 * 1024)
    rules = view.acls["LLMC_FABRIC_IN"]
    assert rules[-1].action == "deny" and rules[0].src == "10.0.10.0/24"
    spine = parse_eos(text("prod-baremetal", "spine-01", "eos"))
    assert spine.svis[120] == {"10.64.16.3", "10.64.16.1"}


def test_eos_acl_line_tokenizer():
    r = parse_eos_acl_line("20 permit tcp host 10.64.0.11 eq 22 10.0.10.0/24 established")
    assert (r.src, r.sport, r.dst, r.dport, r.established) == ("10.64.0.11/32", (22, 22), "10.0.10.0/24", None, True)
    r = parse_eos_acl_line("30 permit tcp 10.64.24.0/29 host 10.64.24.15 range 6800 7300")
    assert r.dport == (6800, 7300)
    r = parse_eos_acl_line("40 permit icmp any 10.64.0.0/21 3 4")
    assert (r.src, r.icmp_type, r.icmp_code) == ("0.0.0.0/0", 3, 4)
    for bad in ("50 permit tcp any any gt 1023", "60 permit tcp 10.0.0.0 0.0.0.255 any", "70 allow ip any any",
                "80 permit tcp any any eq 22 syn"):
        with pytest.raises(ConfigParseError):
            parse_eos_acl_line(bad)


def test_nvue_structure_is_checked():
    doc = yaml.safe_load(text("lab", "leaf-01", "cumulus"))
    for mutate, needle in [
        (lambda d: d.pop(0), "first item must be the 'header'"),
        (lambda d: d.append({"set": {}}), "exactly one 'set'"),
        (lambda d: d[1]["set"].pop("qos"), "set.qos is missing"),
        (lambda d: d[1]["set"]["interface"]["swp1"].pop("type"), "interface swp1: needs a 'type'"),
        (lambda d: d[1]["set"]["interface"]["swp1"].update({"type": "ethernet"}), "unknown type 'ethernet'"),
        (lambda d: d[1]["set"]["acl"]["LLMC_FABRIC_IN"]["rule"]["10"].update({"action": {"accept": {}}}),
         "action must be permit or deny"),
    ]:
        bad = json.loads(json.dumps(doc))
        mutate(bad)
        with pytest.raises(ConfigParseError, match=needle):
            parse_nvue(yaml.safe_dump(bad))


@pytest.mark.parametrize("nos", NOSES)
def test_parsers_reject_garbage(nos):
    for garbage in ("", "{", "- just: a list\n", "hostname x\n"):
        with pytest.raises(ConfigParseError):
            get(nos).parse(garbage)


# --------------------------------------------------------------------------- the checkers catch violations


def _nvue_edit(config: str, edit) -> str:
    doc = yaml.safe_load(config)
    edit(doc[1]["set"])
    return yaml.safe_dump(doc, sort_keys=False)


def _sonic_edit(config: str, edit) -> str:
    db = json.loads(config)
    edit(db)
    return json.dumps(db, indent=4)


def _first_rule(db: dict, **match) -> str:
    return next(k for k, r in db["ACL_RULE"].items() if all(r.get(f) == v for f, v in match.items()))


MUTATIONS = {
    # a VLAN dropped from a trunk
    "drop-vlan": {
        "cumulus": lambda t: _nvue_edit(t, lambda c: c["interface"]["swp3"]["bridge"]["domain"]["br_default"]
                                        ["vlan"].pop("120")),
        "sonic": lambda t: _sonic_edit(t, lambda d: d["VLAN_MEMBER"].pop("Vlan120|Ethernet16")),
        "eos": lambda t: t.replace("switchport trunk allowed vlan 110,120,130\n",
                                   "switchport trunk allowed vlan 110,130\n", 1),
    },
    # an ACL source widened to any
    "any-source": {
        "cumulus": lambda t: t.replace("source-ip: 10.0.10.0/24", "source-ip: ANY", 1),
        "sonic": lambda t: _sonic_edit(t, lambda d: d["ACL_RULE"][_first_rule(d, SRC_IP="10.0.10.0/24")]
                                       .pop("SRC_IP")),
        "eos": lambda t: t.replace("permit tcp 10.0.10.0/24 ", "permit tcp any ", 1),
    },
    # an ACL port widened to a range
    "wide-ports": {
        "cumulus": lambda t: t.replace("dest-port:\n                    '22': {}",
                                       "dest-port:\n                    '1:1024': {}", 1),
        "sonic": lambda t: _sonic_edit(t, lambda d: d["ACL_RULE"][_first_rule(d, L4_DST_PORT="22")].update(
            {"L4_DST_PORT_RANGE": "1-1024"}) or d["ACL_RULE"][_first_rule(d, L4_DST_PORT_RANGE="1-1024")]
            .pop("L4_DST_PORT")),
        "eos": lambda t: re.sub(r"(permit tcp 10\.0\.10\.0/24 \S+(?: \S+)?) eq 22\n", r"\1 range 1 1024\n", t,
                                count=1),
    },
    # PFC on a second priority
    "pfc-priority-4": {
        "cumulus": lambda t: _nvue_edit(t, lambda c: c["qos"]["pfc"]["default-global"]["switch-priority"]
                                        .update({"4": {}})),
        "sonic": lambda t: _sonic_edit(t, lambda d: d["PORT_QOS_MAP"]["Ethernet0"].update({"pfc_enable": "3,4"})),
        "eos": lambda t: t.replace("   priority-flow-control priority 3 no-drop\n",
                                   "   priority-flow-control priority 3 no-drop\n"
                                   "   priority-flow-control priority 4 no-drop\n", 1),
    },
    # a fabric port left at 1500
    "mtu-1500": {
        "cumulus": lambda t: _nvue_edit(t, lambda c: c["interface"]["swp1"]["link"].update({"mtu": 1500})),
        "sonic": lambda t: _sonic_edit(t, lambda d: d["PORT"]["Ethernet0"].update({"mtu": "1500"})),
        "eos": lambda t: t.replace("   l2 mtu 9216\n", "   l2 mtu 1500\n", 1),
    },
    # the ACL removed from the uplink
    "acl-off-uplink": {
        "cumulus": lambda t: _nvue_edit(t, lambda c: c["interface"]["uplink"].pop("acl")),
        "sonic": lambda t: _sonic_edit(t, lambda d: d["ACL_TABLE"]["LLMC_FABRIC_IN"]["ports"].remove("PortChannel1")),
        "eos": lambda t: re.sub(r"(interface Port-Channel1\n(?:   .*\n)*?)   ip access-group LLMC_FABRIC_IN in\n",
                                r"\1", t, count=1),
    },
    # the final deny removed
    "no-final-deny": {
        "cumulus": lambda t: _nvue_edit(t, lambda c: c["acl"]["LLMC_FABRIC_IN"]["rule"].pop(
            max(c["acl"]["LLMC_FABRIC_IN"]["rule"], key=int))),
        "sonic": lambda t: _sonic_edit(t, lambda d: d["ACL_RULE"].pop(_first_rule(d, PACKET_ACTION="DROP"))),
        "eos": lambda t: re.sub(r"   \d+ deny ip any any\n", "", t),
    },
    # DSCP 26 (RoCE) mapped to the default priority
    "roce-dscp": {
        "cumulus": lambda t: t.replace("'26': {switch-priority: 3}", "'26': {switch-priority: 0}"),
        "sonic": lambda t: _sonic_edit(t, lambda d: d["DSCP_TO_TC_MAP"]["LLMC"].update({"26": "0"})),
        "eos": lambda t: t.replace("qos map dscp 26 to traffic-class 3\n", "").replace(
            "qos map dscp 0 1 2 ", "qos map dscp 0 1 2 26 ", 1),
    },
}
EXPECT = {
    "drop-vlan": {"cumulus": "leaf-01 swp3: VLAN 120 (inference) missing (planned 110,120,130, configured 110,130)",
                  "sonic": "leaf-01 Ethernet16: VLAN 120 (inference) missing (planned 110,120,130, configured 110,130)",
                  "eos": "leaf-01 Ethernet3/1: VLAN 120 (inference) missing (planned 110,120,130, "
                         "configured 110,130)"},
    "any-source": "is wider than the policy: the policy admits tcp/22 to",
    "wide-ports": "is wider than the policy",
    "pfc-priority-4": "PFC on priority 3,4, planned only 3",
    "mtu-1500": "MTU 1500, the fabric runs 9216",
    "acl-off-uplink": "inbound ACL none, planned ['LLMC_FABRIC_IN']",
    "no-final-deny": "is not 'deny ip any any'",
    "roce-dscp": "qos: DSCP 26 -> priority 0, planned 3",
}


@pytest.mark.parametrize("nos", NOSES)
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_checker_rejects_a_violating_config(mutation, nos):
    original = text("prod-baremetal", "leaf-01", nos)
    mutated = MUTATIONS[mutation][nos](original)
    assert mutated != original, "the mutation did not apply"
    got = problems("prod-baremetal", "leaf-01", nos, mutated)
    want = EXPECT[mutation] if isinstance(EXPECT[mutation], str) else EXPECT[mutation][nos]
    assert any(want in p for p in got), "\n".join(got) or "no problem found"
    assert all(p.startswith("leaf-01 ") for p in got)


def test_checker_rejects_a_spine_without_its_gateway():
    for nos, edit in {
        "cumulus": lambda t: _nvue_edit(t, lambda c: c["interface"].pop("vlan120")),
        "sonic": lambda t: _sonic_edit(t, lambda d: d["VLAN_INTERFACE"].pop("Vlan120|10.64.16.1/21")),
        "eos": lambda t: t.replace("   ip virtual-router address 10.64.16.1\n", ""),
    }.items():
        got = problems("prod-baremetal", "spine-01", nos, edit(text("prod-baremetal", "spine-01", nos)))
        assert any(p.startswith("spine-01 Vlan120: ") and "10.64.16.1" in p for p in got), (nos, got)


def test_checker_rejects_the_config_of_another_switch():
    got = problems("prod-baremetal", "leaf-02", "eos", text("prod-baremetal", "leaf-01", "eos"))
    assert "leaf-02 hostname is 'leaf-01'" in got
    assert any("VLAN" in p and "missing" in p for p in got)
