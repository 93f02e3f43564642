"""Issue 17 part 4's "must show" in the lab: with the real-model stand-in on
(``LLMCLUSTER_LAB_MODEL=smollm2``; llmcluster.lab.llama_engine, a LAB STAND-IN: SmolLM2-135M on
llama.cpp in trtllm-serve's place, behind the same unit, manifest check and health gate), a chat
completion through the real HAProxy mTLS gateway, from the API clients' probe namespace with the
exported client certificate, is a real answer (it follows the prompt; usage counts real tokens), and
``llmcluster bench serve`` streams through the gateway.

Skipped unless the model is on (the default lab serves the canned stand-in, whose answers say
SIMULATED). Run by the lab owner: ``LLMCLUSTER_LAB_MODEL=smollm2`` in the environment of the pytest
run that brings the lab up (the GPU hosts get the engine at ``lab up``, the GGUF at converge).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmcluster.chat import CHAT_PATH
from llmcluster.lab import llama_engine
from llmcluster.lab.summary import call_commands, client_netns

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("lab")]


@pytest.fixture(scope="module")
def model_on() -> None:
    if not llama_engine.enabled():
        pytest.skip(f"the lab serves the canned stand-in: set {llama_engine.ENV_SWITCH}={llama_engine.MODEL_CHOICE} "
                    "for the real-model stand-in (docs/lab.md)")


def _ask(lab, prompt: str) -> dict:
    curl = call_commands(lab.plan, lab.state_dir / "pki", netns=client_netns(lab.plan), prompt=prompt).curl
    proc = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{curl}\nexit {proc.returncode}: {proc.stderr[-1000:]}"
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not a JSON completion: {proc.stdout[:500]!r}") from None


def test_a_real_answer_through_the_mtls_gateway(model_on, lab, lab_converged):
    answers = {}
    for prompt in ("What is the capital of France? Answer in one word.", "Write one word: blue."):
        body = _ask(lab, prompt)
        text = body["choices"][0]["message"]["content"]
        assert text.strip() and "SIMULATED" not in text, body
        assert body["usage"]["completion_tokens"] > 0 and body["usage"]["prompt_tokens"] > 5, body
        assert str(body.get("system_fingerprint", "")).startswith("llmcluster-sim:"), body  # which GPU host
        answers[prompt] = (text, body["usage"]["prompt_tokens"])
    (a, pa), (b, pb) = answers.values()
    assert a != b and pa != pb, answers


def test_bench_serve_streams_through_the_gateway(model_on, lab, lab_converged, tmp_path):
    plan = lab.plan
    client = plan.serving.gateway.access.caller_of(CHAT_PATH)
    netns = client_netns(plan)
    out = tmp_path / "serve-lab-gateway.json"
    argv = [sys.executable, "-c", "import sys; from llmcluster.cli import main; sys.exit(main())", "bench", "serve",
            "--stack", plan.spec.stack, "--pki-dir", str(lab.state_dir / "pki"), "--client", client,
            "--concurrency", "2", "--requests", "8", "--warmup", "1", "--isl", "64", "--osl", "32", "--out", str(out)]
    proc = subprocess.run([*(["ip", "netns", "exec", netns] if netns else []), *argv], capture_output=True,
                          text=True, timeout=600, check=False)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(out.read_text())["summary"]
    assert summary["ok"] == 8 and summary["errors"] == 0 and summary["output_tokens_mean"] > 1, summary
