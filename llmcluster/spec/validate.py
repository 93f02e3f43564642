"""Layer 2: whole-spec validation (cross-field and cross-section rules).

``validate_spec(spec)`` returns every problem it finds (it does not stop at the first),
each with the key path to change and the fix. It runs the pure planners that can reject
a spec (IP plan for address exhaustion, capacity for model fit) so that ``validate``
catches everything ``plan`` would.
"""

from __future__ import annotations

from collections import Counter

import netaddr

from llmcluster.errors import InfeasibleError, PlanError, Problem
from llmcluster.plan.aws_instances import INSTANCE_TYPES
from llmcluster.plan.storage import RAID_MIN_DRIVES
from llmcluster.spec.loader import did_you_mean
from llmcluster.spec.models import Spec


def validate_spec(spec: Spec) -> list[Problem]:
    problems: list[Problem] = []
    for check in (_fabric, _qos, _pools, _platform, _zones_and_flows, _storage, _pki, _serving, _lab, _switches,
                  _switch_access, _nvidia):
        problems.extend(check(spec))
    if not any(p.path.startswith(("fabric.vlans", "site.supernet", "pools")) for p in problems):
        problems.extend(_addresses(spec))
    return problems


# --------------------------------------------------------------------------- fabric


def _fabric(spec: Spec) -> list[Problem]:
    out: list[Problem] = []
    ids = Counter(v.id for _, v in spec.fabric.vlans.items())
    for role, vlan in spec.fabric.vlans.items():
        if ids[vlan.id] > 1:
            others = [r for r, v in spec.fabric.vlans.items() if v.id == vlan.id and r != role]
            out.append(
                Problem(
                    f"fabric.vlans.{role}.id",
                    f"VLAN id {vlan.id} is also used by {', '.join(others)}: VLAN ids must be unique",
                )
            )
        if vlan.mtu > spec.fabric.mtu:
            out.append(
                Problem(
                    f"fabric.vlans.{role}.mtu", f"{vlan.mtu} exceeds the fabric port MTU {spec.fabric.mtu} (fabric.mtu)"
                )
            )
        if vlan.subnet is not None and netaddr.IPNetwork(vlan.subnet) not in netaddr.IPNetwork(spec.site.supernet):
            out.append(
                Problem(f"fabric.vlans.{role}.subnet", f"{vlan.subnet} is outside site.supernet {spec.site.supernet}")
            )
    rdma = spec.fabric.vlans.rdma
    if rdma is not None and rdma.mtu < 4200:
        out.append(
            Problem(
                "fabric.vlans.rdma.mtu", f"{rdma.mtu} is below 4200: RoCEv2 needs a 4096-byte RDMA MTU plus headers"
            )
        )
    for role in ("storage_public", "storage_cluster"):
        v = spec.fabric.vlans.get(role)
        if v is not None and v.mtu < 9000 and spec.platform == "baremetal":
            out.append(
                Problem(
                    f"fabric.vlans.{role}.mtu",
                    f"{v.mtu}: storage VLANs run jumbo frames (9000) to load model weights at line rate",
                )
            )
    return out


def _qos(spec: Spec) -> list[Problem]:
    classes = spec.fabric.qos.classes
    if classes is None:
        return []
    out: list[Problem] = []
    base = "fabric.qos.classes"
    for attr in ("name", "dscp"):
        counts = Counter(getattr(c, attr) for c in classes)
        for i, c in enumerate(classes):
            if counts[getattr(c, attr)] > 1:
                out.append(Problem(f"{base}.{i}.{attr}", f"{getattr(c, attr)!r} is used by more than one class"))
    by_traffic = {c.traffic: (i, c) for i, c in enumerate(classes)}
    lossless_pcps = {c.pcp for c in classes if c.lossless}
    if len(lossless_pcps) > 2:
        out.append(
            Problem(
                base,
                f"{len(lossless_pcps)} lossless priorities: switch buffers support at most 2 "
                "PFC priorities; keep only RoCE lossless",
            )
        )
    for i, c in enumerate(classes):
        if c.lossless and c.traffic != "roce":
            out.append(
                Problem(
                    f"{base}.{i}.lossless",
                    f"class {c.name} ({c.traffic}) cannot be lossless: PFC is only for RoCE traffic",
                )
            )
        if c.traffic == "cnp" and c.lossless:
            out.append(Problem(f"{base}.{i}.lossless", "CNP must not be lossless (it is strict priority)"))
    if spec.fabric.vlans.rdma is not None:
        for need in ("roce", "cnp"):
            if need not in by_traffic:
                out.append(
                    Problem(
                        base,
                        f"no '{need}' class: the rdma VLAN needs RoCE (DSCP 26, lossless) and CNP (DSCP 48) classes",
                    )
                )
        if "roce" in by_traffic and not by_traffic["roce"][1].lossless:
            out.append(Problem(f"{base}.{by_traffic['roce'][0]}.lossless", "the RoCE class must be lossless (PFC)"))
    if "inference" in by_traffic and "storage" in by_traffic:
        (ii, inf), (_, sto) = by_traffic["inference"], by_traffic["storage"]
        if inf.pcp <= sto.pcp:
            out.append(
                Problem(
                    f"{base}.{ii}.pcp", f"inference priority {inf.pcp} must be above bulk storage priority {sto.pcp}"
                )
            )
    total = sum(c.bandwidth_percent for c in classes)
    if total > 100:
        out.append(Problem(base, f"bandwidth_percent adds up to {total}: at most 100"))
    return out


