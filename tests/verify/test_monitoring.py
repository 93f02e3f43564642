"""The packaged suite's ``test_monitoring``, on the lab (``make test``): see tests/verify/conftest.py."""

from llmcluster.verify.suite.test_monitoring import *  # noqa: F403
