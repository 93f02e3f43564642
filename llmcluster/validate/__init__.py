"""Validation above the models: a named registry of rules, and the validating loaders.

Layers, in the order they run (as Google Cluster Toolkit's validators do):

``field``
    The stack file's shape and the typed models (:mod:`llmcluster.spec`): YAML, sections,
    ``--set`` overrides, types, ranges, enums, unknown keys. If it fails nothing else runs.
``spec``
    Whole-spec rules over the typed spec: unique VLAN ids, references that resolve, pools on
    the VLANs their flows use, opt-ins for weaker settings, ...
``plan``
    Plan-aware rules: they need a planner's output (the IP plan, capacity sizing, the switch
    planner's ports), read through :class:`PlanFacts` (each plan computed once). They run after
    every whole-spec rule; a rule may be skipped by what was found before it (``requires``,
    ``unless``), so that no planner runs on input it does not accept.
``preflight``
    The target environment (hosts over SSH, the AWS API): only on request
    (``llmcluster validate --preflight``, :func:`preflight`), per platform.

Every rule has an id ``<domain>.<name>`` (``fabric.vlan-ids-unique``), its domain being the
module that holds it (one module per domain: ``fabric``, ``qos``, ``pools``, ``aws``,
``baremetal``, ``zones``, ``storage``, ``pki``, ``serving``, ``access``, ``lab``, ``switches``,
``nvidia``, ``addresses``; ``fields`` names the field layer), a layer and a summary (its docstring's first
paragraph). ``llmcluster validate --list-rules`` prints the registry; ``llmcluster validate
--json`` names the rule of each problem (``SpecError.rules``).

Adding a rule
-------------
1. In the domain's module (a new domain: a new module, imported below and named in
   :data:`~llmcluster.validate.registry.DOMAINS`, which orders the domains)::

       @rule("fabric.vlan-ids-unique")            # layer=SPEC by default
       def vlan_ids_unique(spec: Spec) -> Iterator[Problem]:
           \"\"\"No two VLAN roles share a VLAN id.\"\"\"       # the summary users see
           ...
           yield Problem("fabric.vlans.<role>.id", "what is wrong: how to fix it")

   A plan-aware rule takes ``facts: PlanFacts`` (``layer=PLAN``); a preflight rule takes a
   :class:`~llmcluster.validate.preflight.Target` (``layer=PREFLIGHT``, its domain is the
   platform it checks). Paths are the spec keys to change, without the ``llmcluster:`` prefix.
   Import constants and planners from :mod:`llmcluster.plan`; the planners never import rules.
2. If the rule assumes what another rule checks, skip it when that one fails:
   ``requires=("serving.pool",)``, or ``unless=("fabric.vlans",)`` for any problem under a key path.
3. Add ``tests/unit/malformed/NNN-<name>.yaml``: a stack with exactly this rule broken, headed
   ``# expect: <key.path>`` / ``# message: <text>`` / ``# rule: <rule id>``
   (``tests/unit/test_rules.py`` fails for a rule without one; preflight rules are tested in
   ``tests/unit/test_preflight.py``).
"""

from llmcluster.validate import (  # noqa: F401  (registers the rules; run order: registry.DOMAINS)
    access,
    addresses,
    aws,
    baremetal,
    fabric,
    fields,
    kubernetes,
    lab,
    monitoring,
    nvidia,
    pki,
    pools,
    qos,
    serving,
    storage,
    switches,
    zones,
)
from llmcluster.validate.preflight import Target, preflight, preflight_aws, preflight_baremetal, preflight_findings
from llmcluster.validate.registry import DOMAINS, FIELD, LAYERS, PLAN, PREFLIGHT, RULES, SPEC, Rule, rule, rules
from llmcluster.validate.runner import (
    Finding,
    PlanFacts,
    check_spec,
    load_from_pulumi,
    load_stack_file,
    validate_raw,
    validate_spec,
)

__all__ = [
    "DOMAINS", "FIELD", "LAYERS", "PLAN", "PREFLIGHT", "RULES", "SPEC", "Finding", "PlanFacts", "Rule", "Target",
    "check_spec", "load_from_pulumi", "load_stack_file", "preflight", "preflight_aws", "preflight_baremetal",
    "preflight_findings", "rule", "rules", "validate_raw", "validate_spec",
]