# --------------------------------------------------------------------------- pools


def _pools(spec: Spec) -> list[Problem]:
    from llmcluster.plan.catalog import GPUS

    out: list[Problem] = []
    declared = {r for r, _ in spec.fabric.vlans.items()}
    prefixes: dict[str, str] = {}
    for name, pool in spec.pools.items():
        base = f"pools.{name}"
        prefix = spec.hostname_prefix(name)
        if prefix in prefixes:
            out.append(
                Problem(
                    f"{base}.hostname_prefix",
                    f"'{prefix}' is also the prefix of pool {prefixes[prefix]}: host names would clash",
                )
            )
        prefixes[prefix] = name
        if "mgmt" not in pool.vlans:
            out.append(Problem(f"{base}.vlans", "must include 'mgmt' (every host is managed over it)"))
        for i, role in enumerate(pool.vlans):
            if role not in declared:
                out.append(Problem(f"{base}.vlans.{i}", f"VLAN '{role}' is not declared in fabric.vlans"))
        if len(set(pool.vlans)) != len(pool.vlans):
            out.append(Problem(f"{base}.vlans", "lists a VLAN twice"))
        if pool.role == "gpu" and pool.gpu is None:
            out.append(Problem(f"{base}.gpu", "missing: a pool with role 'gpu' needs gpu.model and gpu.count"))
        if pool.role != "gpu" and pool.gpu is not None:
            out.append(Problem(f"{base}.gpu", f"only pools with role 'gpu' have GPUs (this one is '{pool.role}')"))
        if pool.gpu is not None:
            if pool.gpu.model not in GPUS:
                out.append(
                    Problem(
                        f"{base}.gpu.model",
                        f"unknown GPU '{pool.gpu.model}'"
                        f"{did_you_mean(pool.gpu.model, GPUS)} (known: {', '.join(sorted(GPUS))})",
                    )
                )
            else:
                g = GPUS[pool.gpu.model]
                if pool.gpu.nvswitch and g.nvlink_domain < 2:
                    out.append(Problem(f"{base}.gpu.nvswitch", f"{pool.gpu.model} has no NVLink/NVSwitch"))
                if pool.gpu.nvswitch and pool.gpu.count < 4:
                    out.append(
                        Problem(
                            f"{base}.gpu.nvswitch", f"NVSwitch systems (HGX) have 4 or 8 GPUs, not {pool.gpu.count}"
                        )
                    )
        for i, nic in enumerate(pool.nics):
            for j, role in enumerate(nic.vlans):
                if role not in pool.vlans:
                    out.append(
                        Problem(
                            f"{base}.nics.{i}.vlans.{j}",
                            f"VLAN '{role}' is not one of the pool's vlans ({', '.join(pool.vlans)})",
                        )
                    )
        if pool.bmc and spec.fabric.vlans.oob is None and spec.platform != "aws":  # aws: see _platform
            out.append(Problem(f"{base}.bmc", "BMCs live on the oob VLAN: declare fabric.vlans.oob"))
    if not any(p.role == "gpu" for p in spec.pools.values()):
        out.append(Problem("pools", "no pool with role 'gpu': a serving cluster needs GPU nodes"))
    return out


