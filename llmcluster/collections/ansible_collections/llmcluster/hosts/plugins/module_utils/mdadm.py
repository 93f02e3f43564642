"""Linux md RAID: ``mdadm --detail``, ``--detail --brief`` / mdadm.conf ARRAY lines and
``mdadm --examine`` (pure functions, standard library only).

* :func:`mdadm_detail`: one array as ``mdadm --detail <md>`` prints it (mdadm 4.x): level,
  counts, state words, chunk, name, UUID and the member table (active, spare, faulty and
  ``removed`` slots), with ``degraded``/``failed`` judged from the state words and the table.
* :func:`mdadm_arrays`: the ``ARRAY`` lines of ``mdadm --detail --brief`` or of mdadm.conf
  (continuation lines joined), as dicts of their ``key=value`` words.
* :func:`mdadm_examine`: whether ``mdadm --examine <dev>`` found an md superblock on a device;
  :func:`md_superblock_devices`: which devices of a registered loop over it.
* :func:`raid_level_number`: ``raid10`` -> 10 (``linear``/``container``/unknown: ``None``).
"""

from __future__ import annotations

import re
from typing import Any

from ._text import lines as _lines

#: ``mdadm --detail`` fields read as integers (the key is the field name in snake case).
_COUNTS = ("Raid Devices", "Total Devices", "Active Devices", "Working Devices", "Failed Devices", "Spare Devices")
#: Words of an array's State that mean lost redundancy or an array that cannot run.
BAD_STATE = re.compile(r"\b(degraded|failed|inactive|not started)\b", re.IGNORECASE)
_FIELD = re.compile(r"^\s*([A-Za-z][A-Za-z /]*?)\s+:\s?(.*)$")
_MEMBER = re.compile(r"^\s*(\d+|-)\s+(\d+)\s+(\d+)\s+(\d+|-)\s+(.*?)\s*$")


def _key(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.strip().lower()).strip("_")


def raid_level_number(level: Any) -> int | None:
    """``raid10`` / ``10`` / ``RAID 10`` -> 10; anything else (``linear``, ``container``) -> None."""
    m = re.fullmatch(r"\s*(?:raid\s*)?(\d+)\s*", str(level or ""), re.IGNORECASE)
    return int(m.group(1)) if m else None


def _chunk_kib(value: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)\s*", value or "", re.IGNORECASE)
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "K": 1, "M": 1024, "G": 1024 * 1024}[m.group(2).upper()]


