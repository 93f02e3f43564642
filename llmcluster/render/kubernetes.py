"""The Kubernetes serving layer's file-derived texts, and the manifests as YAML (``plan --out``).

:func:`texts` renders the gateway role's HAProxy configuration and clients map and the serving_tls
role's terminator configuration from the roles' own templates (:mod:`llmcluster.render.roletemplate`)
with the paths the pods mount, and reads the model store's verifier; :func:`kubernetes_plan` hands them
to the pure planner (:mod:`llmcluster.plan.kubernetes`). A container runs HAProxy in the foreground as
an unprivileged user, so the process settings of a packaged install (``chroot``, ``user``, ``group``,
``daemon``) are dropped and the log goes to stdout.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from llmcluster.plan.kubernetes import (CONFIG_DIR, GATEWAY_METRICS_PORT, SERVING_METRICS_PORT, TLS_DIR,
                                        TRTLLM_METRICS_PATH, KubernetesPlan, Texts, build_kubernetes_plan,
                                        metrics_client_cn)

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.plan.build import Plan

VERIFIER = (Path(__file__).resolve().parents[1] / "collections" / "ansible_collections" / "llmcluster" / "hosts"
            / "plugins" / "module_utils" / "model_manifest.py")
_PROCESS = re.compile(r"^\s*(chroot|user|group|daemon)\b.*\n", re.M)
#: HAProxy logs to the container's stdout (read by the cluster's log pipeline).
LOG_TARGET = "stdout format raw"


def _container(cfg: str) -> str:
    return _PROCESS.sub("", cfg)


def texts(plan: Plan) -> Texts:
    from llmcluster.render.roletemplate import render_role_template

    sp = plan.serving
    gw = sp.gateway
    gateway_cfg = clients_map = None
    gw_vars: dict[str, Any] = {}
    k = plan.spec.kubernetes
    # With the Prometheus Operator the metrics frontends of the roles' templates listen in the pods (mTLS,
    # admitting only the in-cluster scraper's certificate: the metrics-client-tls Secret).
    scrape = k.prometheus_operator
    cns = [metrics_client_cn(k.namespace)] if scrape else []
    gw_metrics = {"gateway_metrics_port": GATEWAY_METRICS_PORT if scrape else 0, "gateway_metrics_address": "0.0.0.0",
                  "gateway_metrics_client_cns": cns, "gateway_metrics_bundle_path": f"{TLS_DIR}/api.pem"}
    term_metrics = {"serving_tls_metrics_port": SERVING_METRICS_PORT if scrape else 0,
                    "serving_tls_metrics_address": "0.0.0.0", "serving_tls_metrics_client_cns": cns,
                    "serving_tls_metrics_path": TRTLLM_METRICS_PATH}
    if gw is not None:
        svc = f"serving.{plan.spec.kubernetes.namespace}.svc.cluster.local"
        gw_vars = {**gw.to_dict(), "vip": None,
                   "upstreams": [{"name": "serving", "address": svc, "port": sp.port, "fqdn": svc}]}
        variables = {"llmcluster_gateway": gw_vars, "llmcluster_addresses": {"inference": "0.0.0.0"}, **gw_metrics,
                     "gateway_log_target": LOG_TARGET, "gateway_client_ca_path": f"{TLS_DIR}/ca-chain.pem",
                     "gateway_bundle_path": f"{TLS_DIR}/api.pem", "gateway_upstream_bundle_path":
                     f"{TLS_DIR}/upstream.pem", "gateway_crl_install_path": f"{TLS_DIR}/crl.pem",
                     "gateway_clients_map_path": f"{CONFIG_DIR}/llmcluster-clients.map"}
        gateway_cfg = _container(render_role_template("gateway", "haproxy.cfg.j2", variables))
        clients_map = render_role_template("gateway", "clients.map.j2", variables)
    term_vars = {"llmcluster_serving_plan": sp.to_vars(), "llmcluster_serving": {"node_rank": 0, "nodes": sp.nodes},
                 "llmcluster_addresses": {"inference": "0.0.0.0"}, "llmcluster_gateway": gw_vars or {},
                 "serving_tls_log_target": LOG_TARGET, "serving_tls_bundle_path": f"{TLS_DIR}/serving-tls.pem",
                 "serving_tls_ca_path": f"{TLS_DIR}/ca-chain.pem", "serving_tls_crl_copy_path": f"{TLS_DIR}/crl.pem",
                 "_serving_tls_use_crl": True, "_serving_tls_crl_present": True, **term_metrics}
    terminator = _container(render_role_template("serving_tls", "serving-tls.cfg.j2", term_vars))
    return Texts(verifier_source=VERIFIER.read_text(), terminator_cfg=terminator, gateway_cfg=gateway_cfg,
                 clients_map=clients_map)


def kubernetes_plan(plan: Plan) -> KubernetesPlan | None:
    """The manifests of a stack with ``serving.runtime: kubernetes`` (None for systemd stacks)."""
    if plan.spec.serving.runtime != "kubernetes" or plan.spec.kubernetes is None:
        return None
    return build_kubernetes_plan(plan, texts(plan))


def manifest_files(kp: KubernetesPlan) -> dict[str, str]:
    """``kubernetes/<NN>-<kind>-<name>.yaml`` per object, in apply order (Secrets are not written: the
    program fills them from the PKI; ``kubernetes/secrets.json`` names them and their keys)."""
    import json

    files = {}
    for i, o in enumerate(kp.objects):
        name = f"kubernetes/{i:02d}-{o['kind'].lower()}-{o['metadata']['name']}.yaml"
        files[name] = yaml.safe_dump(o, sort_keys=False, width=1000)
    files["kubernetes/plan.json"] = json.dumps(kp.to_dict(), indent=2, sort_keys=True) + "\n"
    return files
