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


# --------------------------------------------------------------------------- mdadm, wipefs, by-id
# ``mdadm --detail`` as mdadm 4.x prints it (layout of published runs of RAID 10 over four
# drives: created and resyncing, clean, one member failed with ``mdadm --fail``, the failed one
# removed and a replacement rebuilding). MDADM_EXAMINE was captured on this project's test
# machine (a hand-written 1.2 superblock on a loop device, tests/helpers/blockdev.py); the
# wipefs documents likewise (util-linux 2.38). mdadm ends the State line with a blank (\\x20).

MDADM_DETAIL_RESYNC = """\
/dev/md/models:
           Version : 1.2
     Creation Time : Fri Mar 14 00:20:49 2025
        Raid Level : raid10
        Array Size : 4188160 (3.99 GiB 4.29 GB)
     Used Dev Size : 2094080 (2045.00 MiB 2144.34 MB)
      Raid Devices : 4
     Total Devices : 4
       Persistence : Superblock is persistent

       Update Time : Fri Mar 14 00:20:53 2025
             State : clean, resyncing\x20
    Active Devices : 4
   Working Devices : 4
    Failed Devices : 0
     Spare Devices : 0

            Layout : near=2
        Chunk Size : 512K

Consistency Policy : resync

     Resync Status : 39% complete

              Name : gpu-02:models  (local to host gpu-02)
              UUID : b668fb7e:c6ce05dd:d98815bc:655841e9
            Events : 6

    Number   Major   Minor   RaidDevice State
       0     254       16        0      active sync set-A   /dev/vdb
       1     254       32        1      active sync set-B   /dev/vdc
       2     254       48        2      active sync set-A   /dev/vdd
       3     254       64        3      active sync set-B   /dev/vde
"""

MDADM_DETAIL_CLEAN = (MDADM_DETAIL_RESYNC.replace("State : clean, resyncing ", "State : clean ")
                      .replace("     Resync Status : 39% complete\n\n", ""))

MDADM_DETAIL_FAULTY = """\
/dev/md/models:
           Version : 1.2
     Creation Time : Wed Jul 31 06:30:37 2019
        Raid Level : raid10
        Array Size : 10475520 (9.99 GiB 10.73 GB)
     Used Dev Size : 5237760 (5.00 GiB 5.36 GB)
      Raid Devices : 4
     Total Devices : 4
       Persistence : Superblock is persistent

       Update Time : Wed Jul 31 06:49:20 2019
             State : clean, degraded\x20
    Active Devices : 3
   Working Devices : 3
    Failed Devices : 1
     Spare Devices : 0

            Layout : near=2
        Chunk Size : 512K

Consistency Policy : resync

              Name : gpu-02:models  (local to host gpu-02)
              UUID : 79005a6f:d8ca3e08:05cea84f:de2cff6b
            Events : 19

    Number   Major   Minor   RaidDevice State
       -       0        0        0      removed
       1     254       32        1      active sync set-B   /dev/vdc
       2     254       48        2      active sync set-A   /dev/vdd
       3     254       64        3      active sync set-B   /dev/vde

       0     254       16        -      faulty   /dev/vdb
"""

MDADM_DETAIL_REBUILDING = """\
/dev/md/models:
           Version : 1.2
        Raid Level : raid10
      Raid Devices : 4
     Total Devices : 4
             State : clean, degraded, recovering\x20
    Active Devices : 3
   Working Devices : 4
    Failed Devices : 0
     Spare Devices : 1

            Layout : near=2
        Chunk Size : 512K

    Rebuild Status : 4% complete

              Name : gpu-02:models  (local to host gpu-02)
              UUID : 79005a6f:d8ca3e08:05cea84f:de2cff6b
            Events : 1081374

    Number   Major   Minor   RaidDevice State
       5     254       80        0      spare rebuilding   /dev/vdf
       1     254       32        1      active sync set-B   /dev/vdc
       2     254       48        2      active sync set-A   /dev/vdd
       3     254       64        3      active sync set-B   /dev/vde
"""

MDADM_BRIEF = "ARRAY /dev/md/models metadata=1.2 name=gpu-02:models UUID=b668fb7e:c6ce05dd:d98815bc:655841e9\n"

#: Debian's /etc/mdadm/mdadm.conf with the role's ARRAY line, and a --detail --scan --verbose
#: style entry whose devices= continues on the next line.
MDADM_CONF = """\
# mdadm.conf
#
# !NB! Run update-initramfs -u after updating this file.
HOMEHOST <system>
MAILADDR root
# definitions of existing MD arrays
ARRAY /dev/md/models metadata=1.2 name=gpu-02:models UUID=b668fb7e:c6ce05dd:d98815bc:655841e9
ARRAY /dev/md0 level=raid10 num-devices=4 metadata=1.2 name=otuslinux:0 UUID=77e35852:8da4251a:8e5f5006:0c7c11b5
   devices=/dev/sdb,/dev/sdc,/dev/sdd,/dev/sde
"""