def _platform(spec: Spec) -> list[Problem]:
    out: list[Problem] = []
    if spec.platform == "aws":
        if spec.aws is None:
            out.append(Problem("aws", "missing: platform 'aws' needs llmcluster:aws (region, availability_zone)"))
        if spec.baremetal is not None:
            out.append(Problem("baremetal", "only valid with platform 'baremetal' (this stack is 'aws')"))
        for name, pool in spec.pools.items():
            base = f"pools.{name}"
            if pool.aws is None:
                out.append(Problem(f"{base}.aws", "missing: on platform 'aws' every pool needs aws.instance_type"))
                continue
            if pool.bmc:
                out.append(Problem(f"{base}.bmc", "EC2 instances have no BMC: remove it"))
            it = INSTANCE_TYPES.get(pool.aws.instance_type)
            if pool.role == "gpu":
                if it is None:
                    out.append(
                        Problem(
                            f"{base}.aws.instance_type",
                            f"'{pool.aws.instance_type}' is not a known GPU instance type"
                            f"{did_you_mean(pool.aws.instance_type, INSTANCE_TYPES)} "
                            f"(known: {', '.join(sorted(INSTANCE_TYPES))})",
                        )
                    )
                elif pool.gpu is not None and (pool.gpu.model != it.gpu or pool.gpu.count != it.gpus):
                    out.append(
                        Problem(
                            f"{base}.gpu", f"{it.name} has {it.gpus}x {it.gpu}, not {pool.gpu.count}x {pool.gpu.model}"
                        )
                    )
            elif it is not None:
                out.append(
                    Problem(
                        f"{base}.aws.instance_type",
                        f"{it.name} is a GPU instance: use a CPU type for a '{pool.role}' pool",
                    )
                )
    else:
        if spec.aws is not None:
            out.append(Problem("aws", "only valid with platform 'aws' (this stack is 'baremetal')"))
        for name, pool in spec.pools.items():
            if pool.aws is not None:
                out.append(Problem(f"pools.{name}.aws", "only valid with platform 'aws'"))
    return out


# --------------------------------------------------------------------------- lab


def lab_host_names(spec: Spec) -> dict[str, str]:
    """Host name -> pool name, as the IP plan names them (``<prefix>-<index>``)."""
    from llmcluster.plan.ipam import hostname

    return {
        hostname(spec.hostname_prefix(pool_name), i, pool.count): pool_name
        for pool_name, pool in spec.pools.items()
        for i in range(1, pool.count + 1)
    }


def _lab(spec: Spec) -> list[Problem]:
    lab = spec.lab
    if lab is None:
        return []
    if spec.platform != "baremetal":
        return [Problem("lab", f"only valid with platform 'baremetal' (this stack is '{spec.platform}'): "
                               "the lab stands in for bare-metal racks")]
    out: list[Problem] = []
    for pool_name, entry in lab.pools.items():
        if pool_name not in spec.pools:
            out.append(Problem(f"lab.pools.{pool_name}",
                               f"unknown pool{did_you_mean(pool_name, spec.pools)} (known: {', '.join(spec.pools)})"))
        elif entry.network == "tagged" and entry.kind != "vm":
            out.append(Problem(f"lab.pools.{pool_name}.network",
                               "'tagged' needs kind 'vm': only a VM has 802.1Q subinterfaces in the lab"))
    names = lab_host_names(spec)
    for host, entry in lab.hosts.items():
        if host not in names:
            known = ", ".join(sorted(names)[:12]) + (", ..." if len(names) > 12 else "")
            out.append(Problem(f"lab.hosts.{host}", f"unknown host{did_you_mean(host, names)} (known: {known})"))
        elif entry.network == "tagged" and entry.kind != "vm":
            out.append(Problem(f"lab.hosts.{host}.network",
                               "'tagged' needs kind 'vm': only a VM has 802.1Q subinterfaces in the lab"))
    return out


# --------------------------------------------------------------------------- zones and flows


