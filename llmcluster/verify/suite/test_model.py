"""The model store on the serving hosts, per host: ``model[manifest]`` (llmcluster/verify/model.py).

The verifier is installed, the manifest present, ``model-verify verify --manifest <manifest>
<model_path>`` passes on the host (its throughput line is the check's detail: ``verified N files,
B bytes in S s (X GB/s)``), and on the replica head the trtllm-serve unit runs it as ExecStartPre.
In the lab the model is the lab fixture (llmcluster.lab.model_fixture: a few MB, random weights).
"""

from __future__ import annotations

import pytest

from llmcluster.verify import model as MS

pytestmark = pytest.mark.xdist_group("lab")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from llmcluster.verify.suite.plugin import _collect

    if "model_check" in metafunc.fixturenames:
        c = _collect(metafunc.config)
        cases = MS.model_checks(c.plan, c.hostvars)
        metafunc.parametrize("model_check", cases or [None], ids=[x.id for x in cases] or ["no-serving-host"])


def test_model(model_check, verify_target, record_property) -> None:
    if model_check is None:
        pytest.skip("the inventory has no serving host")
    record_property("host", model_check.host)
    record_property("check", f"model[{model_check.name}]")
    res = verify_target.host(model_check.host).python(MS.GATHER, *MS.gather_args(model_check),
                                                      timeout=MS.VERIFY_TIMEOUT_S + 60)
    facts = res.json(f"{model_check.host}: gathering the model store")
    detail = MS.throughput(facts)
    if detail:
        record_property("detail", detail)
    problems = MS.judge(model_check, facts)
    assert not problems, f"{model_check.host} model[{model_check.name}]: " + "; ".join(problems)
