"""Filters over dcgmi output: the diag judge, health, discovery (module_utils/dcgm.py)."""

from __future__ import annotations

from ansible_collections.llmcluster.hosts.plugins.module_utils.dcgm import (
    dcgm_diag_report,
    dcgm_health_overall,
    dcgm_health_systems,
    dcgmi_gpu_count,
)


class FilterModule:
    def filters(self):
        return {
            "dcgm_diag_report": dcgm_diag_report,
            "dcgm_health_overall": dcgm_health_overall,
            "dcgm_health_systems": dcgm_health_systems,
            "dcgmi_gpu_count": dcgmi_gpu_count,
        }
