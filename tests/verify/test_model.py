"""The packaged suite's ``test_model``, on the lab (``make test``): see tests/verify/conftest.py."""

from llmcluster.verify.suite.test_model import *  # noqa: F403
