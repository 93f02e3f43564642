"""QoS rules over ``fabric.qos.classes``: unique classes, PFC only for RoCE, priorities, bandwidth."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from llmcluster.errors import Problem
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import rule

BASE = "fabric.qos.classes"


@rule("qos.classes-unique")
def classes_unique(spec: Spec) -> Iterator[Problem]:
    """No two QoS classes share a name or a DSCP value."""
    classes = spec.fabric.qos.classes or ()
    for attr in ("name", "dscp"):
        counts = Counter(getattr(c, attr) for c in classes)
        for i, c in enumerate(classes):
            if counts[getattr(c, attr)] > 1:
                yield Problem(f"{BASE}.{i}.{attr}", f"{getattr(c, attr)!r} is used by more than one class")


@rule("qos.lossless-priorities")
def lossless_priorities(spec: Spec) -> Iterator[Problem]:
    """At most 2 lossless (PFC) priorities: what switch buffers support."""
    classes = spec.fabric.qos.classes or ()
    lossless_pcps = {c.pcp for c in classes if c.lossless}
    if len(lossless_pcps) > 2:
        yield Problem(BASE, f"{len(lossless_pcps)} lossless priorities: switch buffers support at most 2 "
                            "PFC priorities; keep only RoCE lossless")


@rule("qos.lossless-only-roce")
def lossless_only_roce(spec: Spec) -> Iterator[Problem]:
    """Only RoCE traffic is lossless (PFC); CNP is strict priority, never lossless."""
    for i, c in enumerate(spec.fabric.qos.classes or ()):
        if c.lossless and c.traffic != "roce":
            yield Problem(f"{BASE}.{i}.lossless",
                          f"class {c.name} ({c.traffic}) cannot be lossless: PFC is only for RoCE traffic")
        if c.traffic == "cnp" and c.lossless:
            yield Problem(f"{BASE}.{i}.lossless", "CNP must not be lossless (it is strict priority)")


@rule("qos.rdma-classes")
def rdma_classes(spec: Spec) -> Iterator[Problem]:
    """With an rdma VLAN there are a lossless RoCE class and a CNP class."""
    classes = spec.fabric.qos.classes
    if classes is None or spec.fabric.vlans.rdma is None:
        return
    by_traffic = {c.traffic: (i, c) for i, c in enumerate(classes)}
    for need in ("roce", "cnp"):
        if need not in by_traffic:
            yield Problem(BASE, f"no '{need}' class: the rdma VLAN needs RoCE (DSCP 26, lossless) and CNP "
                                "(DSCP 48) classes")
    if "roce" in by_traffic and not by_traffic["roce"][1].lossless:
        yield Problem(f"{BASE}.{by_traffic['roce'][0]}.lossless", "the RoCE class must be lossless (PFC)")


@rule("qos.inference-above-storage")
def inference_above_storage(spec: Spec) -> Iterator[Problem]:
    """The inference class has a higher priority than bulk storage."""
    by_traffic = {c.traffic: (i, c) for i, c in enumerate(spec.fabric.qos.classes or ())}
    if "inference" in by_traffic and "storage" in by_traffic:
        (ii, inf), (_, sto) = by_traffic["inference"], by_traffic["storage"]
        if inf.pcp <= sto.pcp:
            yield Problem(f"{BASE}.{ii}.pcp",
                          f"inference priority {inf.pcp} must be above bulk storage priority {sto.pcp}")


@rule("qos.bandwidth-total")
def bandwidth_total(spec: Spec) -> Iterator[Problem]:
    """The classes' bandwidth_percent add up to at most 100."""
    classes = spec.fabric.qos.classes
    if classes is None:
        return
    total = sum(c.bandwidth_percent for c in classes)
    if total > 100:
        yield Problem(BASE, f"bandwidth_percent adds up to {total}: at most 100")
