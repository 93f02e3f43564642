"""The packaged suite's ``test_storage_raid``, on the lab (``make test``): see tests/verify/conftest.py."""

from llmcluster.verify.suite.test_storage_raid import *  # noqa: F403