def _zones_and_flows(spec: Spec) -> list[Problem]:
    out: list[Problem] = []
    member: dict[str, str] = {}
    for zname, zone in spec.zones.items():
        for i, p in enumerate(zone.pools):
            if p not in spec.pools:
                out.append(Problem(f"zones.{zname}.pools.{i}", f"unknown pool '{p}'{did_you_mean(p, spec.pools)}"))
            elif p in member:
                out.append(
                    Problem(
                        f"zones.{zname}.pools.{i}",
                        f"pool '{p}' is already in zone '{member[p]}': a pool belongs to one zone",
                    )
                )
            else:
                member[p] = zname
    for p in spec.pools:
        if p not in member:
            out.append(
                Problem(f"pools.{p}", "is in no zone: add it to one of zones.*.pools so the firewall knows its policy")
            )
    names = Counter(f.name for f in spec.flows)
    for i, f in enumerate(spec.flows):
        base = f"flows.{i}"
        if names[f.name] > 1:
            out.append(Problem(f"{base}.name", f"flow name '{f.name}' is used more than once"))
        for attr, key in (("from_", "from"), ("to", "to")):
            z = getattr(f, attr)
            if z not in spec.zones:
                out.append(Problem(f"{base}.{key}", f"unknown zone '{z}'{did_you_mean(z, spec.zones)}"))
        if f.to in spec.zones and spec.zones[f.to].cidrs:
            out.append(
                Problem(f"{base}.to", f"zone '{f.to}' is an external network: flows may only end on cluster hosts")
            )
        if spec.fabric.vlans.get(f.vlan) is None:
            out.append(Problem(f"{base}.vlan", f"VLAN '{f.vlan}' is not declared in fabric.vlans"))
            continue
        for attr in ("from_", "to"):
            z = spec.zones.get(getattr(f, attr))
            if z is None:
                continue
            for p in z.pools:
                if p in spec.pools and f.vlan not in spec.pools[p].vlans:
                    out.append(
                        Problem(
                            f"{base}.vlan",
                            f"pool '{p}' (zone '{getattr(f, attr)}') is not on VLAN "
                            f"'{f.vlan}': add it to pools.{p}.vlans or change the flow",
                        )
                    )
    return out


# --------------------------------------------------------------------------- storage


def _storage(spec: Spec) -> list[Problem]:
    out: list[Problem] = []
    raid = spec.storage.raid
    if raid is not None:
        pool = spec.pools.get(raid.pool)
        if pool is None:
            out.append(Problem("storage.raid.pool", f"unknown pool '{raid.pool}'{did_you_mean(raid.pool, spec.pools)}"))
        elif pool.nvme is None or pool.nvme.count == 0:
            out.append(Problem("storage.raid.pool", f"pool '{raid.pool}' has no NVMe drives (pools.{raid.pool}.nvme)"))
        else:
            drives = raid.drives or pool.nvme.count
            if drives > pool.nvme.count:
                out.append(
                    Problem(
                        "storage.raid.drives", f"{drives} drives but pools.{raid.pool}.nvme.count is {pool.nvme.count}"
                    )
                )
            need = RAID_MIN_DRIVES[raid.level]
            if drives < need:
                out.append(
                    Problem("storage.raid.drives", f"RAID {raid.level} needs at least {need} drives, not {drives}")
                )
            if raid.level == 10 and drives % 2:
                out.append(Problem("storage.raid.drives", f"RAID 10 needs an even number of drives, not {drives}"))
    ceph = spec.storage.ceph
    if ceph is not None:
        pool = spec.pools.get(ceph.pool)
        if pool is None:
            out.append(Problem("storage.ceph.pool", f"unknown pool '{ceph.pool}'{did_you_mean(ceph.pool, spec.pools)}"))
        else:
            if pool.nvme is None or pool.nvme.count == 0:
                out.append(Problem("storage.ceph.pool", f"pool '{ceph.pool}' has no drives for OSDs"))
            for role in ("storage_public", "storage_cluster"):
                if spec.fabric.vlans.get(role) is None:
                    out.append(Problem(f"fabric.vlans.{role}", f"missing: Ceph needs a {role} VLAN"))
                elif role not in pool.vlans:
                    out.append(Problem(f"pools.{ceph.pool}.vlans", f"Ceph hosts must be on the {role} VLAN"))
            max_size = max(p.size for p in ceph.pools)
            osds = pool.count * (pool.nvme.count if pool.nvme else 0) * ceph.osds_per_drive
            if ceph.failure_domain == "osd" and osds < max_size:
                out.append(Problem("storage.ceph.pool", f"{osds} OSDs cannot hold {max_size} replicas"))
            if ceph.failure_domain == "host" and pool.count < max_size:
                out.append(
                    Problem(
                        "storage.ceph.pool",
                        f"{pool.count} hosts cannot hold {max_size} replicas on "
                        f"separate hosts: set pools.{ceph.pool}.count >= {max_size}",
                    )
                )
            out.extend(_ceph_bandwidth(spec, ceph.pool, max_size))
        names = Counter(p.name for p in ceph.pools)
        for i, p in enumerate(ceph.pools):
            base = f"storage.ceph.pools.{i}"
            if names[p.name] > 1:
                out.append(Problem(f"{base}.name", f"Ceph pool '{p.name}' is declared twice"))
            if p.min_size > p.size:
                out.append(Problem(f"{base}.min_size", f"{p.min_size} is above size {p.size}"))
            if not ceph.allow_reduced_redundancy:
                if p.size < 3:
                    out.append(
                        Problem(
                            f"{base}.size",
                            f"{p.size} < 3 replicas: set size 3, or "
                            "storage.ceph.allow_reduced_redundancy: true (not for production)",
                        )
                    )
                if p.min_size < 2:
                    out.append(
                        Problem(
                            f"{base}.min_size",
                            f"{p.min_size} < 2 accepts writes on one copy: set 2, or "
                            "storage.ceph.allow_reduced_redundancy: true",
                        )
                    )
        total = sum(p.percent_data for p in ceph.pools)
        if total > 100:
            out.append(Problem("storage.ceph.pools", f"percent_data adds up to {total}: at most 100"))
    return out


