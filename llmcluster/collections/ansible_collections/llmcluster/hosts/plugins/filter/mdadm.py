"""Filters over mdadm output: --detail, ARRAY lines, --examine (module_utils/mdadm.py)."""

from __future__ import annotations

from ansible_collections.llmcluster.hosts.plugins.module_utils.mdadm import (
    mdadm_arrays,
    mdadm_detail,
    mdadm_examine,
    md_superblock_devices,
    raid_level_number,
)


class FilterModule:
    def filters(self):
        return {
            "mdadm_arrays": mdadm_arrays,
            "mdadm_detail": mdadm_detail,
            "mdadm_examine": mdadm_examine,
            "md_superblock_devices": md_superblock_devices,
            "raid_level_number": raid_level_number,
        }
