"""A stack without Ceph (the AWS stacks, a bare-metal stack with `storage.ceph` unset): site.yml skips
the ceph role on every play, and the skipped role must not fail. ansible-core templates a task's
``delegate_to`` before its ``when``, so a delegate_to naming the first monitor of a cluster that does not
exist failed the GPU play ("Empty hostname produced from delegate_to"). Real ansible-playbook runs on
localhost (local connection, check mode; the role is skipped, so nothing on this machine is touched)."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.helpers.role_local import NO_FACT_CACHE, local_play, run_playbook
from tests.helpers.tools import ANSIBLE_DIR, ROOT, tool

SITE = yaml.safe_load((ANSIBLE_DIR / "site.yml").read_text())
#: site.yml's plays that apply the ceph role, with the role's `when`.
CEPH_PLAYS = [(play["name"], entry["when"]) for play in SITE for entry in play.get("roles", [])
              if isinstance(entry, dict) and entry.get("role") == "ceph"]

pytestmark = pytest.mark.skipif(tool("ansible-playbook") is None, reason="ansible-playbook is not installed")


def test_site_yml_applies_the_ceph_role_only_under_a_when():
    assert [name for name, _ in CEPH_PLAYS] == ["Converge the storage nodes", "Converge the GPU nodes"]
    assert all(when for _, when in CEPH_PLAYS)


@pytest.mark.parametrize("storage", [None, {}, {"ceph": None}], ids=["no-storage", "empty-storage", "ceph-null"])
@pytest.mark.parametrize(("play_name", "when"), CEPH_PLAYS, ids=[name for name, _ in CEPH_PLAYS])
def test_the_ceph_role_skips_without_a_cluster(tmp_path, play_name, when, storage):
    play = local_play(f"{play_name}, no Ceph", roles=[{"role": str(ROOT / "roles" / "ceph"), "when": when}])
    proc = run_playbook(tmp_path, play, {"llmcluster_storage": storage}, extra=["--check"], env=NO_FACT_CACHE)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)",
                      proc.stdout)
    assert recap, proc.stdout[-2000:]
    ok, changed, _, failed, skipped = map(int, recap.groups())
    assert (ok, changed, failed) == (0, 0, 0) and skipped > 0, recap.group(0)
