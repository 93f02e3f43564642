"""Pulumi component resources, one per concern (``llmcluster:<module>:<Type>``).

Components take typed ``Args`` built from the plan; they never read ``pulumi.Config``.
"""
