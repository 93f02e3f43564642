"""Offline evaluation: run the real Pulumi program under ``pulumi.runtime.set_mocks``.

Used by ``llmcluster plan``, the CI plan diff and the program tests. It records every
registered resource (type, name, parent, inputs) and the stack outputs.

The mocks are faithful where tests depend on provider-computed values: each provider's
stand-in (:mod:`llmcluster.standins`) computes what the provider would, e.g. the pulumi-tls
resources produce real key material and certificates, so a test can run ``openssl verify``
on the chain.
Values that vary between runs (keys, certificates, CSRs) are redacted in the recorded
inputs, so the plan document is byte-for-byte deterministic.

Invokes (data sources) must be handled explicitly by :class:`RecordingMocks.call`; an
unhandled invoke raises instead of silently yielding ``None``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pmocks

from llmcluster import outputs, standins
from llmcluster.plan.build import Plan
from llmcluster.plan.kubernetes import CERT_ANNOTATION
from llmcluster.spec.models import Spec

PROJECT = "llmcluster"
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
_lock = threading.Lock()
#: Keys whose values are digests of run-dependent material (the certificates a pod template mounts): redacted
#: to a stable placeholder in the plan document, as the PEMs themselves are.
_RUN_DEPENDENT = {CERT_ANNOTATION: "<sha256:certificates>"}


# --------------------------------------------------------------------------- recording mocks


@dataclass
class Recorded:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    #: The id the mocks gave it (``<name>-id``; components: "") and the state its stand-in returned
    #: (inputs plus computed outputs such as an ARN): how other resources reference it
    #: (:mod:`llmcluster.policy.runner`). Not part of the plan document.
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    #: The explicit provider reference (``<provider URN>::<id>``; "" for the default provider). Not part
    #: of the plan document.
    provider: str = ""


def _is_secret(value: Any) -> bool:
    from pulumi.runtime import rpc

    return isinstance(value, Mapping) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def _unsecret(value: Any) -> Any:
    """Mock inputs carry secrets as wrapped maps; providers see the plain value."""
    if _is_secret(value):
        return _unsecret(value.get("value"))
    if isinstance(value, Mapping):
        return {k: _unsecret(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsecret(v) for v in value]
    return value


def _redact(value: Any) -> Any:
    """Replace secrets and run-dependent values (PEM material, digests of it) by stable placeholders."""
    if _is_secret(value):
        return "<secret>"
    if isinstance(value, str):
        m = _PEM.search(value)
        if m:
            return f"<pem:{m.group(1).lower()}>"
        return value
    if isinstance(value, Mapping):
        return {k: _RUN_DEPENDENT[k] if k in _RUN_DEPENDENT and isinstance(v, str) else _redact(v)
                for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    return value


class RecordingMocks(pmocks.Mocks):
    """Mocks that record registrations and compute provider outputs where tests need them."""

    def __init__(self, now: dt.datetime | None = None,
                 prior: Mapping[tuple[str, str], tuple[Any, str, dict[str, Any]]] | None = None):
        self.records: list[Recorded] = []
        #: (type, name) -> (inputs, id, state) of every custom resource this run created: a later run given it as
        #: ``prior`` keeps the state of a resource whose inputs did not change, as ``pulumi up`` does on an
        #: existing stack (same keys and certificates), so a second evaluation can stand for the next update.
        self.state: dict[tuple[str, str], tuple[Any, str, dict[str, Any]]] = {}
        self.prior = dict(prior or {})
        #: resource type -> what its provider would compute (llmcluster.standins)
        self.providers: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = standins.providers(
            now or dt.datetime.now(dt.UTC).replace(microsecond=0))
        self.invokes: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = standins.invokes()

    def new_resource(self, args: pmocks.MockResourceArgs):
        key = (args.typ, args.name)
        inputs = _unsecret(args.inputs)
        kept = self.prior.get(key)
        if kept is not None and kept[0] == inputs:
            self.state[key] = kept
            return kept[1], dict(kept[2])
        compute = self.providers.get(args.typ)
        state = dict(args.inputs)
        if compute is not None:
            state.update(compute(args.name, inputs) if getattr(compute, "with_name", False) else compute(inputs))
        rid = f"{args.name}-id" if args.custom else ""
        self.state[key] = (inputs, rid, state)
        return rid, state

    def call(self, args: pmocks.MockCallArgs):
        handler = self.invokes.get(args.token)
        if handler is None:
            raise NotImplementedError(
                f"offline evaluation has no mock for invoke {args.token}: add one to RecordingMocks.invokes"
            )
        return handler(args.args)


class RecordingMonitor(pmocks.MockMonitor):
    """MockMonitor that also records the parent URN and the inputs of each registration."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.recording_mocks = mocks

    def RegisterResource(self, request):
        from pulumi.runtime import rpc

        resp = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.recording_mocks.records.append(Recorded(
                urn=resp.urn, type=request.type, name=request.name, parent=request.parent,
                custom=bool(request.custom), inputs=dict(rpc.deserialize_properties(request.object)),
                id=resp.id or "", outputs=dict(rpc.deserialize_properties(resp.object)) if resp.object else {},
                provider=getattr(request, "provider", "") or "",
            ))
        return resp


