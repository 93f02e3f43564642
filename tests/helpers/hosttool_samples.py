"""Real output of host tools (apt-cache madison, dpkg-query, gpg keys, dcgmi diag -j), shared by the
collection's tests and the roles' unit tests."""

from __future__ import annotations

import json

MADISON_TOOLKIT_LAB = """\
nvidia-container-toolkit |   1.17.8-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
nvidia-container-toolkit |   1.17.7-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
nvidia-container-toolkit-base |   1.17.8-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
libnvidia-container1 | 1.17.8-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
"""


#: ``apt-cache madison datacenter-gpu-manager-4-core datacenter-gpu-manager-4-cuda12
#: datacenter-gpu-manager-exporter`` against the CUDA repository (DCGM 4 carries the epoch 1).
CUDA_URL = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64"


MADISON_DCGM = f"""\
datacenter-gpu-manager-4-core |  1:4.2.3-1 | {CUDA_URL}  Packages
datacenter-gpu-manager-4-core |  1:4.2.2-1 | {CUDA_URL}  Packages
datacenter-gpu-manager-4-core | 1:4.1.1-1 | {CUDA_URL}  Packages
datacenter-gpu-manager-4-cuda12 |  1:4.2.3-1 | {CUDA_URL}  Packages
datacenter-gpu-manager-exporter |    4.1.3-1 | {CUDA_URL}  Packages
datacenter-gpu-manager-exporter |    4.1.1-1 | {CUDA_URL}  Packages
"""


#: ``dpkg-query --show --showformat='${db:Status-Abbrev} ${Package} ${Version}\\n'`` (the toolkit
#: and dcgm roles' probe): installed, held, removed with its configuration left, unknown, an
#: architecture-qualified name, a half-installed package.
DPKG_ABBREV = (
    "ii  containerd 1.6.20~ds1-1+b1\n"
    "hi  nvidia-container-toolkit 1.17.8-1\n"
    "rc  old-thing 1.0-1\n"
    "un  never \n"  # no version: dpkg prints the empty field
    "ii  libc6:amd64 2.36-9+deb12u10\n"
    "iU  broken-unpacked 2.0-1\n"
    "hi  datacenter-gpu-manager-4-core 1:4.2.3-1\n"
)


#: An ed25519 test key made with GnuPG 2.2 (``gpg --quick-gen-key ... ed25519``); gpg prints
#: the fingerprint below for it.
KEY_ED25519 = """\
-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawPMsxYJKwYBBAHaRw8BAQdAR+vwUFOWZSX8lDqgDZAkglm2OytNO7z2J4iy
UjRnGIi0I2xsbWNsdXN0ZXIgdGVzdCA8dEBleGFtcGxlLmludmFsaWQ+iJAEExYI
ADgWIQR02DkAXhxWkcoChYL+ED+7ovHO8QUCawPMswIbAwULCQgHAgYVCgkICwIE
FgIDAQIeAQIXgAAKCRD+ED+7ovHO8TY1AQDorts1NHaDLOL9ettZb9AF1Q2UT1/d
cR79o20zcNLVtQEAi4M0yOapycrzOO/1p+R/nkgjsbTcySmOt27fcU77LwQ=
=rbEs
-----END PGP PUBLIC KEY BLOCK-----
"""


FPR_ED25519 = "74D839005E1C5691CA028582FE103FBBA2F1CEF1"


def diag_doc(failing: dict[str, str] | None = None, top: str = "DCGM GPU Diagnostic", gpus: int = 8) -> str:
    """A ``dcgmi diag -r 1 -j`` document in the layout DCGM 3/4 print (per-GPU results)."""
    failing = failing or {}
    tests = []
    for name in ("Denylist", "NVML Library", "CUDA Main Library", "Persistence Mode", "Fabric Manager"):
        bad = name in failing
        results = []
        for i in range(gpus):
            r = {"entity_group": "GPU", "entity_group_id": 1, "entity_id": i, "status": "Fail" if bad else "Pass"}
            if bad:
                r["warnings"] = [{"warning": failing[name], "error_id": 1, "error_category": 1, "error_severity": 2}]
            results.append(r)
        tests.append({"name": name, "results": results, "test_summary": {"status": "Fail" if bad else "Pass"}})
    return json.dumps(
        {
            top: {"test_categories": [{"category": "Deployment", "tests": tests}]},
            "metadata": {"DCGM Version": "4.2.3"},
            "version": "4.2.3",
        },
        indent=4,
    )


