"""Filters over the ceph CLI's JSON: status, pools, PGs, CRUSH, caps (module_utils/ceph.py)."""

from __future__ import annotations

from ansible_collections.llmcluster.hosts.plugins.module_utils.ceph import (
    ceph_auth_caps,
    ceph_crush_rules,
    ceph_health_summary,
    ceph_osd_hosts,
    ceph_osd_states,
    ceph_osds_not_up,
    ceph_pg_stat,
    ceph_pgs_clean,
    ceph_pool_changes,
    ceph_pools,
    ceph_status,
    ceph_volume_devices,
)


class FilterModule:
    def filters(self):
        return {
            "ceph_auth_caps": ceph_auth_caps,
            "ceph_crush_rules": ceph_crush_rules,
            "ceph_health_summary": ceph_health_summary,
            "ceph_osd_hosts": ceph_osd_hosts,
            "ceph_osd_states": ceph_osd_states,
            "ceph_osds_not_up": ceph_osds_not_up,
            "ceph_pg_stat": ceph_pg_stat,
            "ceph_pgs_clean": ceph_pgs_clean,
            "ceph_pool_changes": ceph_pool_changes,
            "ceph_pools": ceph_pools,
            "ceph_status": ceph_status,
            "ceph_volume_devices": ceph_volume_devices,
        }
