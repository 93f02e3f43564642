"""AWS rules: the platform's sections, each pool's EC2 instance type; preflight: types offered in the zone."""

from __future__ import annotations

from collections.abc import Iterator

from llmcluster.errors import Problem
from llmcluster.plan import aws_zones
from llmcluster.plan.aws_instances import INSTANCE_TYPES
from llmcluster.spec.loader import did_you_mean
from llmcluster.spec.models import Pool, Spec
from llmcluster.validate.preflight import Target
from llmcluster.validate.registry import PREFLIGHT, rule


def _ec2_pools(spec: Spec) -> Iterator[tuple[str, Pool]]:
    """The pools of an aws stack that name their instance type (aws.pool-instance-type reports the others)."""
    if spec.platform == "aws":
        yield from ((name, pool) for name, pool in spec.pools.items() if pool.aws is not None)


@rule("aws.sections")
def sections(spec: Spec) -> Iterator[Problem]:
    """Platform 'aws' has an llmcluster:aws section and no llmcluster:baremetal section."""
    if spec.platform != "aws":
        return
    if spec.aws is None:
        yield Problem("aws", "missing: platform 'aws' needs llmcluster:aws (region, availability_zone)")
    if spec.baremetal is not None:
        yield Problem("baremetal", "only valid with platform 'baremetal' (this stack is 'aws')")


@rule("aws.pool-instance-type")
def pool_instance_type(spec: Spec) -> Iterator[Problem]:
    """On platform 'aws' every pool names its aws.instance_type."""
    if spec.platform != "aws":
        return
    for name, pool in spec.pools.items():
        if pool.aws is None:
            yield Problem(f"pools.{name}.aws", "missing: on platform 'aws' every pool needs aws.instance_type")


@rule("aws.no-bmc")
def no_bmc(spec: Spec) -> Iterator[Problem]:
    """EC2 pools have no BMC."""
    for name, pool in _ec2_pools(spec):
        if pool.bmc:
            yield Problem(f"pools.{name}.bmc", "EC2 instances have no BMC: remove it")


@rule("aws.gpu-instance-type-known")
def gpu_instance_type_known(spec: Spec) -> Iterator[Problem]:
    """A GPU pool's instance type is in the GPU instance catalog."""
    for name, pool in _ec2_pools(spec):
        assert pool.aws is not None
        if pool.role == "gpu" and pool.aws.instance_type not in INSTANCE_TYPES:
            yield Problem(f"pools.{name}.aws.instance_type",
                          f"'{pool.aws.instance_type}' is not a known GPU instance type"
                          f"{did_you_mean(pool.aws.instance_type, INSTANCE_TYPES)} "
                          f"(known: {', '.join(sorted(INSTANCE_TYPES))})")


@rule("aws.instance-matches-gpu")
def instance_matches_gpu(spec: Spec) -> Iterator[Problem]:
    """A GPU pool's gpu.model and gpu.count are what its instance type has."""
    for name, pool in _ec2_pools(spec):
        assert pool.aws is not None
        it = INSTANCE_TYPES.get(pool.aws.instance_type)
        if pool.role == "gpu" and it is not None and pool.gpu is not None \
                and (pool.gpu.model != it.gpu or pool.gpu.count != it.gpus):
            yield Problem(f"pools.{name}.gpu",
                          f"{it.name} has {it.gpus}x {it.gpu}, not {pool.gpu.count}x {pool.gpu.model}")


@rule("aws.cpu-instance-for-cpu-pool")
def cpu_instance_for_cpu_pool(spec: Spec) -> Iterator[Problem]:
    """Pools without GPUs do not run on GPU instance types."""
    for name, pool in _ec2_pools(spec):
        assert pool.aws is not None
        it = INSTANCE_TYPES.get(pool.aws.instance_type)
        if pool.role != "gpu" and it is not None:
            yield Problem(f"pools.{name}.aws.instance_type",
                          f"{it.name} is a GPU instance: use a CPU type for a '{pool.role}' pool")


