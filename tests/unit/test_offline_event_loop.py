"""An offline evaluation (Pulumi's mock runtime) after ``asyncio.run`` in the same process: asyncio.run
clears the thread's current event loop on exit, and Pulumi's mocks take that loop. Found when a test
of the lab engine's shim ran ``asyncio.run`` and every later Pulumi test in the process failed with
"There is no current event loop in thread 'MainThread'"."""

from __future__ import annotations

import asyncio

from llmcluster import offline
from tests.conftest import load_spec


def test_an_evaluation_after_asyncio_run_has_a_loop():
    asyncio.run(asyncio.sleep(0))
    try:
        asyncio.get_event_loop_policy().get_event_loop()
        raise AssertionError("asyncio.run left a current loop: this test no longer reproduces the case")
    except RuntimeError:
        pass
    ev = offline.evaluate(load_spec("lab"))
    assert ev.resources, "the lab stack registers resources"
