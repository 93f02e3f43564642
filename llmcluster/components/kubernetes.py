"""The Kubernetes serving layer as pulumi-kubernetes resources (shared by EKS and bare metal).

``KubernetesServing(name, args, opts)``: ``opts`` carries the provider (``providers={"kubernetes": p}``):
on AWS a ``kubernetes.Provider`` from the EKS cluster's kubeconfig, on bare metal one from the
kubeconfig secret the stack config names (``kubernetes.kubeconfig_secret``). Every object of the plan
(:mod:`llmcluster.plan.kubernetes`) is registered as its typed resource (CRDs as ``CustomResource``),
the Secrets are filled from the PKI component's outputs, and the GPU Operator and the LeaderWorkerSet
controller are pinned Helm releases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from llmcluster.plan.pki import early_renewal_hours
from llmcluster.plan.kubernetes import (
    CERT_ANNOTATION,
    METRICS_SECRET,
    KubernetesPlan,
    certificate_digest,
    combined_digest,
    metrics_client_cn,
    with_crl_annotation,
    with_template_annotation,
)

#: Helm repositories of the charts (versions pinned by the spec).
GPU_OPERATOR_REPO = "https://helm.ngc.nvidia.com/nvidia"
LWS_CHART = "oci://registry.k8s.io/lws/charts/lws"

_TYPED = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
}


@dataclass
class KubernetesServingArgs:
    plan: KubernetesPlan
    #: the PKI component (llmcluster.components.pki.Pki): certificates and keys for the Secrets
    pki: Any
    #: the serving Service's DNS name (its certificate's SAN) and the leaf lifetime
    service_fqdn: str
    leaf_validity_hours: int = 90 * 24
    #: re-issue at ``pulumi up`` once this many hours are left (the PKI leaves' rule: ``pki.renew_at_fraction``);
    #: without it the in-component certificates would be renewed only after they had lapsed
    leaf_early_renewal_hours: int = 30 * 24
    #: sha256 of the revocation record in the Secrets' crl.pem (``ProgramRevocations.digest``): annotates the
    #: pod templates that load a CRL so that a revocation rolls them; None without revocations
    crl_digest: str | None = None


def _resource_name(name: str, o: dict[str, Any]) -> str:
    return f"{name}-{o['kind'].lower()}-{o['metadata']['name']}"


class KubernetesServing(pulumi.ComponentResource):
    TYPE = "llmcluster:kubernetes:Serving"

    def __init__(self, name: str, args: KubernetesServingArgs, opts: pulumi.ResourceOptions | None = None):
        kp = args.plan
        super().__init__(self.TYPE, name, {"namespace": kp.namespace, "workload": kp.workload}, opts)
        child = pulumi.ResourceOptions(parent=self)
        for w in kp.warnings:
            pulumi.log.warn(w, resource=self)
        self.resources: dict[str, pulumi.CustomResource] = {}
        ns_obj = kp.objects[0]
        assert ns_obj["kind"] == "Namespace"
        ns = self._register(name, ns_obj, child)
        after_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        # the cluster's GPU stack: pinned charts (driver/toolkit off where the host roles own them)
        gpu_op = k8s.helm.v3.Release(
            f"{name}-gpu-operator", chart="gpu-operator", version=kp.gpu_operator_chart_version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=GPU_OPERATOR_REPO), namespace="gpu-operator",
            create_namespace=True, atomic=True, values=kp.gpu_operator_values, opts=child)
        charts = [gpu_op]
        if kp.workload == "LeaderWorkerSet":
            charts.append(k8s.helm.v3.Release(
                f"{name}-lws", chart=LWS_CHART, version=kp.lws_chart_version, namespace="lws-system",
                create_namespace=True, atomic=True, opts=child))
        #: Secret name -> sha256 of the certificates it carries (an Output; see :data:`CERT_ANNOTATION`)
        self.cert_digests: dict[str, pulumi.Output[str]] = {}
        self.secrets = self._secrets(name, kp, args, after_ns)
        deps = [ns, *charts, *self.secrets.values()]
        for o in kp.objects[1:]:
            o = with_crl_annotation(o, args.crl_digest)
            self._register(name, with_template_annotation(o, CERT_ANNOTATION, self._cert_annotation),
                           pulumi.ResourceOptions(parent=self, depends_on=deps))
        self.register_outputs({"namespace": kp.namespace, "workload": kp.workload,
                               "objects": [f"{o['kind']}/{o['metadata']['name']}" for o in kp.objects]})

    def _cert_annotation(self, mounted: tuple[str, ...]) -> pulumi.Output[str] | None:
        """The :data:`CERT_ANNOTATION` value of a pod template mounting ``mounted``; None without certificates.

        Built by ``apply`` from the certificates' Outputs, which are public (pulumi-tls marks only keys secret): the
        value is a plain string. Should an input ever be secret, ``apply`` keeps the result secret (no unsecret
        here), so the annotation could never un-secret anything."""
        named = {n: self.cert_digests[n] for n in mounted if n in self.cert_digests}
        if not named:
            return None
        names = sorted(named)
        return pulumi.Output.all(*[named[n] for n in names]).apply(
            lambda ds: combined_digest(dict(zip(names, ds, strict=True))))

    def _register(self, name: str, o: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
        rname = _resource_name(name, o)
        if o["kind"] in ("Deployment", "LeaderWorkerSet") and o["metadata"]["name"] == "serving":
            # the autoscaler owns the replica count after creation: an update must not reset it
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["spec.replicas"]))
        cls = _TYPED.get((o["apiVersion"], o["kind"]))
        body = {k: v for k, v in o.items() if k not in ("apiVersion", "kind")}
        if cls is None:  # CRDs: LeaderWorkerSet, ScaledObject, ServiceMonitor, PrometheusRule
            res = k8s.apiextensions.CustomResource(rname, api_version=o["apiVersion"], kind=o["kind"],
                                                   opts=opts, **body)
        else:
            res = cls(rname, opts=opts, **body)
        self.resources[f"{o['kind']}/{o['metadata']['name']}"] = res
        return res

    def _secrets(self, name: str, kp: KubernetesPlan, args: KubernetesServingArgs,
                 opts: pulumi.ResourceOptions) -> dict[str, k8s.core.v1.Secret]:
        pki = args.pki
        meta = {"namespace": kp.namespace, "labels": {"app.kubernetes.io/part-of": "llmcluster"}}
        child = pulumi.ResourceOptions(parent=self)
        # a CRL for every CA of the chain (intermediate, then root): HAProxy's crl-file checks them all
        crl = pki.chain_crl_pem
        chain = pki.chain_pem
        out: dict[str, k8s.core.v1.Secret] = {}
        wanted = {s.name for s in kp.secrets}
        # the serving Service's certificate, issued by the intermediate CA (SAN: the Service's DNS name)
        key = tls.PrivateKey(f"{name}-serving-tls-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        csr = tls.CertRequest(f"{name}-serving-tls-csr", private_key_pem=key.private_key_pem,
                              subject=tls.CertRequestSubjectArgs(common_name=args.service_fqdn,
                                                                 organizational_unit="serving"),
                              dns_names=[args.service_fqdn], opts=child)
        cert = tls.LocallySignedCert(f"{name}-serving-tls", cert_request_pem=csr.cert_request_pem,
                                     ca_private_key_pem=pki.intermediate.key.private_key_pem,
                                     ca_cert_pem=pki.intermediate.cert_pem,
                                     validity_period_hours=args.leaf_validity_hours,
                                     early_renewal_hours=args.leaf_early_renewal_hours,
                                     allowed_uses=["digital_signature", "key_agreement", "server_auth"], opts=child)
        bundle = pulumi.Output.secret(pulumi.Output.concat(cert.cert_pem, chain, key.private_key_pem))
        self.cert_digests["serving-tls"] = pulumi.Output.all(cert.cert_pem, chain).apply(
            lambda a: certificate_digest(*a))
        out["serving-tls"] = k8s.core.v1.Secret(
            f"{name}-secret-serving-tls", metadata={**meta, "name": "serving-tls"}, type="Opaque",
            string_data={"serving-tls.pem": bundle, "ca-chain.pem": chain, "crl.pem": crl}, opts=opts)
        if "gateway-tls" in wanted:
            certs, keys = pki.cert_pems, pki.private_key_pems

            def leaf(n: str) -> pulumi.Output:
                return pulumi.Output.secret(pulumi.Output.all(certs, keys, chain).apply(
                    lambda a: a[0][n] + a[2] + a[1][n]))

            # the gateway's two leaves and the chain (the certificates of its bundles; not pki.cert_pems whole, so
            # that another leaf's re-issue does not roll the gateway)
            self.cert_digests["gateway-tls"] = pulumi.Output.all(
                pki.leaves["gateway-api"].cert_pem, pki.leaves["gateway-upstream"].cert_pem, chain).apply(
                lambda a: certificate_digest(*a))
            out["gateway-tls"] = k8s.core.v1.Secret(
                f"{name}-secret-gateway-tls", metadata={**meta, "name": "gateway-tls"}, type="Opaque",
                string_data={"api.pem": leaf("gateway-api"), "upstream.pem": leaf("gateway-upstream"),
                             "ca-chain.pem": chain, "crl.pem": crl}, opts=opts)
        if METRICS_SECRET in wanted:
            # the in-cluster Prometheus's client certificate (the metrics frontends admit only its CN)
            mkey = tls.PrivateKey(f"{name}-metrics-client-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            mcsr = tls.CertRequest(f"{name}-metrics-client-csr", private_key_pem=mkey.private_key_pem,
                                   subject=tls.CertRequestSubjectArgs(common_name=metrics_client_cn(kp.namespace),
                                                                      organizational_unit="monitoring"), opts=child)
            mcert = tls.LocallySignedCert(f"{name}-metrics-client", cert_request_pem=mcsr.cert_request_pem,
                                          ca_private_key_pem=pki.intermediate.key.private_key_pem,
                                          ca_cert_pem=pki.intermediate.cert_pem,
                                          validity_period_hours=args.leaf_validity_hours,
                                          early_renewal_hours=args.leaf_early_renewal_hours,
                                          allowed_uses=["digital_signature", "client_auth"], opts=child)
            self.cert_digests[METRICS_SECRET] = pulumi.Output.all(mcert.cert_pem, chain).apply(
                lambda a: certificate_digest(*a))
            out[METRICS_SECRET] = k8s.core.v1.Secret(
                f"{name}-secret-{METRICS_SECRET}", metadata={**meta, "name": METRICS_SECRET}, type="Opaque",
                string_data={"ca-chain.pem": chain, "tls.crt": mcert.cert_pem,
                             "tls.key": pulumi.Output.secret(mkey.private_key_pem)}, opts=opts)
        if "mpi-ssh" in wanted:
            user = tls.PrivateKey(f"{name}-mpi-user-key", algorithm="ED25519", opts=child)
            host = tls.PrivateKey(f"{name}-mpi-host-key", algorithm="ED25519", opts=child)
            known = host.public_key_openssh.apply(lambda k: f"* {k.strip()}\n")
            sshd = ("# sshd of the LWS workers: non-root, key only, the leader's key only\n"
                    "HostKey /etc/llmcluster/mpi/ssh_host_ed25519_key\nAuthorizedKeysFile /etc/llmcluster/mpi/"
                    "authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                    "PermitRootLogin no\nUsePAM no\nPidFile /tmp/sshd.pid\nStrictModes no\n")
            out["mpi-ssh"] = k8s.core.v1.Secret(
                f"{name}-secret-mpi-ssh", metadata={**meta, "name": "mpi-ssh"}, type="Opaque",
                string_data={"id_ed25519": pulumi.Output.secret(user.private_key_openssh),
                             "authorized_keys": user.public_key_openssh, "known_hosts": known,
                             "sshd_config": sshd,
                             "ssh_host_ed25519_key": pulumi.Output.secret(host.private_key_openssh)}, opts=opts)
        return out


#: What the offline evaluation uses for a bare-metal kubeconfig secret it cannot read (never connects).
OFFLINE_KUBECONFIG = "<offline evaluation: kubeconfig from the stack's secret>"


def serving_layer(plan, pki, eks_kubeconfig: Any, kubeconfig_secret: Any, crl_digest: str | None = None) -> Any:
    """Register the layer for a ``serving.runtime: kubernetes`` stack; its summary (None for systemd stacks).

    The provider: on AWS from the EKS cluster's kubeconfig (the backend's seam), on bare metal from the
    kubeconfig secret (``kubeconfig_secret``, an Output the program read from the stack config; a secret
    placeholder offline)."""
    from llmcluster.render.kubernetes import kubernetes_plan

    kp = kubernetes_plan(plan)
    if kp is None:
        return None
    spec = plan.spec
    if spec.platform == "aws":
        if eks_kubeconfig is None:
            raise ValueError("aws.eks: serving.runtime kubernetes needs the stack's EKS cluster")
        source = eks_kubeconfig
    else:
        source = kubeconfig_secret if kubeconfig_secret is not None else pulumi.Output.secret(OFFLINE_KUBECONFIG)
    provider = k8s.Provider("kubernetes", kubeconfig=source, enable_server_side_apply=True)
    layer = KubernetesServing("k8s", KubernetesServingArgs(
        plan=kp, pki=pki, service_fqdn=f"serving.{kp.namespace}.svc.cluster.local",
        leaf_validity_hours=spec.pki.leaf_validity_days * 24,
        leaf_early_renewal_hours=early_renewal_hours(spec.pki.leaf_validity_days * 24, spec.pki.renew_at_fraction),
        crl_digest=crl_digest),
        pulumi.ResourceOptions(providers={"kubernetes": provider}))
    return {"namespace": kp.namespace, "workload": kp.workload, "groupSize": kp.group_size,
            "replicas": kp.replicas, "pin": dict(kp.pin), "objects": sorted(layer.resources),
            "warnings": list(kp.warnings)}
