#!/usr/bin/env python3
"""Ansible dynamic inventory for an llmcluster stack.

The stack comes from ``LLMCLUSTER_STACK`` (default ``lab``) and the stack files from
``LLMCLUSTER_STACKS_DIR`` (default: the project's ``stacks/``). It serves exactly what
``llmcluster inventory --stack S --list`` prints, which is the same data the Pulumi
program exports as its ``inventory`` output.

    LLMCLUSTER_STACK=prod-baremetal ansible-inventory -i ansible/inventory/llmcluster.py --list
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

try:
    import netaddr  # noqa: F401  - present when run with the project's interpreter
except ImportError:
    # Started by an interpreter outside the project's virtual environment: re-run with it.
    venv_python = ROOT / ".venv" / "bin" / "python"
    if venv_python.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
    sys.stderr.write("llmcluster inventory: run 'make setup' (or pip install -e .) first\n")
    sys.exit(2)

from llmcluster.cli import main

if __name__ == "__main__":
    stack = os.environ.get("LLMCLUSTER_STACK", "lab")
    stacks = os.environ.get("LLMCLUSTER_STACKS_DIR", str(ROOT / "stacks"))
    argv = ["inventory", "--stack", stack, "--stacks-dir", stacks]
    if "--host" in sys.argv[1:]:
        argv += ["--host", sys.argv[sys.argv.index("--host") + 1]]
    else:
        argv += ["--list"]
    sys.exit(main(argv))
