"""The switch operating systems llmcluster configures: one registry, one module per OS.

Everything specific to a switch OS lives in its module, as one :class:`~llmcluster.nos.base.Nos`
named ``NOS``: its names (title, configuration format, file extension, template), front-panel
port and bond naming (plan facts: port map keys and validation messages use them), the
template's own filters and variables, the parser that reads a configuration back into the
shared :class:`~llmcluster.nos.base.ConfigView`, and the apply procedure the
``pulumi.dynamic`` switch provider runs over SSH (stage path, commands, running-config
command and its normalisation).

=================  ================================================  ===========================
module             OS                                                template (``templates/``)
=================  ================================================  ===========================
:mod:`.cumulus`    NVIDIA Cumulus Linux (NVUE), ``nv config``        ``cumulus.nvue.yaml.j2``
:mod:`.sonic`      SONiC (``config_db.json``), ``config load``       ``sonic.config_db.json.j2``
:mod:`.eos`        Arista EOS (CLI), ``configure replace``           ``eos.cfg.j2``
=================  ================================================  ===========================

Consumers read this registry (:data:`NOSES`, :func:`get`) and never name an OS: the switch
plan (:mod:`llmcluster.plan.switches`), the renderer (:mod:`llmcluster.render.switch`), the
semantic checker (:mod:`llmcluster.render.switch.check`), the dynamic provider
(:mod:`llmcluster.components.switches`) and the lab's switch stand-in
(:mod:`llmcluster.lab.switch_standin`). A test fails when an OS name is hard-coded elsewhere.

**Adding a switch OS** means: one module here defining ``NOS`` (every field of
:class:`~llmcluster.nos.base.Nos`; parse into the shared ``ConfigView`` so the semantic checks
apply unchanged), its template under ``templates/``, one line in :data:`REGISTRY` below, and
the name in the spec's ``baremetal.switch_os`` ``Literal`` (a test checks that it equals
:data:`NOSES`).

Import rules: this package imports nothing from ``render``, ``components``, ``lab`` or the
inventory (the plan imports it), and only the standard library at import time (the dynamic
provider's host imports it): parsers import PyYAML, netaddr, jsonschema and hier_config when
they run.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from llmcluster.nos import cumulus, eos, sonic
from llmcluster.nos.base import TEMPLATE_DIR, ConfigParseError, ConfigView, Nos, NosProcedure

#: Every supported switch OS by name, in the order messages list them.
REGISTRY: Mapping[str, Nos] = MappingProxyType({n.name: n for n in (
    cumulus.NOS,
    sonic.NOS,
    eos.NOS,
)})
NOSES: tuple[str, ...] = tuple(REGISTRY)


class UnknownNosError(ValueError):
    """A switch OS name that is not in the registry."""


def get(name: str) -> Nos:
    """The switch OS ``name``; :class:`UnknownNosError` (a ValueError) names the supported ones."""
    nos = REGISTRY.get(name) if isinstance(name, str) else None
    if nos is None:
        raise UnknownNosError(f"unknown switch OS {name!r}: use one of {', '.join(NOSES)}")
    return nos


__all__ = ["NOSES", "REGISTRY", "TEMPLATE_DIR", "ConfigParseError", "ConfigView", "Nos", "NosProcedure",
           "UnknownNosError", "get"]