@rule("aws.instance-types-offered", layer=PREFLIGHT)
def instance_types_offered(target: Target) -> list[Problem]:
    """Every pool's instance type is offered in each zone its hosts land in: aws.availability_zone for
    GPU and storage pools, every zone for the others (ec2:DescribeInstanceTypeOfferings; needs AWS
    credentials and boto3)."""
    spec = target.spec
    assert spec.aws is not None
    ec2_client = target.ec2_client
    if ec2_client is None:
        try:
            import boto3
        except ImportError:
            return [Problem("aws", "preflight needs boto3: pip install boto3")]
        from botocore.config import Config

        # The endpoint is boto3's own setting: AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_EC2, or endpoint_url in the
        # AWS config file), e.g. a moto server in tests. A dead endpoint fails within the preflight timeout.
        ec2_client = boto3.client("ec2", region_name=spec.aws.region, config=Config(
            connect_timeout=target.timeout, read_timeout=max(target.timeout, 10.0),
            retries={"max_attempts": 2, "mode": "standard"}))
    from llmcluster.plan import aws_zones

    problems: list[Problem] = []
    types = sorted({p.aws.instance_type for p in spec.pools.values() if p.aws is not None})
    all_zones = aws_zones.zones(spec)
    # The zones each pool's hosts land in: GPU and storage pools in the primary zone, the others
    # spread over every zone (llmcluster.plan.aws_zones.host_zone).
    pool_zones = {name: sorted({all_zones[aws_zones.host_zone(spec, name, i)] for i in range(1, pool.count + 1)},
                               key=all_zones.index)
                  for name, pool in spec.pools.items() if pool.aws is not None}
    try:
        offered: set[tuple[str, str]] = set()
        token: dict[str, str] = {}
        for _ in range(100):  # pages: a few types in a few zones fit in one
            resp = ec2_client.describe_instance_type_offerings(
                LocationType="availability-zone",
                Filters=[{"Name": "location", "Values": list(all_zones)},
                         {"Name": "instance-type", "Values": types}], **token)
            offered |= {(o["InstanceType"], o.get("Location", spec.aws.availability_zone))
                        for o in resp.get("InstanceTypeOfferings", [])}
            if not resp.get("NextToken"):
                break
            token = {"NextToken": resp["NextToken"]}
    except Exception as exc:  # botocore raises many types: credentials, endpoint, throttling
        reason = " ".join(str(exc).split())[:300]
        return [Problem("aws", f"cannot query EC2 offerings in {spec.aws.region}: {exc.__class__.__name__}: {reason} "
                               "(check the credentials, the endpoint (AWS_ENDPOINT_URL) and ec2:DescribeInstanceType"
                               "Offerings permission)")]
    for name, pool in spec.pools.items():
        if pool.aws is None:
            continue
        missing = [z for z in pool_zones[name] if (pool.aws.instance_type, z) not in offered]
        if missing:
            which = ("availability_zone" if missing[0] == spec.aws.availability_zone
                     else "aws.secondary_availability_zones entry")
            problems.append(Problem(f"pools.{name}.aws.instance_type",
                                    f"{pool.aws.instance_type} is not offered in {', '.join(missing)}: "
                                    f"pick another {which} or instance type"))
    return problems


@rule("aws.zones", requires=("aws.sections",))
def zones(spec: Spec) -> Iterator[Problem]:
    """aws.secondary_availability_zones are zones of aws.region, each listed once, none the primary zone."""
    if spec.platform != "aws" or spec.aws is None:
        return
    a = spec.aws
    seen = {a.availability_zone}
    for i, az in enumerate(a.secondary_availability_zones):
        path = f"aws.secondary_availability_zones.{i}"
        if not az.startswith(a.region) or az[len(a.region):] not in "abcdefghijklmnopqrstuvwxyz" \
                or len(az) != len(a.region) + 1:
            yield Problem(path, f"{az} is not a zone of region {a.region} (e.g. {a.region}b)")
        elif az in seen:
            yield Problem(path, f"{az} is listed twice (or is aws.availability_zone): list each other zone once")
        seen.add(az)


@rule("aws.gateways-span-zones", requires=("aws.sections",))
def gateways_span_zones(spec: Spec) -> Iterator[Problem]:
    """On AWS a gateway pool of two or more hosts spans two zones: set aws.secondary_availability_zones."""
    if spec.platform != "aws" or spec.aws is None or spec.aws.secondary_availability_zones:
        return
    for name, pool in spec.pools.items():
        if pool.role == "gateway" and pool.count >= 2:
            yield Problem("aws.secondary_availability_zones",
                          f"missing: pool {name} has {pool.count} gateways, all in {spec.aws.availability_zone}; "
                          "list a second zone so that one zone's outage leaves a gateway")


@rule("aws.reserved-addresses", requires=("aws.sections",))
def reserved_addresses(spec: Spec) -> Iterator[Problem]:
    """On AWS no planned address is one AWS reserves (a subnet's first four and its last): every VLAN
    keeps 3 or more reserved addresses, and the inference VLAN of a stack with a gateway 4 or more (its
    last reserved address is the internal NLB's)."""
    if spec.platform != "aws" or spec.aws is None:
        return
    entry = bool(aws_zones.entry_zones(spec))
    for role, vlan in spec.fabric.vlans.items():
        if role == "inference" and entry and vlan.reserved < aws_zones.MIN_RESERVED_ENTRY:
            yield Problem(f"fabric.vlans.{role}.reserved",
                          f"{vlan.reserved}: AWS reserves the first {aws_zones.MIN_RESERVED} host addresses of "
                          "every subnet and the internal NLB takes the last reserved one: use "
                          f"{aws_zones.MIN_RESERVED_ENTRY} or more")
        elif vlan.reserved < aws_zones.MIN_RESERVED:
            yield Problem(f"fabric.vlans.{role}.reserved",
                          f"{vlan.reserved}: AWS reserves the first {aws_zones.MIN_RESERVED} host addresses of "
                          f"every subnet, where hosts would be numbered: use {aws_zones.MIN_RESERVED} or more")


