"""Typed, frozen models of the environment spec (layer 1: field validation).

Every section of the stack config namespace ``llmcluster:`` maps to one model
here: ``llmcluster:site`` -> :class:`Site`, ``llmcluster:fabric`` -> :class:`Fabric`
and so on. Unknown keys are rejected everywhere (``extra="forbid"``); scalar types
are strict (``"2"`` is not a count). Cross-field and cross-section rules live in
:mod:`llmcluster.validate` (whole-spec, plan-aware and environment preflight rules).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import netaddr
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

# --------------------------------------------------------------------------- scalar types
#
# Every pattern below is matched whole (``fullmatch``: Python's ``$`` also matches before a
# trailing newline) and spelt with ASCII classes (``[0-9]``, never ``\d``, which matches any
# Unicode digit: "５７０.172.08" would pass ``\d+`` and ``int()`` reads it). Patterns given to
# pydantic (``Field(pattern=...)``) run on its Rust engine, where ``$`` is the end of the text,
# but ``\d`` is Unicode there too: they use ``[0-9]`` as well. Free text (descriptions, the
# organization) is :data:`Text`: any language, but no control or line-separator characters
# (they would break the configuration files and certificates the text ends up in).

_DNS_LABEL = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_HOST_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_HOST_LABEL}(\.{_HOST_LABEL})*")
_PORT = re.compile(r"(tcp|udp)/([0-9]{1,5})(-([0-9]{1,5}))?|icmp")
_VERSION = re.compile(r"[0-9]+(\.[0-9]+){1,3}")
_IPV4_TEXT = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")
_CIDR_TEXT = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}")
_TIMEZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{0,29}(/[A-Za-z0-9_+-]{1,30}){0,2}")
_PATH = re.compile(r"/[!-~]*")
#: Kubernetes label keys (an optional DNS-subdomain prefix and '/') and values.
_LABEL_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_SUBDOMAIN_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_LABEL_KEY = re.compile(rf"({_SUBDOMAIN_LABEL}(\.{_SUBDOMAIN_LABEL})*/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME})?")
#: Characters free text may not hold: C0/C1 controls, line and paragraph separators, bidi overrides.
_NOT_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def _short_text(v: str) -> str:
    return repr(v) if len(v) <= 40 else repr(v[:37] + "...")


def _dns_label(v: str) -> str:
    if not _DNS_LABEL.fullmatch(v):
        raise ValueError(f"{_short_text(v)} is not a DNS label: use lower-case letters, digits and '-', "
                         "start with a letter")
    return v


def _name(v: str) -> str:
    if not _NAME.fullmatch(v):
        raise ValueError(
            f"{_short_text(v)} is not a valid name: start with a lower-case letter, then letters, digits, '-' or '_' "
            "(at most 40 characters)"
        )
    return v


def _domain(v: str) -> str:
    if not _DOMAIN.fullmatch(v):
        raise ValueError(f"{_short_text(v)} is not a DNS domain (e.g. 'ai.example.internal')")
    return v


def _host(v: str) -> str:
    if _IPV4_TEXT.fullmatch(v):
        return _ipv4(v)
    if not _HOSTNAME.fullmatch(v):
        raise ValueError(f"{_short_text(v)} is not a host name or IPv4 address (e.g. 'ntp1.example.internal')")
    return v


def _text(v: str) -> str:
    bad = _NOT_TEXT.search(v)
    if bad:
        raise ValueError(f"{_short_text(v)} holds the control character {bad.group()!r}: write it on one line, "
                         "without control characters")
    return v


def _timezone(v: str) -> str:
    if not _TIMEZONE.fullmatch(v):
        raise ValueError(f"{_short_text(v)} is not a time zone name (e.g. 'UTC', 'Europe/Berlin')")
    return v


def _label_key(v: str) -> str:
    if len(v) > 316 or not _LABEL_KEY.fullmatch(v):
        raise ValueError(f"{_short_text(v)} is not a Kubernetes label key (e.g. 'tier' or 'example.com/tier')")
    return v


def _label_value(v: str) -> str:
    if not _LABEL_VALUE.fullmatch(v):
        raise ValueError(f"{_short_text(v)} is not a Kubernetes label value (at most 63 letters, digits, "
                         "'-', '_' or '.', starting and ending with a letter or digit)")
    return v


def _cidr(v: str) -> str:
    if _IPV4_TEXT.fullmatch(v):
        raise ValueError(f"{v!r} has no prefix length: write it as a CIDR such as '{v}/24'")
    if ":" in v and len(v) <= 64 and not _NOT_TEXT.search(v) and " " not in v:
        try:
            if netaddr.IPNetwork(v, expand_partial=False).version == 6:
                raise ValueError(f"{v!r}: only IPv4 networks are supported for now")
        except (netaddr.AddrFormatError, TypeError):
            pass
    if not _CIDR_TEXT.fullmatch(v):
        raise ValueError(f"{_short_text(v)} is not a CIDR (e.g. '10.40.0.0/16')")
    try:
        net = netaddr.IPNetwork(v, expand_partial=False)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError(f"{v!r} is not a CIDR (e.g. '10.40.0.0/16')") from None
    if net.version != 4:
        raise ValueError(f"{v!r}: only IPv4 networks are supported for now")
    if net.ip != net.network:
        raise ValueError(f"{v!r} has host bits set: the network is {net.cidr}")
    return str(net.cidr)


_PRIVATE = tuple(netaddr.IPNetwork(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def _supernet(v: str) -> str:
    net = netaddr.IPNetwork(v)
    if not any(net in p for p in _PRIVATE):
        raise ValueError(f"{v} is not a private (RFC 1918) range: a serving cluster keeps its fabric on "
                         "private addresses (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)")
    if net.prefixlen > 24:
        raise ValueError(f"{v} is too small: use /24 or larger")
    return v


def _ipv4(v: str) -> str:
    if not _IPV4_TEXT.fullmatch(v):
        raise ValueError(f"{_short_text(v)} is not an IPv4 address")
    try:
        ip = netaddr.IPAddress(v)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError(f"{v!r} is not an IPv4 address") from None
    if ip.version != 4 or "." not in v:
        raise ValueError(f"{v!r} is not an IPv4 address")
    return str(ip)


def _abs_path(v: str) -> str:
    if not _PATH.fullmatch(v) or "/../" in v + "/":
        raise ValueError(f"{_short_text(v)} must be an absolute path without '..', spaces or characters "
                         "outside ASCII")
    return v


def _port_spec(v: str) -> str:
    m = _PORT.fullmatch(v)
    if not m:
        raise ValueError(f"{_short_text(v)} is not a port spec: use 'tcp/443', 'udp/4789', 'tcp/6800-7300' or 'icmp'")
    if v != "icmp":
        lo = int(m.group(2))
        hi = int(m.group(4)) if m.group(4) else lo
        if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
            raise ValueError(f"{v!r}: ports must be within 1-65535")
        if hi < lo:
            raise ValueError(f"{v!r}: range end {hi} is below its start {lo}")
    return v


def _version(v: str) -> str:
    if not _VERSION.fullmatch(v):
        raise ValueError(f"{_short_text(v)} is not a version (e.g. '570.172.08')")
    return v


DnsLabel = Annotated[StrictStr, AfterValidator(_dns_label)]
Name = Annotated[StrictStr, AfterValidator(_name)]
Domain = Annotated[StrictStr, AfterValidator(_domain)]
Cidr = Annotated[StrictStr, AfterValidator(_cidr)]
Supernet = Annotated[StrictStr, AfterValidator(_cidr), AfterValidator(_supernet)]
IPv4 = Annotated[StrictStr, AfterValidator(_ipv4)]
AbsPath = Annotated[StrictStr, AfterValidator(_abs_path)]
PortSpec = Annotated[StrictStr, AfterValidator(_port_spec)]
Version = Annotated[StrictStr, AfterValidator(_version)]
Percent = Annotated[StrictInt, Field(ge=0, le=100)]
#: Free text on one line (any script; no control, line-separator or bidi-override characters).
Text = Annotated[StrictStr, Field(max_length=200), AfterValidator(_text)]
#: A host name or IPv4 address (NTP servers).
Host = Annotated[StrictStr, AfterValidator(_host)]
TimeZone = Annotated[StrictStr, AfterValidator(_timezone)]
LabelKey = Annotated[StrictStr, AfterValidator(_label_key)]
LabelValue = Annotated[StrictStr, AfterValidator(_label_value)]


def _not_bool(v: object) -> object:
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is a boolean, not a number")
    return v


def _number(v: object) -> object:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        kind = {bool: "boolean", str: "string", type(None): "null"}.get(type(v), type(v).__name__)
        shown = f" {_short_text(v)}" if isinstance(v, str) else f" {v!r}".lower() if isinstance(v, bool) else ""
        raise ValueError(f"a number is needed, not the {kind}{shown}")
    return v


#: A real number: an int or float from YAML/JSON, never a boolean or a string; finite.
Real = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]
# YAML reads an unquoted 1.3 as a number: accept it as the version string it means.
TlsVersion = Annotated[
    Literal["1.3", "1.2"], BeforeValidator(lambda v: str(v) if isinstance(v, float) else v)
]

VlanRole = Literal["mgmt", "oob", "inference", "storage_public", "storage_cluster", "rdma"]
VLAN_ROLES: tuple[str, ...] = ("mgmt", "oob", "inference", "storage_public", "storage_cluster", "rdma")
PoolRole = Literal["gpu", "storage", "gateway", "control", "monitor"]
TrafficKind = Literal["roce", "cnp", "inference", "storage", "mgmt", "default"]


class _Model(BaseModel):
    """Frozen, closed model: unknown keys are errors; values cannot change after load."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=False, validate_default=True)


