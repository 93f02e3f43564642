"""Per host and check: interfaces (address, MTU, state), full-size DF pings, QoS classes, the
loaded nftables ruleset — each compared with the plan (see llmcluster/verify/checks.py)."""

from __future__ import annotations

import re

import pytest

from llmcluster.verify import checks as C

pytestmark = pytest.mark.xdist_group("lab")

_LOSS = re.compile(r"(\d+) received")


def _pmtu(check: C.HostCheck, target) -> list[str]:
    p = check.params
    res = target.host(check.host).run(
        ["ping", "-n", "-M", "do", "-s", str(p["payload"]), "-c", "3", "-i", "0.2", "-W", "2",
         "-I", p["source"], p["peer_address"]], timeout=20)
    received = int(m.group(1)) if (m := _LOSS.search(res.stdout)) else 0
    if res.rc == 0 and received:
        return []
    detail = (res.stderr.strip() or res.stdout.strip().splitlines()[-1:] or ["no output"])
    detail = detail if isinstance(detail, str) else detail[0]
    return [f"{p['payload']}-byte don't-fragment ping {p['source']} -> {p['peer']} {p['peer_address']} "
            f"(VLAN MTU {p['mtu']}): {received}/3 replies, exit {res.rc}: {detail[-200:]}"]


def test_host(host_check: C.HostCheck, verify_target, record_property) -> None:
    record_property("host", host_check.host)
    record_property("check", host_check.name)
    if host_check.kind == "pmtu":
        problems = _pmtu(host_check, verify_target)
    else:
        try:
            facts = verify_target.facts(host_check.host)
            problems = C.CHECKERS[host_check.kind](host_check, facts)
        except C.FactsError as exc:
            problems = [str(exc)]
    assert not problems, f"{host_check.host} {host_check.name}: " + "; ".join(problems)
