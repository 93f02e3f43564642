"""Switch configurations from the switch plan, one text per switch in its OS's format.

The switch OS registry (:mod:`llmcluster.nos`) says everything OS-specific: the template
(``llmcluster/nos/templates/``), its filters and variables, port and bond names, the file
extension. Today: ``cumulus`` -> ``<switch>.nvue.yaml`` (an NVUE startup document),
``sonic`` -> ``<switch>.config_db.json`` (the ``config_db.json`` tables the plan needs),
``eos`` -> ``<switch>.eos.cfg`` (an EOS running-config in CLI form).

Templates receive plan objects only (:class:`~llmcluster.plan.switches.Switch` with its ports,
bonds, VLANs, SVIs, QoS and ACL). :func:`render_switch` renders one switch, :func:`render_all`
every switch of a plan. Each output has a checker in :mod:`llmcluster.render.switch.check`
(the OS's real parse + the same semantic checks for all).
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING

import jinja2

from llmcluster.nos import TEMPLATE_DIR
from llmcluster.nos import get as get_nos
from llmcluster.plan.switches import Switch, SwitchPlan
from llmcluster.render import template_environment

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.plan.build import Plan


def file_name(switch: str, nos: str) -> str:
    """The rendered file name of ``switch`` in switch OS ``nos``."""
    return get_nos(nos).file_name(switch)


# --------------------------------------------------------------------------- shared filters


def _vlan_list(vids) -> str:
    return ",".join(str(v) for v in vids)


def _json(value) -> str:
    return json.dumps(value, sort_keys=True)


def _chunks(items, size: int):
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


#: Filters every switch template may use; each OS adds its own (``Nos.filters``).
FILTERS = {"vlan_list": _vlan_list, "json": _json, "chunks": _chunks}


@cache
def _env(nos: str) -> jinja2.Environment:
    return template_environment({**FILTERS, **get_nos(nos).filters}, TEMPLATE_DIR)


# --------------------------------------------------------------------------- rendering


def render_switch(switch: Switch, nos: str, stack: str = "") -> str:
    """The configuration of one switch for switch OS ``nos`` (a name in :data:`llmcluster.nos.NOSES`)."""
    switch_os = get_nos(nos)
    members = {p.number: p for p in switch.ports if p.bond is not None}
    ctx = {
        "sw": switch, "nos": switch_os.name, "title": switch_os.title, "stack": stack,
        "port_name": switch_os.port_name, "bond_name": switch_os.bond_name, "members": members,
        "qos": switch.qos, "acl": switch.acl,
        "standalone_ports": [p for p in switch.ports if p.bond is None],
        **switch_os.variables(switch),
    }
    text = _env(switch_os.name).get_template(switch_os.template).render(**ctx)
    if switch_os.strip_blank_lines:  # macro calls leave blank lines behind
        text = "\n".join(line for line in text.splitlines() if line.strip()) + "\n"
    return text


def render_all(plan: Plan | SwitchPlan, nos: str | None = None) -> dict[str, str]:
    """``{file name: text}`` for every switch of the plan, in the stack's switch OS unless ``nos``."""
    switches = plan if isinstance(plan, SwitchPlan) else plan.switches
    if switches is None:
        return {}
    nos = nos or switches.nos
    return {file_name(s.name, nos): render_switch(s, nos, switches.stack) for s in switches.switches}
