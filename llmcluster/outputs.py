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
#: Bare metal: switch name -> its rendered configuration (baremetal.switch_os), for push and
#: render-only alike (a change-managed network takes them from here); {} on AWS.
SWITCH_CONFIGS = "switchConfigs"
#: switch name -> sha256 of the configuration ``pulumi up`` applied (push mode only, else {}).
SWITCH_APPLIED = "switchApplied"

ALL = (SPEC_SUMMARY, IP_PLAN, CAPACITY, INVENTORY, PKI_ROOT_CERT, PKI_CHAIN, PKI_CERTS, PKI_KEYS,
       SWITCH_CONFIGS, SWITCH_APPLIED)
SECRET = (PKI_KEYS,)
