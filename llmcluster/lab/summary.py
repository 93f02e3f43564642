"""``llmcluster lab summary`` (the last step of ``make lab``): what was built and how to call it.

Read in ten seconds: the hosts per pool, the VLANs, the model and its replicas (all from the plan),
the last verification (``lab verify`` saves its report in the state dir: totals, host x check group
counts, the failures in full), make lab's phase table and the slowest converge roles when they were
measured (:mod:`llmcluster.lab.phases`), where the inventory, the certificates (the lab's PKI export) and the
rendered artifacts are, a copy-paste ``curl`` and an OpenAI-Python-client snippet that call the model
through the mTLS gateway with the client certificate the plan's access policies admit
(:meth:`~llmcluster.plan.access.AccessPlan.caller_of`), the same request as ``llmcluster chat``, and
how to tear the lab down.

In the lab the gateway admits API calls only from the zone of its ``api`` flow (``clients``): this
machine stands for the ``admin`` zone, so the commands run inside that zone's probe namespace
(``ip netns exec <probe>``, as root). Nothing here needs root or touches the lab: it reads the plan
and files.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcluster.plan.build import Plan

#: The prompt of the printed commands.
PROMPT = "Say hello in five words."


@dataclass(frozen=True)
class CallCommands:
    """How to call the model through the gateway: shell commands and a Python snippet."""

    curl: str
    chat: str
    python: list[str]
    netns: str | None  # the probe namespace the commands run in (lab), else None
    client: str  # the PKI leaf used


def _llmcluster_program() -> str:
    """``llmcluster`` beside this interpreter (the project's venv) when it is there, else by name."""
    here = Path(sys.executable).parent / "llmcluster"
    return str(here) if here.is_file() else "llmcluster"


def client_netns(plan: Plan) -> str | None:
    """The lab probe namespace of the zone the gateway admits API calls from (None: no gateway, or no
    probe for that zone, e.g. a zone this machine stands for itself)."""
    from llmcluster.lab.probes import probe_sources
    from llmcluster.verify.gateway import api_client_zone

    gw = plan.serving.gateway
    if gw is None:
        return None
    zone = api_client_zone(plan, gw.to_dict())
    return next((p.netns for p in probe_sources(plan) if p.zone == zone), None)


def call_commands(plan: Plan, pki_dir: Path, *, netns: str | None, state_dir: Path | None = None,
                  prompt: str = PROMPT) -> CallCommands:
    """The curl, ``llmcluster chat`` and OpenAI-client calls of the plan's gateway with ``pki_dir``'s
    client identity (``netns``: run them in that network namespace)."""
    from llmcluster.chat import CHAT_PATH
    from llmcluster.plan.serving import gateway_address

    gw = plan.serving.gateway
    if gw is None:
        raise ValueError(f"stack {plan.spec.stack} has no serving.gateway")
    client = gw.access.caller_of(CHAT_PATH)
    address = gateway_address(gw, plan.ip)
    ca, cert, key = (str(pki_dir / "root-ca.pem"), str(pki_dir / "certs" / f"{client}.pem"),
                     str(pki_dir / "private" / f"{client}.key"))
    base = f"https://{gw.hostname}:{gw.port}"
    body = json.dumps({"model": plan.serving.model, "messages": [{"role": "user", "content": prompt}],
                       "max_tokens": 64})
    prefix = ["ip", "netns", "exec", netns] if netns else []
    curl = shlex.join([*prefix, "curl", "-sS", "--cacert", ca, "--cert", cert, "--key", key,
                       "--resolve", f"{gw.hostname}:{gw.port}:{address}", "-H", "Content-Type: application/json",
                       "--data-binary", body, f"{base}{CHAT_PATH}"])
    chat = [*prefix, _llmcluster_program(), "chat", "--stack", plan.spec.stack]
    if state_dir is not None:
        chat += ["--state-dir", str(state_dir)]
    python = [
        "import ssl, httpx, openai",
        f"ctx = ssl.create_default_context(cafile={ca!r})",
        f"ctx.load_cert_chain({cert!r}, {key!r})",
        f"client = openai.OpenAI(base_url={base + '/v1'!r}, api_key='mtls', http_client=httpx.Client(verify=ctx))",
        f"r = client.chat.completions.create(model={plan.serving.model!r}, "
        f"messages=[{{'role': 'user', 'content': {prompt!r}}}])",
        "print(r.choices[0].message.content)",
        f"# {gw.hostname} must resolve to {address}"
        + (f" and it must run in {netns} (as root: mkdir -p /etc/netns/{netns}; echo '{address} {gw.hostname}' "
           f">> /etc/netns/{netns}/hosts; ip netns exec {netns} python3 ...)" if netns else " (DNS or /etc/hosts)"),
    ]
    return CallCommands(curl=curl, chat=shlex.join([*chat, prompt]), python=python, netns=netns, client=client)


def built_lines(plan: Plan) -> list[str]:
    """Hosts per pool, VLANs, model and replicas: from the plan."""
    pools = []
    for name in plan.spec.pools:
        hosts = [h.name for h in plan.ip.hosts_in_pool(name)]
        pools.append(f"{name} {len(hosts)} ({', '.join(hosts)})")
    vlans = [f"{v.role} {v.id} {v.cidr} mtu {v.mtu}" for v in plan.ip.vlans.values()]
    cap, serving = plan.capacity, plan.serving
    heads = [r.members[0].name for r in serving.replicas if r.members]
    lines = [f"hosts     {len(plan.ip.hosts)}: " + "; ".join(pools),
             "VLANs     " + "; ".join(vlans),
             f"model     {serving.model} {cap.precision}: {len(serving.replicas)} replica(s) of {cap.gpus} x "
             f"{cap.gpu} (tp {cap.tp}, ep {cap.ep}), heads {', '.join(heads) or '-'}"]
    if plan.spec.lab is not None:
        lines.append("          (lab: GPUs and trtllm-serve are SIMULATED; addresses, firewall, TLS, gateway are real)")
    return lines


def summary_lines(plan: Plan, state_dir: Path, *, artifacts: Path | None = None, width: int | None = None,
                  state_dir_option: bool = False, phases: Path | None = None) -> list[str]:
    """The whole screen (``state_dir_option``: the printed chat command names ``--state-dir``; ``phases``:
    make lab's phases file, whose table comes after the verification when it is there)."""
    from llmcluster.lab.phases import CONVERGE_ROLES, load_role_times, phase_lines, read_phases
    from llmcluster.verify.output import report_lines
    from llmcluster.verify.run import LAB_REPORT, load_report

    stack = plan.spec.stack
    lines = [f"llmcluster lab {stack}: the cluster, and how to call it", ""]
    lines += built_lines(plan)
    lines.append("")
    report_path = state_dir / LAB_REPORT
    report = load_report(report_path)
    if report is None:
        lines.append("verify    no report yet: run `llmcluster lab verify`")
    else:
        lines.append(f"verify    (last `lab verify`, {report_path})")
        lines += ["  " + line if line else "" for line in report_lines(report, width=None if width is None
                                                                        else width - 2)]
    table = phase_lines(read_phases(phases) if phases is not None else None,
                        load_role_times(state_dir / CONVERGE_ROLES), source=phases)
    if table:
        lines += ["", *table]
    inventory, pki = state_dir / "inventory.yml", state_dir / "pki"
    lines += ["", "files",
              f"  inventory  {inventory}" + ("" if inventory.is_file() else "  (not written: `llmcluster lab up`)"),
              f"  PKI        {pki}" + ("" if (pki / "root-ca.pem").is_file() else "  (not exported yet: `lab up`)")]
    if artifacts is not None:
        lines.append(f"  rendered   {artifacts}" + ("" if artifacts.is_dir() else
                                                   f"  (not written: `llmcluster plan --stack {stack} --out "
                                                   f"{artifacts}`)"))
    if plan.serving.gateway is not None:
        netns = client_netns(plan)
        calls = call_commands(plan, pki, netns=netns, state_dir=state_dir if state_dir_option else None)
        where = (f" from the API clients' zone (as root: the lab's probe namespace {netns}; this machine is the "
                 "admin zone, which the gateway refuses)" if netns else "")
        lines += ["", f"call the model through the mTLS gateway as {calls.client}{where}:",
                  f"  {calls.curl}", "", f"  {calls.chat}", "", "  OpenAI Python client (pip install openai):"]
        lines += [f"    {line}" for line in calls.python]
    lines += ["", f"tear down: llmcluster lab down{' --state-dir ' + str(state_dir) if state_dir_option else ''}"
                  "   (--purge also deletes the host disks and the lab key)"]
    return lines


def print_summary(console: Any, plan: Plan, state_dir: Path, *, artifacts: Path | None = None,
                  state_dir_option: bool = False, phases: Path | None = None) -> None:
    width = console.width if console.is_terminal else None
    for line in summary_lines(plan, state_dir, artifacts=artifacts, width=width, state_dir_option=state_dir_option,
                              phases=phases):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
