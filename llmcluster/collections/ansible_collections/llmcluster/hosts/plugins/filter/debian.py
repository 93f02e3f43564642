"""Filters over apt and dpkg output and Debian versions (the parsers are module_utils/debian.py)."""

from __future__ import annotations

from ansible_collections.llmcluster.hosts.plugins.module_utils.debian import (
    apt_madison,
    apt_mark_holds,
    apt_pick_version,
    apt_resolve,
    deb_upstream_version,
    deb_version_split,
    dpkg_installed,
    dpkg_status,
)


class FilterModule:
    def filters(self):
        return {
            "apt_madison": apt_madison,
            "apt_mark_holds": apt_mark_holds,
            "apt_pick_version": apt_pick_version,
            "apt_resolve": apt_resolve,
            "deb_upstream_version": deb_upstream_version,
            "deb_version_split": deb_version_split,
            "dpkg_installed": dpkg_installed,
            "dpkg_status": dpkg_status,
        }
