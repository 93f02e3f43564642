"""The switch fabric component (``llmcluster:baremetal:Fabric``): render, then push or hand over.

Every leaf and spine of the switch plan gets its configuration rendered in the stack's
switch OS (:func:`llmcluster.render.switch.render_switch`). Then, by
``baremetal.switch_apply``:

* ``render-only`` (the default): nothing that connects to a switch is registered. The
  component carries the sha256 of every rendered configuration as its inputs (so
  ``pulumi preview`` still shows which switches would change) and the program exports the
  texts (``switchConfigs``: switch name -> text) for a change-managed network, whose own
  process reviews and applies them. Why the default: pushing to production switches from
  ``pulumi up`` replaces their whole configuration; that must be a decision written into
  the stack, not something a new stack does by accident.
* ``push``: one :class:`~llmcluster.components.switches.SwitchConfig` per switch
  (``<component>-<switch>``, ``parent=self``) applies the text over SSH at the switch's
  ``baremetal.switch_mgmt`` address with the secret credentials the program read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from llmcluster.components.switches import SwitchConfig, SwitchConfigArgs, sha256_text
from llmcluster.plan.switches import SwitchPlan
from llmcluster.spec.models import SwitchAccess
from llmcluster.spec.secrets import SwitchCredentials


@dataclass(frozen=True)
class FabricArgs:
    plan: SwitchPlan
    apply: str = "render-only"  # "push" | "render-only"
    #: switch -> management address (push mode needs every switch)
    addresses: Mapping[str, str] = field(default_factory=dict)
    access: SwitchAccess = field(default_factory=SwitchAccess)
    credentials: SwitchCredentials | None = None


class Fabric(pulumi.ComponentResource):
    TYPE = "llmcluster:baremetal:Fabric"

    def __init__(self, name: str, args: FabricArgs, opts: pulumi.ResourceOptions | None = None):
        from llmcluster.render.switch import file_name, render_switch

        plan = args.plan
        if args.apply not in ("push", "render-only"):
            raise ValueError(f"switch apply mode {args.apply!r}: use 'push' or 'render-only'")
        if args.apply == "push":
            missing = [s.name for s in plan.switches if s.name not in args.addresses]
            if missing or args.credentials is None:
                # The program validates both before registering anything; this guards direct use.
                raise ValueError(f"push needs credentials and every switch's address (missing: {missing})")
        #: switch name -> rendered configuration text
        self.configs: dict[str, str] = {s.name: render_switch(s, plan.nos, plan.stack) for s in plan.switches}
        hashes = {n: sha256_text(t) for n, t in self.configs.items()}
        super().__init__(self.TYPE, name, {"mode": args.apply, "nos": plan.nos, "design": plan.design,
                                           "configSha256": hashes}, opts)
        self.mode = args.apply
        #: switch name -> SwitchConfig (push mode only)
        self.switch_configs: dict[str, SwitchConfig] = {}
        if args.apply == "push":
            creds = args.credentials
            assert creds is not None
            child = pulumi.ResourceOptions(parent=self)
            for sw in plan.switches:
                self.switch_configs[sw.name] = SwitchConfig(f"{name}-{sw.name}", SwitchConfigArgs(
                    switch=sw.name, nos=plan.nos, host=args.addresses[sw.name], config=self.configs[sw.name],
                    file_name=file_name(sw.name, plan.nos), username=args.access.username,
                    password=creds.password, private_key=creds.private_key, port=args.access.port,
                    host_key_fingerprint=args.access.host_keys.get(sw.name),
                    insecure_accept_host_key=args.access.insecure_accept_host_key,
                    timeout_s=args.access.timeout_s,
                ), opts=child)
        #: switch name -> sha256 of the applied text (push), else an empty map
        self.applied: pulumi.Output[dict[str, Any]] | dict[str, Any] = (
            pulumi.Output.all(**{n: r.sha256 for n, r in self.switch_configs.items()})
            if self.switch_configs else {}
        )
        self.register_outputs({"mode": self.mode, "configSha256": hashes, "applied": self.applied})
