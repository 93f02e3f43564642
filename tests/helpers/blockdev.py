"""Block devices for the local tests: loop devices over sparse files, and what a used NVMe drive
carries at its start (a partition table, a file system, an md superblock), written with the
real tools where this machine has them.

An md superblock is written by hand (:func:`md_superblock_v12`): ``mdadm --create`` needs the
kernel's md driver, which this machine lacks, but ``mdadm --examine`` and libblkid
(``wipefs``, ``blkid -p``) read a superblock from user space — the layout and checksum are
mdadm's (super1.c, ``struct mdp_superblock_1``), so both recognise it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

MD_MAGIC = 0xA92B4EFC
#: A 1.2 superblock sits 4 KiB from the start of the member.
MD_SB_OFFSET = 4096


def md_superblock_v12(*, level: int = 10, raid_disks: int = 4, dev_number: int = 0, name: str = "other:models",
                      size_sectors: int = 1 << 16) -> bytes:
    """A valid md 1.2 superblock (256 bytes + the roles table) with mdadm's checksum."""
    max_dev = 384
    sb = bytearray(256 + 2 * max_dev)
    struct.pack_into("<IIII", sb, 0, MD_MAGIC, 1, 0, 0)
    sb[16:32] = uuid.uuid4().bytes
    sb[32:64] = name.encode()[:32].ljust(32, b"\0")
    struct.pack_into("<Q", sb, 64, 1_700_000_000)  # ctime
    struct.pack_into("<iIQII", sb, 72, level, 0x102 if level == 10 else 0, size_sectors, 1024, raid_disks)
    struct.pack_into("<QQQ", sb, 128, 2048, size_sectors, MD_SB_OFFSET // 512)  # data offset/size, super offset
    struct.pack_into("<I", sb, 160, dev_number)
    sb[168:184] = uuid.uuid4().bytes
    struct.pack_into("<QQQ", sb, 192, 1_700_000_000, 1, (1 << 64) - 1)  # utime, events, resync_offset (clean)
    struct.pack_into("<I", sb, 220, max_dev)
    for i in range(max_dev):
        struct.pack_into("<H", sb, 256 + 2 * i, i if i < raid_disks else 0xFFFF)
    total = sum(struct.unpack_from(f"<{len(sb) // 4}I", sb))
    struct.pack_into("<I", sb, 216, (total & 0xFFFFFFFF) + (total >> 32))
    return bytes(sb)


def write_md_superblock(device: str | Path, **kw) -> None:
    with open(device, "r+b") as f:
        f.seek(MD_SB_OFFSET)
        f.write(md_superblock_v12(**kw))
        f.flush()
        os.fsync(f.fileno())


def write_gpt(device: str | Path) -> None:
    """A GPT with one partition, written by sfdisk (util-linux)."""
    subprocess.run([shutil.which("sfdisk") or "sfdisk", "--quiet", "--label", "gpt", str(device)],
                   input=",,L\n", text=True, check=True, capture_output=True)


def head_digest(device: str | Path, mib: int = 4) -> str:
    """sha256 of the first ``mib`` MiB (where every signature the role looks for lies)."""
    with open(device, "rb") as f:
        return hashlib.sha256(f.read(mib << 20)).hexdigest()


def losetup(image: Path) -> str:
    return subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                          text=True).stdout.strip()


def detach(device: str) -> None:
    subprocess.run(["losetup", "--detach", device], check=False, capture_output=True)
