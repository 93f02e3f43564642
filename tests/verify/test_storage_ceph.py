"""The packaged suite's ``test_storage_ceph``, on the lab (``make test``): see tests/verify/conftest.py."""

from llmcluster.verify.suite.test_storage_ceph import *  # noqa: F403