# --------------------------------------------------------------------------- site


class Site(_Model):
    """Where the cluster lives and the address space it may use."""

    name: DnsLabel
    domain: Domain
    supernet: Supernet = Field(description="IPv4 block every VLAN subnet is carved from")
    organization: Annotated[Text, Field(min_length=1, max_length=64)] = "llmcluster"
    timezone: TimeZone = "UTC"
    ntp_servers: tuple[Host, ...] = ()
    dns_servers: tuple[IPv4, ...] = ()
    #: The widest an admin zone (a ``cidrs`` zone with SSH or mgmt/oob flows) or ``aws.admin_cidrs``
    #: may be: a CIDR with a shorter prefix is refused (zones.admin-cidr-width). 0 explicitly allows any
    #: width, 0.0.0.0/0 included. A validation policy, not a fact of the plan: left out of the plan document.
    admin_min_prefix: Annotated[StrictInt, Field(ge=0, le=32)] = Field(default=16, exclude=True)



# --------------------------------------------------------------------------- fabric


class Vlan(_Model):
    """One L2 segment (and its IPv4 subnet). On AWS a VLAN becomes a VPC subnet."""

    id: Annotated[StrictInt, Field(ge=1, le=4094)]
    prefix: Annotated[StrictInt, Field(ge=16, le=29)] | None = None
    subnet: Cidr | None = None
    mtu: Annotated[StrictInt, Field(ge=1280, le=9216)] = 1500
    reserved: Annotated[StrictInt, Field(ge=2, le=250)] = Field(
        default=10, description="first host addresses kept for the router, switch SVIs and VIPs"
    )

    @model_validator(mode="after")
    def _prefix_or_subnet(self) -> Vlan:
        if self.prefix is None and self.subnet is None:
            raise ValueError("set 'prefix' (carved from site.supernet) or an explicit 'subnet'")
        if self.prefix is not None and self.subnet is not None:
            if netaddr.IPNetwork(self.subnet).prefixlen != self.prefix:
                raise ValueError(f"prefix /{self.prefix} disagrees with subnet {self.subnet}: set only one")
        return self

    @property
    def prefixlen(self) -> int:
        if self.subnet is not None:
            return netaddr.IPNetwork(self.subnet).prefixlen
        assert self.prefix is not None
        return self.prefix


class Vlans(_Model):
    """VLANs per role. ``mgmt`` is required; the others follow from what the spec uses."""

    mgmt: Vlan
    oob: Vlan | None = None
    inference: Vlan | None = None
    storage_public: Vlan | None = None
    storage_cluster: Vlan | None = None
    rdma: Vlan | None = None

    def items(self) -> list[tuple[str, Vlan]]:
        """Declared VLANs in canonical role order."""
        return [(r, getattr(self, r)) for r in VLAN_ROLES if getattr(self, r) is not None]

    def get(self, role: str) -> Vlan | None:
        return getattr(self, role, None) if role in VLAN_ROLES else None


