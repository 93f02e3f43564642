"""Debian packages: ``apt-cache madison``, ``dpkg-query``, ``apt-mark showhold`` output and
Debian version strings (pure functions, standard library only).

A Debian version is ``[epoch:]upstream[-revision]`` (Debian policy 5.6.12): the epoch is a number,
the revision is what follows the *last* hyphen (the upstream part may hold hyphens when there is
a revision), a version without hyphen is a native package's (no revision).
"""

from __future__ import annotations

import re
from typing import Any

from ._text import lines

_EPOCH = re.compile(r"^(\d+):")


def deb_version_split(version: Any) -> dict[str, str]:
    """``1:4.2.3-1`` -> ``{epoch: "1", upstream: "4.2.3", revision: "1"}`` ("" for an absent part)."""
    v = str(version or "").strip()
    epoch = ""
    m = _EPOCH.match(v)
    if m:
        epoch, v = m.group(1), v[m.end():]
    upstream, _, revision = v.rpartition("-") if "-" in v else (v, "", "")
    return {"epoch": epoch, "upstream": upstream, "revision": revision}


def deb_upstream_version(version: Any) -> str:
    """``1:4.2.3-1`` -> ``4.2.3``; ``570.172.08-0ubuntu1`` -> ``570.172.08``; ``1.2`` -> ``1.2``."""
    return deb_version_split(version)["upstream"]


def apt_uri(url: Any) -> str:
    """A repository URL as apt prints it in ``apt-cache madison`` (``file:///x/`` -> ``file:/x``)."""
    return re.sub(r"^file:/+", "file:/", str(url or "").strip()).rstrip("/")


def apt_madison(output: Any, source: Any = "") -> dict[str, list[str]]:
    """``apt-cache madison`` as ``{package: [version, ...]}`` in apt's order (the preferred, newest
    first), each version once. ``source``: only the versions of that repository (its URL, compared
    as apt prints it); "" takes every source. Lines that are not ``pkg | version | source`` (apt's
    warnings, "N: Unable to locate package") are ignored."""
    want = apt_uri(source) if source else ""
    out: dict[str, list[str]] = {}
    for line in lines(output):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 3 or not parts[0] or not parts[1] or " " in parts[0]:
            continue
        if want and apt_uri((parts[2].split() or [""])[0]) != want:
            continue
        versions = out.setdefault(parts[0], [])
        if parts[1] not in versions:
            versions.append(parts[1])
    return out


def apt_pick_version(versions: Any, upstream: Any, epoch: Any = None) -> str:
    """The first of ``versions`` (madison lists the preferred first) that is ``upstream`` with a
    Debian revision: ``[epoch:]upstream-revision``. ``epoch`` None accepts any epoch (or none);
    "" requires none; "1" requires ``1:``. "" when none is. (``1.17.80-1`` and ``1.17.8.1-1`` are
    not ``1.17.8``.)"""
    for v in versions or []:
        parts = deb_version_split(v)
        if parts["upstream"] != str(upstream) or not parts["revision"] or re.search(r"\s", str(v)):
            continue
        if epoch is None or parts["epoch"] == str(epoch):
            return str(v)
    return ""


def apt_resolve(candidates: Any, packages: Any, upstream: Any, epoch: Any = None) -> dict[str, str]:
    """``{package: Debian version}`` of each of ``packages`` whose madison ``candidates``
    (:func:`apt_madison`) have ``upstream`` (:func:`apt_pick_version`); packages without one are
    left out (the caller reports them)."""
    out: dict[str, str] = {}
    for p in packages or []:
        v = apt_pick_version((candidates or {}).get(p, []), upstream, epoch)
        if v:
            out[str(p)] = v
    return out


#: dpkg's selection states (the first letter of ``${db:Status-Abbrev}``).
_WANT = {"u": "unknown", "i": "install", "h": "hold", "r": "deinstall", "p": "purge"}


def _status(fields: list[str]) -> tuple[str, str, bool] | None:
    """(want, status word or letter, installed) of a ``Status-Abbrev`` ("hi ") or a
    ``${Status}`` ("hold ok installed")."""
    words = fields[0].split()
    if len(words) == 3:  # ${Status}: "install ok installed", "deinstall ok config-files"
        return words[0], words[2], words[2] == "installed"
    abbrev = fields[0].strip()
    if len(abbrev) >= 2 and abbrev[0].lower() in _WANT:
        return _WANT[abbrev[0].lower()], abbrev[1], abbrev[1] == "i"
    return None


def dpkg_status(output: Any) -> dict[str, dict[str, Any]]:
    """``dpkg-query --show`` output as ``{package: {want, hold, installed, version}}``.

    The formats the roles and the verification suite ask for, told apart per line:
    ``${db:Status-Abbrev} ${Package} ${Version}`` (space separated; the version may be left out),
    ``${db:Status-Abbrev}|${Package}|${Version}`` and ``${Package}\\t${Version}\\t${Status}``.
    ``installed`` is dpkg's "installed" state only (``ii``, ``hi``; not ``rc``, ``un``, half-
    installed); ``hold`` is the selection ``h`` (held, installed or not). An architecture
    qualifier (``libc6:amd64``) is dropped."""
    out: dict[str, dict[str, Any]] = {}
    for line in lines(output):
        if not line.strip():
            continue
        if "\t" in line:
            f = line.split("\t")
            if len(f) != 3:
                continue
            pkg, version, status = f[0].strip(), f[1].strip(), _status([f[2]])
        elif "|" in line:
            f = line.split("|")
            if len(f) != 3:
                continue
            pkg, version, status = f[1].strip(), f[2].strip(), _status([f[0]])
        else:
            f = line.split()
            if len(f) not in (2, 3):
                continue
            pkg, version, status = f[1], f[2] if len(f) == 3 else "", _status([f[0]])
        if status is None or not pkg:
            continue
        want, _, installed = status
        out[pkg.split(":")[0]] = {"want": want, "hold": want == "hold", "installed": installed, "version": version}
    return out


def dpkg_installed(output: Any) -> dict[str, str]:
    """``{package: version}`` of the installed packages (held ones included) of ``dpkg-query``
    output (:func:`dpkg_status`)."""
    return {p: s["version"] for p, s in dpkg_status(output).items() if s["installed"]}


def apt_mark_holds(output: Any) -> list[str]:
    """``apt-mark showhold``: the held package names (architecture qualifier dropped)."""
    return [line.strip().split(":")[0] for line in lines(output) if line.strip()]
