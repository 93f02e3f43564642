"""What every switch OS module provides (:class:`Nos`) and the shapes its parser returns.

* :class:`Nos` — one switch OS: names (title, configuration format, file extension,
  template), front-panel port and bond naming, the template's OS-specific filters and
  variables, the parser, and the apply procedure (:class:`NosProcedure`) the
  ``pulumi.dynamic`` switch provider runs.
* :class:`ConfigView` / :class:`PortView` / :class:`AclRule` — what a parser reads back from
  a configuration text, the same shape for every OS, so that one set of semantic checks
  (:mod:`llmcluster.render.switch.check`) compares any OS's configuration with the plan.

Import weight: this module and the per-OS modules use only the standard library at import
time (the dynamic provider's host imports them, see :mod:`llmcluster.components.switches`);
parsers import their libraries (PyYAML, netaddr, jsonschema, hier_config) when they run.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.plan.switches import Bond, Switch

#: Any address, in ACL entries of the plan and of every parsed configuration.
ANY = "0.0.0.0/0"
#: The templates of every switch OS (``**/*.j2`` is package data).
TEMPLATE_DIR = Path(__file__).parent / "templates"


class ConfigParseError(ValueError):
    """The text is not a valid configuration of its OS (or not the structure llmcluster emits)."""


# --------------------------------------------------------------------------- parsed configuration


@dataclass
class PortView:
    name: str
    vlans: set[int] = field(default_factory=set)
    untagged: set[int] = field(default_factory=set)
    mtu: int | None = None
    bond: str | None = None  # the bond this port is a member of
    acl_in: set[str] = field(default_factory=set)
    is_bond: bool = False
    pfc: set[int] | None = None  # per-port PFC priorities (None: global setting applies)
    trust_dscp: bool | None = None  # per port (None: global setting applies)


@dataclass(frozen=True)
class AclRule:
    seq: int
    action: str
    proto: str
    src: str
    dst: str
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    established: bool = False
    icmp_type: int | None = None
    icmp_code: int | None = None

    def text(self) -> str:
        from llmcluster.plan.firewall import format_range

        s = f"{self.seq} {self.action} {self.proto} {self.src}"
        if self.sport:
            s += f" sport {format_range(*self.sport)}"
        s += f" -> {self.dst}"
        if self.dport:
            s += f" dport {format_range(*self.dport)}"
        if self.icmp_type is not None:
            s += f" icmp {self.icmp_type}" + (f"/{self.icmp_code}" if self.icmp_code is not None else "")
        if self.established:
            s += " established"
        return s


@dataclass
class ConfigView:
    nos: str
    hostname: str | None = None
    vlans: set[int] = field(default_factory=set)
    ports: dict[str, PortView] = field(default_factory=dict)
    svis: dict[int, set[str]] = field(default_factory=dict)  # VLAN -> addresses (own and virtual)
    trust_dscp: bool = False  # global (an OS with Nos.qos_global)
    pfc: set[int] | None = None  # global (an OS with Nos.qos_global)
    dscp_map: dict[int, int] = field(default_factory=dict)
    priority_to_queue: dict[int, int] = field(default_factory=dict)
    ecn: dict[int, tuple[int, int]] = field(default_factory=dict)  # queue -> (min bytes, max bytes)
    strict: set[int] = field(default_factory=set)
    weights: dict[int, int] = field(default_factory=dict)
    acls: dict[str, list[AclRule]] = field(default_factory=dict)

    def port(self, name: str) -> PortView:
        return self.ports.setdefault(name, PortView(name))


# --------------------------------------------------------------------------- parser helpers


def parse_cidr(value: str) -> str:
    """An ACL address as a CIDR (``ANY`` / ``any`` / ``0.0.0.0/0`` -> :data:`ANY`)."""
    if value in ("ANY", "any", ANY):
        return ANY
    import netaddr

    try:
        return str(netaddr.IPNetwork(value).cidr)
    except (netaddr.AddrFormatError, ValueError) as exc:
        raise ConfigParseError(f"{value!r} is not an address or CIDR") from exc


def parse_range(text: str, sep: str) -> tuple[int, int]:
    """``'22'`` or ``'6800<sep>7300'`` -> an inclusive port range."""
    lo, _, hi = str(text).partition(sep)
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError as exc:
        raise ConfigParseError(f"{text!r} is not a port or port range") from exc
    if not (0 <= a <= b <= 65535):
        raise ConfigParseError(f"{text!r} is not a valid port range")
    return a, b


def address_of(cidr: str) -> str:
    """The address part of ``10.0.0.1/24`` (as netaddr normalises it)."""
    import netaddr

    return str(netaddr.IPNetwork(cidr).ip)


# --------------------------------------------------------------------------- the descriptor


def _unchanged(text: str) -> str:
    return text


def _no_variables(_switch: Switch) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class NosProcedure:
    """How one switch OS takes a configuration file (run by the ``pulumi.dynamic`` switch provider)."""

    #: Where the file is uploaded (SFTP) before it is applied.
    stage_dir: str
    #: Command templates: ``{path}`` the staged file, ``{name}`` its base name.
    apply: tuple[str, ...]
    #: Prints the running configuration (hashed for drift detection).
    running: str
    #: The running configuration without what changes on its own (comments, key order).
    normalise: Callable[[str], str] = _unchanged

    def commands(self, path: str) -> list[str]:
        name = posixpath.basename(path)
        return [c.format(path=shlex.quote(path), name=name) for c in self.apply]


@dataclass(frozen=True)
class Nos:
    """One switch operating system: everything the plan, renderer, checker, provider and lab need."""

    #: Registry key, the spec's ``baremetal.switch_os`` value.
    name: str
    #: Product name, in the rendered configuration's header comment.
    title: str
    #: The configuration format, in "not a valid ... configuration" messages.
    format_name: str
    #: Rendered file name suffix: ``<switch>.<extension>``.
    extension: str
    #: Template file name under :data:`TEMPLATE_DIR`.
    template: str
    #: Front-panel port ``number`` (1-based) as the OS names it.
    port_name: Callable[[int], str]
    #: An OS port name -> its front-panel number, or None when it is not one (see :meth:`parse_port`).
    port_number: Callable[[str], int | None]
    #: How port names look, for validation messages.
    port_name_hint: str
    #: A plan :class:`~llmcluster.plan.switches.Bond` as the OS names the interface.
    bond_name: Callable[[Bond], str]
    #: The configuration text -> :class:`ConfigView`; raises :class:`ConfigParseError`.
    parse: Callable[[str], ConfigView]
    procedure: NosProcedure
    #: jinja2 filters the template uses besides the shared ones (:mod:`llmcluster.render.switch`).
    filters: Mapping[str, Callable[..., Any]] = field(default_factory=lambda: MappingProxyType({}))
    #: Template variables of this OS for one switch (besides ``sw``, ``port_name``, ``bond_name``...).
    variables: Callable[[Switch], Mapping[str, Any]] = _no_variables
    #: Drop blank lines from the rendered text (macro calls leave them; line-based formats want none).
    strip_blank_lines: bool = False
    #: DSCP trust and PFC are switch-wide settings (else per port) in the parsed view.
    qos_global: bool = False

    def parse_port(self, key: str) -> int | None:
        """A port map key (``5`` or an OS port name) -> front-panel number, or None."""
        if key.isdigit():
            n = int(key)
            return n if n >= 1 else None
        return self.port_number(key)

    def file_name(self, switch: str) -> str:
        return f"{switch}.{self.extension}"
