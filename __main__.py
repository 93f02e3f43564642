"""Pulumi entry point (``pulumi up -s <stack>``): thin by design, see llmcluster/program.py."""

from llmcluster.program import main

main()