MDADM_EXAMINE = """\
/dev/loop0:
          Magic : a92b4efc
        Version : 1.2
    Feature Map : 0x0
     Array UUID : 23f2a519:1eb04eda:bd7efaf5:55160ec6
           Name : other:models
  Creation Time : Tue Nov 14 22:13:20 2023
     Raid Level : raid10
   Raid Devices : 4

 Avail Dev Size : 131072 sectors (64.00 MiB 67.11 MB)
    Data Offset : 2048 sectors
   Super Offset : 8 sectors
          State : clean
    Device UUID : 54a0a85d:37ec4759:867152f5:60ecfae3

       Checksum : fc5875a8 - correct
         Events : 1

         Layout : near=2
     Chunk Size : 512K

   Device Role : Active device 0
   Array State : AAAA ('A' == active, '.' == missing, 'R' == replacing)
"""

WIPEFS_EXT4 = """\
{
   "signatures": [
      {
         "device": "loop0",
         "offset": "0x438",
         "type": "ext4",
         "uuid": "369e6cb2-73ef-4c23-a8d4-de5bee3287db",
         "label": null
      }
   ]
}
"""
WIPEFS_GPT = """\
{
   "signatures": [
      {"device": "loop0", "offset": "0x200", "type": "gpt", "uuid": null, "label": null},
      {"device": "loop0", "offset": "0x1ffffe00", "type": "gpt", "uuid": null, "label": null},
      {"device": "loop0", "offset": "0x1fe", "type": "PMBR", "uuid": null, "label": null}
   ]
}
"""
WIPEFS_LUKS = ('{"signatures": [{"device": "md127", "offset": "0x0", "type": "crypto_LUKS", '
               '"uuid": "0b1c6a3e-0d5f-4c1b-9a41-2f0e3c1a2b3c", "label": null}]}')
#: A blank device: util-linux 2.38 prints an empty list, older ones print nothing at all.
WIPEFS_BLANK = '{\n   "signatures": [\n\n   ]\n}\n'

#: ``find /dev/disk/by-id -maxdepth 1 -type l -printf '%p -> %l\\n'`` on an NVMe server.
BY_ID = """\
/dev/disk/by-id/nvme-SAMSUNG_MZWLO3T8HCLS-00A07_S6CKNA0W100001 -> ../../nvme0n1
/dev/disk/by-id/nvme-SAMSUNG_MZWLO3T8HCLS-00A07_S6CKNA0W100001_1 -> ../../nvme0n1
/dev/disk/by-id/nvme-eui.36434b3057100001002538a500000001 -> ../../nvme0n1
/dev/disk/by-id/nvme-SAMSUNG_MZWLO3T8HCLS-00A07_S6CKNA0W100002 -> ../../nvme1n1
/dev/disk/by-id/nvme-SAMSUNG_MZWLO3T8HCLS-00A07_S6CKNA0W100002-part1 -> ../../nvme1n1p1
/dev/disk/by-id/nvme-eui.36434b3057100002002538a500000001 -> ../../nvme1n1
/dev/disk/by-id/nvme-SAMSUNG_MZWLO3T8HCLS-00A07_S6CKNA0W100003 -> ../../nvme2n1
/dev/disk/by-id/md-uuid-b668fb7e:c6ce05dd:d98815bc:655841e9 -> ../../md127
/dev/disk/by-id/md-name-gpu-02:models -> ../../md127
/dev/disk/by-id/virtio-nvme0 -> ../../vdb
"""

#: ``xfs_info`` of ``mkfs.xfs -d su=512k,sw=2`` on a 4 GiB device (xfsprogs 6.1, this machine).
XFS_INFO = """\
meta-data=/dev/loop0             isize=512    agcount=8, agsize=130432 blks
         =                       sectsz=512   attr=2, projid32bit=1
         =                       crc=1        finobt=1, sparse=1, rmapbt=0
         =                       reflink=1    bigtime=1 inobtcount=1 nrext64=0
data     =                       bsize=4096   blocks=1043456, imaxpct=25
         =                       sunit=128    swidth=256 blks
naming   =version 2              bsize=4096   ascii-ci=0, ftype=1
log      =internal log           bsize=4096   blocks=16384, version=2
         =                       sectsz=512   sunit=8 blks, lazy-count=1
realtime =none                   extsz=4096   blocks=0, rtextents=0
"""

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
