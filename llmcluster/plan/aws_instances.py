"""AWS EC2 GPU instance types llmcluster knows how to place (pure data).

Numbers from the AWS EC2 accelerated-computing instance type pages (GPU count and
model, instance-store NVMe drives, EFA interfaces, network bandwidth). A GPU pool on
``platform: aws`` must use one of these; CPU-only pools (gateways) may use any type.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: str  # llmcluster GPU catalog name
    gpus: int
    nvme_drives: int
    nvme_size_gb: int
    efa_interfaces: int
    network_gbps: int


INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in (
        # P5: 8x H100 SXM 80GB, 8x 3.84 TB NVMe, 32 EFA interfaces, 3200 Gbps.
        InstanceType("p5.48xlarge", "h100", 8, 8, 3840, 32, 3200),
        # P5e / P5en: 8x H200 141GB, 8x 3.84 TB NVMe, 3200 Gbps (P5en: EFAv3, 16 interfaces).
        InstanceType("p5e.48xlarge", "h200", 8, 8, 3840, 32, 3200),
        InstanceType("p5en.48xlarge", "h200", 8, 8, 3840, 16, 3200),
        # P6-B200: 8x B200, 8x 3.84 TB NVMe, 3200 Gbps.
        InstanceType("p6-b200.48xlarge", "b200", 8, 8, 3840, 8, 3200),
        # P4d / P4de: 8x A100 40GB / 80GB, 8x 1 TB NVMe, 400 Gbps.
        InstanceType("p4d.24xlarge", "a100-40gb", 8, 8, 1000, 4, 400),
        InstanceType("p4de.24xlarge", "a100-80gb", 8, 8, 1000, 4, 400),
        # G6e: L40S 48GB (PCIe, no NVLink).
        InstanceType("g6e.xlarge", "l40s", 1, 1, 250, 0, 20),
        InstanceType("g6e.2xlarge", "l40s", 1, 1, 450, 0, 20),
        InstanceType("g6e.4xlarge", "l40s", 1, 1, 600, 0, 20),
        InstanceType("g6e.12xlarge", "l40s", 4, 2, 1900, 1, 100),
        InstanceType("g6e.24xlarge", "l40s", 4, 2, 1900, 2, 200),
        InstanceType("g6e.48xlarge", "l40s", 8, 4, 1900, 4, 400),
    )
}
