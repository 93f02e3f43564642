"""ansible/ansible.cfg's strategy: Mitogen's linear strategy through the project's plugin file
(ansible/plugins/strategy/mitogen_linear.py), and Ansible's own linear strategy where mitogen is
missing. Real ansible-playbook runs on this machine (local connection, nothing changed)."""

from __future__ import annotations

import configparser
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.tools import ANSIBLE_DIR, tool, tool_env

#: Two tasks that print the PID of the process that started their shell: the host's Python that ran
#: the command module. Ansible's linear strategy starts one per task; Mitogen keeps one for the play.
PLAY = textwrap.dedent("""\
    - hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - ansible.builtin.command: sh -c 'echo $PPID'
          register: first
          changed_when: false
        - ansible.builtin.command: sh -c 'echo $PPID'
          register: second
          changed_when: false
        - ansible.builtin.debug:
            msg: "parents {{ first.stdout }} {{ second.stdout }}"
    """)

#: ansible-playbook with the ansible_mitogen package made unimportable (as in an environment without it).
WITHOUT_MITOGEN = textwrap.dedent("""\
    import sys

    class Missing:
        def find_spec(self, name, path=None, target=None):
            if name == "ansible_mitogen" or name.startswith("ansible_mitogen."):
                raise ImportError(f"No module named {name!r} (hidden by the test)")
            return None

    sys.meta_path.insert(0, Missing())
    from ansible.cli.playbook import main
    sys.argv = ["ansible-playbook", *sys.argv[1:]]
    main()
    """)


def _parents(out: str) -> tuple[str, str]:
    line = next(line for line in out.splitlines() if '"msg": "parents' in line)
    first, second = line.split('"msg": "parents ')[1].rstrip('"').split()
    return first, second


def _run(argv: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    full = {**tool_env(), "ANSIBLE_CACHE_PLUGIN": "memory", "ANSIBLE_NOCOLOR": "1", **env}
    proc = subprocess.run([*argv, str(playbook)], env=full, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_ansible_cfg_names_the_projects_mitogen_plugin():
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ANSIBLE_DIR / "ansible.cfg")
    assert cfg.get("defaults", "strategy") == "mitogen_linear"
    plugins = ANSIBLE_DIR / cfg.get("defaults", "strategy_plugins")
    assert (plugins / "mitogen_linear.py").is_file()


@pytest.mark.skipif(tool("ansible-playbook") is None, reason="ansible-playbook is not installed")
def test_mitogen_keeps_one_python_per_host_and_linear_starts_one_per_task(tmp_path):
    mitogen = _parents(_run([tool("ansible-playbook")], tmp_path).stdout)
    assert mitogen[0] == mitogen[1], f"ansible.cfg's strategy started a Python per task: {mitogen}"
    linear = _parents(_run([tool("ansible-playbook")], tmp_path, ANSIBLE_STRATEGY="linear").stdout)
    assert linear[0] != linear[1], f"ANSIBLE_STRATEGY=linear reused one Python: {linear}"


def test_without_mitogen_the_plays_run_with_ansibles_linear_strategy_after_a_warning(tmp_path):
    proc = _run([sys.executable, "-c", WITHOUT_MITOGEN], tmp_path)
    first, second = _parents(proc.stdout)
    assert first != second, "the fallback still kept one Python for the play"
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "strategy mitogen_linear needs the mitogen package" in said, said[-2000:]
    assert "running Ansible's linear strategy instead" in said
