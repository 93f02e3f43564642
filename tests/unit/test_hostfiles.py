"""What the roles deploy per host (``llmcluster.render.hostfiles``): the same renderings, named interfaces."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from llmcluster.plan.hostnet import ACCESS_IFNAMES
from llmcluster.render.hostfiles import artifact_hostvars, host_artifacts
from tests.conftest import GOLDEN, load_plan

BAREMETAL = ("lab", "prod-baremetal")
NFT = shutil.which("nft")


def _expected_ifnames(plan, host, mode: str) -> dict[str, str]:
    """VLAN role -> interface name, from the plan alone: ``vlan<id>`` tagged, the access-port name otherwise."""
    return {role: f"vlan{plan.ip.vlans[role].id}" if mode == "tagged" else ACCESS_IFNAMES[role]
            for role in host.addresses}


def _tc_dry_run(script: str, tmp_path) -> list[str]:
    path = tmp_path / "qos.sh"
    path.write_text(script, encoding="utf-8")
    r = subprocess.run(["sh", str(path)], env={**os.environ, "TC": "echo tc"}, capture_output=True, text=True,
                       timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


@pytest.mark.parametrize("stack", BAREMETAL)
@pytest.mark.parametrize("mode", ["tagged", "access"])
def test_artifacts_match_goldens_and_the_plan(stack, mode, tmp_path):
    """Independent expectations: the reviewed golden files, facts of the plan, the tc commands the
    script runs, and ``nft -c`` (as root)."""
    plan = load_plan(stack)
    assert plan.ip.hosts
    qos_tos = sorted(f"0x{c.dscp << 2:02x}" for c in plan.qos.classes)
    for h in plan.ip.hosts:
        a = host_artifacts(plan, h.name, mode)
        want = _expected_ifnames(plan, h, mode)
        assert a["interfaces"] == want, h.name
        # nftables: the golden file where one is checked in; the host's addresses everywhere.
        golden = GOLDEN / f"nftables-{stack}-{h.name}.nft"
        if golden.is_file():
            assert a["nftables"] == golden.read_text(encoding="utf-8"), f"{h.name}: differs from {golden.name}"
        header = dict(re.findall(r"^#   (\w+) +(\S+)", a["nftables"], re.MULTILINE))
        assert header == dict(h.addresses), f"{h.name}: the ruleset's header names other addresses"
        daddrs = {x.strip() for m in re.findall(r"ip daddr \{ ([^}]*) \}", a["nftables"]) for x in m.split(",")}
        assert daddrs, f"{h.name}: no rule accepts anything addressed to the host"
        assert daddrs <= set(h.addresses.values()) | set(plan.ip.vips.values()), (h.name, daddrs)
        if NFT and os.geteuid() == 0:
            path = tmp_path / f"{h.name}.nft"
            path.write_text(a["nftables"], encoding="utf-8")
            r = subprocess.run([NFT, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60, check=False)
            assert r.returncode == 0, f"nft -c rejected {stack}/{h.name}:\n{r.stderr}"
        # tc: the golden script (tagged, at the default 100gbit), and what the script runs.
        golden = GOLDEN / f"tc-{stack}-{h.name}.sh"
        if mode == "tagged" and stack == "lab" and golden.is_file():
            assert a["tc"] == golden.read_text(encoding="utf-8"), f"{h.name}: differs from {golden.name}"
        cmds = _tc_dry_run(a["tc"], tmp_path)
        roots = sorted(c.split(" dev ")[1].split()[0] for c in cmds if c.startswith("tc qdisc replace"))
        assert roots == sorted(want.values()), f"{h.name}: the tc script shapes {roots}, expected {want}"
        for ifname in want.values():
            mine = [c for c in cmds if f' dev {ifname} ' in c]
            assert sum("htb rate" in c and "parent 1:1 " in c for c in mine) == len(plan.qos.classes), (h.name, ifname)
            tos = sorted(c.split(" match ip dsfield ")[1].split()[0] for c in mine if " match ip dsfield " in c)
            assert tos == qos_tos, f"{h.name} {ifname}: DSCP filters {tos}, expected {qos_tos}"


def test_hostvars_carry_the_mode_and_the_renderings():
    plan = load_plan("lab")
    hv = artifact_hostvars(plan, "gpu-01")
    assert hv["llmcluster_network_mode"] == "access"
    assert hv["llmcluster_interface_names"] == {"mgmt": "mgmt", "inference": "inference",
                                                "storage_public": "stor-pub", "rdma": "rdma"}
    assert hv["llmcluster_nftables_ruleset"].startswith("#!/usr/sbin/nft -f\n")
    assert hv["llmcluster_tc_script"].startswith("#!/bin/sh\n")


def test_hostvars_follow_the_plans_mode():
    """The renderings use the interface names plan.hostnet gives the host, in either mode."""
    plan = load_plan("prod-baremetal")
    name = plan.ip.hosts[0].name
    hv = artifact_hostvars(plan, name)
    assert hv["llmcluster_network_mode"] == "tagged"
    assert set(hv["llmcluster_interface_names"].values()) == {f"vlan{plan.ip.vlans[r].id}"
                                                             for r in plan.ip.host(name).addresses}
    lab = artifact_hostvars(plan.in_lab(), name)
    assert lab["llmcluster_network_mode"] == "access"
    assert lab["llmcluster_interface_names"]["mgmt"] == "mgmt"
    assert "llmcluster_qos mgmt\n" in lab["llmcluster_tc_script"]


def test_cloud_hosts_get_only_the_ruleset():
    plan = load_plan("prod-aws")
    hv = artifact_hostvars(plan, plan.ip.hosts[0].name)
    assert set(hv) == {"llmcluster_nftables_ruleset"}
