"""Scaffolding shared by the roles' loopback tests (no lab): a role's task files run by Ansible on
localhost, and the real daemons (HAProxy, sshd, ...) they configure started on 127.0.0.1.

* :func:`local_play` writes the play (``hosts: localhost``, ``connection: local``, the venv's
  interpreter, the role's variable files) from data, so no test carries its own copy of it;
  :func:`run_playbook` runs it with the variables in a JSON file (``-e @file``), with the project's
  Ansible configuration (:func:`tests.helpers.tools.tool_env`).
* :func:`free_port`, :func:`wait_port`: a port of 127.0.0.1 nobody listens on; wait until
  something does (or the process that should has exited).
* HAProxy: :func:`haproxy_check` (``haproxy -c``), :func:`start_haproxy` (foreground, optionally
  master-worker as the packaged unit's ``-Ws``), :func:`stop`, :func:`bundle` (certificate + chain
  + key in one 0600 file), :func:`local_config` (a rendered configuration less the settings of a
  packaged install that a test process cannot use).
* :func:`export_lab_pki`: the lab stack's PKI issued offline (real keys) and exported.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.tools import tool, tool_env

#: The variable files a role's tasks see on a Debian host (the lab's OS).
ROLE_VARS = ("defaults/main.yml", "vars/main.yml", "vars/Debian.yml")
#: ansible/ansible.cfg caches facts on disk: this machine's facts stay out of it.
NO_FACT_CACHE = {"ANSIBLE_CACHE_PLUGIN": "memory"}


# --------------------------------------------------------------------------- Ansible on localhost


def local_play(name: str, *, role: Path | None = None, vars_files: Sequence[str] = ROLE_VARS,
               tasks: list[dict[str, Any]] | None = None, roles: list[Any] | None = None,
               gather_subset: Sequence[str] | None = None) -> str:
    """One play on localhost (local connection, this venv's Python) as YAML. ``vars_files`` are
    relative to ``role`` (none without a role); ``gather_subset`` turns fact gathering on."""
    play: dict[str, Any] = {"name": name, "hosts": "localhost", "connection": "local",
                            "gather_facts": gather_subset is not None}
    if gather_subset is not None:
        play["gather_subset"] = list(gather_subset)
    play["vars"] = {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    if role is not None and vars_files:
        play["vars_files"] = [str(role / f) for f in vars_files]
    if tasks is not None:
        play["tasks"] = tasks
    if roles is not None:
        play["roles"] = roles
    return yaml.safe_dump([play], sort_keys=False, width=4096)


def playbook_argv(d: Path, play: str, variables: Mapping[str, Any], *, name: str = "play",
                  extra: Sequence[str] = ()) -> list[str]:
    """Write ``d/<name>.yml`` and ``d/<name>-vars.json``; the ansible-playbook command for them."""
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.yml").write_text(play, encoding="utf-8")
    (d / f"{name}-vars.json").write_text(json.dumps(variables), encoding="utf-8")
    return [tool("ansible-playbook") or "ansible-playbook", *extra, "-i", "localhost,", str(d / f"{name}.yml"),
            "-e", f"@{d / f'{name}-vars.json'}"]


def run_playbook(d: Path, play: str, variables: Mapping[str, Any], *, name: str = "play",
                 extra: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 timeout: float | None = 300) -> subprocess.CompletedProcess[str]:
    """Run :func:`local_play`'s text on localhost with ``variables`` (cwd ``d``)."""
    argv = playbook_argv(d, play, variables, name=name, extra=extra)
    return subprocess.run(argv, cwd=d, env={**tool_env(), **(env or {})}, capture_output=True, text=True,
                          check=False, timeout=timeout)


# --------------------------------------------------------------------------- processes and ports


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed here: {', '.join(missing)} (apt-get install haproxy curl openssl)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10, proc: subprocess.Popen | None = None) -> None:
    """Until something listens on 127.0.0.1:``port``; fails at once when ``proc`` exits first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"{proc.args[0]} exited ({proc.returncode}) before listening on {port}: {out}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(10)


# --------------------------------------------------------------------------- HAProxy


def bundle(path: Path, *parts: Path) -> Path:
    """Certificate, chain and key in one file, as HAProxy's ``crt`` loads them (0600)."""
    path.write_text("".join(p.read_text().strip() + "\n" for p in parts))
    path.chmod(0o600)
    return path


#: Process settings of a packaged install that an unprivileged foreground test process cannot use.
PACKAGED = ("chroot ", "user ", "group ", "daemon")


def local_config(rendered: str, packaged: Sequence[str] = PACKAGED) -> str:
    """The rendered configuration less the lines starting with ``packaged``."""
    return "\n".join(line for line in rendered.splitlines() if not line.strip().startswith(tuple(packaged))) + "\n"


def haproxy_check(path: Path) -> None:
    v = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert v.returncode == 0, v.stdout + v.stderr


def start_haproxy(cfg: Path, port: int, log: Path | None = None, *, master_worker: bool = False,
                  prefix: Sequence[str] = ()) -> subprocess.Popen:
    """HAProxy in the foreground on ``cfg`` (``-W``: master-worker, as the packaged unit's ``-Ws``
    without systemd), its output appended to ``log`` (else discarded); returns once ``port``
    listens. ``prefix`` runs it through another command (e.g. nsenter)."""
    argv = [*prefix, "haproxy", *(["-W"] if master_worker else []), "-db", "-f", str(cfg)]
    if log is None:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
    except AssertionError:
        stop(proc)
        raise AssertionError(f"HAProxy did not start: {log.read_text()[-2000:] if log else cfg}") from None
    return proc


# --------------------------------------------------------------------------- PKI


def export_lab_pki(directory: Path, offline: tuple[Any, Any] | None = None) -> tuple[Any, Any, Path]:
    """The lab stack's PKI issued offline (``offline``: an earlier ``from_offline`` to reuse) and
    exported to ``directory/pki`` with the lab-tests material; (plan, material, folder)."""
    from llmcluster.pki_export import export, from_offline
    from tests.conftest import load_spec

    plan, material = offline or from_offline(load_spec("lab"))
    out = directory / "pki"
    export(plan, material, out, lab_tests=True)
    return plan, material, out
