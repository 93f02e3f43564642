"""The verification suite (pytest + testinfra), shipped in the package: ``llmcluster verify`` runs
pytest on this folder (:mod:`llmcluster.verify.run`); a checkout's ``make test`` runs the same
modules from tests/verify on the lab. Hooks and fixtures: :mod:`llmcluster.verify.suite.plugin`."""