@rule("aws.capacity-reservation")
def capacity_reservation(spec: Spec) -> Iterator[Problem]:
    """A pool's capacity mode and capacity_reservation_id agree: odcr and capacity-block name a reservation,
    on-demand names none."""
    for name, pool in _ec2_pools(spec):
        assert pool.aws is not None
        if pool.aws.capacity != "on-demand" and pool.aws.capacity_reservation_id is None:
            yield Problem(f"pools.{name}.aws.capacity_reservation_id",
                          f"missing: capacity '{pool.aws.capacity}' launches into a reservation: give its id (cr-...)")
        if pool.aws.capacity == "on-demand" and pool.aws.capacity_reservation_id is not None:
            yield Problem(f"pools.{name}.aws.capacity",
                          "a capacity_reservation_id is set but capacity is 'on-demand': set capacity to 'odcr' or "
                          "'capacity-block' (reservations drop the placement group)")


@rule("aws.efa-supported")
def efa_supported(spec: Spec) -> Iterator[Problem]:
    """With aws.efa, every GPU pool of two or more nodes uses an instance type that has EFA."""
    if spec.platform != "aws" or spec.aws is None or not spec.aws.efa:
        return
    for name, pool in _ec2_pools(spec):
        assert pool.aws is not None
        it = INSTANCE_TYPES.get(pool.aws.instance_type)
        if pool.role == "gpu" and it is not None and it.efa_interfaces == 0 and pool.count >= 2:
            yield Problem(f"pools.{name}.aws.instance_type",
                          f"{it.name} has no EFA but aws.efa is true: pick an EFA type or set aws.efa to false")


@rule("aws.eks-zones", requires=("aws.sections",))
def eks_zones(spec: Spec) -> Iterator[Problem]:
    """EKS needs subnets in two zones: aws.eks needs aws.secondary_availability_zones."""
    if spec.platform == "aws" and spec.aws is not None and spec.aws.eks is not None \
            and not spec.aws.secondary_availability_zones:
        yield Problem("aws.secondary_availability_zones",
                      "missing: an EKS control plane needs subnets in two availability zones")


def _internet_flows(spec: Spec) -> Iterator[tuple[int, str, str]]:
    """(index, flow name, source zone) of the flows from a host zone to a zone with public addresses."""
    import netaddr

    private = netaddr.IPSet(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])
    for i, f in enumerate(spec.flows):
        src, dst = spec.zones.get(f.from_), spec.zones.get(f.to)
        if src is not None and dst is not None and src.pools and dst.cidrs \
                and not netaddr.IPSet(dst.cidrs).issubset(private):
            yield i, f.name, f.from_


@rule("aws.nat-public-subnet", requires=("aws.sections",))
def nat_public_subnet(spec: Spec) -> Iterator[Problem]:
    """A flow from the cluster to public addresses goes through a NAT gateway, which needs aws.public_subnet."""
    if spec.platform != "aws" or spec.aws is None:
        return
    found = list(_internet_flows(spec))
    if found and spec.aws.public_subnet is None:
        i, name, _ = found[0]
        yield Problem("aws.public_subnet", f"missing: flow {name} (flows.{i}) reaches public addresses, which "
                      "needs a NAT gateway in a public subnet: give one (a /28 of site.supernet outside the VLANs)")
    if spec.aws.public_subnet is not None:
        import netaddr

        if netaddr.IPNetwork(spec.aws.public_subnet) not in netaddr.IPNetwork(spec.site.supernet):
            yield Problem("aws.public_subnet", f"{spec.aws.public_subnet} is outside site.supernet "
                          f"{spec.site.supernet} (the VPC)")


@rule("aws.no-internet-from-gpu")
def no_internet_from_gpu(spec: Spec) -> Iterator[Problem]:
    """GPU and storage pools never reach the internet: no flow from their zones to public addresses."""
    if spec.platform != "aws":
        return
    for i, name, src in _internet_flows(spec):
        roles = {spec.pools[p].role for p in spec.zones[src].pools if p in spec.pools}
        if roles & {"gpu", "storage"}:
            yield Problem(f"flows.{i}.to", f"flow {name} lets zone {src} (GPU/storage nodes) reach public addresses; "
                          "they reach AWS through VPC endpoints only")
