"""The firewall matrix, for real: for every ordered pair of zones and every declared service port,
connection attempts from a source in one zone to listeners on the hosts of the other. Allowed
flows must connect, everything else must be dropped (see llmcluster/verify/matrix.py)."""

from __future__ import annotations

import pytest

from llmcluster.verify import matrix as M

pytestmark = pytest.mark.xdist_group("lab")


def test_firewall(matrix_case: M.MatrixCase, request, record_property) -> None:
    record_property("host", f"{matrix_case.source_zone} -> {matrix_case.destination_zone}")
    record_property("check", f"firewall[{matrix_case.service}]")
    if matrix_case.skip_reason:
        pytest.skip(matrix_case.skip_reason)
    results = request.getfixturevalue("matrix_results")
    problems = [p for a in matrix_case.attempts if (p := M.judge(a, results[a]))]
    verdict = "allowed" if matrix_case.allowed else "partially allowed" if matrix_case.partial else "denied"
    assert not problems, (f"firewall {matrix_case.id} ({verdict} by the plan): "
                          + "; ".join(problems))
