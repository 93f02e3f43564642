"""Roles tier: converge the lab's real namespace hosts (the ``lab`` fixture is in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def lab_inventory(lab, tmp_path_factory):
    return lab.write_inventory(tmp_path_factory.mktemp("roles-inventory") / "inventory.yml")
