"""What a security rule is: its id, the resource types it judges, a check over one resource's inputs.

A check is a plain function ``(resource_type, props, ctx) -> list[Violation]`` over the inputs a
resource is registered with (the camelCase names pulumi-aws registers, e.g. ``metadataOptions``,
``httpPutResponseHopLimit``). It never calls a cloud API and never imports Pulumi: the same function
runs over the offline evaluation's recorded resources (:mod:`llmcluster.policy.runner`, used by
``llmcluster plan`` and the tests) and inside the CrossGuard pack (``policy/`` at the repository root).

A rule that meets a value it does not understand (an unknown protocol, a CIDR that does not
parse, a policy document that is not JSON, a missing property it needs) reports a violation saying
so: it fails closed, never passes what it cannot judge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: ``<area>.<words-with-hyphens>``.
RULE_ID = re.compile(r"^[a-z0-9]+\.[a-z0-9]+(-[a-z0-9]+)*$")

#: In ``Context.kms_keys`` or ``Context.vpc_endpoints``: any reference passes this resource's check
#: (the CrossGuard pack's per-resource policies, which cannot see the stack's key; its stack policy,
#: which can, checks the identity). Never set by :mod:`llmcluster.policy.runner`.
ANY = "*"
#: The tag that names the zone (``zones.<name>`` of the spec) a security group stands for.
ZONE_TAG = "llmcluster:zone"
#: The tag that marks a security group as the EFA group of a GPU pool: its self-referencing
#: all-traffic rule is what AWS's EFA guide requires, and the only self reference that may carry SSH.
EFA_TAG = "llmcluster:efa"


@dataclass(frozen=True, order=True)
class Violation:
    """One finding: ``rule`` id, the ``resource`` (URN or name), the property ``path`` and what is wrong."""

    rule: str
    resource: str
    path: str
    message: str

    @property
    def text(self) -> str:
        """``<property path>: <message>`` (the resource and the rule are printed by the caller)."""
        return f"{self.path}: {self.message}" if self.path else self.message

    def __str__(self) -> str:
        return f"{self.resource}: {self.rule}: {self.text}"


@dataclass(frozen=True)
class PublicListener:
    """A listener the stack declares public: world ingress on exactly this protocol and port range."""

    protocol: str  # "tcp" | "udp"
    from_port: int
    to_port: int

    @classmethod
    def parse(cls, text: str) -> PublicListener:
        """``tcp/443`` or ``tcp/8000-8001``."""
        proto, sep, ports = text.partition("/")
        lo, _, hi = ports.partition("-")
        if not sep or proto not in ("tcp", "udp") or not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"{text!r} is not a listener: write tcp/443 or tcp/8000-8001")
        return cls(proto, int(lo), int(hi or lo))


@dataclass(frozen=True)
class Context:
    """What rules compare a resource with: the stack's own key, admin networks, endpoints, listeners.

    Identities are every string by which a resource may be referenced (its id, ARN, key id, alias
    name or ARN). An empty identity set means the stack has none: a rule that needs one reports it.
    """

    #: The stack's KMS key: id, ARN, key id, alias names and alias ARNs.
    kms_keys: frozenset[str] = frozenset()
    #: The admin zone's networks (``aws.admin_cidrs`` and the cidrs of zones the flows make admin zones).
    admin_cidrs: tuple[str, ...] = ()
    #: Security groups of the admin zones (tagged ``llmcluster:zone=<admin zone>``): ids and ARNs.
    admin_security_groups: frozenset[str] = frozenset()
    #: Security groups tagged ``llmcluster:efa=true``: ids and ARNs.
    efa_security_groups: frozenset[str] = frozenset()
    #: The stack's VPC endpoints (ids): a bucket is reached only through one of these.
    vpc_endpoints: frozenset[str] = frozenset()
    #: Listeners the stack declares public (the shipped stacks declare none).
    public_listeners: tuple[PublicListener, ...] = ()
    #: The identities of the resource being judged (set per resource by the runner): lets an inline
    #: ``self`` rule of a security group be matched against the admin and EFA groups.
    subject: frozenset[str] = frozenset()


Check = Callable[[str, Mapping[str, Any], Context], Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class Rule:
    """One invariant: ``check`` yields ``(property path, message)`` pairs for the resource types it judges."""

    id: str
    description: str
    resource_types: tuple[str, ...]
    check: Check

    def __call__(self, resource_type: str, props: Mapping[str, Any], ctx: Context | None = None, *,
                 resource: str = "") -> list[Violation]:
        if resource_type not in self.resource_types:
            return []
        if not isinstance(props, Mapping):
            return [Violation(self.id, resource, "", f"the inputs are {type(props).__name__}, not a map: "
                                                     "cannot judge them")]
        return [Violation(self.id, resource, path, message)
                for path, message in self.check(resource_type, props, ctx or Context())]


RULES: list[Rule] = []


def rule(rule_id: str, description: str, *resource_types: str) -> Callable[[Check], Check]:
    """Register the decorated check as rule ``rule_id`` over ``resource_types`` (type tokens)."""

    def register(check: Check) -> Check:
        if not RULE_ID.match(rule_id):
            raise ValueError(f"rule id {rule_id!r}: write '<area>.<words-with-hyphens>'")
        if any(r.id == rule_id for r in RULES):
            raise ValueError(f"rule {rule_id} is registered twice")
        if not resource_types or "\n" in description:
            raise ValueError(f"rule {rule_id}: name its resource types and describe it in one line")
        RULES.append(Rule(rule_id, description, tuple(resource_types), check))
        return check

    return register


# --------------------------------------------------------------------------- helpers for checks


@dataclass
class Found:
    """What a path lookup found: ``present`` False when a key on the way is missing."""

    value: Any = None
    present: bool = False
    problem: str = ""
    trail: list[str] = field(default_factory=list)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def is_true(value: Any) -> bool | None:
    """True/False for a boolean (or pulumi-aws's string booleans "true"/"false"); None: not a boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def as_int(value: Any) -> int | None:
    """An integer (the mocks deliver numbers as floats: 22.0); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    return None


def as_list(value: Any) -> list[Any] | None:
    """A list (a tuple too); None for anything else."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


def stack_key(path: str, value: Any, ctx: Context, what: str) -> Iterable[tuple[str, str]]:
    """``value`` must name the stack's KMS key."""
    if value is None or value == "":
        yield path, f"missing: {what} must be encrypted with the stack's KMS key (set {path.rsplit('.', 1)[-1]})"
    elif not isinstance(value, str):
        yield path, f"{value!r} is not a KMS key reference: cannot judge it"
    elif ANY in ctx.kms_keys:
        return
    elif not ctx.kms_keys:
        yield path, f"{value!r}: the stack registers no KMS key to compare with (aws:kms/key:Key)"
    elif value not in ctx.kms_keys:
        yield path, f"{value!r} is not the stack's KMS key: {what} must use the stack's key"


#: The keys of a context given as data (the CrossGuard pack's configuration), camelCase as Pulumi config is.
CONTEXT_KEYS = {"kmsKeys": "kms_keys", "adminCidrs": "admin_cidrs", "adminSecurityGroups": "admin_security_groups",
                "efaSecurityGroups": "efa_security_groups", "vpcEndpoints": "vpc_endpoints",
                "publicListeners": "public_listeners"}


def context_from_data(data: Mapping[str, Any], where: str = "config") -> Context:
    """A :class:`Context` from plain data (lists of strings under :data:`CONTEXT_KEYS`); ValueError, one line
    ``<where>.<key>: what is wrong``, for anything else."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: not a map")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in CONTEXT_KEYS:
            raise ValueError(f"{where}.{key}: unknown key (known: {', '.join(CONTEXT_KEYS)})")
        items = as_list(value)
        if items is None or not all(isinstance(v, str) for v in items):
            raise ValueError(f"{where}.{key}: must be a list of strings")
        attr = CONTEXT_KEYS[key]
        if attr == "public_listeners":
            try:
                values[attr] = tuple(PublicListener.parse(v) for v in items)
            except ValueError as exc:
                raise ValueError(f"{where}.{key}: {exc}") from None
        elif attr == "admin_cidrs":
            values[attr] = tuple(items)
        else:
            values[attr] = frozenset(items)
    return Context(**values)