def _ceph_bandwidth(spec: Spec, pool_name: str, replicas: int) -> list[Problem]:
    pool = spec.pools[pool_name]
    speed = {"storage_public": 0, "storage_cluster": 0}
    for nic in pool.nics:
        for role in speed:
            if role in nic.vlans:
                speed[role] += nic.speed_gbps * nic.count
    if not speed["storage_public"] or not speed["storage_cluster"]:
        return []
    # Each client write is sent on by the primary to the other replicas and recovery shares the
    # same links: the cluster network needs public bandwidth x replicas (DESIGN section 6).
    if speed["storage_cluster"] < speed["storage_public"] * replicas:
        return [
            Problem(
                f"pools.{pool_name}.nics",
                f"cluster network {speed['storage_cluster']} Gb/s is below public {speed['storage_public']} "
                f"Gb/s x {replicas} replicas: replication and recovery would throttle clients",
            )
        ]
    return []


# --------------------------------------------------------------------------- PKI


def _pki(spec: Spec) -> list[Problem]:
    pki = spec.pki
    out: list[Problem] = []
    if pki.algorithm == "RSA" and not pki.allow_rsa:
        out.append(
            Problem(
                "pki.algorithm", "RSA is not the default (ECDSA P-256): set pki.allow_rsa: true to use it deliberately"
            )
        )
    if pki.min_tls_version == "1.2" and not pki.allow_tls12:
        out.append(
            Problem(
                "pki.min_tls_version",
                "TLS 1.2 is below the TLS 1.3 default: set pki.allow_tls12: true to allow it deliberately",
            )
        )
    if pki.intermediate_validity_days >= pki.root_validity_days:
        out.append(
            Problem(
                "pki.intermediate_validity_days",
                f"{pki.intermediate_validity_days} must be shorter than root_validity_days {pki.root_validity_days}",
            )
        )
    if pki.leaf_validity_days >= pki.intermediate_validity_days:
        out.append(
            Problem(
                "pki.leaf_validity_days",
                f"{pki.leaf_validity_days} must be shorter than "
                f"intermediate_validity_days {pki.intermediate_validity_days}",
            )
        )
    return out


# --------------------------------------------------------------------------- serving


