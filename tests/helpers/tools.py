"""The command-line tools of the project's environment (Ansible, the linters), found beside the
interpreter running the tests (the project's venv) first."""

from __future__ import annotations

import os
import shutil
import sys
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
