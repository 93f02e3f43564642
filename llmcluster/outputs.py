"""Stack output names: the contract between the Pulumi program, the CLI, Ansible and the tests.

Both the program (``pulumi.export``) and every consumer import these constants, so a
rename is a single change and a typo is an ImportError, not a silent ``None``.
"""

SPEC_SUMMARY = "spec"
IP_PLAN = "ipPlan"
CAPACITY = "capacity"
INVENTORY = "inventory"
PKI_ROOT_CERT = "pkiRootCertPem"
PKI_CHAIN = "pkiChainPem"
PKI_CERTS = "pkiCertificates"  # name -> certificate PEM (public)
PKI_KEYS = "pkiPrivateKeys"  # name -> private key PEM (always a secret output)
#: The intermediate CA's private key PEM (a secret output): what signs the CRL (``llmcluster pki
#: revoke`` / ``pki crl`` read it with ``--show-secrets``, in memory only; never written to a folder).
PKI_INTERMEDIATE_KEY = "pkiIntermediateKeyPem"
#: The root CA's CRL (public): empty, valid as long as the root, signed by the root key inside the
#: program. OpenSSL consumers that check the whole chain (HAProxy's ``crl-file``) need a CRL for
#: every CA certificate of the chain; the root key itself is never exported.
PKI_ROOT_CRL = "pkiRootCrlPem"
#: Bare metal: switch name -> its rendered configuration (baremetal.switch_os), for push and
#: render-only alike (a change-managed network takes them from here); {} on AWS.
SWITCH_CONFIGS = "switchConfigs"
#: switch name -> sha256 of the configuration ``pulumi up`` applied (push mode only, else {}).
SWITCH_APPLIED = "switchApplied"

#: AWS: VPC, security groups, instance ids, the stack key, the model bucket, the NLB's DNS name,
#: the EKS cluster (or None), the plan's warnings. None on bare metal.
AWS = "aws"
#: AWS with EKS: the kubeconfig of the private endpoint (exec auth, no credential), the seam the
#: Kubernetes serving layer takes its provider from. None without EKS.
KUBECONFIG = "kubeconfig"

#: serving.runtime kubernetes: namespace, workload (Deployment | LeaderWorkerSet), the active pin and the
#: objects registered (llmcluster.components.kubernetes). None for systemd stacks.
KUBERNETES_SERVING = "kubernetesServing"

ALL = (SPEC_SUMMARY, IP_PLAN, CAPACITY, INVENTORY, PKI_ROOT_CERT, PKI_CHAIN, PKI_CERTS, PKI_KEYS,
       PKI_INTERMEDIATE_KEY, PKI_ROOT_CRL, SWITCH_CONFIGS, SWITCH_APPLIED, AWS, KUBECONFIG,
       KUBERNETES_SERVING)
#: Registered as secrets by the program; never in a plain output, the plan document or an artifact.
SECRET = (PKI_KEYS, PKI_INTERMEDIATE_KEY)
