"""Local NVMe RAID checks of the verification suite: the model cache of every host the plan gives
a RAID (plan.storage.raid.hosts), against what the role nvme_raid builds.

One program (:data:`GATHER`) runs on the host in one SSH round trip and prints one JSON document:
``mdadm --detail`` of the md device, mdadm.conf, ``/proc/self/mountinfo`` and fstab, the file
system's signature (``wipefs --json``) and ``xfs_info``, the members resolved to kernel names and
the ``/dev/disk/by-id`` links. The judges below are pure; the tools' output is read by the
``llmcluster.hosts`` collection's parsers, the code the role uses as filters.

Checks (``raid[<name>]``):

* ``array`` — the array exists and is not degraded (a resync after the create is fine); a missing
  or failed member is named by its by-id path;
* ``layout`` — RAID level, slot count and members exactly as planned (by kernel name);
* ``mdadm-conf`` — mdadm.conf has the array's ARRAY line (its UUID), so it assembles as itself at boot;
* ``mount`` — the plan's mount point is mounted from the planned file system device, with noatime,
  and fstab mounts it by UUID;
* ``filesystem`` — the planned file system on the planned device (LUKS under it when the plan
  encrypts); xfs: stripe unit and width as planned.

Hosts whose inventory turns the RAID off (``nvme_raid_enabled: false``: the lab's containers, whose
kernel has no md) are skipped with the inventory's reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.blockdev import (
    by_id_map,
    wipefs_signatures,
    xfs_geometry,
)
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.mdadm import (
    mdadm_arrays,
    mdadm_detail,
)

CHECKS = ("array", "layout", "mdadm-conf", "mount", "filesystem")
#: The nvme_raid role's defaults (roles/nvme_raid/defaults/main.yml).
MDADM_CONF = "/etc/mdadm/mdadm.conf"
BY_ID_DIR = "/dev/disk/by-id"


@dataclass(frozen=True)
class RaidCheck:
    host: str
    name: str
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    skip: str = ""

    @property
    def id(self) -> str:
        return f"{self.host}:raid[{self.name}]"


def raid_checks(plan: Any, hostvars: Mapping[str, Mapping[str, Any]]) -> list[RaidCheck]:
    """Every RAID check of every host the plan gives a RAID and the inventory has (plan order)."""
    raid = plan.storage.raid
    if raid is None:
        return []
    out: list[RaidCheck] = []
    for h in raid.hosts:
        hv = hostvars.get(h.host)
        if hv is None:
            continue
        skip = ""
        if hv.get("nvme_raid_enabled") is False:
            skip = f"the inventory turns the RAID off: {hv.get('nvme_raid_disabled_reason') or 'no reason given'}"
        params = {
            "level": raid.level, "drives": raid.drives, "chunk_kib": raid.chunk_kib, "filesystem": raid.filesystem,
            "encrypt": raid.encrypt, "stripe_unit_kib": raid.stripe_unit_kib, "stripe_width": raid.stripe_width,
            "md_device": h.md_device, "fs_device": h.fs_device, "mount": h.mount,
            "members": list(hv.get("nvme_raid_devices") or h.members),
            "mdadm_conf": hv.get("nvme_raid_mdadm_conf") or MDADM_CONF,
        }
        out += [RaidCheck(h.host, n, params, skip) for n in CHECKS]
    return out


def gather_args(check: RaidCheck) -> list[str]:
    p = check.params
    return [json.dumps({k: p[k] for k in ("md_device", "fs_device", "mount", "members", "mdadm_conf")}
                       | {"by_id": BY_ID_DIR})]


GATHER = r'''
import json, os, subprocess, sys
a = json.loads(sys.argv[1])
def run(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"rc": 127, "out": "", "err": str(e)}
    return {"rc": p.returncode, "out": p.stdout, "err": p.stderr}
def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return None
links = []
try:
    for name in sorted(os.listdir(a["by_id"])):
        path = os.path.join(a["by_id"], name)
        if os.path.islink(path):
            links.append(path + " -> " + os.readlink(path))
except OSError:
    pass
out = {
    "detail": run(["mdadm", "--detail", a["md_device"]]),
    "mdadm_conf": read(a["mdadm_conf"]),
    "mountinfo": read("/proc/self/mountinfo"),
    "fstab": read("/etc/fstab"),
    "md_wipefs": run(["wipefs", "--no-act", "--json", a["md_device"]]),
    "fs_wipefs": run(["wipefs", "--no-act", "--json", a["fs_device"]]),
    "fs_uuid": run(["blkid", "--probe", "--match-tag", "UUID", "--output", "value", a["fs_device"]]),
    "fs_real": os.path.realpath(a["fs_device"]),
    "xfs_info": run(["xfs_info", a["mount"]]),
    "members": {m: os.path.realpath(m) if os.path.exists(m) else None for m in a["members"]},
    "by_id": "\n".join(links),
}
print(json.dumps(out))
'''


# --------------------------------------------------------------------------- judges


def judge(check: RaidCheck, facts: Mapping[str, Any]) -> list[str]:
    return _JUDGES[check.name](check.params, facts)


def _detail(facts: Mapping[str, Any]) -> dict[str, Any]:
    return mdadm_detail((facts.get("detail") or {}).get("out") or "")


def _names(p: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, str]:
    """{kernel name: stable name} of the planned members (the by-id link where one exists)."""
    members = facts.get("members") or {}
    links = by_id_map(facts.get("by_id") or "")
    return {real: (m if m.startswith(BY_ID_DIR + "/") else links.get(real, m))
            for m, real in members.items() if real}


def _array(p: Mapping[str, Any], facts: Mapping[str, Any]) -> list[str]:
    d = _detail(facts)
    if not d["found"]:
        err = ((facts.get("detail") or {}).get("err") or "").strip()[-200:]
        return [f"no array at {p['md_device']}: {err or 'mdadm --detail printed nothing'}"]
    if not d["degraded"]:
        return []
    names = _names(p, facts)
    active = set(d["active_members"])
    missing = [f"{names.get(real, real)} ({real})" for real in names if real not in active]
    gone = [m for m, real in (facts.get("members") or {}).items() if real is None]
    failed = [f"{names.get(dev, dev)} ({dev})" for dev in d["failed_members"]]
    return [f"{p['md_device']} is degraded (state {', '.join(d['state'])}; {len(active)} of {d['raid_devices']} "
            f"members active in sync): missing {', '.join(missing + gone) or 'a member'}"
            + (f"; faulty {', '.join(failed)}" if failed else "")
            + (f"; rebuilding {d['progress']}" if d["progress"] else "")
            + ": replace the drive (docs/storage.md, Local NVMe RAID)"]


def _layout(p: Mapping[str, Any], facts: Mapping[str, Any]) -> list[str]:
    d = _detail(facts)
    if not d["found"]:
        return [f"no array at {p['md_device']}"]
    problems = []
    if d["level_number"] != p["level"]:
        problems.append(f"level {d['level']}, plan says RAID {p['level']}")
    if d["raid_devices"] != p["drives"]:
        problems.append(f"{d['raid_devices']} member slots, plan says {p['drives']}")
    if p["level"] != 1 and d["chunk_kib"] != p["chunk_kib"]:
        problems.append(f"chunk {d['chunk_kib']} KiB, plan says {p['chunk_kib']} KiB")
    names = _names(p, facts)
    listed = {m["device"] for m in d["members"] if m["device"]}
    foreign = sorted(listed - set(names))
    if foreign:
        problems.append(f"members not in the plan: {', '.join(foreign)}")
    absent = [m for m, real in (facts.get("members") or {}).items() if real is None]
    if absent:
        problems.append(f"planned members absent from the host: {', '.join(absent)}")
    return problems


def _mdadm_conf(p: Mapping[str, Any], facts: Mapping[str, Any]) -> list[str]:
    d = _detail(facts)
    conf = facts.get("mdadm_conf")
    if conf is None:
        return [f"{p['mdadm_conf']} is missing: the array would assemble as /dev/md127 (or not at all) at boot"]
    arrays = mdadm_arrays(conf)
    if not d["found"] or not d["uuid"]:
        return [f"no array at {p['md_device']} to look for in {p['mdadm_conf']}"]
    if not any(a.get("uuid") == d["uuid"] for a in arrays):
        return [f"{p['mdadm_conf']} has no ARRAY line with UUID={d['uuid']} (it lists "
                f"{[a.get('uuid') for a in arrays] or 'none'}): write mdadm --detail --brief's line, then "
                "update-initramfs -u"]
    return []


def _mounts(mountinfo: str) -> dict[str, dict[str, str]]:
    """/proc/self/mountinfo: {mount point: {"source", "fstype", "options"}} (the last mount wins)."""
    out: dict[str, dict[str, str]] = {}
    for line in (mountinfo or "").splitlines():
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if not sep or len(fields) < 6 or len(rest) < 2:
            continue
        point = fields[4].replace("\\040", " ")
        out[point] = {"options": fields[5], "fstype": rest[0], "source": rest[1]}
    return out


def _mount(p: Mapping[str, Any], facts: Mapping[str, Any]) -> list[str]:
    m = _mounts(facts.get("mountinfo") or "").get(p["mount"].rstrip("/") or "/")
    problems = []
    real = facts.get("fs_real") or p["fs_device"]
    if m is None:
        problems.append(f"{p['mount']} is not mounted")
    else:
        if os.path.realpath(m["source"]) != real and m["source"] not in (p["fs_device"], real):
            problems.append(f"{p['mount']} is mounted from {m['source']}, plan says {p['fs_device']} ({real})")
        if "noatime" not in m["options"].split(","):
            problems.append(f"{p['mount']} is mounted with {m['options']}: no noatime")
    uuid = ((facts.get("fs_uuid") or {}).get("out") or "").strip()
    entries = [line.split() for line in (facts.get("fstab") or "").splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    entry = next((e for e in entries if len(e) >= 4 and e[1] == p["mount"]), None)
    if entry is None:
        problems.append(f"/etc/fstab has no entry for {p['mount']}: it is not mounted after a reboot")
    else:
        if not uuid or entry[0] != f"UUID={uuid}":
            problems.append(f"/etc/fstab mounts {p['mount']} from {entry[0]}, not by the file system's "
                            f"UUID={uuid or '?'}")
        if not {"noatime", "nofail"} <= set(entry[3].split(",")):
            problems.append(f"/etc/fstab options for {p['mount']} are {entry[3]}: noatime and nofail wanted")
    return problems


def _filesystem(p: Mapping[str, Any], facts: Mapping[str, Any]) -> list[str]:
    problems = []

    def types(key: str) -> list[str]:
        # Distinct kinds: one format may carry several signatures (LUKS2 has its header at 0 and a
        # second copy at 0x4000; GPT a primary and a backup table).
        r = facts.get(key) or {}
        try:
            return sorted({s["type"] for s in wipefs_signatures(r.get("out") or "")})
        except ValueError:
            return ["unreadable"]

    fs = types("fs_wipefs")
    if fs != [p["filesystem"]]:
        problems.append(f"{p['fs_device']} holds {fs or 'nothing'}, plan says {p['filesystem']}")
    if p["encrypt"] and types("md_wipefs") != ["crypto_LUKS"]:
        problems.append(f"{p['md_device']} holds {types('md_wipefs') or 'nothing'}, plan says LUKS "
                        "(storage.raid.encrypt)")
    if p["filesystem"] == "xfs" and p["stripe_unit_kib"]:
        r = facts.get("xfs_info") or {}
        g = xfs_geometry(r.get("out") or "")
        if r.get("rc") != 0:
            problems.append(f"xfs_info {p['mount']} failed (exit {r.get('rc')}): {(r.get('err') or '').strip()[-160:]}")
        elif (g["su_kib"], g["sw"]) != (p["stripe_unit_kib"], p["stripe_width"]):
            problems.append(f"xfs stripe su={g['su_kib']}k sw={g['sw']}, plan says su={p['stripe_unit_kib']}k "
                            f"sw={p['stripe_width']}")
    return problems


_JUDGES = {"array": _array, "layout": _layout, "mdadm-conf": _mdadm_conf, "mount": _mount,
           "filesystem": _filesystem}
