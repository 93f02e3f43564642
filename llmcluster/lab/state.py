"""The lab state file: every object the lab creates, recorded *before* it is created.

``<state dir>/state.json`` holds an ordered list of records (``kind``, ``name``, ``data``,
``seq``) — the nftables guard, bridges, the controller's mgmt address, host namespaces,
veths, overlay mounts, host processes, and the VM hosts' taps, disk files and qemu processes —
plus the fingerprint of the plan the lab was built from. Because a record is written before
its object exists, ``down`` can always remove exactly what the lab made, even after a crash
half-way through ``up``: removing something that was recorded but never created is a no-op.
Writes are atomic (temporary file and rename) and a lock file serialises ``up``/``down`` on one
state dir.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmcluster.lab._sys import LabError
from llmcluster.plan.build import Plan
from llmcluster.plan.ipam import HostPlan

STATE_VERSION = 1
STATE_FILE = "state.json"

#: Object kinds, in the order ``down`` removes them (processes first, the guard last).
TEARDOWN_ORDER: tuple[str, ...] = (
    "process", "mount", "netns", "veth", "tap", "vmdisk", "address", "bridge", "guard",
)


def plan_layout(plan: Plan) -> dict[str, Any]:
    """What of a plan the lab is built from: VLANs and hosts with their addresses."""
    ip = plan.ip
    return {
        "stack": plan.spec.stack,
        "vlans": {
            r: {"id": v.id, "cidr": v.cidr, "gateway": v.gateway, "mtu": v.mtu} for r, v in ip.vlans.items()
        },
        "hosts": [{"name": h.name, "fqdn": h.fqdn, "addresses": dict(h.addresses), "lab": _lab_entry(plan, h)}
                  for h in ip.hosts],
        # VM sizes (llmcluster.lab.vm): a running VM keeps its size, so another size is another lab.
        **({"vm": plan.spec.lab.vm.model_dump(mode="json")} if plan.spec.lab is not None else {}),
    }


def _lab_entry(plan: Plan, host: HostPlan) -> dict[str, Any]:
    """A host's effective ``lab`` entry (kind, network): another kind is another lab."""
    lab = plan.spec.lab
    return lab.host(host.name, host.pool).model_dump(mode="json") if lab is not None else {"kind": "namespace"}


def plan_fingerprint(plan: Plan) -> str:
    blob = json.dumps(plan_layout(plan), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Record:
    kind: str
    name: str
    seq: int
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "seq": self.seq, "data": self.data}


@dataclass
class LabState:
    """In-memory view of ``state.json``; every mutation is saved at once."""

    path: Path
    fingerprint: str | None = None
    layout: dict[str, Any] = field(default_factory=dict)
    image: dict[str, Any] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    next_seq: int = 0

    # ------------------------------------------------------------------ persistence
    @classmethod
    def load(cls, state_dir: Path) -> LabState:
        path = state_dir / STATE_FILE
        if not path.is_file():
            return cls(path=path)
        raw = json.loads(path.read_text())
        if raw.get("version") != STATE_VERSION:
            raise LabError(f"{path}: unsupported lab state version {raw.get('version')}")
        records = [Record(r["kind"], r["name"], int(r["seq"]), dict(r.get("data", {}))) for r in raw["records"]]
        return cls(
            path=path,
            fingerprint=raw.get("fingerprint"),
            layout=raw.get("layout", {}),
            image=raw.get("image", {}),
            records=records,
            timings=raw.get("timings", {}),
            next_seq=int(raw.get("next_seq", max((r.seq + 1 for r in records), default=0))),
        )

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "layout": self.layout,
            "image": self.image,
            "timings": self.timings,
            "next_seq": self.next_seq,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "records": [r.to_dict() for r in self.records],
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    # ------------------------------------------------------------------ records
    def find(self, kind: str, name: str) -> Record | None:
        for r in self.records:
            if r.kind == kind and r.name == name:
                return r
        return None

    def of_kind(self, kind: str) -> list[Record]:
        return [r for r in self.records if r.kind == kind]

    def record(self, kind: str, name: str, **data: Any) -> Record:
        """Record an object about to be created (or update its data); saved immediately."""
        rec = self.find(kind, name)
        if rec is None:
            rec = Record(kind, name, self.next_seq, dict(data))
            self.next_seq += 1
            self.records.append(rec)
        else:
            rec.data.update(data)
        self.save()
        return rec

    def forget(self, rec: Record) -> None:
        self.records = [r for r in self.records if r is not rec]
        self.save()

    def teardown_order(self) -> list[Record]:
        """Records in removal order: by kind (:data:`TEARDOWN_ORDER`), newest first within a kind."""
        rank = {k: i for i, k in enumerate(TEARDOWN_ORDER)}
        return sorted(self.records, key=lambda r: (rank.get(r.kind, -1), -r.seq))

    def creation_order(self) -> list[tuple[str, str]]:
        return [(r.kind, r.name) for r in sorted(self.records, key=lambda r: r.seq)]

    @property
    def empty(self) -> bool:
        return not self.records


@contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """Exclusive lock on a lab state dir (one ``up``/``down`` at a time)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
