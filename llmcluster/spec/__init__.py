"""The environment spec: typed models (the field layer) and the parser of stack files and Pulumi config.

This package imports nothing from the rest of ``llmcluster`` but :mod:`llmcluster.errors`.
Whole-spec, plan-aware and preflight rules, and the validating loaders programs call
(``load_stack_file``, ``load_from_pulumi``), live above it in :mod:`llmcluster.validate`.
"""

from llmcluster.spec.loader import (
    apply_overrides,
    parse_override,
    parse_raw,
    parse_stack_file,
    raw_from_pulumi_config,
    raw_from_stack_file,
)
from llmcluster.spec.models import SECTIONS, VLAN_ROLES, Spec

__all__ = [
    "SECTIONS", "VLAN_ROLES", "Spec", "apply_overrides", "parse_override", "parse_raw", "parse_stack_file",
    "raw_from_pulumi_config", "raw_from_stack_file",
]
