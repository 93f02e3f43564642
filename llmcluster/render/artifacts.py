"""Write the rendered artifacts of an offline evaluation to a folder (``llmcluster plan --out``).

Layout::

    plan.json                      the deterministic plan document
    inventory.json                 Ansible dynamic inventory (--list shape)
    pki/root-ca.pem, pki/ca-chain.pem, pki/certs/<name>.pem   public material only
    hosts/<host>/nftables.nft      host firewall + DSCP marking (nft -f)
    hosts/<host>/qos.sh            tc htb classes and DSCP filters
    switches/<switch>.<ext>        bare metal: every leaf/spine config in baremetal.switch_os
                                   (.nvue.yaml Cumulus NVUE, .config_db.json SONiC, .eos.cfg EOS)

Private keys are never written here: they stay Pulumi secrets and reach hosts through the
``mtls`` role.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from llmcluster import outputs

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.offline import Evaluation


def write_artifacts(ev: Evaluation, out: Path, switch_os: str | None = None) -> list[Path]:
    """Write the artifacts; ``switch_os`` renders the switch configs for another OS than the stack's."""
    from llmcluster.plan.hostnet import interface_names
    from llmcluster.render.switch import render_all as render_switches
    from llmcluster.render.tc import render_host_tc

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(rel: str, text: str, mode: int = 0o644) -> None:
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        p.chmod(mode)
        written.append(p)

    write("plan.json", json.dumps(ev.document(), indent=2, sort_keys=True) + "\n")
    inventory = ev.outputs[outputs.INVENTORY]
    write("inventory.json", json.dumps(inventory, indent=2, sort_keys=True) + "\n")
    write("pki/root-ca.pem", ev.outputs[outputs.PKI_ROOT_CERT])
    write("pki/ca-chain.pem", ev.outputs[outputs.PKI_CHAIN])
    for name, pem in sorted(ev.outputs[outputs.PKI_CERTS].items()):
        write(f"pki/certs/{name}.pem", pem)
    plan = ev.plan
    for h in plan.ip.hosts:
        # The ruleset the firewall role deploys, as the program already rendered it.
        write(f"hosts/{h.name}/nftables.nft", inventory["_meta"]["hostvars"][h.name]["llmcluster_nftables_ruleset"])
        # Production (tagged) interface names, whatever mode the stack's own inventory uses.
        tagged = interface_names(plan.ip, h.name, "tagged")
        write(f"hosts/{h.name}/qos.sh", render_host_tc(h.name, plan.ip, plan.qos, tagged), mode=0o755)
    for name, text in sorted(render_switches(plan, switch_os).items()):
        write(f"switches/{name}", text)
    return written
