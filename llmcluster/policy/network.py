"""Ingress rules: no world ingress except a declared public listener; SSH only from the admin zone.

Security-group ingress reaches AWS in three shapes, all judged the same way after
:func:`ingress_entries` brings them to one form: inline ``ingress`` blocks of
``aws:ec2/securityGroup:SecurityGroup``, ``aws:ec2/securityGroupRule:SecurityGroupRule``
(``type: ingress``) and ``aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import netaddr

from llmcluster.policy.core import Context, as_int, as_list, is_true, join, rule

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
INGRESS_TYPES = (SECURITY_GROUP, DEFAULT_SECURITY_GROUP, SECURITY_GROUP_RULE, INGRESS_RULE)

SSH_PORT = 22
ALL_V4 = netaddr.IPSet(["0.0.0.0/0"])
ALL_V6 = netaddr.IPSet(["::/0"])
_PROTOCOLS = {"-1": "all", "all": "all", "tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp",
              "1": "icmp", "icmpv6": "icmpv6", "58": "icmpv6"}


@dataclass
class Source:
    path: str
    kind: str  # "cidr" | "sg" | "self" | "prefix"
    value: Any


@dataclass
class Ingress:
    """One ingress permission: protocol ("all", "tcp", ...; None: not understood), port range, sources."""

    path: str
    protocol: str | None
    ports: tuple[int, int] | None  # None: not understood (protocol "all": every port)
    sources: list[Source]
    #: The security group the permission belongs to (standalone rules: their securityGroupId).
    group: str | None
    problems: list[tuple[str, str]] = field(default_factory=list)

    def may_carry(self, protocol: str, port: int) -> bool | None:
        """Whether this permission admits protocol/port; None when it cannot be told."""
        if self.protocol is None:
            return None
        if self.protocol == "all":
            return True
        if self.protocol != protocol:
            return False
        if self.ports is None:
            return None
        return self.ports[0] <= port <= self.ports[1]


def _protocol(path: str, value: Any, problems: list[tuple[str, str]]) -> str | None:
    text = str(as_int(value) if as_int(value) is not None else value).strip().lower() if value is not None else ""
    if text in _PROTOCOLS:
        return _PROTOCOLS[text]
    if text.isdigit() and 0 <= int(text) <= 255:
        return f"ip-{text}"
    problems.append((path, f"protocol {value!r} not understood: cannot judge this rule"))
    return None


def _ports(path: str, props: Mapping[str, Any], lo_key: str, hi_key: str, protocol: str | None,
           problems: list[tuple[str, str]]) -> tuple[int, int] | None:
    if protocol == "all":
        return (0, 65535)
    lo, hi = as_int(props.get(lo_key)), as_int(props.get(hi_key))
    if protocol not in ("tcp", "udp"):
        return (lo or 0, hi or 0) if lo is not None and hi is not None else None
    if lo is None or hi is None:
        problems.append((join(path, lo_key if lo is None else hi_key),
                         f"{props.get(lo_key if lo is None else hi_key)!r} is not a port: cannot judge this rule"))
        return None
    if lo < 0 or hi < 0:  # -1: every port
        return (0, 65535)
    return (min(lo, hi), max(lo, hi))


def _add(sources: list[Source], problems: list[tuple[str, str]], props: Mapping[str, Any], path: str, key: str,
         kind: str, *, many: bool) -> None:
    value = props.get(key)
    if value is None or value == "" or value == []:
        return
    if many:
        items = as_list(value)
        if items is None:
            problems.append((join(path, key), f"{value!r} is not a list: cannot judge it"))
            return
        sources.extend(Source(join(join(path, key), i), kind, v) for i, v in enumerate(items))
    else:
        sources.append(Source(join(path, key), kind, value))


def ingress_entries(resource_type: str, props: Mapping[str, Any]) -> Iterator[Ingress]:
    """Every ingress permission a resource declares, in one form (egress is not judged here)."""
    if resource_type in (SECURITY_GROUP, DEFAULT_SECURITY_GROUP):
        entries = props.get("ingress")
        if entries is None:
            return
        items = as_list(entries)
        if items is None:
            yield Ingress("ingress", None, None, [], None, [("ingress", f"{entries!r} is not a list: cannot judge it")])
            return
        for i, e in enumerate(items):
            path = join("ingress", i)
            if not isinstance(e, Mapping):
                yield Ingress(path, None, None, [], None, [(path, f"{e!r} is not a rule: cannot judge it")])
                continue
            problems: list[tuple[str, str]] = []
            proto = _protocol(join(path, "protocol"), e.get("protocol"), problems)
            ports = _ports(path, e, "fromPort", "toPort", proto, problems)
            sources: list[Source] = []
            _add(sources, problems, e, path, "cidrBlocks", "cidr", many=True)
            _add(sources, problems, e, path, "ipv6CidrBlocks", "cidr", many=True)
            _add(sources, problems, e, path, "securityGroups", "sg", many=True)
            _add(sources, problems, e, path, "prefixListIds", "prefix", many=True)
            if is_true(e.get("self")):
                sources.append(Source(join(path, "self"), "self", True))
            yield Ingress(path, proto, ports, sources, None, problems)
    elif resource_type == SECURITY_GROUP_RULE:
        kind = props.get("type")
        if kind == "egress":
            return
        problems = []
        if kind != "ingress":
            problems.append(("type", f"{kind!r} is neither 'ingress' nor 'egress': cannot judge this rule"))
        proto = _protocol("protocol", props.get("protocol"), problems)
        ports = _ports("", props, "fromPort", "toPort", proto, problems)
        sources = []
        group = props.get("securityGroupId")
        _add(sources, problems, props, "", "cidrBlocks", "cidr", many=True)
        _add(sources, problems, props, "", "ipv6CidrBlocks", "cidr", many=True)
        _add(sources, problems, props, "", "prefixListIds", "prefix", many=True)
        src = props.get("sourceSecurityGroupId")
        if src:
            sources.append(Source("sourceSecurityGroupId", "self" if src == group else "sg", src))
        if is_true(props.get("self")):
            sources.append(Source("self", "self", True))
        yield Ingress("", proto, ports, sources, group if isinstance(group, str) else None, problems)
    elif resource_type == INGRESS_RULE:
        problems = []
        proto = _protocol("ipProtocol", props.get("ipProtocol"), problems)
        ports = _ports("", props, "fromPort", "toPort", proto, problems)
        sources = []
        group = props.get("securityGroupId")
        _add(sources, problems, props, "", "cidrIpv4", "cidr", many=False)
        _add(sources, problems, props, "", "cidrIpv6", "cidr", many=False)
        _add(sources, problems, props, "", "prefixListId", "prefix", many=False)
        ref = props.get("referencedSecurityGroupId")
        if ref:
            sources.append(Source("referencedSecurityGroupId", "self" if ref == group else "sg", ref))
        if not sources:
            problems.append(("", "no source (cidrIpv4, cidrIpv6, prefixListId or referencedSecurityGroupId): "
                                 "cannot judge this rule"))
        yield Ingress("", proto, ports, sources, group if isinstance(group, str) else None, problems)


def _network(value: Any) -> netaddr.IPNetwork | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        return netaddr.IPNetwork(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None


def _declared_public(entry: Ingress, ctx: Context) -> bool:
    return entry.ports is not None and any(
        entry.protocol == lst.protocol and lst.from_port <= entry.ports[0] and entry.ports[1] <= lst.to_port
        for lst in ctx.public_listeners)


@rule("net.no-world-ingress",
      "No security-group ingress from 0.0.0.0/0 or ::/0 (or CIDRs that together cover either) except on a "
      "listener the stack declares public", *INGRESS_TYPES)
def no_world_ingress(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    for entry in ingress_entries(resource_type, props):
        v4, v6 = netaddr.IPSet(), netaddr.IPSet()
        world: list[str] = []
        for src in entry.sources:
            if src.kind == "prefix":
                yield src.path, f"prefix list {src.value!r}: its CIDRs are not known here, so world ingress cannot " \
                                "be ruled out: use CIDRs or security groups"
            elif src.kind == "cidr":
                net = _network(src.value)
                if net is None:
                    yield src.path, f"{src.value!r} is not a CIDR: cannot judge it"
                    continue
                (v4 if net.version == 4 else v6).add(net)
                if net.prefixlen == 0:
                    world.append(src.path)
        covers = (ALL_V4.issubset(v4) or ALL_V6.issubset(v6))
        if not covers or _declared_public(entry, ctx):
            continue
        if entry.protocol is None or entry.ports is None:
            yield from entry.problems
        where = world[0] if world else (entry.path or "cidrBlocks")
        what = "0.0.0.0/0 or ::/0" if world else "CIDRs that together cover every address"
        yield where, f"ingress from {what} (the whole internet): not a listener the stack declares public " \
                     f"({', '.join(f'{p.protocol}/{p.from_port}' for p in ctx.public_listeners) or 'none declared'})"


@rule("net.no-ssh-outside-admin",
      "SSH (tcp/22, a port range holding it, or all traffic) is admitted only from the admin zone's CIDRs or "
      "security groups", *INGRESS_TYPES)
def no_ssh_outside_admin(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    admin = netaddr.IPSet()
    for cidr in ctx.admin_cidrs:
        net = _network(cidr)
        if net is not None:
            admin.add(net)
    for entry in ingress_entries(resource_type, props):
        carries = entry.may_carry("tcp", SSH_PORT)
        if carries is False:
            continue
        if carries is None:
            yield from entry.problems or [(entry.path, "cannot tell whether this rule admits SSH")]
            continue
        yield from entry.problems
        how = "all traffic" if entry.protocol == "all" else f"tcp/{entry.ports[0]}-{entry.ports[1]}" \
            if entry.ports and entry.ports[0] != entry.ports[1] else "tcp/22"
        subject = {entry.group} if entry.group else set(ctx.subject)
        for src in entry.sources:
            if src.kind == "cidr":
                net = _network(src.value)
                if net is None:
                    yield src.path, f"{src.value!r} is not a CIDR: cannot judge it"
                elif net not in admin:
                    yield src.path, f"{how} (SSH) from {src.value}, outside the admin zone " \
                                    f"({', '.join(ctx.admin_cidrs) or 'no admin CIDRs declared'})"
            elif src.kind == "sg":
                if src.value not in ctx.admin_security_groups:
                    yield src.path, f"{how} (SSH) from security group {src.value!r}, not an admin zone's group"
            elif src.kind == "self":
                if subject & ctx.admin_security_groups:
                    continue
                if entry.protocol == "all" and subject & ctx.efa_security_groups:
                    continue  # EFA's self-referencing all-traffic rule (AWS's EFA guide), on the EFA group only
                yield src.path, f"{how} (SSH) from the group's own members: only an admin zone's group, or the " \
                                "EFA group's all-traffic self rule, may do that"
            else:
                yield src.path, f"{how} (SSH) from prefix list {src.value!r}: its CIDRs are not known here, so " \
                                "it cannot be shown to lie in the admin zone"