class QosClass(_Model):
    name: Name
    traffic: TrafficKind
    dscp: Annotated[StrictInt, Field(ge=0, le=63)]
    pcp: Annotated[StrictInt, Field(ge=0, le=7)]
    queue: Annotated[StrictInt, Field(ge=0, le=7)]
    lossless: StrictBool = False
    ecn: StrictBool = False
    bandwidth_percent: Percent = 0


class Qos(_Model):
    """QoS policy. Without ``classes`` the planner uses the RoCEv2 lossless defaults."""

    nic_vendor: Literal["nvidia", "broadcom"] = "nvidia"
    classes: tuple[QosClass, ...] | None = None


class Fabric(_Model):
    mtu: Annotated[StrictInt, Field(ge=1500, le=9216)] = 9216
    vlans: Vlans
    qos: Qos = Qos()


# --------------------------------------------------------------------------- zones and flows


class Zone(_Model):
    """A security zone: the hosts of some pools, or external networks (``cidrs``)."""

    pools: tuple[Name, ...] = ()
    cidrs: tuple[Cidr, ...] = ()
    description: Text = ""

    @model_validator(mode="after")
    def _not_empty(self) -> Zone:
        if not self.pools and not self.cidrs:
            raise ValueError("a zone needs 'pools' (hosts of the cluster) or 'cidrs' (external networks)")
        if self.pools and self.cidrs:
            raise ValueError("a zone holds either 'pools' or 'cidrs', not both: split it into two zones")
        return self


