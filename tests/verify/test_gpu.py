"""The packaged suite's ``test_gpu``, on the lab (``make test``): see tests/verify/conftest.py."""

from llmcluster.verify.suite.test_gpu import *  # noqa: F403
