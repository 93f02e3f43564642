"""Stand-in for the switch provider (:mod:`llmcluster.components.switches`, a ``pulumi.dynamic``
provider): what ``create`` would return, computed from the inputs; no switch is contacted.

``pulumi.dynamic`` resources reach the mocks as ``pulumi-python:dynamic[/module]:Name`` with the
serialised provider in ``__provider`` (a secret, so redacted in the plan document).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcluster.components.switches import RESOURCE_TYPE, sha256_text, staged_path
from llmcluster.nos import NOSES

__all__ = ["RESOURCE_TYPE", "offline_outputs"]


def offline_outputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What the provider computes, for the offline evaluation's mocks (nothing is contacted)."""
    config = inputs.get("config")
    out: dict[str, Any] = {"runningSha256": None}
    if isinstance(config, str):
        out["sha256"] = sha256_text(config)
    if inputs.get("nos") in NOSES and isinstance(inputs.get("fileName"), str):
        out["stagedPath"] = staged_path(inputs["nos"], inputs["fileName"])
    return out