# --------------------------------------------------------------------------- Ceph 16.2 (the lab, Debian 12)
# Captured from the lab's cluster (3 monitors, 2 managers, 6 BlueStore OSDs on files, pools models
# 128 PGs and engines 32 PGs, size 3 / min_size 2, rule llmcluster-replicated, failure domain host);
# the client key in CEPH_AUTH_MODELS is replaced by a placeholder.

#: ``ceph status --format json``, HEALTH_OK.
CEPH_STATUS_OK = '{"fsid":"7f845f81-c57e-4b7b-9e42-f88827e9812a","health":{"status":"HEALTH_OK","checks":{},"mutes":[]},"election_epoch":22,"quorum":[0,1,2],"quorum_names":["storage-01","storage-02","storage-03"],"quorum_age":132,"monmap":{"epoch":3,"min_mon_release_name":"pacific","num_mons":3},"osdmap":{"epoch":57,"num_osds":6,"num_up_osds":6,"osd_up_since":1796508036,"num_in_osds":6,"osd_in_since":1796507615,"num_remapped_pgs":0},"pgmap":{"pgs_by_state":[{"state_name":"active+clean","count":161}],"num_pgs":161,"num_pools":3,"num_objects":0,"data_bytes":0,"bytes_used":1832185856,"bytes_avail":4167798784,"bytes_total":5999984640},"fsmap":{"epoch":1,"by_rank":[],"up:standby":0},"mgrmap":{"available":true,"num_standbys":1,"modules":["iostat","nfs","restful"],"services":{}},"servicemap":{"epoch":18,"modified":"2026-12-05T22:01:35.198297+0000","services":{}},"progress_events":{}}'  # noqa: E501 - the tool's output, verbatim

#: ``ceph status --format json`` seconds after ``systemctl stop ceph-osd@5`` (OSD_DOWN).
CEPH_STATUS_OSD_DOWN = '{"fsid":"7f845f81-c57e-4b7b-9e42-f88827e9812a","health":{"status":"HEALTH_WARN","checks":{"OSD_DOWN":{"severity":"HEALTH_WARN","summary":{"message":"1 osds down","count":1},"muted":false}},"mutes":[]},"election_epoch":22,"quorum":[0,1,2],"quorum_names":["storage-01","storage-02","storage-03"],"quorum_age":227,"monmap":{"epoch":3,"min_mon_release_name":"pacific","num_mons":3},"osdmap":{"epoch":59,"num_osds":6,"num_up_osds":5,"osd_up_since":1796508254,"num_in_osds":6,"osd_in_since":1796507615,"num_remapped_pgs":0},"pgmap":{"pgs_by_state":[{"state_name":"active+clean","count":124},{"state_name":"stale+active+clean","count":22},{"state_name":"active+undersized","count":15}],"num_pgs":161,"num_pools":3,"num_objects":0,"data_bytes":0,"bytes_used":1832243200,"bytes_avail":4167741440,"bytes_total":5999984640},"fsmap":{"epoch":1,"by_rank":[],"up:standby":0},"mgrmap":{"available":true,"num_standbys":1,"modules":["iostat","nfs","restful"],"services":{}},"servicemap":{"epoch":18,"modified":"2026-12-05T22:01:35.198297+0000","services":{}},"progress_events":{}}'  # noqa: E501 - the tool's output, verbatim