class Flow(_Model):
    """One allowed flow; everything not declared is denied."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: Name
    from_: Name = Field(alias="from")
    to: Name
    ports: tuple[PortSpec, ...] = Field(min_length=1)
    vlan: VlanRole
    description: Text = ""


# --------------------------------------------------------------------------- node pools


class GpuConfig(_Model):
    model: Annotated[Text, Field(max_length=64)]
    count: Annotated[StrictInt, Field(ge=1, le=72)]
    nvswitch: StrictBool = False
    driver_version: Version | None = None
    driver_flavor: Literal["auto", "open", "proprietary"] = Field(
        default="auto",
        description="kernel modules: open (Turing and newer; required from Blackwell) or proprietary; "
        "auto = open from Hopper on, proprietary before",
    )


class NvmeConfig(_Model):
    count: Annotated[StrictInt, Field(ge=0, le=32)]
    size_gb: Annotated[StrictInt, Field(ge=1, le=200_000)]
    read_gbps: Annotated[Real, Field(gt=0, le=64)] = Field(
        default=6.8, description="sequential read GB/s per drive (PCIe Gen4 U.2 ~6.8, Gen5 ~14)"
    )
    model: Annotated[Text, Field(max_length=64)] = ""


class Nic(_Model):
    name: Name
    vendor: Literal["nvidia", "broadcom", "intel", "aws"]
    speed_gbps: Annotated[StrictInt, Field(ge=1, le=1600)]
    count: Annotated[StrictInt, Field(ge=1, le=16)] = 1
    vlans: tuple[VlanRole, ...] = Field(min_length=1)


#: How EC2 capacity for a pool is obtained (llmcluster.plan.aws): ``on-demand`` (in the pool's cluster
#: placement group), ``odcr`` (an On-Demand Capacity Reservation) or ``capacity-block`` (EC2 Capacity
#: Blocks for ML). Reservations carry their own placement: the plan drops the placement group, with a warning.
CapacityMode = Literal["on-demand", "odcr", "capacity-block"]


class AwsPool(_Model):
    instance_type: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")]
    ami: Annotated[StrictStr, Field(pattern=r"^ami-[0-9a-f]{8,17}$")] | None = None
    capacity: CapacityMode = "on-demand"
    capacity_reservation_id: Annotated[StrictStr, Field(pattern=r"^cr-[0-9a-f]{8,17}$")] | None = None
    root_volume_gb: Annotated[StrictInt, Field(ge=50, le=16384)] = 500


class Pool(_Model):
    role: PoolRole
    count: Annotated[StrictInt, Field(ge=0, le=4096)]
    hostname_prefix: DnsLabel | None = None
    vlans: tuple[VlanRole, ...] = Field(min_length=1)
    gpu: GpuConfig | None = None
    nvme: NvmeConfig | None = None
    nics: tuple[Nic, ...] = ()
    bmc: StrictBool = False
    aws: AwsPool | None = None
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)


# --------------------------------------------------------------------------- storage


class Raid(_Model):
    """Local NVMe RAID that holds the model cache on the serving nodes."""

    pool: Name
    level: Annotated[Literal[0, 1, 5, 6, 10], BeforeValidator(_not_bool)]
    drives: Annotated[StrictInt, Field(ge=1, le=32)] | None = None
    chunk_kib: Annotated[StrictInt, Field(ge=4, le=4096)] = 512
    filesystem: Literal["xfs", "ext4"] = "xfs"
    mount: AbsPath = "/srv/models"
    encrypt: StrictBool = True
    allow_raid0: StrictBool = Field(
        default=False, description="explicitly allow level 0 (no redundancy: one failed drive loses the array; "
                                   "for ephemeral instance stores whose model is fetched again)"
    )

    @model_validator(mode="after")
    def _chunk_power_of_two(self) -> Raid:
        if self.chunk_kib & (self.chunk_kib - 1):
            raise ValueError(f"chunk_kib {self.chunk_kib} must be a power of two (e.g. 512)")
        return self


class CephPool(_Model):
    name: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]
    application: Literal["rbd", "cephfs", "rgw"]
    size: Annotated[StrictInt, Field(ge=1, le=10)] = 3
    min_size: Annotated[StrictInt, Field(ge=1, le=10)] = 2
    percent_data: Annotated[StrictInt, Field(ge=1, le=100)]


class Ceph(_Model):
    pool: Name
    osds_per_drive: Annotated[StrictInt, Field(ge=1, le=4)] = 1
    target_pgs_per_osd: Annotated[StrictInt, Field(ge=50, le=300)] = 100
    pools: tuple[CephPool, ...] = Field(min_length=1)
    failure_domain: Literal["host", "osd"] = Field(
        default="host", description="CRUSH failure domain; 'osd' only for single-host labs"
    )
    encrypt: StrictBool = True
    allow_reduced_redundancy: StrictBool = Field(
        default=False, description="explicitly allow size < 3 or min_size < 2 (never in production)"
    )


class Storage(_Model):
    model_dir: AbsPath = "/srv/models"
    raid: Raid | None = None
    ceph: Ceph | None = None


# --------------------------------------------------------------------------- PKI


class Pki(_Model):
    algorithm: Literal["ECDSA", "RSA"] = "ECDSA"
    ecdsa_curve: Literal["P256", "P384"] = "P256"
    rsa_bits: Annotated[Literal[3072, 4096], BeforeValidator(_not_bool)] = 3072
    allow_rsa: StrictBool = Field(default=False, description="explicitly allow RSA keys (default ECDSA)")
    root_validity_days: Annotated[StrictInt, Field(ge=365, le=7300)] = 3650
    intermediate_validity_days: Annotated[StrictInt, Field(ge=30, le=3650)] = 1825
    leaf_validity_days: Annotated[StrictInt, Field(ge=1, le=397)] = 90
    renew_at_fraction: Annotated[Real, Field(ge=0.5, le=0.9)] = Field(
        default=2 / 3, description="renew when this fraction of the lifetime has passed (2/3 by default)"
    )
    min_tls_version: TlsVersion = "1.3"
    allow_tls12: StrictBool = Field(default=False, description="explicitly allow TLS 1.2 clients")
    crl_validity_days: Annotated[StrictInt, Field(ge=1, le=30)] = Field(
        default=7, description="lifetime of the intermediate CA's CRL (nextUpdate); re-sign it with "
                               "`llmcluster pki crl` well before: an expired CRL refuses every client"
    )


# --------------------------------------------------------------------------- serving


#: Days of the week as ``access.policies[].days`` names them (Monday first, as ISO 8601 numbers them).
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HHMM = r"([01][0-9]|2[0-3]):[0-5][0-9]"
_HOURS = re.compile(rf"(?P<start>{_HHMM})-(?P<end>{_HHMM}|24:00)")
#: ``https://<IPv4 address or DNS name>:<port>``, nothing after the port (journal-upload adds /upload).
_HTTPS_URL = re.compile(r"https://(?P<host>[A-Za-z0-9.-]{1,253}):(?P<port>[0-9]{1,5})")
#: A size as journald reads it (``SystemMaxUse=``): a whole number and a binary unit K, M, G or T.
_SIZE = re.compile(r"(?P<n>[1-9][0-9]{0,5})(?P<unit>[KMGT])")
_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
#: The smallest journald quota the audit log may be given (``serving.gateway.audit.max_use``).
AUDIT_MIN_USE_BYTES = 256 << 20


def _hours(v: str) -> str:
    m = _HOURS.fullmatch(v)
    if not m:
        raise ValueError(f"{_short_text(v)} is not a time window: write 'HH:MM-HH:MM' in UTC, 24-hour clock, "
                         "e.g. '08:00-18:00' ('24:00' may end it)")
    start, end = m.group("start"), m.group("end")
    if start >= end:  # zero-padded HH:MM compare as times
        raise ValueError(f"{v!r}: the window must start before it ends ({start} is not before {end}); a window "
                         "across midnight is two policies, one ending at 24:00 and one starting at 00:00")
    return v


def hours_window(v: str) -> tuple[int, int]:
    """``'08:00-18:00'`` -> ``(800, 1800)``: start (inclusive) and end (exclusive) as HHMM numbers."""
    m = _HOURS.fullmatch(v)
    if not m:
        raise ValueError(f"{v!r} is not a time window")
    return int(m.group("start").replace(":", "")), int(m.group("end").replace(":", ""))


def _https_url(v: str) -> str:
    m = _HTTPS_URL.fullmatch(v)
    if not m:
        raise ValueError(f"{_short_text(v)} is not an https URL with a host and a port "
                         "(e.g. 'https://10.0.20.5:19532' or 'https://logs.example.internal:19532')")
    host, port = m.group("host"), int(m.group("port"))
    try:
        _host(host)
    except ValueError:
        raise ValueError(f"{_short_text(v)}: {host!r} is not an IPv4 address or DNS name") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{_short_text(v)}: port {port} is outside 1-65535")
    return v


def url_host_port(v: str) -> tuple[str, int]:
    """The host and port of an :data:`HttpsUrl`."""
    m = _HTTPS_URL.fullmatch(v)
    if not m:
        raise ValueError(f"{v!r} is not an https URL")
    return m.group("host"), int(m.group("port"))


def size_bytes(v: str) -> int:
    """``'20G'`` -> bytes (binary units, as journald reads them)."""
    m = _SIZE.fullmatch(v)
    if not m:
        raise ValueError(f"{v!r} is not a size")
    return int(m.group("n")) * _SIZE_UNITS[m.group("unit")]


def _size(v: str) -> str:
    if not _SIZE.fullmatch(v):
        raise ValueError(f"{_short_text(v)} is not a size: a whole number and K, M, G or T (e.g. '20G')")
    if size_bytes(v) < AUDIT_MIN_USE_BYTES:
        raise ValueError(f"{v!r} is below the {AUDIT_MIN_USE_BYTES >> 20}M the audit log needs at least")
    return v


def _unique(v: tuple) -> tuple:
    seen: set = set()
    for item in v:
        if item in seen:
            raise ValueError(f"{_short_text(str(item))} is listed twice")
        seen.add(item)
    return v


Hours = Annotated[StrictStr, AfterValidator(_hours)]
HttpsUrl = Annotated[StrictStr, AfterValidator(_https_url)]
Size = Annotated[StrictStr, AfterValidator(_size)]


def _one_collector(v: tuple) -> tuple:
    # roles/audit_log: systemd-journal-upload sends to one URL (its URL= setting); the role refuses more
    if len(v) > 1:
        raise ValueError(f"at most one collector ({len(v)} given): systemd-journal-upload sends to one URL; "
                         "put several collectors behind one address (a VIP or a DNS name)")
    return v


class Audit(_Model):
    """The gateway's access log as an audit trail: how long it is kept, how much room it has, where it goes."""

    retention_days: Annotated[StrictInt, Field(ge=1, le=3650)] = Field(
        default=180, description="days the access log is kept on the gateway (journald MaxRetentionSec); "
        "at least 180 unless allow_short_retention")
    allow_short_retention: StrictBool = Field(
        default=False, description="explicitly allow retention_days below 180 (labs, never a regulated site)")
    max_use: Size = Field(
        default="20G", description="disk space journald may use on the gateway (SystemMaxUse): K, M, G or T")
    forward_to: Annotated[tuple[HttpsUrl, ...], AfterValidator(_unique), AfterValidator(_one_collector)] = Field(
        default=(), description="the systemd-journal-remote collector the log is forwarded to "
        "(https://<address or name>:<port>; at most one: systemd-journal-upload sends to one URL); a flow from "
        "the gateway's zone must allow it")


