"""The packaged suite's ``test_firewall_matrix``, on the lab (``make test``): see tests/verify/conftest.py."""

from llmcluster.verify.suite.test_firewall_matrix import *  # noqa: F403