def mdadm_detail(output: Any) -> dict[str, Any]:
    """``mdadm --detail <md>`` (its stdout or stdout_lines) as a dict; ``{"found": False}`` for no array.

    Members: ``{"number", "raid_device", "state" (words), "device"}`` — a ``removed`` slot has
    ``device`` None and ``number`` None; a faulty or spare device outside the slots has
    ``raid_device`` None. ``degraded``: the state says so, or a slot is removed/faulty, or fewer
    devices are active than the array has slots. ``failed_devices``: the faulty members' paths.
    """
    out: dict[str, Any] = {"found": False, "device": None, "fields": {}, "members": []}
    in_table = False
    for line in _lines(output):
        if not line.strip():
            continue
        if not out["found"] and re.match(r"^/\S+:\s*$", line):
            out["device"] = line.strip().rstrip(":")
            out["found"] = True
            continue
        if re.match(r"^\s*Number\s+Major\s+Minor\s+RaidDevice\s+State\s*$", line):
            in_table = True
            continue
        if in_table:
            m = _MEMBER.match(line)
            if not m:
                continue
            number, _major, _minor, slot, rest = m.groups()
            words = rest.split()
            device = words[-1] if words and words[-1].startswith("/") else None
            state = words[:-1] if device else words
            out["members"].append({
                "number": None if number == "-" else int(number),
                "raid_device": None if slot == "-" else int(slot),
                "state": state, "device": device,
            })
            continue
        m = _FIELD.match(line)
        if m:
            out["fields"][_key(m.group(1))] = m.group(2).strip()
            out["found"] = True
    f = out["fields"]
    for label in _COUNTS:
        value = f.get(_key(label), "")
        out[_key(label)] = int(value) if value.isdigit() else None
    out["version"] = f.get("version")
    out["level"] = f.get("raid_level")
    out["level_number"] = raid_level_number(out["level"])
    out["chunk_kib"] = _chunk_kib(f.get("chunk_size", ""))
    out["layout"] = f.get("layout")
    out["name"] = (f.get("name") or "").split()[0] if f.get("name") else None
    out["uuid"] = f.get("uuid")
    out["state"] = [w.strip().lower() for w in f.get("state", "").split(",") if w.strip()]
    progress = {k: f[k] for k in ("resync_status", "rebuild_status", "reshape_status", "check_status") if k in f}
    out["progress"] = progress
    slots = [m for m in out["members"] if m["raid_device"] is not None]
    active = [m for m in slots if "active" in m["state"] and "sync" in m["state"]]
    out["active_members"] = [m["device"] for m in active]
    out["failed_members"] = [m["device"] for m in out["members"] if "faulty" in m["state"] and m["device"]]
    out["removed_slots"] = sorted(m["raid_device"] for m in slots if "removed" in m["state"])
    out["spare_members"] = [m["device"] for m in out["members"] if "spare" in m["state"] and m["device"]]
    raid_devices = out["raid_devices"]
    out["degraded"] = bool(
        out["found"] and (
            BAD_STATE.search(f.get("state", ""))
            or out["removed_slots"] or out["failed_members"]
            or (raid_devices is not None and len(active) < raid_devices)
        )
    )
    return out


def mdadm_arrays(output: Any) -> list[dict[str, str]]:
    """The ``ARRAY`` lines of ``mdadm --detail --brief`` / ``--examine --scan`` or of mdadm.conf:
    ``[{"device": "/dev/md/models", "metadata": "1.2", "name": "h:models", "uuid": "..."}]``
    (keys lower-cased; continuation lines, which start with white space, are joined; comments skipped)."""
    records: list[str] = []
    for line in _lines(output):
        body = line.split("#", 1)[0].rstrip()
        if not body.strip():
            continue
        if body[:1].isspace() and records:
            records[-1] += " " + body.strip()
        elif body.split()[0] == "ARRAY":
            records.append(body.strip())
        else:
            records.append("")  # another keyword (DEVICE, MAILADDR ...) ends a continuation
    arrays = []
    for rec in records:
        if not rec:
            continue
        words = rec.split()[1:]
        entry: dict[str, str] = {}
        if words and "=" not in words[0]:
            entry["device"] = words.pop(0)
        for w in words:
            k, _, v = w.partition("=")
            entry[k.lower()] = v
        arrays.append(entry)
    return arrays


def mdadm_examine(output: Any) -> dict[str, Any]:
    """``mdadm --examine <dev>`` (stdout; its "No md superblock detected" goes to stderr): whether
    a superblock was found, and its array UUID, name, level and slot count when one was."""
    fields: dict[str, str] = {}
    for line in _lines(output):
        m = _FIELD.match(line)
        if m:
            fields[_key(m.group(1))] = m.group(2).strip()
    found = bool(fields.get("magic") or fields.get("array_uuid") or fields.get("uuid"))
    return {
        "superblock": found,
        "uuid": fields.get("array_uuid") or fields.get("uuid"),
        "name": (fields.get("name") or "").split()[0] if fields.get("name") else None,
        "level": fields.get("raid_level"),
        "raid_devices": int(fields["raid_devices"]) if fields.get("raid_devices", "").isdigit() else None,
    }


def md_superblock_devices(examine_results: Any) -> list[str]:
    """The devices (``item``) of registered ``mdadm --examine <dev>`` loop results that carry an md
    superblock; skipped items are left out."""
    return [str(r["item"]) for r in examine_results or []
            if isinstance(r, dict) and not r.get("skipped") and "item" in r
            and mdadm_examine(r.get("stdout", ""))["superblock"]]
