"""Filters over the container toolkit's and runtimes' output (module_utils/nvidia_container.py)."""

from __future__ import annotations

from ansible_collections.llmcluster.hosts.plugins.module_utils.nvidia_container import (
    container_runtime_nvidia_state,
    ctr_plugin_errors,
    nvidia_container_cli_info,
    nvidia_ctk_cdi_devices,
)


class FilterModule:
    def filters(self):
        return {
            "container_runtime_nvidia_state": container_runtime_nvidia_state,
            "ctr_plugin_errors": ctr_plugin_errors,
            "nvidia_container_cli_info": nvidia_container_cli_info,
            "nvidia_ctk_cdi_devices": nvidia_ctk_cdi_devices,
        }
