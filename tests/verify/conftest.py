"""tests/verify: the packaged verification suite (llmcluster/verify/suite) on the lab this session
brings up (``make test``), plus tests of ``llmcluster verify`` itself (the breakage tests).

The suite's modules are re-exported by the ``test_*`` shims here, its hooks and fixtures by this
conftest; its options are registered by tests/conftest.py (an option must be known before the
command line is parsed). ``verify_target`` asks for the ``lab_converged`` fixture of
tests/conftest.py when no ``--llmcluster-inventory`` is given.
"""

from __future__ import annotations

from llmcluster.verify.suite.plugin import (  # noqa: F401 - the suite's hooks and fixtures, for pytest
    matrix_results,
    pytest_generate_tests,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    verify_target,
)
