"""serving.runtime in the inventory and ansible/site.yml: with kubernetes the hosts get no serving units and no host
gateway (the pods and the gateway Deployment serve); drivers, fabric manager, firewall and storage stay."""

from __future__ import annotations

import functools

import pytest
import yaml

from llmcluster.inventory import build_inventory
from tests.conftest import ROOT, init_ansible_plugins, load_plan
from tests.helpers import k8s

SITE = ROOT / "ansible" / "site.yml"
#: role -> the inventory flag (all vars) its condition must read
GATED = {"tensorrt_llm": "llmcluster_serving_units_on_hosts", "serving_tls": "llmcluster_serving_units_on_hosts",
         "gateway": "llmcluster_gateway_on_hosts", "audit_log": "llmcluster_gateway_on_hosts",
         "audit_cloudwatch": "llmcluster_gateway_on_hosts"}
CASES = {"systemd": ("prod-baremetal", ()), "kubernetes": ("prod-baremetal", k8s.BAREMETAL),
         "kubernetes-lws": ("prod-baremetal", k8s.BAREMETAL_LWS), "aws-eks": ("prod-aws", k8s.AWS_EKS)}


@functools.cache
def inventory(case: str) -> dict:
    stack, over = CASES[case]
    return build_inventory(load_plan(stack, over))


def test_the_plan_decides_once_and_the_inventory_carries_it():
    for case in CASES:
        plan = load_plan(*CASES[case])
        inv = inventory(case)
        v = inv["all"]["vars"]
        k8s_runtime = case != "systemd"
        assert plan.serving.runtime == v["llmcluster_serving_runtime"] == ("kubernetes" if k8s_runtime else "systemd")
        assert v["llmcluster_serving_units_on_hosts"] is plan.serving.units_on_hosts is (not k8s_runtime), case
        assert v["llmcluster_gateway_on_hosts"] is plan.serving.gateway_on_hosts is (not k8s_runtime), case
        # the GPU hosts stay in their groups (drivers, fabric manager, storage still converge there)
        assert inv["gpu"]["hosts"] == inventory("systemd" if case != "aws-eks" else case)["gpu"]["hosts"]


def test_no_gateway_means_no_host_gateway_even_with_systemd():
    plan = load_plan("prod-baremetal", ("serving.gateway=null", "access=null"))
    assert plan.serving.units_on_hosts and not plan.serving.gateway_on_hosts


def _roles(play: dict) -> dict[str, dict]:
    return {(r["role"] if isinstance(r, dict) else r): (r if isinstance(r, dict) else {}) for r in play["roles"]}


def _conditions(entry: dict) -> list[str]:
    w = entry.get("when", [])
    return [w] if isinstance(w, str) else list(w)


def test_site_gates_exactly_the_serving_and_gateway_roles_on_the_plans_flags():
    plays = yaml.safe_load(SITE.read_text())
    seen = set()
    for play in plays:
        for role, entry in _roles(play).items():
            conds = " ".join(_conditions(entry))
            if role in GATED:
                seen.add(role)
                assert GATED[role] in conds, f"site.yml {play['hosts']}: {role} must read {GATED[role]}"
            else:
                assert "on_hosts" not in conds and "runtime" not in conds, f"{role} must not depend on the runtime"
    assert seen == set(GATED)


def _evaluate(cond: str, variables: dict) -> bool:
    init_ansible_plugins()
    from ansible.template import Templar, trust_as_template

    return bool(Templar(variables=variables).template(trust_as_template(f"{{{{ ({cond}) | bool }}}}")))


@pytest.mark.parametrize("case", sorted(CASES))
def test_site_conditions_evaluated_over_the_inventory(case):
    """Ansible's templar evaluates site.yml's conditions with each host's variables: the serving roles run on the
    replica hosts and the gateway roles on the gateways with systemd, on no host with kubernetes; the rest stay."""
    inv = inventory(case)
    plays = yaml.safe_load(SITE.read_text())
    ran: dict[str, set[str]] = {}
    for play in plays:
        group = play["hosts"]
        if group not in inv:
            continue
        for host in inv[group]["hosts"]:
            variables = {**inv["all"]["vars"], **inv["_meta"]["hostvars"][host]}
            for role, entry in _roles(play).items():
                if all(_evaluate(c, variables) for c in _conditions(entry)):
                    ran.setdefault(role, set()).add(host)
    if case == "systemd":
        assert ran["tensorrt_llm"] and ran["serving_tls"] and ran["gateway"] and ran["audit_log"]
        assert not ran.get("audit_cloudwatch"), "bare metal: no CloudWatch shipping"
    else:
        assert not {r for r in GATED if ran.get(r)}, {r: ran.get(r) for r in GATED}
    for role in ("nvidia_driver", "nvidia_fabricmanager", "firewall", "nvme_raid", "model_store"):
        assert ran.get(role), f"{case}: {role} must still converge"


def test_only_aws_gateways_ship_their_access_log_to_cloudwatch():
    """site.yml's conditions over prod-aws's inventory: audit_cloudwatch runs on exactly the gateways."""
    inv = build_inventory(load_plan("prod-aws", ()))
    play = next(p for p in yaml.safe_load(SITE.read_text()) if p["hosts"] == "gateway")
    entry = _roles(play)["audit_cloudwatch"]
    ran = {h for h in inv["gateway"]["hosts"]
           if all(_evaluate(c, {**inv["all"]["vars"], **inv["_meta"]["hostvars"][h]}) for c in _conditions(entry))}
    assert ran == set(inv["gateway"]["hosts"]) and ran