# --------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """The result of one offline run of the program."""

    stack: str
    plan: Plan
    resources: list[Recorded]
    outputs: dict[str, Any] = field(default_factory=dict)
    #: the mocks' resource state (:attr:`RecordingMocks.state`): ``evaluate(..., prior=this)`` is the next update
    state: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False, compare=False)

    def by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))

    def document(self) -> dict[str, Any]:
        """Deterministic plan document: resources sorted by URN, run-dependent values redacted."""
        res = sorted(self.resources, key=lambda r: r.urn)
        return {
            "stack": self.stack,
            "project": PROJECT,
            "resource_counts": self.by_type(),
            "resources": [
                {"urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent or None,
                 "custom": r.custom, "inputs": _redact(r.inputs)}
                for r in res
            ],
            "outputs": {k: _redact(v) for k, v in sorted(self.outputs.items()) if k not in outputs.SECRET},
            "plan": self.plan.to_dict(),
        }


def _ensure_event_loop() -> None:
    """Pulumi's mock runtime takes the thread's current event loop (``asyncio.get_event_loop``). After an
    ``asyncio.run`` in the same process there is none (it clears it on exit), and every evaluation would
    fail with "There is no current event loop": give the thread a loop of its own then."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def evaluate(spec: Spec, *, now: dt.datetime | None = None, preview: bool = False,
             switch_credentials: Callable[[], Any] | None = None, pki_dir: str | None = None,
             prior: Evaluation | None = None) -> Evaluation:
    """Run the program for ``spec`` under mocks; return what it registered and exported.

    ``switch_credentials`` builds the :class:`~llmcluster.spec.secrets.SwitchCredentials`
    (called inside the mock runtime, as Outputs need it); a stack that pushes to its switches
    gets a secret placeholder by default, since an offline evaluation never connects to one.
    ``pki_dir``: the export folder whose revocations the program reads (``$LLMCLUSTER_PKI_DIR`` under ``pulumi up``);
    ``prior``: an earlier evaluation of the same stack whose resource state unchanged resources keep (the next
    ``pulumi up`` of an existing stack: the same keys and certificates).
    """
    from pulumi.runtime import settings

    from llmcluster import program
    from llmcluster.spec.secrets import needs_switch_credentials, placeholder_credentials

    with _lock:
        _ensure_event_loop()
        mocks = RecordingMocks(now=now, prior=prior.state if prior is not None else None)
        monitor = RecordingMonitor(mocks)
        pulumi.runtime.set_all_config({})
        settings.ROOT.set(None)  # each evaluation gets a fresh root stack resource
        pmocks.set_mocks(mocks, project=PROJECT, stack=spec.stack, preview=preview, monitor=monitor)
        holder: dict[str, Any] = {}

        def run() -> pulumi.Output:
            creds = None
            if switch_credentials is not None:
                creds = switch_credentials()
            elif needs_switch_credentials(spec):
                creds = placeholder_credentials()
            plan, exports = program.build(spec, switch_credentials=creds, pki_dir=pki_dir)
            holder["plan"] = plan
            # Only real Outputs go through Output.all: walking big plain values (the inventory)
            # as inputs would cost far more than the resources themselves.
            holder["outputs"] = {k: v for k, v in exports.items() if not isinstance(v, pulumi.Output)}
            keys = [k for k, v in exports.items() if isinstance(v, pulumi.Output)]
            return pulumi.Output.all(*[exports[k] for k in keys]).apply(
                lambda values: holder["outputs"].update(zip(keys, values, strict=True))
            )

        pulumi.runtime.test(run)()
        return Evaluation(stack=spec.stack, plan=holder["plan"], resources=list(mocks.records),
                          outputs=holder.get("outputs", {}), state=dict(mocks.state))
