"""Ansible inventory from the plan (the same data the Pulumi program exports).

Shape: the dynamic-inventory JSON Ansible expects from ``--list``: groups with ``hosts``,
``children`` and ``vars``, plus ``_meta.hostvars``. Groups: one per node role (``gpu``,
``storage``, ``gateway``, ``control``), one per pool (``pool_<name>``), ``nvswitch`` for
HGX nodes and ``serving`` for the nodes that run the model. Group and variable names are
valid Ansible identifiers.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import yaml

from llmcluster.plan.build import Plan
from llmcluster.plan.hostsec import rp_filter
from llmcluster.plan.nvidia import gpu_vars, nvidia_vars
from llmcluster.plan.storage import nvme_devices
from llmcluster.render.hostfiles import artifact_hostvars

PKI_DIR = "/etc/llmcluster/pki"


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def host_vars(plan: Plan, host_name: str, address: str | None = None) -> dict[str, Any]:
    """One host's variables: facts from the plan, and what the roles deploy as rendered text.

    ``address`` is where the compute backend reports the host (default: its planned mgmt address)."""
    spec, ip = plan.spec, plan.ip
    h = ip.host(host_name)
    pool = spec.pools[h.pool]
    hv: dict[str, Any] = {
        "ansible_host": address or h.mgmt_ip,
        "ansible_user": plan.hostnet.ssh_user,
        "llmcluster_pool": h.pool,
        "llmcluster_role": h.role,
        "llmcluster_fqdn": h.fqdn,
        "llmcluster_addresses": dict(h.addresses),
        "llmcluster_interfaces": {
            role: {
                "vlan_id": ip.vlans[role].id,
                "address": addr,
                "prefix": ip.vlans[role].prefixlen,
                "cidr": ip.vlans[role].cidr,
                "gateway": ip.vlans[role].gateway,
                "mtu": ip.vlans[role].mtu,
            }
            for role, addr in h.addresses.items()
        },
        "llmcluster_pki": {
            "cert_name": f"host-{h.name}",
            "ca_chain": f"{PKI_DIR}/ca-chain.pem",
            "root_ca": f"{PKI_DIR}/root-ca.pem",
            # The export's crl.pem (the intermediate's CRL, then the root's), installed by the mtls
            # role; TLS servers that verify clients (the gateway) load it as their CRL file.
            "crl": f"{PKI_DIR}/crl.pem",
            "cert": f"{PKI_DIR}/host.crt",
            "key": f"{PKI_DIR}/host.key",
            # What the mtls role installs here, with the SANs the plan gives each certificate
            # (the role refuses material whose SANs differ). Keys are never inventory values.
            "certificates": pki_certificates(plan, h.name),
        },
        "llmcluster_labels": dict(pool.labels),
        # Reverse-path filtering (the common role's kernel hardening): strict unless a flow admits
        # routed sources on a VLAN other than mgmt (llmcluster.plan.hostsec).
        "llmcluster_rp_filter": rp_filter(plan.firewall, ip, h.name).to_dict(),
    }
    if h.bmc:
        hv["llmcluster_bmc"] = h.bmc
    if pool.gpu is not None:
        hv["llmcluster_gpu"] = gpu_vars(spec, h.pool)
    if pool.nvme is not None:
        hv["llmcluster_nvme"] = {
            "count": pool.nvme.count, "size_gb": pool.nvme.size_gb,
            "devices": nvme_devices(pool.nvme.count),
        }
    if pool.aws is not None:
        hv["llmcluster_aws_instance_type"] = pool.aws.instance_type
    serving = plan.serving.layout.get(h.name)
    if serving is not None:
        hv["llmcluster_serving"] = serving.to_dict()
    # Network mode and interface names (plan.hostnet) and what the firewall and network roles
    # deploy, rendered: the roles never re-derive it.
    hv.update(artifact_hostvars(plan, host_name))
    return hv


def pki_certificates(plan: Plan, host_name: str) -> list[dict[str, Any]]:
    """The PKI leaves a host holds: its own (``host.crt``), and on the gateways the API server
    certificate and the client certificate they present upstream."""
    h = plan.ip.host(host_name)
    names = [(f"host-{h.name}", "host")]
    gw = plan.spec.serving.gateway
    if gw is not None and h.pool == gw.pool:
        names += [("gateway-api", "gateway-api"), ("gateway-upstream", "gateway-upstream")]
    out = []
    for name, base in names:
        c = plan.pki.leaf(name)
        out.append({"name": name, "cert": f"{PKI_DIR}/{base}.crt", "key": f"{PKI_DIR}/{base}.key",
                    "dns_names": list(c.dns_names), "ip_addresses": list(c.ip_addresses),
                    "validity_hours": c.validity_hours, "early_renewal_hours": c.early_renewal_hours})
    return out


def gateway_vars(plan: Plan) -> dict[str, Any]:
    """What the gateway role needs from the plan (``{}`` without a gateway)."""
    gw = plan.serving.gateway
    return {} if gw is None else {"llmcluster_gateway": gw.to_dict()}


def monitoring_vars(plan: Plan) -> dict[str, Any]:
    """What the monitoring roles read (``{}`` without ``monitoring``): the plan, the rendered Prometheus and
    Alertmanager configurations and the rule groups (docs/observability.md)."""
    from llmcluster.monitoring.render import alertmanager_config, prometheus_config
    from llmcluster.monitoring.rules import rule_file
    from llmcluster.plan.monitoring import monitoring_plan

    mp = monitoring_plan(plan)
    if mp is None:
        return {}
    # The rules carry Prometheus templates ({{ $labels.host }}): base64, so that Ansible never templates them.
    rules = base64.b64encode(yaml.safe_dump(rule_file(mp), sort_keys=False).encode()).decode()
    return {"llmcluster_monitoring": {**mp.to_dict(), "prometheus_config": prometheus_config(mp, plan.spec.stack),
                                      "alertmanager_config": alertmanager_config(mp), "rules_b64": rules}}


def aws_audit_vars(plan: Plan) -> dict[str, Any]:
    """AWS stacks with a gateway: where the gateways ship their access log (roles/audit_cloudwatch)."""
    from llmcluster.plan.monitoring import aws_audit_plan

    ap = aws_audit_plan(plan.spec)
    return {} if ap is None else {"llmcluster_aws_audit": ap.to_vars()}


def build_inventory(plan: Plan, addresses: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The whole inventory; ``addresses``: host -> address as the compute backend reports them
    (the program's; offline callers use the plan's mgmt addresses)."""
    spec, ip = plan.spec, plan.ip
    addresses = addresses or {}
    groups: dict[str, dict[str, Any]] = {}

    def add(group: str, host: str) -> None:
        groups.setdefault(group, {"hosts": []})["hosts"].append(host)

    hostvars: dict[str, Any] = {}
    for h in ip.hosts:
        add(h.role, h.name)
        add(f"pool_{_ident(h.pool)}", h.name)
        pool = spec.pools[h.pool]
        if pool.gpu is not None and pool.gpu.nvswitch:
            add("nvswitch", h.name)
        hv = host_vars(plan, h.name, addresses.get(h.name))
        if "llmcluster_serving" in hv:
            add("serving", h.name)
        hostvars[h.name] = hv
    cap = plan.capacity
    all_vars = {
        "llmcluster_stack": spec.stack,
        "llmcluster_platform": spec.platform,
        "llmcluster_site": spec.site.name,
        "llmcluster_domain": spec.site.domain,
        "llmcluster_os": plan.hostnet.os,
        "llmcluster_vlans": {r: v.to_dict() for r, v in ip.vlans.items()},
        "llmcluster_vips": dict(ip.vips),
        "llmcluster_qos": plan.qos.to_dict(),
        "llmcluster_model_dir": spec.storage.model_dir,
        # RAID layout per host and the Ceph cluster (plan.storage), for the storage roles
        "llmcluster_storage": plan.storage.to_dict(),
        "llmcluster_serving_model": spec.serving.model,
        "llmcluster_serving_revision": spec.serving.revision,
        "llmcluster_serving_port": spec.serving.port,
        "llmcluster_trtllm_args": dict(cap.trtllm_args),
        "llmcluster_serving_plan": plan.serving.to_vars(),
        # serving.runtime and what it means for the hosts (plan.serving): ansible/site.yml applies the serving
        # roles (tensorrt_llm, serving_tls) and the gateway roles (gateway, audit_log) only where these are true.
        "llmcluster_serving_runtime": plan.serving.runtime,
        "llmcluster_serving_units_on_hosts": plan.serving.units_on_hosts,
        "llmcluster_gateway_on_hosts": plan.serving.gateway_on_hosts,
        "llmcluster_nvidia": nvidia_vars(spec),
        "llmcluster_min_tls_version": spec.pki.min_tls_version,
        "llmcluster_ntp_servers": list(spec.site.ntp_servers),
        **gateway_vars(plan),
        **monitoring_vars(plan),
        **aws_audit_vars(plan),
    }
    out: dict[str, Any] = {
        "all": {"children": sorted(["ungrouped", *groups]), "vars": all_vars},
        "ungrouped": {"hosts": []},
    }
    for g in sorted(groups):
        out[g] = {"hosts": groups[g]["hosts"]}
    out["_meta"] = {"hostvars": hostvars}
    return out
