"""The Ceph cluster and its clients (llmcluster/verify/ceph.py): health, pools as planned, every PG
active+clean, CRUSH's placements on distinct hosts (crushtool), and from each GPU node a rados
round trip with its restricted key, which is refused other pools and administration.

In the lab the OSDs are files of the storage hosts (roles/ceph, a lab simulation); the daemons,
the cluster and the checks are real."""

from __future__ import annotations

import pytest

from llmcluster.verify import ceph as CE

pytestmark = pytest.mark.xdist_group("lab")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from llmcluster.verify.suite.plugin import _collect

    if "ceph_check" in metafunc.fixturenames:
        c = _collect(metafunc.config)
        cases = CE.ceph_checks(c.plan, c.hostvars)
        metafunc.parametrize("ceph_check", cases or [None], ids=[x.id for x in cases] or ["no-ceph"])


def test_ceph(ceph_check, verify_target, record_property) -> None:
    if ceph_check is None:
        pytest.skip("the plan has no Ceph cluster (storage.ceph) or the inventory lacks its first monitor")
    record_property("host", ceph_check.host)
    record_property("check", f"ceph[{ceph_check.name}]")
    problems = CE.run_check(ceph_check, verify_target.host(ceph_check.host))
    assert not problems, f"{ceph_check.host} ceph[{ceph_check.name}]: " + "; ".join(problems)
