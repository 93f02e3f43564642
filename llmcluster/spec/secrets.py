"""Secrets the program needs beside the spec: the switch credentials (``switch_apply: push``).

They are read once, by the program's entry point (:func:`llmcluster.program.main`), with
Pulumi's secret accessors, and handed to the components as secret Outputs; components never
read config (DESIGN §2)::

    pulumi config set --secret llmcluster-switches:password 'S3cret'
    pulumi config set --secret llmcluster-switches:privateKey < ~/.ssh/switch_ed25519

Why their own namespace: the ``llmcluster:`` namespace holds exactly the spec sections and
the loader rejects any other key there (so a misspelt section is caught, not ignored);
credentials are not part of the spec and never pass through it. The spec says who logs in
(``baremetal.switch_access.username``), where (``baremetal.switch_mgmt``) and how the host
key is checked (``switch_access.host_keys`` / ``insecure_accept_host_key``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmcluster.errors import Problem, SpecError
from llmcluster.spec.models import Spec

SWITCH_NAMESPACE = "llmcluster-switches"
PASSWORD_KEY = "password"
PRIVATE_KEY_KEY = "privateKey"


@dataclass(frozen=True)
class SwitchCredentials:
    """Secret Outputs (``pulumi.Output[str]``); at least one of the two is set."""

    password: Any = None
    private_key: Any = None


def needs_switch_credentials(spec: Spec) -> bool:
    return spec.platform == "baremetal" and spec.baremetal is not None and spec.baremetal.switch_apply == "push"


def missing_credentials_error() -> SpecError:
    return SpecError(Problem(
        f"{SWITCH_NAMESPACE}:{PASSWORD_KEY}",
        "baremetal.switch_apply is 'push' but no switch credentials are configured: run "
        f"'pulumi config set --secret {SWITCH_NAMESPACE}:{PASSWORD_KEY} ...' (or "
        f"{SWITCH_NAMESPACE}:{PRIVATE_KEY_KEY} with a private key), or use switch_apply 'render-only'",
    ))


def switch_credentials_from_pulumi(spec: Spec) -> SwitchCredentials | None:
    """The switch credentials from the running program's config (``None`` unless pushing)."""
    if not needs_switch_credentials(spec):
        return None
    import pulumi

    cfg = pulumi.Config(SWITCH_NAMESPACE)
    password = cfg.get_secret(PASSWORD_KEY)
    private_key = cfg.get_secret(PRIVATE_KEY_KEY)
    if password is None and private_key is None:
        raise missing_credentials_error()
    return SwitchCredentials(password=password, private_key=private_key)


def placeholder_credentials() -> SwitchCredentials:
    """Offline evaluation (``llmcluster plan``) never connects to a switch: a secret placeholder."""
    import pulumi

    return SwitchCredentials(password=pulumi.Output.secret("offline-evaluation-placeholder"))