def _serving(spec: Spec) -> list[Problem]:
    from llmcluster.plan.capacity import size_deployment
    from llmcluster.plan.catalog import GPUS, MODELS, PRECISIONS

    s = spec.serving
    out: list[Problem] = []
    pool = spec.pools.get(s.pool)
    if pool is None:
        out.append(Problem("serving.pool", f"unknown pool '{s.pool}'{did_you_mean(s.pool, spec.pools)}"))
    elif pool.role != "gpu":
        out.append(Problem("serving.pool", f"pool '{s.pool}' has role '{pool.role}': serve from a 'gpu' pool"))
    elif "inference" not in pool.vlans:
        out.append(Problem(f"pools.{s.pool}.vlans", "serving nodes must be on the inference VLAN"))
    if s.model not in MODELS:
        out.append(
            Problem(
                "serving.model",
                f"unknown model '{s.model}'{did_you_mean(s.model, MODELS)} (known: {', '.join(sorted(MODELS))})",
            )
        )
    if s.precision is not None and s.precision not in PRECISIONS:
        out.append(
            Problem(
                "serving.precision",
                f"unknown precision '{s.precision}'"
                f"{did_you_mean(s.precision, PRECISIONS)} "
                f"(known: {', '.join(PRECISIONS)})",
            )
        )
    if s.gateway is not None:
        gw = spec.pools.get(s.gateway.pool)
        if gw is None:
            out.append(
                Problem(
                    "serving.gateway.pool", f"unknown pool '{s.gateway.pool}'{did_you_mean(s.gateway.pool, spec.pools)}"
                )
            )
        elif gw.role != "gateway":
            out.append(Problem("serving.gateway.pool", f"pool '{s.gateway.pool}' has role '{gw.role}', not 'gateway'"))
        elif "inference" not in gw.vlans:
            out.append(Problem(f"pools.{s.gateway.pool}.vlans", "gateway nodes must be on the inference VLAN"))
    if spec.fabric.vlans.inference is None:
        out.append(Problem("fabric.vlans.inference", "missing: serving needs an inference VLAN"))
    if out or pool is None or pool.gpu is None or pool.gpu.model not in GPUS:  # unknown GPU: see _pools
        return out
    try:
        cap = size_deployment(
            model=s.model,
            gpu=pool.gpu.model,
            precision=s.precision,
            context=s.context,
            concurrency=s.concurrency,
            gpus_per_node=pool.gpu.count,
            kv_dtype=s.kv_dtype,
        )
    except InfeasibleError as exc:
        return [Problem("serving", str(exc))]
    need = cap.nodes * s.replicas
    if need > pool.count:
        out.append(
            Problem(
                f"pools.{s.pool}.count",
                f"{pool.count} nodes cannot serve {s.replicas} replica(s) of {s.model} {cap.precision}: "
                f"each needs {cap.nodes} node(s) of {pool.gpu.count}x {pool.gpu.model} "
                f"(tp={cap.tp}, pp={cap.pp}); set count >= {need} or lower serving.replicas/context",
            )
        )
    if pool.gpu.count % cap.tp:
        out.append(
            Problem(
                "serving", f"tensor parallel size {cap.tp} does not divide pools.{s.pool}.gpu.count {pool.gpu.count}"
            )
        )
    return out


# --------------------------------------------------------------------------- NVIDIA stack


def _nvidia(spec: Spec) -> list[Problem]:
    from llmcluster.plan.catalog import GPUS
    from llmcluster.plan.nvidia import MIN_BRANCH_FOR_ARCH, MIN_DRIVER_BRANCH, driver_branch

    out: list[Problem] = []
    for name, pool in spec.pools.items():
        if pool.gpu is None or pool.gpu.model not in GPUS:  # see _pools
            continue
        base = f"pools.{name}.gpu"
        g = GPUS[pool.gpu.model]
        v = pool.gpu.driver_version
        if v is None:
            if spec.platform == "baremetal":
                out.append(Problem(f"{base}.driver_version",
                                   "missing: bare-metal GPU nodes get exactly this driver (e.g. '570.172.08')"))
            continue
        branch = driver_branch(v)
        floor = max(MIN_DRIVER_BRANCH, MIN_BRANCH_FOR_ARCH.get(g.arch, 0))
        if branch < floor:
            out.append(Problem(f"{base}.driver_version",
                               f"branch {branch} is too old for {pool.gpu.model} ({g.arch}): use {floor} or newer"))
        if g.arch == "blackwell" and pool.gpu.driver_flavor == "proprietary":
            out.append(Problem(f"{base}.driver_flavor",
                               f"{pool.gpu.model} ({g.arch}) runs only the open kernel modules: use 'open' or 'auto'"))
    n = spec.nvidia
    if n.trtllm.install == "container" and n.container_runtime == "none":
        out.append(Problem("nvidia.trtllm.install", "'container' needs a container runtime: "
                           "set nvidia.container_runtime to containerd or docker"))
    for key in ("cuda_repo", "toolkit_repo"):
        r = getattr(n, key)
        if r.url is not None and (r.key_url is None or r.key_fingerprint is None):
            out.append(Problem(f"nvidia.{key}",
                               "a repository url needs its key_url and key_fingerprint (the roles check the key)"))
    return out


