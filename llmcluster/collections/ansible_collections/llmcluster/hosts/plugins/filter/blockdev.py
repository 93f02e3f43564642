"""Filters over block device probes: wipefs signatures, /dev/disk/by-id links (module_utils/blockdev.py)."""

from __future__ import annotations

from ansible_collections.llmcluster.hosts.plugins.module_utils.blockdev import (
    by_id_map,
    member_signatures,
    signature_summary,
    wipefs_signatures,
    xfs_geometry,
)


class FilterModule:
    def filters(self):
        return {
            "by_id_map": by_id_map,
            "member_signatures": member_signatures,
            "signature_summary": signature_summary,
            "wipefs_signatures": wipefs_signatures,
            "xfs_geometry": xfs_geometry,
        }
