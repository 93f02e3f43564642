"""The packaged suite's ``test_audit``, on the lab (``make test``): see tests/verify/conftest.py."""

from llmcluster.verify.suite.test_audit import *  # noqa: F403