#: ``ceph osd pool ls detail --format json``.
CEPH_POOLS = '[{"pool_id":1,"pool_name":"device_health_metrics","create_time":"2026-12-05T21:53:12.082041+0000","flags":1,"flags_names":"hashpspool","type":1,"size":3,"min_size":2,"crush_rule":0,"peering_crush_bucket_count":0,"peering_crush_bucket_target":0,"peering_crush_bucket_barrier":0,"peering_crush_bucket_mandatory_member":2147483647,"object_hash":2,"pg_autoscale_mode":"off","pg_num":1,"pg_placement_num":1,"pg_placement_num_target":1,"pg_num_target":1,"pg_num_pending":1,"last_pg_merge_meta":{"source_pgid":"0.0","ready_epoch":0,"last_epoch_started":0,"last_epoch_clean":0,"source_version":"0\'0","target_version":"0\'0"},"last_change":"42","last_force_op_resend":"0","last_force_op_resend_prenautilus":"0","last_force_op_resend_preluminous":"0","auid":0,"snap_mode":"selfmanaged","snap_seq":0,"snap_epoch":0,"pool_snaps":[],"removed_snaps":"[]","quota_max_bytes":0,"quota_max_objects":0,"tiers":[],"tier_of":-1,"read_tier":-1,"write_tier":-1,"cache_mode":"none","target_max_bytes":0,"target_max_objects":0,"cache_target_dirty_ratio_micro":400000,"cache_target_dirty_high_ratio_micro":600000,"cache_target_full_ratio_micro":800000,"cache_min_flush_age":0,"cache_min_evict_age":0,"erasure_code_profile":"","hit_set_params":{"type":"none"},"hit_set_period":0,"hit_set_count":0,"use_gmt_hitset":true,"min_read_recency_for_promote":0,"min_write_recency_for_promote":0,"hit_set_grade_decay_rate":0,"hit_set_search_last_n":0,"grade_table":[],"stripe_width":0,"expected_num_objects":0,"fast_read":false,"options":{"pg_num_max":32,"pg_num_min":1},"application_metadata":{"mgr_devicehealth":{}}},{"pool_id":2,"pool_name":"models","create_time":"2026-12-05T21:53:47.030559+0000","flags":1,"flags_names":"hashpspool","type":1,"size":3,"min_size":2,"crush_rule":1,"peering_crush_bucket_count":0,"peering_crush_bucket_target":0,"peering_crush_bucket_barrier":0,"peering_crush_bucket_mandatory_member":2147483647,"object_hash":2,"pg_autoscale_mode":"off","pg_num":128,"pg_placement_num":128,"pg_placement_num_target":128,"pg_num_target":128,"pg_num_pending":128,"last_pg_merge_meta":{"source_pgid":"0.0","ready_epoch":0,"last_epoch_started":0,"last_epoch_clean":0,"source_version":"0\'0","target_version":"0\'0"},"last_change":"33","last_force_op_resend":"0","last_force_op_resend_prenautilus":"0","last_force_op_resend_preluminous":"0","auid":0,"snap_mode":"selfmanaged","snap_seq":0,"snap_epoch":0,"pool_snaps":[],"removed_snaps":"[]","quota_max_bytes":0,"quota_max_objects":0,"tiers":[],"tier_of":-1,"read_tier":-1,"write_tier":-1,"cache_mode":"none","target_max_bytes":0,"target_max_objects":0,"cache_target_dirty_ratio_micro":400000,"cache_target_dirty_high_ratio_micro":600000,"cache_target_full_ratio_micro":800000,"cache_min_flush_age":0,"cache_min_evict_age":0,"erasure_code_profile":"","hit_set_params":{"type":"none"},"hit_set_period":0,"hit_set_count":0,"use_gmt_hitset":true,"min_read_recency_for_promote":0,"min_write_recency_for_promote":0,"hit_set_grade_decay_rate":0,"hit_set_search_last_n":0,"grade_table":[],"stripe_width":0,"expected_num_objects":0,"fast_read":false,"options":{},"application_metadata":{"rgw":{}}},{"pool_id":3,"pool_name":"engines","create_time":"2026-12-05T21:53:47.751867+0000","flags":1,"flags_names":"hashpspool","type":1,"size":3,"min_size":2,"crush_rule":1,"peering_crush_bucket_count":0,"peering_crush_bucket_target":0,"peering_crush_bucket_barrier":0,"peering_crush_bucket_mandatory_member":2147483647,"object_hash":2,"pg_autoscale_mode":"off","pg_num":32,"pg_placement_num":32,"pg_placement_num_target":32,"pg_num_target":32,"pg_num_pending":32,"last_pg_merge_meta":{"source_pgid":"0.0","ready_epoch":0,"last_epoch_started":0,"last_epoch_clean":0,"source_version":"0\'0","target_version":"0\'0"},"last_change":"34","last_force_op_resend":"0","last_force_op_resend_prenautilus":"0","last_force_op_resend_preluminous":"0","auid":0,"snap_mode":"selfmanaged","snap_seq":0,"snap_epoch":0,"pool_snaps":[],"removed_snaps":"[]","quota_max_bytes":0,"quota_max_objects":0,"tiers":[],"tier_of":-1,"read_tier":-1,"write_tier":-1,"cache_mode":"none","target_max_bytes":0,"target_max_objects":0,"cache_target_dirty_ratio_micro":400000,"cache_target_dirty_high_ratio_micro":600000,"cache_target_full_ratio_micro":800000,"cache_min_flush_age":0,"cache_min_evict_age":0,"erasure_code_profile":"","hit_set_params":{"type":"none"},"hit_set_period":0,"hit_set_count":0,"use_gmt_hitset":true,"min_read_recency_for_promote":0,"min_write_recency_for_promote":0,"hit_set_grade_decay_rate":0,"hit_set_search_last_n":0,"grade_table":[],"stripe_width":0,"expected_num_objects":0,"fast_read":false,"options":{},"application_metadata":{"rbd":{}}}]'  # noqa: E501 - the tool's output, verbatim

