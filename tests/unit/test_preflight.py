"""Layer 3 (environment preflight). Network probes only ever reach loopback listeners."""

from __future__ import annotations

import socket

import pytest

from llmcluster.validate.preflight import preflight, preflight_aws, preflight_baremetal, tcp_reachable
from tests.conftest import load_spec


@pytest.fixture()
def listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield srv.getsockname()[1]
    srv.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_tcp_reachable_is_a_real_connection(listener):
    assert tcp_reachable("127.0.0.1", listener, 1.0)
    assert not tcp_reachable("127.0.0.1", _closed_port(), 1.0)


def test_baremetal_preflight_reports_each_unreachable_host(listener):
    spec = load_spec("lab")
    closed = _closed_port()
    # Map every planned management address onto loopback: gpu-02 gets a closed port.
    from llmcluster.plan.ipam import build_ip_plan

    ports = {h.mgmt_ip: (closed if h.name == "gpu-02" else listener) for h in build_ip_plan(spec).hosts}

    def probe(address: str, port: int, timeout: float) -> bool:
        assert port == 22
        return tcp_reachable("127.0.0.1", ports[address], timeout)

    problems = preflight_baremetal(spec, probe=probe, timeout=1.0)
    assert [(p.path, p.message.split(" (")[0]) for p in problems] == [("pools.gpu", "host gpu-02")]
    assert "10.42.0.12" in problems[0].message


class _FakeEc2Error:
    def describe_instance_type_offerings(self, **_):
        raise RuntimeError("no credentials")


def test_aws_preflight_without_access_is_a_problem_not_a_crash():
    problems = preflight_aws(load_spec("prod-aws"), ec2_client=_FakeEc2Error())
    assert problems and problems[0].path == "aws" and "no credentials" in problems[0].message


class _FakeEc2Offerings:
    """EC2 that offers every type in ``zones``, in pages of one offering (NextToken)."""

    def __init__(self, zones):
        self.zones, self.calls = zones, []

    def describe_instance_type_offerings(self, Filters, NextToken=None, **_):
        self.calls.append(NextToken)
        values = {f["Name"]: f["Values"] for f in Filters}
        rows = [{"InstanceType": t, "Location": z} for z in values["location"] if z in self.zones
                for t in values["instance-type"]]
        i = int(NextToken or 0)
        return {"InstanceTypeOfferings": rows[i:i + 1], **({"NextToken": str(i + 1)} if i + 1 < len(rows) else {})}


def test_aws_preflight_checks_every_zone_a_pool_lands_in():
    spec = load_spec("prod-aws")  # gateways in us-east-2b and us-east-2c, GPUs in us-east-2b only
    fake = _FakeEc2Offerings({"us-east-2b", "us-east-2c"})
    assert preflight_aws(spec, ec2_client=fake) == []
    assert len(fake.calls) > 1  # every page read
    problems = preflight_aws(spec, ec2_client=_FakeEc2Offerings({"us-east-2b"}))
    assert [(p.path, p.message) for p in problems] == [
        ("pools.gateway.aws.instance_type", "c7i.2xlarge is not offered in us-east-2c: pick another "
                                            "aws.secondary_availability_zones entry or instance type")]
    problems = preflight_aws(spec, ec2_client=_FakeEc2Offerings({"us-east-2c"}))
    assert [p.path for p in problems] == ["pools.gpu.aws.instance_type", "pools.gateway.aws.instance_type"]
    assert "p5en.48xlarge is not offered in us-east-2b: pick another availability_zone" in problems[0].message


def test_aws_preflight_against_the_ec2_api_emulator():
    """moto emulates the EC2 API (with AWS's published offering data) in-process."""
    import boto3
    import moto  # a pinned test dependency: missing is a failure, not a skip

    with moto.mock_aws():
        spec = load_spec("prod-aws")
        client = boto3.client("ec2", region_name=spec.aws.region)
        assert preflight(spec, ec2_client=client) == []
        # In the emulator's offering data eu-west-1 has no P5en (its gateways' C7i is offered).
        from llmcluster.validate import load_stack_file
        from tests.conftest import STACKS

        moved = load_stack_file(STACKS / "Pulumi.prod-aws.yaml",
                                ["aws.region=eu-west-1", "aws.availability_zone=eu-west-1a",
                                 'aws.secondary_availability_zones=["eu-west-1b"]'])
        problems = preflight(moved, ec2_client=boto3.client("ec2", region_name="eu-west-1"))
        assert [p.path for p in problems] == ["pools.gpu.aws.instance_type"]
        assert "p5en.48xlarge is not offered in eu-west-1a" in problems[0].message


def test_preflight_findings_name_their_rules(listener):
    from llmcluster.validate.preflight import preflight_findings

    spec = load_spec("lab")
    closed = _closed_port()

    def probe(address: str, port: int, timeout: float) -> bool:
        return tcp_reachable("127.0.0.1", closed if address == "10.42.0.12" else listener, timeout)

    findings = preflight_findings(spec, probe=probe, timeout=1.0, facts=False)
    assert [(f.rule, f.problem.path) for f in findings] == [("baremetal.hosts-reachable", "pools.gpu")]
    aws = preflight_findings(load_spec("prod-aws"), ec2_client=_FakeEc2Error())
    assert [(f.rule, f.problem.path) for f in aws] == [("aws.instance-types-offered", "aws")]


def test_host_facts_rule_reports_each_difference(monkeypatch):
    """``baremetal.host-facts`` over hosts that answer: the SSH session is stood in for, the comparison is real."""
    from llmcluster.validate import hostfacts as F
    from llmcluster.validate.preflight import preflight_findings

    def gather(host, address, username, **_):
        gpus = {"gpu-01": ("NVIDIA H200",) * 8, "gpu-02": ("NVIDIA H200",) * 7}.get(host, ())
        nvme = {"gpu-01": 4, "gpu-02": 4, "storage-01": 2, "storage-02": 2, "storage-03": 1}.get(host, 0)
        os_id, version, pretty = ("ubuntu", "24.04", "Ubuntu 24.04 LTS") if host == "gw-01" else \
            ("debian", "12", "Debian GNU/Linux 12 (bookworm)")
        return F.HostFacts(host, address, F.GpuReport(gpus, "nvidia-smi"), tuple(f"nvme{i}n1" for i in range(nvme)),
                           os_id, version, pretty)

    monkeypatch.setattr(F, "gather", gather)
    down = "10.42.0.13"  # storage-01 does not answer: no facts are gathered from it
    findings = preflight_findings(load_spec("lab"), probe=lambda address, port, timeout: address != down)
    assert sorted((f.rule, str(f.problem)) for f in findings) == [
        ("baremetal.host-facts", "baremetal.os: gw-01 runs Ubuntu 24.04 LTS (ubuntu 24.04), spec says debian-12"),
        ("baremetal.host-facts", "pools.gpu: gpu-02 has 7 GPUs (NVIDIA H200), spec says 8 h200"),
        ("baremetal.host-facts", "pools.storage: storage-03 has 1 NVMe drives (nvme0n1), spec says 2"),
        ("baremetal.hosts-reachable", "pools.storage: host storage-01 (10.42.0.13) does not answer on tcp/22 "
                                      "within 3s: is it racked, powered and on the mgmt VLAN?"),
    ]
    assert preflight_findings(load_spec("lab"), probe=lambda *_: True, facts=False) == []