class Gateway(_Model):
    pool: Name
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 443
    hostname: DnsLabel = "api"
    rate_limit_rps: Annotated[StrictInt, Field(ge=1, le=100_000)] = Field(
        default=20, description="requests per second per client certificate; more are delayed (throttled)")
    request_timeout_s: Annotated[StrictInt, Field(ge=10, le=7200)] = Field(
        default=900, description="server-side inactivity limit of a request (long generations)")
    handshake_timeout_s: Annotated[StrictInt, Field(ge=1, le=120)] = Field(
        default=10, description="a connection must finish TLS and send its request headers within this")
    idle_timeout_s: Annotated[StrictInt, Field(ge=1, le=3600)] = Field(
        default=60, description="keep-alive idle time between requests")
    max_conn_per_source: Annotated[StrictInt, Field(ge=1, le=100_000)] = Field(
        default=64, description="concurrent connections per source IP address (counted before TLS)")
    max_conn_rate_per_source: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = Field(
        default=200, description="new connections per source IP address per 10 seconds (counted before TLS)")
    max_body_bytes: Annotated[StrictInt, Field(ge=1024, le=1 << 30)] | None = Field(
        default=None, description="largest request body; default derived from serving.context "
        "(llmcluster.plan.serving.derived_max_body_bytes)")
    audit: Audit = Field(default=Audit(), description="the access log as an audit trail")


class Serving(_Model):
    model: Annotated[Text, Field(max_length=64)]
    revision: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{7,40}$|^main$")] = "main"
    precision: Annotated[Text, Field(max_length=32)] | None = None
    kv_dtype: Literal["bf16", "fp8"] | None = None
    context: Annotated[StrictInt, Field(ge=512, le=1_048_576)] = 32768
    concurrency: Annotated[StrictInt, Field(ge=1, le=4096)] = 16
    replicas: Annotated[StrictInt, Field(ge=1, le=512)] = 1
    pool: Name
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 8000
    #: trtllm-serve listens on 127.0.0.1 at this port; the GPU node's TLS terminator (role
    #: serving_tls) listens on the inference address at ``port`` (mTLS from the gateway) and forwards
    #: here. Must differ from ``port`` (rule serving.backend-port).
    backend_port: Annotated[StrictInt, Field(ge=1, le=65535)] = 8001
    gateway: Gateway | None = None
    #: Where the model servers run: ``systemd`` units on the hosts (roles tensorrt_llm, serving_tls,
    #: gateway) or ``kubernetes`` (llmcluster.plan.kubernetes; needs the ``kubernetes`` section).
    runtime: Literal["systemd", "kubernetes"] = "systemd"


# --------------------------------------------------------------------------- monitoring (docs/observability.md)

WebhookUrl = Annotated[StrictStr, Field(pattern=r"^https?://[!-~]+$")]


class MonitoringSlo(_Model):
    """Thresholds a user sets (SLOs); the alert rules read them (llmcluster.monitoring.rules)."""

    ttft_p99_s: Annotated[Real, Field(gt=0, le=600)] = Field(
        default=2.0, description="time to first token, P99 over 5 min, seconds")
    latency_p99_s: Annotated[Real, Field(gt=0, le=7200)] = Field(
        default=120.0, description="end-to-end request latency, P99 over 5 min, seconds")
    error_ratio: Annotated[Real, Field(gt=0, le=1)] = Field(
        default=0.02, description="share of 5xx answers at the gateway over 5 min")
    queue_depth: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = Field(
        default=None, description="requests waiting per replica head; default 2 x serving.concurrency")
    kv_cache_ratio: Annotated[Real, Field(gt=0, le=1)] = Field(
        default=0.95, description="KV-cache blocks in use, as a fraction, for 10 min")
    gpu_memory_ratio: Annotated[Real, Field(gt=0, le=1)] = Field(
        default=0.85, description="GPU framebuffer in use, as a fraction, for 5 min")


class Monitoring(_Model):
    """Prometheus and Alertmanager on a monitor pool, and the central audit store there."""

    pool: Name = Field(description="the pool (role monitor) that runs Prometheus, Alertmanager and the audit store")
    scrape_interval_s: Annotated[StrictInt, Field(ge=5, le=300)] = 15
    evaluation_interval_s: Annotated[StrictInt, Field(ge=5, le=300)] = 15
    retention_days: Annotated[StrictInt, Field(ge=1, le=3650)] = Field(
        default=30, description="days Prometheus keeps samples")
    webhooks: Annotated[tuple[WebhookUrl, ...], AfterValidator(_unique)] = Field(
        default=(), description="Alertmanager webhook receivers (http(s) URLs)")
    slo: MonitoringSlo = MonitoringSlo()
    audit_retention_days: Annotated[StrictInt, Field(ge=180, le=3650)] = Field(
        default=180, description="days the central audit store keeps the chained access log (at least 180)")
    audit_requests_per_s: Annotated[Real, Field(gt=0, le=100_000)] = Field(
        default=1.0, description="expected API requests per second (average): sizes the audit store's cap")


# --------------------------------------------------------------------------- API access control

# Lists in a policy: each item listed once (a repeated item is a typo for another).
_Labels = Annotated[tuple[DnsLabel, ...], AfterValidator(_unique)]
_ModelNames = Annotated[tuple[Annotated[Text, Field(max_length=64)], ...], Field(min_length=1),
                        AfterValidator(_unique)]
_Paths = Annotated[tuple[AbsPath, ...], Field(min_length=1), AfterValidator(_unique)]
_Zones = Annotated[tuple[Name, ...], Field(min_length=1), AfterValidator(_unique)]
_Days = Annotated[tuple[Weekday, ...], Field(min_length=1), AfterValidator(_unique)]


class AccessClient(_Model):
    """A named API client: it gets a client certificate (CN ``<name>.clients.<domain>``, OU its role)."""

    role: DnsLabel = Field(description="the certificate's OU; policies admit roles or client names")
    description: Text = ""


