"""What the roles deploy per host (``llmcluster.render.hostfiles``): the same renderings, named interfaces."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from llmcluster.render.hostfiles import (
    ACCESS_IFNAMES,
    artifact_hostvars,
    host_artifacts,
    host_interfaces,
    network_mode,
)
from llmcluster.spec.models import VLAN_ROLES
from tests.conftest import GOLDEN, load_plan, load_spec

BAREMETAL = ("lab", "prod-baremetal")
NFT = shutil.which("nft")


def test_access_names_cover_every_vlan_role_and_fit_the_kernel():
    assert set(ACCESS_IFNAMES) == set(VLAN_ROLES)
    assert len(set(ACCESS_IFNAMES.values())) == len(ACCESS_IFNAMES)
    for name in ACCESS_IFNAMES.values():
        assert re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", name), name


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
    hv = artifact_hostvars(plan, "gpu-01", "access")
    assert hv["llmcluster_network_mode"] == "access"
    assert hv["llmcluster_interface_names"] == {"mgmt": "mgmt", "inference": "inference",
                                                "storage_public": "stor-pub", "rdma": "rdma"}
    assert hv["llmcluster_nftables_ruleset"].startswith("#!/usr/sbin/nft -f\n")
    assert hv["llmcluster_tc_script"].startswith("#!/bin/sh\n")


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="tagged, access"):
        host_interfaces(load_plan("lab"), "gpu-01", "trunk")


def test_network_mode_of_the_stacks():
    assert network_mode(load_spec("lab")) == "access"
    assert network_mode(load_spec("prod-baremetal")) == "tagged"
