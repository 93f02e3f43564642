"""The packaged suite's ``test_gateway``, on the lab (``make test``): see tests/verify/conftest.py."""

from llmcluster.verify.suite.test_gateway import *  # noqa: F403
