#!/usr/bin/env python3
"""Benchmark: cost of the offline plan as the GPU pool of prod-baremetal or prod-aws grows (8 ... 1024 nodes).

For each size it loads and validates the spec with ``--set pools.gpu.count=N`` (each GPU node on one
data port, ``pools.gpu.nics=[]``, and as many leaves as those ports need: the stack's ten NIC ports
per node fit the L2 leaf-spine fabric only up to about 180 nodes) and runs the
real Pulumi program under mocks (real ECDSA keys and certificates for every node), then
reports wall time, resources registered, time per node and time per resource, and the
ratio of each size's per-node cost to the smallest size's — all in one run, so the ratios
are comparable. Linear growth shows as per-node ratios near 1.0.

``--stack prod-aws``: the AWS backend (VPC, security groups, per GPU node a launch template and an
instance, besides the node's PKI leaf), with one serving replica per node and VLANs of /20 so that
1024 nodes fit the GPU zone's half of each split VLAN. It also reports the resources each added GPU
node costs (``per-node resources``), which the AWS backend keeps constant (<= 8).

    python bench/plan_scaling.py [--stack prod-aws] [--sizes 8,16,...] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmcluster.offline import evaluate
from llmcluster.plan.switches import host_ports_per_leaf, leaf_host_capacity, max_leaves
from llmcluster.spec.loader import parse_stack_file
from llmcluster.validate import load_stack_file

STACK = ROOT / "stacks" / "Pulumi.prod-baremetal.yaml"
AWS_STACK = ROOT / "stacks" / "Pulumi.prod-aws.yaml"


def aws_overrides(nodes: int) -> list[str]:
    """``nodes`` p5en GPU nodes, one replica each (up to 512), VLANs large enough for them in the GPU zone."""
    # serving.replicas is at most 512: past that, the nodes beyond 512 are spares of the pool
    return [f"pools.gpu.count={nodes}", f"serving.replicas={min(nodes, 512)}",
            'fabric.vlans.mgmt={"id": 10, "prefix": 20}', 'fabric.vlans.inference={"id": 20, "prefix": 20}',
            'fabric.vlans.rdma={"id": 40, "prefix": 20, "mtu": 9000}']


def overrides(nodes: int) -> list[str]:
    """``nodes`` GPU nodes on one data port each, and the fewest leaves (at least the stack's 4) they need."""
    base = [f"pools.gpu.count={nodes}", "pools.gpu.nics=[]"]
    spec = parse_stack_file(STACK, base)
    leaves = next(n for n in range(4, max_leaves(2) + 1) if max(host_ports_per_leaf(spec, n)) <= leaf_host_capacity(2))
    return [*base, f"baremetal.leaf_switches={leaves}"]


def run_once(nodes: int, stack: str = "prod-baremetal") -> tuple[float, float, int]:
    aws = stack == "prod-aws"
    sets = aws_overrides(nodes) if aws else overrides(nodes)
    t0 = time.perf_counter()
    spec = load_stack_file(AWS_STACK if aws else STACK, sets)
    t1 = time.perf_counter()
    ev = evaluate(spec)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t0, len(ev.resources)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,16,32,64,128,256,512,1024")
    ap.add_argument("--repeat", type=int, default=3, help="runs per size (the median is reported)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--stack", default="prod-baremetal", choices=["prod-baremetal", "prod-aws"])
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    run_once(sizes[0], args.stack)  # warm-up: imports, first event loop
    for n in sizes:
        runs = [run_once(n, args.stack) for _ in range(args.repeat)]
        validate_s = statistics.median(r[0] for r in runs)
        total_s = statistics.median(r[1] for r in runs)
        resources = runs[0][2]
        rows.append({"gpu_nodes": n, "resources": resources, "validate_s": round(validate_s, 4),
                     "total_s": round(total_s, 4), "ms_per_node": round(1000 * total_s / n, 3),
                     "ms_per_resource": round(1000 * total_s / resources, 4)})
    base = rows[0]["ms_per_node"]
    for prev, r in zip([None, *rows], rows, strict=False):
        r["per_node_ratio"] = round(r["ms_per_node"] / base, 3)
        r["per_node_resources"] = (round((r["resources"] - prev["resources"]) / (r["gpu_nodes"] - prev["gpu_nodes"]), 2)
                                   if prev else None)
    header = f"{'gpu nodes':>9} {'resources':>9} {'validate s':>10} {'total s':>8} {'ms/node':>8} " \
             f"{'ms/resource':>11} {'per-node ratio':>14} {'per-node resources':>18}"
    print(header)
    for r in rows:
        print(f"{r['gpu_nodes']:>9} {r['resources']:>9} {r['validate_s']:>10.3f} {r['total_s']:>8.3f} "
              f"{r['ms_per_node']:>8.2f} {r['ms_per_resource']:>11.3f} {r['per_node_ratio']:>14.2f} "
              f"{'' if r['per_node_resources'] is None else r['per_node_resources']:>18}")
    big, small = rows[-1], rows[0]
    growth = (big["total_s"] / small["total_s"]) / (big["gpu_nodes"] / small["gpu_nodes"])
    print(f"\ntime grows {big['total_s'] / small['total_s']:.1f}x for {big['gpu_nodes'] / small['gpu_nodes']:.0f}x "
          f"the nodes (ratio of ratios {growth:.2f}; 1.0 = linear, fixed costs push it below 1)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "linearity": round(growth, 3)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
