"""Block devices: ``wipefs --no-act --json`` signatures and ``/dev/disk/by-id`` links (pure
functions, standard library only).

* :func:`wipefs_signatures`: every signature libblkid finds on a device (partition tables,
  file systems, md superblocks, LUKS headers), as ``wipefs --no-act --json`` lists them; wipefs
  prints nothing at all for a blank device.
* :func:`by_id_map`: ``find /dev/disk/by-id -maxdepth 1 -type l -printf '%p -> %l\\n'`` ->
  ``{"/dev/nvme0n1": "/dev/disk/by-id/nvme-eui.…", …}``: the preferred stable name of every whole
  device (``nvme-eui.*`` first, then ``nvme-<model>_<serial>``, ``wwn-*``, the rest; partitions
  left out), relative link targets resolved.
* :func:`xfs_geometry`: the data section's stripe unit and width of ``xfs_info``.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any

from ._text import lines as _lines
from ._text import text as _text

#: Signature types that are a partition table (wipefs names them so).
PARTITION_TABLES = {"gpt", "PMBR", "dos", "atari", "bsd", "sun", "sgi", "mac", "amiga"}


def wipefs_signatures(output: Any) -> list[dict[str, Any]]:
    """``[{"type": "xfs", "offset": "0x0", "usage": "filesystem"|"partition table"|…, …}]``; ``[]``
    for empty output (a blank device). Text that is not wipefs JSON raises ValueError: a probe
    that cannot be read must not pass as "no signature"."""
    raw = _text(output).strip()
    if not raw:
        return []
    doc = json.loads(raw)
    sigs = doc.get("signatures") if isinstance(doc, dict) else None
    if not isinstance(sigs, list):
        raise ValueError(f"not wipefs --json output: {raw[:80]!r}")
    out = []
    for s in sigs:
        entry = dict(s)
        t = str(entry.get("type") or "")
        entry["usage"] = ("partition table" if t in PARTITION_TABLES else
                          "md superblock" if t == "linux_raid_member" else
                          "LUKS header" if t.startswith("crypto_LUKS") else
                          entry.get("usage") or "filesystem")
        out.append(entry)
    return out


def signature_summary(signatures: list[dict[str, Any]]) -> str:
    """``"gpt at 0x200, PMBR at 0x1fe"`` (for messages); ``""`` for none."""
    return ", ".join(f"{s.get('type')} at {s.get('offset')}" for s in signatures)


def _rank(name: str) -> tuple[int, int, str]:
    order = (r"^nvme-eui\.", r"^nvme-(?!eui\.|nvme\.)", r"^wwn-", r"^nvme-nvme\.")
    for i, pattern in enumerate(order):
        if re.match(pattern, name):
            # nvme-<model>_<serial>_<nsid> duplicates the plain model_serial link: prefer the shorter
            return (i, len(name), name)
    return (len(order), len(name), name)


def by_id_map(output: Any, directory: str = "/dev/disk/by-id") -> dict[str, str]:
    """``{device: preferred by-id link}`` from ``<link> -> <target>`` lines (``find -printf '%p -> %l\\n'``;
    ``ls -l`` prints links so too; udev escapes blanks in link names as ``\\x20``)."""
    best: dict[str, str] = {}
    for line in _lines(output):
        link, sep, target = line.partition(" -> ")
        link, target = link.strip(), target.strip()
        if not sep or not link or not target:
            continue
        name = posixpath.basename(link)
        if re.search(r"-part\d+$", name):
            continue
        device = posixpath.normpath(posixpath.join(posixpath.dirname(link) or directory, target))
        if device not in best or _rank(name) < _rank(posixpath.basename(best[device])):
            best[device] = link
    return dict(sorted(best.items()))


def member_signatures(wipefs_results: Any, examine_results: Any = None) -> dict[str, str]:
    """``{device: "gpt at 0x200, PMBR at 0x1fe"}`` for every device that carries something, from the
    registered loop results of ``wipefs --no-act --json <dev>`` and (optionally) ``mdadm --examine
    <dev>`` (``item`` is the device). Skipped items are left out; a wipefs result that is not wipefs
    JSON counts as "unreadable" (refused, never taken for blank)."""
    from .mdadm import mdadm_examine

    found: dict[str, list[str]] = {}
    for r in wipefs_results or []:
        if not isinstance(r, dict) or r.get("skipped") or "item" not in r:
            continue
        dev = str(r["item"])
        try:
            sigs = wipefs_signatures(r.get("stdout", ""))
            what = signature_summary(sigs)
        except ValueError:
            what = f"unreadable wipefs output (exit {r.get('rc')})"
        if r.get("rc", 0) != 0:
            what = f"wipefs failed (exit {r.get('rc')}): {str(r.get('stderr', '')).strip()[:120]}"
        if what:
            found.setdefault(dev, []).append(what)
    for r in examine_results or []:
        if not isinstance(r, dict) or r.get("skipped") or "item" not in r:
            continue
        ex = mdadm_examine(r.get("stdout", ""))
        if ex["superblock"]:
            found.setdefault(str(r["item"]), []).append(
                f"an md superblock (array {ex['name'] or '?'} {ex['level'] or ''}, mdadm --examine)".replace(" )", ")"))
    return {dev: ", ".join(dict.fromkeys(w)) for dev, w in sorted(found.items())}


def xfs_geometry(output: Any) -> dict[str, int | None]:
    """``xfs_info`` (device or mount point): the data section's block size and stripe geometry,
    ``{"bsize", "sunit_blocks", "swidth_blocks", "su_kib", "sw"}`` (``sw`` = swidth / sunit;
    None where xfs_info printed no data section, or the file system has no stripe)."""
    section = ""
    found: dict[str, int] = {}
    for line in _lines(output):
        head = line.split("=", 1)[0].strip()
        if head:
            section = head
        if section != "data":
            continue
        for key, value in re.findall(r"\b(bsize|sunit|swidth)=(\d+)", line):
            found.setdefault(key, int(value))
    bsize, sunit, swidth = found.get("bsize"), found.get("sunit"), found.get("swidth")
    return {
        "bsize": bsize, "sunit_blocks": sunit, "swidth_blocks": swidth,
        "su_kib": sunit * bsize // 1024 if sunit and bsize else None,
        "sw": swidth // sunit if sunit and swidth else None,
    }
