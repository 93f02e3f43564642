"""Issue 18's "must show": ``make lab``'s final summary code path against the converged lab, and the
call command it prints works when executed (a chat completion comes back through the real HAProxy
mTLS gateway, from the API clients' probe namespace, with the exported client certificate).

The verification report the summary reads is a real ``lab verify`` run of the gateway's
valid-client check (the whole suite takes minutes; its counts are asserted as the summary shows them).
"""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from llmcluster.lab.summary import call_commands, client_netns, summary_lines
from llmcluster.verify.run import LAB_REPORT, load_report, run_verify, save_report

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("lab")]


def test_the_summary_describes_the_lab_and_its_curl_gets_an_answer(lab, lab_converged):
    state = lab.state_dir
    report = run_verify(lab.plan.spec.stack, lab_converged, keyword="valid-client")
    save_report(report, state / LAB_REPORT)
    saved = load_report(state / LAB_REPORT)
    assert saved is not None and saved.results == report.results and report.counts.get("passed", 0) >= 1
    c = report.counts

    lines = summary_lines(lab.plan, state)
    text = "\n".join(lines)
    assert f"hosts     {len(lab.plan.ip.hosts)}: " in text
    assert (f"  verify {lab.plan.spec.stack}: {c.get('passed', 0)} passed, {c.get('failed', 0)} failed, "
            f"{c.get('skipped', 0)} skipped") in lines
    assert f"  PKI        {state / 'pki'}" in lines  # exported by write_inventory, no "(not exported yet)"

    curl = next(line.strip() for line in lines if " curl " in line)
    assert curl == call_commands(lab.plan, state / "pki", netns=client_netns(lab.plan)).curl
    proc = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"{curl}\nexit {proc.returncode}: {proc.stderr[-1000:]}"
    try:
        body = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not a JSON completion: {proc.stdout[:500]!r} ({shlex.split(curl)[-1]})") from None
    assert body["choices"][0]["message"]["content"].strip(), body