#: ``ceph pg stat --format json``: all clean, then with osd.5 stopped.
CEPH_PG_STAT_CLEAN = '{"pg_ready":true,"pg_summary":{"num_pg_by_state":[{"name":"active+clean","num":161}],"num_pgs":161,"num_bytes":0,"total_bytes":5999984640,"total_avail_bytes":4167798784,"total_used_bytes":1832185856,"total_used_raw_bytes":1832185856}}'  # noqa: E501 - the tool's output, verbatim
CEPH_PG_STAT_DEGRADED = '{"pg_ready":true,"pg_summary":{"num_pg_by_state":[{"name":"active+undersized","num":30},{"name":"stale+active+clean","num":16},{"name":"active+clean","num":115}],"num_pgs":161,"num_bytes":0,"total_bytes":5999984640,"total_avail_bytes":4167720960,"total_used_bytes":1832263680,"total_used_raw_bytes":1832263680}}'  # noqa: E501 - the tool's output, verbatim

#: ``ceph osd crush rule dump --format json``.
CEPH_CRUSH_RULES = '[{"rule_id":0,"rule_name":"replicated_rule","ruleset":0,"type":1,"min_size":1,"max_size":10,"steps":[{"op":"take","item":-1,"item_name":"default"},{"op":"chooseleaf_firstn","num":0,"type":"host"},{"op":"emit"}]},{"rule_id":1,"rule_name":"llmcluster-replicated","ruleset":1,"type":1,"min_size":1,"max_size":10,"steps":[{"op":"take","item":-1,"item_name":"default"},{"op":"chooseleaf_firstn","num":0,"type":"host"},{"op":"emit"}]}]'  # noqa: E501 - the tool's output, verbatim

#: ``ceph osd tree --format json``.
CEPH_OSD_TREE = '{"nodes":[{"id":-1,"name":"default","type":"root","type_id":11,"children":[-7,-5,-3]},{"id":-3,"name":"storage-01","type":"host","type_id":1,"pool_weights":{},"children":[1,0]},{"id":0,"device_class":"hdd","name":"osd.0","type":"osd","type_id":0,"crush_weight":0.000885009765625,"depth":2,"pool_weights":{},"exists":1,"status":"up","reweight":1,"primary_affinity":1},{"id":1,"device_class":"hdd","name":"osd.1","type":"osd","type_id":0,"crush_weight":0.000885009765625,"depth":2,"pool_weights":{},"exists":1,"status":"up","reweight":1,"primary_affinity":1},{"id":-5,"name":"storage-02","type":"host","type_id":1,"pool_weights":{},"children":[3,2]},{"id":2,"device_class":"hdd","name":"osd.2","type":"osd","type_id":0,"crush_weight":0.000885009765625,"depth":2,"pool_weights":{},"exists":1,"status":"up","reweight":1,"primary_affinity":1},{"id":3,"device_class":"hdd","name":"osd.3","type":"osd","type_id":0,"crush_weight":0.000885009765625,"depth":2,"pool_weights":{},"exists":1,"status":"up","reweight":1,"primary_affinity":1},{"id":-7,"name":"storage-03","type":"host","type_id":1,"pool_weights":{},"children":[5,4]},{"id":4,"device_class":"hdd","name":"osd.4","type":"osd","type_id":0,"crush_weight":0.000885009765625,"depth":2,"pool_weights":{},"exists":1,"status":"up","reweight":1,"primary_affinity":1},{"id":5,"device_class":"hdd","name":"osd.5","type":"osd","type_id":0,"crush_weight":0.000885009765625,"depth":2,"pool_weights":{},"exists":1,"status":"up","reweight":1,"primary_affinity":1}],"stray":[]}'  # noqa: E501 - the tool's output, verbatim

#: ``ceph auth get client.models --format json`` (key replaced).
CEPH_AUTH_MODELS = '[{"entity":"client.models","key":"AQ-redacted-for-the-sample==","caps":{"mon":"allow r","osd":"allow rw pool=models"}}]'  # noqa: E501 - the tool's output, verbatim

#: ``crushtool -i MAP --test --rule 1 --num-rep 3 --min-x 0 --max-x 9 --show-mappings``.
CRUSHTOOL_MAPPINGS = """\
CRUSH rule 1 x 0 [3,4,0]
CRUSH rule 1 x 1 [5,0,2]
CRUSH rule 1 x 2 [4,2,1]
CRUSH rule 1 x 3 [0,3,4]
CRUSH rule 1 x 4 [2,5,1]
CRUSH rule 1 x 5 [0,2,4]
CRUSH rule 1 x 6 [5,0,3]
CRUSH rule 1 x 7 [2,4,1]
CRUSH rule 1 x 8 [5,0,3]
CRUSH rule 1 x 9 [2,5,0]
"""
