"""Offline stand-ins for the providers the program uses, in one place.

The offline evaluation (:mod:`llmcluster.offline`: ``llmcluster plan``, the program tests, CI
diffs) runs the real program under ``pulumi.runtime.set_mocks``; a mock returns only the inputs
unless a stand-in computes what the provider would. Each module here stands in for one provider
and is labelled as such:

* :mod:`~llmcluster.standins.tls` — pulumi-tls: real keys and certificates (``cryptography``);
* :mod:`~llmcluster.standins.switch` — the switch-config dynamic provider: hashes and staged
  paths from the inputs, no switch contacted;
* :mod:`~llmcluster.standins.aws` — pulumi-aws: ids, ARNs, names, an instance's private IP from its
  launch template, and the ``getCallerIdentity`` invoke;
* ``k8s.py`` (the Kubernetes serving layer) goes here, as do the handlers of invokes it calls.

A stand-in whose function has ``with_name = True`` is called with ``(resource name, inputs)``.

:func:`providers` maps resource type tokens to the stand-in that computes their outputs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

Compute = Callable[[Mapping[str, Any]], dict[str, Any]]


def providers(now: dt.datetime) -> dict[str, Compute]:
    """Resource type -> stand-in; ``now`` is the clock of certificate validity."""
    from llmcluster.standins import aws, switch, tls

    t = tls.TlsStandin(now)
    return {
        "tls:index/privateKey:PrivateKey": t.private_key,
        "tls:index/selfSignedCert:SelfSignedCert": t.self_signed_cert,
        "tls:index/certRequest:CertRequest": t.cert_request,
        "tls:index/locallySignedCert:LocallySignedCert": t.locally_signed_cert,
        switch.RESOURCE_TYPE: switch.offline_outputs,
        **aws.AwsStandin().providers(),
    }


def invokes() -> dict[str, Compute]:
    """Invoke token -> handler (data sources the program calls)."""
    from llmcluster.standins import aws

    return dict(aws.invokes())
