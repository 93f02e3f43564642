"""The packaged suite's ``test_hosts``, on the lab (``make test``): see tests/verify/conftest.py."""

from llmcluster.verify.suite.test_hosts import *  # noqa: F403
