"""Filters over the model store's object-store sources (module_utils/model_source.py)."""

from __future__ import annotations

from ansible_collections.llmcluster.hosts.plugins.module_utils.model_source import model_source_problem


class FilterModule:
    def filters(self):
        return {"model_source_problem": model_source_problem}
