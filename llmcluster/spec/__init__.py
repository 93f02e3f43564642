"""The environment spec: typed models, the loader and the three validation layers."""

from llmcluster.spec.loader import (
    apply_overrides,
    load_from_pulumi,
    load_stack_file,
    parse_override,
    validate_raw,
)
from llmcluster.spec.models import SECTIONS, VLAN_ROLES, Spec

__all__ = [
    "SECTIONS", "VLAN_ROLES", "Spec", "apply_overrides", "load_from_pulumi", "load_stack_file",
    "parse_override", "validate_raw",
]