# --------------------------------------------------------------------------- switches


def _switches(spec: Spec) -> list[Problem]:
    """Leaf/spine topology and ``baremetal.port_map`` (unknown switch/host/NIC, VLANs, duplicates).

    The rules live next to the planner that relies on them (:mod:`llmcluster.plan.switches`).
    """
    from llmcluster.plan.switches import switch_problems

    return switch_problems(spec)


def _switch_access(spec: Spec) -> list[Problem]:
    """``baremetal.switch_mgmt`` / ``switch_access`` / ``switch_apply`` (pushing configs to switches).

    Management addresses belong to known switches, sit on the out-of-band VLAN (``oob``, else
    ``mgmt``) and collide with nothing the IP plan hands out; ``push`` needs one per switch.
    """
    from llmcluster.plan.ipam import build_ip_plan
    from llmcluster.plan.switches import leaf_names, spine_names

    bm = spec.baremetal
    if spec.platform != "baremetal" or bm is None:
        return []
    out: list[Problem] = []
    switches = leaf_names(bm.leaf_switches) + spine_names(bm.spine_switches)
    known = ", ".join(switches[:8]) + (", ..." if len(switches) > 8 else "")
    for key, what in (("switch_mgmt", bm.switch_mgmt), ("switch_access.host_keys", bm.switch_access.host_keys)):
        for name in what:
            if name not in switches:
                out.append(Problem(f"baremetal.{key}.{name}",
                                   f"unknown switch{did_you_mean(name, switches)} (this fabric has {known})"))
    if bm.switch_apply == "push":
        missing = [s for s in switches if s not in bm.switch_mgmt]
        if missing:
            more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
            out.append(Problem("baremetal.switch_mgmt",
                               f"switch_apply 'push' needs the management address of every switch: missing "
                               f"{', '.join(missing[:6])}{more} (or use switch_apply 'render-only')"))
    if not bm.switch_mgmt:
        return out
    role = "oob" if spec.fabric.vlans.oob is not None else "mgmt"
    try:
        ip = build_ip_plan(spec)
    except PlanError:
        return out  # the address layer reports why the plan cannot be built
    vlan = ip.vlans[role]
    net = netaddr.IPNetwork(vlan.cidr)
    taken: dict[str, str] = {vlan.gateway: "the VLAN's gateway"}
    if bm.spine_switches == 2:
        for k, sp in enumerate(spine_names(2), start=1):
            taken[str(netaddr.IPAddress(net.first + 2 + k))] = f"{sp}'s own SVI address on the MLAG pair"
    for name, addr in ip.vips.items():
        taken[addr] = f"the {name} VIP"
    for h in ip.hosts:
        if h.addresses.get(role):
            taken[h.addresses[role]] = f"host {h.name}"
        if role == "oob" and h.bmc:
            taken[h.bmc] = f"the BMC of {h.name}"
    seen: dict[str, str] = {}
    for name, addr in bm.switch_mgmt.items():
        path = f"baremetal.switch_mgmt.{name}"
        a = netaddr.IPAddress(addr)
        if a not in net:
            out.append(Problem(path, f"{addr} is outside the {role} VLAN {vlan.cidr}: switch management addresses "
                                     f"live on the {'out-of-band' if role == 'oob' else 'management'} VLAN"))
        elif a in (net.network, net.broadcast):
            out.append(Problem(path, f"{addr} is the {'network' if a == net.network else 'broadcast'} address "
                                     f"of {vlan.cidr}"))
        elif addr in taken:
            first = netaddr.IPAddress(vlan.reserved_first) + 1
            out.append(Problem(path, f"{addr} is already {taken[addr]}: pick a free address, e.g. in the "
                                     f"reserved range after the gateway ({first}-{vlan.reserved_last})"))
        elif addr in seen:
            out.append(Problem(path, f"{addr} is also the address of {seen[addr]}"))
        seen.setdefault(addr, name)
    return out


# --------------------------------------------------------------------------- addresses


def _addresses(spec: Spec) -> list[Problem]:
    from llmcluster.plan.ipam import build_ip_plan

    try:
        build_ip_plan(spec)
    except PlanError as exc:
        return [exc.problem]
    return []
