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
