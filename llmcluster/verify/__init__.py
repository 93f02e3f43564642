"""The verification suite's library: expectations from the plan, observations from the hosts.

The suite (:mod:`llmcluster.verify.suite`, pytest + testinfra) parametrises over :func:`checks.host_checks` and
:func:`matrix.matrix_cases`; ``llmcluster verify`` runs that suite (:mod:`llmcluster.verify.run`)
and prints the results as a table.
"""
