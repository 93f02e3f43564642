"""The nvme_raid role's order of operations, read from its task files: the ARRAY line reaches
mdadm.conf before the initramfs is rebuilt (mrlesmithjr/ansible-mdadm#63), the array is created
without --assume-clean, and nothing is written before the members were probed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

ROLE = ROOT / "roles" / "nvme_raid"
TOPIC = "nvme_raid mdadm.conf changed"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def walk_tasks(tasks: list[dict] | None, where: str):
    for i, t in enumerate(tasks or []):
        here = f"{where}[{i}] {t.get('name')!r}"
        yield here, t
        for key in ("block", "rescue", "always"):
            yield from walk_tasks(t.get(key), f"{here}.{key}")


def action_of(task: dict) -> str | None:
    """The module of a task: its one fully qualified key."""
    modules = [k for k in task if k.count(".") == 2]
    return modules[0] if len(modules) == 1 else None


def _tasks(name: str) -> list[tuple[str, dict]]:
    return list(walk_tasks(load(ROLE / "tasks" / f"{name}.yml"), name))


def _argv(task: dict) -> str:
    args = task.get("ansible.builtin.command") or {}
    return str(args.get("argv", "")) if isinstance(args, dict) else str(args)


def test_the_initramfs_is_rebuilt_only_by_the_handler_mdadm_conf_notifies():
    handlers = load(ROLE / "handlers" / "main.yml")
    initramfs = [h for h in handlers if "_nvme_raid_initramfs_command" in _argv(h)]
    assert len(initramfs) == 1 and initramfs[0]["listen"] == TOPIC
    for name in ("preflight", "members", "install", "configure", "wipe", "service"):
        for where, t in _tasks(name):
            assert "initramfs" not in _argv(t), f"{where}: rebuilds the initramfs outside the handler"
            if "notify" in t:
                assert action_of(t) == "ansible.builtin.lineinfile" and "mdadm_conf" in str(t), where
    (conf,) = [t for _, t in _tasks("configure") if t.get("notify") == TOPIC]
    assert conf["ansible.builtin.lineinfile"]["path"] == "{{ nvme_raid_mdadm_conf }}"
    assert "__nvme_raid_brief" in conf["ansible.builtin.lineinfile"]["line"]  # mdadm --detail --brief's line
    service = load(ROLE / "tasks" / "service.yml")
    assert service[0]["ansible.builtin.meta"] == "flush_handlers"


def test_create_then_array_line_then_encryption_and_file_system():
    names = [t.get("name") for _, t in _tasks("configure")]
    order = ["Wipe the wipe-listed members", "Create the array", "Read the array's ARRAY line",
             "Write the array to mdadm.conf", "Format the LUKS header", "Make the file system",
             "Mount the file system by UUID"]
    assert [n for n in names if n in order] == order
    (create,) = [t for _, t in _tasks("configure") if t.get("name") == "Create the array"]
    argv = _argv(create)
    assert "--assume-clean" not in argv and "'--metadata=1.2'" in argv and "--run" in argv
    assert create["when"] == "not _nvme_raid_assembled | bool"


def test_nothing_writes_before_the_members_are_probed():
    """preflight and members.yml only read (asserts, stat, probes with changed_when false)."""
    readers = {"ansible.builtin.assert", "ansible.builtin.stat", "ansible.builtin.debug",
               "ansible.builtin.import_tasks"}
    for name in ("preflight", "members"):
        for where, t in _tasks(name):
            if "block" in t:
                continue
            a = action_of(t)
            assert a in readers or (a == "ansible.builtin.command" and t.get("changed_when") is False), where
    refuse = [t for _, t in _tasks("members") if t.get("name") == "Refuse members that hold data"]
    assert refuse and "_nvme_raid_refused | length == 0" in refuse[0]["ansible.builtin.assert"]["that"]
