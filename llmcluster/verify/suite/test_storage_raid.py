"""Local NVMe RAID of the hosts the plan gives one (plan.storage.raid), per host and check: array
whole (a degraded one names the missing member), level and members as planned, the ARRAY line in
mdadm.conf, the mount (noatime, by UUID in fstab) and the file system with its stripe geometry
(llmcluster/verify/raid.py). Facts are gathered once per host in one SSH round trip.

Hosts whose inventory turns the RAID off (the lab's containers: no md in their kernel) are
skipped with the inventory's reason; the VM tier (tests/lab/test_vm.py) runs the checks on a
real md array.
"""

from __future__ import annotations

import pytest

from llmcluster.verify import raid as R

pytestmark = pytest.mark.xdist_group("lab")

_FACTS: dict[str, dict] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from llmcluster.verify.suite.plugin import _collect

    if "raid_check" in metafunc.fixturenames:
        c = _collect(metafunc.config)
        cases = R.raid_checks(c.plan, c.hostvars)
        metafunc.parametrize("raid_check", cases or [None], ids=[x.id for x in cases] or ["no-raid-host"])


def raid_facts(target, check: R.RaidCheck) -> dict:
    if check.host not in _FACTS:
        res = target.host(check.host).python(R.GATHER, *R.gather_args(check), timeout=120)
        _FACTS[check.host] = res.json(f"{check.host}: gathering RAID facts")
    return _FACTS[check.host]


def test_storage_raid(raid_check, request, record_property) -> None:
    if raid_check is None:
        pytest.skip("the plan gives no host of this inventory a local NVMe RAID")
    record_property("host", raid_check.host)
    record_property("check", f"raid[{raid_check.name}]")
    if raid_check.skip:  # before the target: a skipped check needs no host (nor, in a checkout, the lab)
        pytest.skip(raid_check.skip)
    verify_target = request.getfixturevalue("verify_target")
    problems = R.judge(raid_check, raid_facts(verify_target, raid_check))
    assert not problems, f"{raid_check.host} raid[{raid_check.name}]: " + "; ".join(problems)
