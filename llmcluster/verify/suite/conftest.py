"""pytest's entry to the packaged suite when it runs on this folder (``llmcluster verify``): the
suite's options, hooks and fixtures (:mod:`llmcluster.verify.suite.plugin`). From a checkout,
tests/verify/conftest.py loads the same plugin for ``make test`` (and tests/conftest.py adds the
options)."""

from __future__ import annotations

import pytest

from llmcluster.verify.suite.plugin import (  # noqa: F401 - the suite's hooks and fixtures, for pytest
    add_options,
    matrix_results,
    pytest_generate_tests,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    verify_target,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    # Also when another configuration file than the suite's pytest.ini is in use (--strict-markers).
    config.addinivalue_line("markers", "xdist_group(name): run in the same xdist worker (make test)")
