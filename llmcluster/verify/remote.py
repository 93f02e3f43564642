"""Where the verification suite runs commands: inventory hosts over SSH (testinfra), this machine,
or a lab probe namespace.

Inventory hosts are reached with testinfra's Ansible backend: connection settings (address,
user, port, key, SSH arguments, become) come from the same inventory Ansible converged with,
and commands run over plain SSH (with ControlPersist), not through Ansible modules.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str

    def json(self, what: str) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            detail = (self.stderr or self.stdout).strip()[-400:]
            raise RuntimeError(f"{what}: exit {self.rc}, no JSON on stdout ({exc}): {detail}") from None


class Inventory:
    """An Ansible inventory (file or dynamic script), read with ``ansible-inventory --list``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @cached_property
    def _runner(self):
        from testinfra.utils.ansible_runner import AnsibleRunner

        return AnsibleRunner(str(self.path))

    @cached_property
    def hosts(self) -> tuple[str, ...]:
        return tuple(sorted(self._runner.get_hosts("all")))

    def hostvars(self, host: str) -> dict[str, Any]:
        return dict(self._runner.get_variables(host))

    @cached_property
    def all_hostvars(self) -> dict[str, dict[str, Any]]:
        return {h: self.hostvars(h) for h in self.hosts}

    def group_var(self, name: str, default: Any = None) -> Any:
        for h in self.hosts:
            value = self.hostvars(h).get(name)
            if value is not None:
                return value
        return default

    def host(self, name: str) -> RemoteHost:
        import testinfra

        return RemoteHost(name, testinfra.get_host(f"ansible://{name}", ansible_inventory=str(self.path)))


class RemoteHost:
    def __init__(self, name: str, backend: Any):
        self.name = name
        self._host = backend

    def run(self, argv: Sequence[str], timeout: float = 60) -> Result:
        cmd = " ".join(shlex.quote(a) for a in argv)
        r = self._host.run(f"timeout {int(timeout)} {cmd}")
        return Result(r.rc, r.stdout, r.stderr)

    def python(self, script: str, *args: str, timeout: float = 60) -> Result:
        return self.run(["python3", "-c", script, *args], timeout=timeout)


class LocalHost:
    """This machine (``netns=None``) or one of its network namespaces (needs root)."""

    def __init__(self, name: str, netns: str | None = None):
        self.name = name
        self.netns = netns

    def run(self, argv: Sequence[str], timeout: float = 60) -> Result:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        try:
            p = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return Result(124, "", f"timed out after {timeout}s")
        return Result(p.returncode, p.stdout, p.stderr)

    def python(self, script: str, *args: str, timeout: float = 60) -> Result:
        return self.run([sys.executable, "-c", script, *args], timeout=timeout)


def local_ipv4_addresses() -> list[str]:
    p = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, check=False)
    try:
        links = json.loads(p.stdout or "[]")
    except ValueError:
        return []
    return [a["local"] for link in links for a in link.get("addr_info", []) if a.get("family") == "inet"]