class AccessPolicy(_Model):
    """One allow rule: a request passes when some policy matches every attribute (default deny)."""

    name: Name
    roles: _Labels = Field(default=(), description="client roles (certificate OU) it admits")
    clients: _Labels = Field(default=(), description="client names it admits (besides roles)")
    models: _ModelNames | None = Field(
        default=None, description="model names a request may ask for (the JSON body's 'model'); default the "
        "served model (serving.model); listing it pins the policy to that model")
    paths: _Paths = Field(description="API paths, a subset of llmcluster.plan.access.API_PATHS")
    zones: _Zones = Field(description="source zones (their cidrs, or their pools' planned addresses)")
    days: _Days = Field(
        default=WEEKDAYS, description="UTC weekdays, mon..sun (default every day)")
    hours: Hours = Field(default="00:00-24:00", description="UTC time window 'HH:MM-HH:MM', start inclusive, "
                         "end exclusive (default the whole day)")
    description: Text = ""

    @model_validator(mode="after")
    def _who(self) -> AccessPolicy:
        if not self.roles and not self.clients:
            raise ValueError("a policy names whom it admits: set 'roles', 'clients' or both")
        return self


class Access(_Model):
    """Who may call the API behind serving.gateway: named client identities and allow policies."""

    clients: dict[DnsLabel, AccessClient] = Field(
        default_factory=dict, description="client name (a DNS label) -> its role; each gets a client certificate")
    policies: tuple[AccessPolicy, ...] = Field(default=(), description="allow rules; everything else is 403")


# --------------------------------------------------------------------------- platforms


AvailabilityZone = Annotated[StrictStr, Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$")]
#: An IAM role or user ARN (EKS access entries).
IamPrincipalArn = Annotated[
    StrictStr, Field(pattern=r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]{1,512}$")]


class AwsEks(_Model):
    """An EKS control plane for the stack (private endpoint only); each GPU pool becomes a node group."""

    version: Annotated[StrictStr, Field(pattern=r"^1\.[0-9]{2}$")] = "1.33"
    log_retention_days: Annotated[StrictInt, Field(ge=180, le=3653)] = Field(
        default=365, description="retention of the control-plane log group (at least 180 days)")
    admin_principals: tuple[IamPrincipalArn, ...] = Field(
        default=(), description="IAM roles/users given cluster-admin through EKS access entries")


class Aws(_Model):
    region: Annotated[StrictStr, Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")]
    availability_zone: AvailabilityZone = Field(
        description="the zone of the GPU and storage pools and their placement groups")
    #: Further zones the gateway and control pools are spread over (round robin, after
    #: availability_zone), and the NLB and interface endpoints span (rule aws.zones).
    secondary_availability_zones: tuple[AvailabilityZone, ...] = ()
    efa: StrictBool = True
    placement_group: StrictBool = True
    admin_cidrs: tuple[Cidr, ...] = ()
    #: An existing EC2 key pair the instances accept for SSH (Ansible reaches sshd through an SSM
    #: session, never from the network); without it only an SSM shell reaches the hosts.
    key_name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._:/+=@-]{1,255}$")] | None = None
    #: A subnet for the NAT gateway (and the internet gateway it needs); required only when a flow
    #: from a host zone goes to a zone with public addresses (rule aws.nat-public-subnet).
    public_subnet: Cidr | None = None
    eks: AwsEks | None = None

    @field_validator("availability_zone")
    @classmethod
    def _az_in_region(cls, v: str, info: ValidationInfo) -> str:
        region = info.data.get("region")
        if region and not v.startswith(region):
            raise ValueError(f"{v} is not in region {region}")
        return v


# --- switch port map (llmcluster.plan.switches; rules in validate._switches) -----------------

#: A front-panel port in a ``baremetal.port_map``: its number (``5``) or its name in the
#: stack's switch OS (``swp5``, SONiC ``Ethernet32``, EOS ``Ethernet5/1``). YAML reads a bare
#: ``5:`` key as a number: accept it as the port name it means.
SwitchPortName = Annotated[
    StrictStr, BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9/_.:-]{0,31}$"),
]


class PortAssignment(_Model):
    """What is cabled to one leaf port: one port of one host NIC, and the VLANs it carries."""

    host: DnsLabel
    nic: Name | None = Field(default=None, description="a NIC of the host's pool (omit for pools without nics)")
    port: Annotated[StrictInt, Field(ge=1, le=16)] = Field(default=1, description="port of the NIC (1..count)")
    vlans: tuple[VlanRole, ...] | None = Field(
        default=None, description="VLANs on the switch port; must equal the NIC's VLANs (default: them)"
    )


_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}=?")


def _fingerprint(v: str) -> str:
    if not _FINGERPRINT.fullmatch(v):
        raise ValueError(f"{_short_text(v)} is not a SHA256 host key fingerprint: use what "
                         "'ssh-keygen -lf <host key>.pub' prints (SHA256: and 43 base64 characters)")
    return v


#: An SSH host key fingerprint as ``ssh-keygen -lf`` prints it: ``SHA256:`` + 43 base64 characters.
HostKeyFingerprint = Annotated[StrictStr, AfterValidator(_fingerprint)]


