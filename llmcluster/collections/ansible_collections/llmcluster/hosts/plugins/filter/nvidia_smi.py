"""Filters over nvidia-smi output (the parsers are module_utils/nvidia_smi.py)."""

from __future__ import annotations

from ansible_collections.llmcluster.hosts.plugins.module_utils.nvidia_smi import (
    nvidia_smi_fabric,
    nvidia_smi_nvlink,
    nvidia_smi_query,
)


class FilterModule:
    def filters(self):
        return {
            "nvidia_smi_fabric": nvidia_smi_fabric,
            "nvidia_smi_nvlink": nvidia_smi_nvlink,
            "nvidia_smi_query": nvidia_smi_query,
        }
