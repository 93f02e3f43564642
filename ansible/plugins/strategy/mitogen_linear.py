"""Ansible's linear strategy run through Mitogen for Ansible (the ``mitogen`` package).

``ansible/ansible.cfg`` selects it (``strategy = mitogen_linear``). Ansible finds strategy plugins
only by a folder path, and where pip puts the ``mitogen`` package differs per machine, so this file,
in the folder ``strategy_plugins`` names, hands Ansible the package's own plugin class.

What it changes: the linear strategy starts one Python interpreter per host and keeps it for the
whole play, over the same SSH connection, instead of starting Python and unpacking each module on
the host for every task. Play order, ``serial``, check mode, handlers and the results are Ansible's.
``ANSIBLE_STRATEGY=linear`` runs Ansible's own strategy with the same ansible.cfg.

Where ``mitogen`` is not installed (an execution environment built without llmcluster's
dependencies), plays run with Ansible's own linear strategy, after a warning: the same result, slower.
"""

from __future__ import annotations

try:
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule
except ImportError as exc:
    from ansible.plugins.strategy.linear import StrategyModule
    from ansible.utils.display import Display

    Display().warning(f"ansible.cfg's strategy mitogen_linear needs the mitogen package ({exc}): running Ansible's "
                      "linear strategy instead (same result, slower); 'pip install -e .' installs it")

__all__ = ["StrategyModule"]