class SwitchAccess(_Model):
    """How ``pulumi up`` reaches the switches' management addresses (``switch_apply: push``).

    The password or private key is not here: it is a Pulumi secret
    (``llmcluster-switches:password`` / ``llmcluster-switches:privateKey``, see
    :mod:`llmcluster.spec.secrets`).
    """

    username: Annotated[StrictStr, Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")] = "admin"
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 22
    #: switch -> pinned host key fingerprint; switches without one are checked against known_hosts.
    host_keys: dict[DnsLabel, HostKeyFingerprint] = Field(default_factory=dict)
    insecure_accept_host_key: StrictBool = Field(
        default=False, description="accept any host key of switches without a pinned one (labs only)"
    )
    timeout_s: Annotated[StrictInt, Field(ge=1, le=600)] = 30


class Baremetal(_Model):
    os: Literal["ubuntu-22.04", "ubuntu-24.04", "debian-12"] = "ubuntu-24.04"
    switch_os: Literal["cumulus", "sonic", "eos"] = "cumulus"
    ssh_user: DnsLabel = "ubuntu"
    #: How hosts meet the fabric (llmcluster.plan.hostnet): ``tagged`` 802.1Q subinterfaces on one
    #: uplink (production), ``access`` one untagged interface per VLAN. Unset: ``access`` when the
    #: stack has a ``lab`` section, else ``tagged``.
    network_mode: Literal["tagged", "access"] | None = None
    #: Accept any host key when the SSH preflight logs in to the hosts (labs only).
    ssh_insecure_accept_host_key: StrictBool = False
    leaf_switches: Annotated[StrictInt, Field(ge=1, le=256)] = 2
    spine_switches: Annotated[StrictInt, Field(ge=0, le=64)] = 2
    #: leaf -> port -> assignment; overrides the automatic port layout for those host NIC ports.
    port_map: dict[DnsLabel, dict[SwitchPortName, PortAssignment]] = Field(default_factory=dict)
    #: ``render-only`` (default): the program renders the switch configs and exports them for a
    #: change-managed network; ``push``: ``pulumi up`` applies them over SSH (llmcluster.components.switches).
    switch_apply: Literal["push", "render-only"] = "render-only"
    #: switch -> management address on the out-of-band VLAN (``oob``; ``mgmt`` when there is none).
    switch_mgmt: dict[DnsLabel, IPv4] = Field(default_factory=dict)
    switch_access: SwitchAccess = SwitchAccess()


# --------------------------------------------------------------------------- lab

#: How a lab node is realised on the lab machine (see docs/lab.md):
#: ``namespace`` — a network namespace + overlay root + sshd (fast, no systemd, shares the kernel);
#: ``nspawn`` — the same namespace and root booted with systemd under systemd-nspawn (services);
#: ``vm`` — a qemu guest with its own Debian kernel (md RAID, 802.1Q, vlan_filtering, device-mapper).
LabHostKind = Literal["namespace", "nspawn", "vm"]


class LabHost(_Model):
    kind: LabHostKind = "namespace"
    #: ``access``: one untagged interface per VLAN (switch access ports, the lab's default);
    #: ``tagged``: 802.1Q subinterfaces on one trunk, as in production (needs ``kind: vm``:
    #: this kernel has no 802.1Q; the trunk ends on a VM leaf with a VLAN-aware bridge).
    network: Literal["access", "tagged"] = "access"


class LabVm(_Model):
    memory_mb: Annotated[StrictInt, Field(ge=512, le=65536)] = 1536
    cpus: Annotated[StrictInt, Field(ge=1, le=16)] = 1
    disk_gb: Annotated[StrictInt, Field(ge=2, le=64)] = 4
    #: ``tcg`` (software emulation) works everywhere; ``kvm`` only where /dev/kvm boots a stock kernel.
    accel: Literal["tcg", "kvm"] = "tcg"
    boot_timeout_s: Annotated[StrictInt, Field(ge=30, le=1800)] = 300


class Lab(_Model):
    """How ``llmcluster lab`` realises this stack's nodes (host kind per pool, per host)."""

    pools: dict[Name, LabHost] = Field(default_factory=dict)
    hosts: dict[DnsLabel, LabHost] = Field(default_factory=dict)
    vm: LabVm = LabVm()

    def host(self, name: str, pool: str) -> LabHost:
        """The effective settings of one host: its own entry, else its pool's, else the default."""
        return self.hosts.get(name) or self.pools.get(pool) or LabHost()


# --------------------------------------------------------------------------- NVIDIA software stack

#: An upstream package version as NVIDIA publishes it (``1.17.8``, ``4.2.3``).
PackageVersion = Annotated[StrictStr, Field(pattern=r"^[0-9]+(\.[0-9]+){1,3}$")]
HttpsOrFileUrl = Annotated[StrictStr, Field(pattern=r"^(https://|http://|file:)[!-~]+$")]
Fingerprint = Annotated[StrictStr, Field(pattern=r"^[0-9A-F]{40}$")]


class AptRepo(_Model):
    """An apt repository of NVIDIA packages (the CUDA repository, libnvidia-container) or a mirror."""

    url: HttpsOrFileUrl | None = Field(default=None, description="default: NVIDIA's repository for the OS")
    key_url: HttpsOrFileUrl | None = None
    key_fingerprint: Fingerprint | None = Field(
        default=None, description="OpenPGP fingerprint (40 upper-case hex digits) the key must have"
    )


class Trtllm(_Model):
    version: PackageVersion = "1.0.0"
    cuda_version: Annotated[StrictStr, Field(pattern=r"^[0-9]+\.[0-9]+$")] = "12.9"
    install: Literal["venv", "container"] = "venv"
    pip_index_url: HttpsOrFileUrl = Field(
        default="https://pypi.nvidia.com", description="an index or a local mirror (air-gapped sites)"
    )
    image: Annotated[StrictStr, Field(pattern=r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+:[A-Za-z0-9._-]+$")] = (
        "nvcr.io/nvidia/tensorrt-llm/release:1.0.0"
    )
    registry_mirror: Annotated[StrictStr, Field(pattern=r"^([a-z0-9.-]+(:[0-9]+)?)?$")] = Field(
        default="", description="host[:port] of a local registry that replaces the image's registry"
    )
    engine_cache_dir: AbsPath = "/var/lib/llmcluster/engines"


class Nvidia(_Model):
    """Versions and sources of the GPU node stack (roles nvidia_driver ... tensorrt_llm)."""

    cuda_repo: AptRepo = AptRepo()
    toolkit_repo: AptRepo = AptRepo()
    container_toolkit_version: PackageVersion = "1.17.8"
    container_runtime: Literal["containerd", "docker", "none"] = "containerd"
    dcgm_version: PackageVersion = "4.2.3"
    dcgm_exporter_version: PackageVersion = "4.1.3"
    dcgm_diag_level: Annotated[StrictInt, Field(ge=1, le=4)] = 1
    skip_reboot: StrictBool = Field(default=False, description="never reboot after a driver install")
    kubernetes_drain: StrictBool = Field(
        default=False, description="drain/uncordon the node in Kubernetes around a driver change"
    )
    trtllm: Trtllm = Trtllm()


# --------------------------------------------------------------------------- Kubernetes serving layer

_DIGEST_IMAGE = re.compile(r"(?P<repo>[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)+)"
                           r"@sha256:(?P<digest>[0-9a-f]{64})")


def _digest_image(v: str) -> str:
    if _DIGEST_IMAGE.fullmatch(v):
        return v
    if "@" not in v:
        raise ValueError(f"{_short_text(v)} is pinned by tag, not by digest: a tag can be moved to other bytes; "
                         "write '<registry>/<repository>@sha256:<64 hex digits>'")
    raise ValueError(f"{_short_text(v)} is not an image reference by digest "
                     "('<registry>/<repository>@sha256:<64 hex digits>')")


#: A container image pinned by digest (``registry/repository@sha256:<64 hex>``); tags are refused.
DigestImage = Annotated[StrictStr, AfterValidator(_digest_image)]
ChartVersion = Annotated[StrictStr, Field(pattern=r"^v?[0-9]+\.[0-9]+\.[0-9]+$")]
#: ``<namespace>:<key>`` of a Pulumi config secret (``pulumi config set --secret <namespace>:<key>``).
ConfigKey = Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_-]{0,39}:[A-Za-z][A-Za-z0-9_]{0,63}$")]
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]


