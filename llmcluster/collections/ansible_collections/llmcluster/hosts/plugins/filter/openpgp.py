"""Filters over OpenPGP key files and gpg's colon listing (the parsers are module_utils/openpgp.py)."""

from __future__ import annotations

from ansible_collections.llmcluster.hosts.plugins.module_utils.openpgp import (
    gpg_colon_fingerprints,
    openpgp_fingerprints,
    openpgp_key_info,
    openpgp_normalize_fingerprint,
)


class FilterModule:
    def filters(self):
        return {
            "gpg_colon_fingerprints": gpg_colon_fingerprints,
            "openpgp_fingerprints": openpgp_fingerprints,
            "openpgp_key_info": openpgp_key_info,
            "openpgp_normalize_fingerprint": openpgp_normalize_fingerprint,
        }
