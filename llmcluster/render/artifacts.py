"""Write the rendered artifacts of an offline evaluation to a folder (``llmcluster plan --out``).

Layout::

    plan.json                      the deterministic plan document
    inventory.json                 Ansible dynamic inventory (--list shape)
    pki/root-ca.pem, pki/ca-chain.pem, pki/certs/<name>.pem   public material only
    hosts/<host>/nftables.nft      host firewall + DSCP marking (nft -f)
    hosts/<host>/qos.sh            tc htb classes and DSCP filters
    switches/<switch>.<ext>        bare metal: every leaf/spine config in baremetal.switch_os
                                   (.nvue.yaml Cumulus NVUE, .config_db.json SONiC, .eos.cfg EOS)
    kubernetes/NN-<kind>-<name>.yaml  serving.runtime kubernetes: every object of the serving layer,
                                   in apply order (Secrets excepted), and kubernetes/plan.json
    .llmcluster-export.json        the files above (what a later run may replace; see llmcluster.outdir)

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


def artifacts(ev: Evaluation, switch_os: str | None = None) -> dict[str, tuple[str, int]]:
    """Every artifact as ``relative path -> (text, mode)``: rendered in memory, nothing written."""
    from llmcluster.plan.hostnet import interface_names
    from llmcluster.render import tc
    from llmcluster.render.switch import render_all as render_switches

    files: dict[str, tuple[str, int]] = {}
    files["plan.json"] = (json.dumps(ev.document(), indent=2, sort_keys=True) + "\n", 0o644)
    inventory = ev.outputs[outputs.INVENTORY]
    files["inventory.json"] = (json.dumps(inventory, indent=2, sort_keys=True) + "\n", 0o644)
    files["pki/root-ca.pem"] = (ev.outputs[outputs.PKI_ROOT_CERT], 0o644)
    files["pki/ca-chain.pem"] = (ev.outputs[outputs.PKI_CHAIN], 0o644)
    for name, pem in sorted(ev.outputs[outputs.PKI_CERTS].items()):
        files[f"pki/certs/{name}.pem"] = (pem, 0o644)
    plan = ev.plan
    for h in plan.ip.hosts:
        # The ruleset the firewall role deploys, as the program already rendered it.
        files[f"hosts/{h.name}/nftables.nft"] = (inventory["_meta"]["hostvars"][h.name]["llmcluster_nftables_ruleset"],
                                                 0o644)
        # Production (tagged) interface names, whatever mode the stack's own inventory uses.
        tagged = interface_names(plan.ip, h.name, "tagged")
        files[f"hosts/{h.name}/qos.sh"] = (tc.render_host_tc(h.name, plan.ip, plan.qos, tagged), 0o755)
    for name, text in sorted(render_switches(plan, switch_os).items()):
        files[f"switches/{name}"] = (text, 0o644)
    from llmcluster.render.kubernetes import kubernetes_plan, manifest_files

    kp = kubernetes_plan(plan)
    if kp is not None:
        for name, text in manifest_files(kp).items():
            files[name] = (text, 0o644)
    return files


def legacy_files(folder: Path) -> set[str] | None:
    """The files of a ``plan --out`` folder written before llmcluster kept a manifest there (its
    layout, above), or None when ``folder`` is not one (no ``plan.json`` of ours)."""
    from llmcluster.nos import NOSES, get

    try:
        doc = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not {"plan", "outputs", "resources", "stack"} <= doc.keys():
        return None
    extensions = tuple(f".{get(n).extension}" for n in NOSES)
    patterns = ("plan.json", "inventory.json", "pki/root-ca.pem", "pki/ca-chain.pem", "pki/certs/*.pem",
                "hosts/*/nftables.nft", "hosts/*/qos.sh", "switches/*")
    found = set()
    for pattern in patterns:
        for p in folder.glob(pattern):
            if p.is_file() and not p.is_symlink() and (not pattern.startswith("switches/")
                                                        or p.name.endswith(extensions)):
                found.add(str(p.relative_to(folder)))
    return found


def write_artifacts(ev: Evaluation, out: Path, switch_os: str | None = None, *, replace: bool = False) -> list[Path]:
    """Write the artifacts; ``switch_os`` renders the switch configs for another OS than the stack's.

    The folder is written as :mod:`llmcluster.outdir` writes outputs: atomically, never over or
    instead of files llmcluster did not write (``replace``: write beside them)."""
    from llmcluster.outdir import write_tree

    return write_tree(out, artifacts(ev, switch_os), "plan", replace=replace, legacy=legacy_files)
