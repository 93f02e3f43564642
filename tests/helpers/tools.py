"""The command-line tools of the project's environment (Ansible, the linters), found beside the
interpreter running the tests (the project's venv) first."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = ROOT / "ansible"
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str | None:
    exe = VENV_BIN / name
    return str(exe) if exe.exists() else shutil.which(name)


def tool_env() -> dict[str, str]:
    """The environment for the ansible tools: the venv's bin first, configuration from ansible/."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(ANSIBLE_DIR / "ansible.cfg")
    return env


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server (the AWS API emulator) on 127.0.0.1 for the block: its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