class KubernetesPin(_Model):
    """One deployable version: the model (name, revision, manifest digest) and the serving image digest."""

    model: Annotated[Text, Field(max_length=64)]
    revision: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{7,40}$|^main$")]
    manifest_sha256: Sha256 = Field(description="sha256 of the model's manifest (llmcluster model manifest)")
    image: DigestImage = Field(description="the TensorRT-LLM serving image, by digest")


class KubernetesAutoscaling(_Model):
    """Replicas follow the queue: KEDA ScaledObject (default) or an HPA on a custom metric."""

    engine: Literal["keda", "hpa"] = "keda"
    metric: Literal["trtllm_num_requests_waiting", "gateway_queue", "kv_cache_utilization"] | None = Field(
        default=None, description="default: gateway_queue with serving.gateway (the pinned trtllm-serve 1.0.0 "
                                  "exports no Prometheus metrics), else trtllm_num_requests_waiting")
    #: per replica: requests in flight or waiting (queue metrics) or percent of the KV cache in use
    target: Annotated[StrictInt, Field(ge=1, le=10_000)] = 8
    min_replicas: Annotated[StrictInt, Field(ge=1, le=512)] | None = Field(
        default=None, description="default serving.replicas; at least 1 (never scaled to zero)")
    max_replicas: Annotated[StrictInt, Field(ge=1, le=512)] | None = Field(
        default=None, description="default: every replica the serving pool's hosts can hold")
    prometheus_url: Annotated[StrictStr, Field(pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[!-~]*)?$")] = (
        "http://prometheus-operated.monitoring.svc:9090")


class KubernetesGpuOperator(_Model):
    """The NVIDIA GPU Operator (Helm chart, pinned). Driver and toolkit default to off on bare metal, where
    the host roles (nvidia_driver, nvidia_container_toolkit) own them, and on on EKS node groups."""

    chart_version: ChartVersion = "v25.3.2"
    driver: StrictBool | None = None
    toolkit: StrictBool | None = None
    dcgm_exporter: StrictBool = True


class Kubernetes(_Model):
    """The Kubernetes serving layer (serving.runtime: kubernetes; llmcluster.plan.kubernetes)."""

    namespace: DnsLabel = "llmcluster"
    #: Target Kubernetes version: the manifests are validated against its schemas (1.25-1.37).
    version: Annotated[StrictStr, Field(pattern=r"^1\.[0-9]{2}$")] = "1.33"
    #: Bare metal: the Pulumi config secret holding the kubeconfig of the existing cluster.
    kubeconfig_secret: ConfigKey | None = None
    gpu_operator: KubernetesGpuOperator = KubernetesGpuOperator()
    lws_chart_version: ChartVersion = "0.7.0"
    gateway_image: DigestImage | None = Field(
        default=None, description="HAProxy image of the gateway Deployment, by digest (required with a gateway)")
    #: Pin history, newest first; ``active`` indexes it (0: the newest). ``llmcluster rollback`` moves ``active``.
    pins: Annotated[tuple[KubernetesPin, ...], Field(min_length=1)]
    active: Annotated[StrictInt, Field(ge=0, le=63)] = 0
    keep_pins: Annotated[StrictInt, Field(ge=1, le=64)] = 5
    model_volume: Literal["pvc", "host"] = Field(
        default="host", description="pvc: a PersistentVolumeClaim of storage_class (Ceph RBD, EBS); host: the "
        "nodes' NVMe RAID at storage.model_dir (storage.raid)")
    storage_class: Annotated[StrictStr, Field(pattern=r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")] | None = None
    autoscaling: KubernetesAutoscaling = KubernetesAutoscaling()
    prometheus_operator: StrictBool = Field(
        default=True, description="the cluster runs the Prometheus Operator (monitoring.coreos.com/v1): "
                                  "ServiceMonitors for the serving pods, the gateway and dcgm-exporter, the alert "
                                  "rules as a PrometheusRule; false: none of them (scrape them another way)")
    prometheus_namespace: DnsLabel = Field(
        default="monitoring", description="the namespace of the Prometheus pods (admitted to the metrics ports)")

    @property
    def pin(self) -> KubernetesPin:
        """The pin the program renders (``pins[active]``; rule kubernetes.pins)."""
        return self.pins[min(self.active, len(self.pins) - 1)]


# --------------------------------------------------------------------------- the spec


class Spec(_Model):
    """The whole environment. ``stack`` comes from the stack name, not from config."""

    stack: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    platform: Literal["baremetal", "aws"]
    site: Site
    fabric: Fabric
    zones: dict[Name, Zone]
    flows: tuple[Flow, ...] = ()
    pools: dict[Name, Pool]
    storage: Storage = Storage()
    pki: Pki = Pki()
    serving: Serving
    #: Who may call the API (required with serving.gateway: validate.access)
    access: Access | None = None
    #: Prometheus, Alertmanager and the central audit store (docs/observability.md)
    monitoring: Monitoring | None = None
    nvidia: Nvidia = Nvidia()
    aws: Aws | None = None
    baremetal: Baremetal | None = None
    lab: Lab | None = None
    #: The Kubernetes serving layer (serving.runtime: kubernetes)
    kubernetes: Kubernetes | None = None

    def hostname_prefix(self, pool_name: str) -> str:
        p = self.pools[pool_name]
        return p.hostname_prefix or pool_name.replace("_", "-")


#: Sections of the ``llmcluster:`` config namespace, in the order they are documented.
SECTIONS: tuple[str, ...] = tuple(f for f in Spec.model_fields if f != "stack")
