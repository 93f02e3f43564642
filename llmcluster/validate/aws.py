"""AWS rules: the platform's sections, each pool's EC2 instance type; preflight: types offered in the zone."""

from __future__ import annotations

from collections.abc import Iterator

from llmcluster.errors import Problem
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
    """Every pool's instance type is offered in aws.availability_zone (ec2:DescribeInstanceTypeOfferings;
    needs AWS credentials and boto3)."""
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
    problems: list[Problem] = []
    types = sorted({p.aws.instance_type for p in spec.pools.values() if p.aws is not None})
    try:
        resp = ec2_client.describe_instance_type_offerings(
            LocationType="availability-zone",
            Filters=[{"Name": "location", "Values": [spec.aws.availability_zone]},
                     {"Name": "instance-type", "Values": types}],
        )
    except Exception as exc:  # botocore raises many types: credentials, endpoint, throttling
        reason = " ".join(str(exc).split())[:300]
        return [Problem("aws", f"cannot query EC2 offerings in {spec.aws.region}: {exc.__class__.__name__}: {reason} "
                               "(check the credentials, the endpoint (AWS_ENDPOINT_URL) and ec2:DescribeInstanceType"
                               "Offerings permission)")]
    offered = {o["InstanceType"] for o in resp.get("InstanceTypeOfferings", [])}
    for name, pool in spec.pools.items():
        if pool.aws is not None and pool.aws.instance_type not in offered:
            problems.append(Problem(f"pools.{name}.aws.instance_type",
                                    f"{pool.aws.instance_type} is not offered in {spec.aws.availability_zone}: "
                                    "pick another availability_zone or instance type"))
    return problems
