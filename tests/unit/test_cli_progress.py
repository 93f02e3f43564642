"""Progress without a terminal: ``converge`` (and ``lab converge``) print a line per play and host
milestone with the elapsed time when stdout is no TTY (CI logs), the live table on a TTY; the lab's
long steps (``lab up``, ``lab down``) likewise. Both paths, with rich's ``force_terminal``."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from llmcluster import cli
from llmcluster import converge as C
from llmcluster.lab.runtime import rich_progress


def _events() -> list[dict]:
    def ev(kind, **data):
        return {"event": kind, "event_data": data}

    return [
        ev("playbook_on_play_start", play="common", play_pattern="all"),
        ev("runner_on_start", host="gw-01", task="packages"),
        ev("runner_on_ok", host="gw-01", task="packages", res={"changed": True}),
        ev("runner_on_ok", host="gpu-01", task="packages", res={"changed": False}),
        ev("runner_on_failed", host="gpu-01", task="probe", ignore_errors=True, res={"msg": "ignored"}),
        ev("playbook_on_play_start", play="gateway", play_pattern="gateway"),
        ev("runner_on_failed", host="gw-01", task="haproxy config", res={"msg": "haproxy -c failed"}),
        ev("runner_on_unreachable", host="gpu-02", task="x", res={"msg": "ssh: connect timed out"}),
        ev("playbook_on_stats"),
    ]


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        self.t += 1.5
        return self.t


def test_plain_progress_lines():
    lines: list[str] = []
    p = C.PlainProgress(lines.append, clock=_Clock())
    for e in _events():
        p(e)
    assert lines == [
        "[    3.0s] play 'common' on all",
        "[    6.0s]   gpu-01: play 'common' done in 3.0s: ok 1, changed 0",
        "[    7.5s]   gw-01: play 'common' done in 3.0s: ok 1, changed 1",
        "[   10.5s] play 'gateway' on gateway",
        "[   12.0s]   gw-01: FAILED 'haproxy config': haproxy -c failed",
        "[   13.5s]   gpu-02: UNREACHABLE: ssh: connect timed out",
        "[   16.5s]   gpu-02: play 'gateway' done in 6.0s: ok 0, changed 0, unreachable 1",
        "[   18.0s]   gw-01: play 'gateway' done in 6.0s: ok 0, changed 0, failed 1",
        "[   19.5s] playbook done",
    ]


def _fake_run_playbook(playbook, inventory, *, on_progress=None, on_event=None, **kw):
    hosts: dict[str, C.HostProgress] = {}
    for e in _events():
        if on_event is not None:
            on_event(e)
        data = e["event_data"]
        if on_progress is not None and data.get("host"):
            hosts.setdefault(data["host"], C.HostProgress(data["host"])).task = data.get("task", "")
            on_progress(hosts)
    stats = {h: {k: 0 for k in C.STAT_KEYS} for h in ("gpu-01", "gw-01")}
    stats["gw-01"]["ok"] = 1
    return C.ConvergeResult(rc=0, status="successful", stats=stats, hosts=hosts)


@pytest.mark.parametrize("terminal", [False, True])
def test_converge_progress_on_a_log_and_on_a_terminal(terminal, monkeypatch, tmp_path, capsys):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=120, highlight=False, soft_wrap=True)
    monkeypatch.setattr(cli, "_console", lambda stderr=False: console)
    monkeypatch.setattr(C, "run_playbook", _fake_run_playbook)
    inv, book = tmp_path / "inventory.yml", tmp_path / "site.yml"
    inv.write_text("all: {}\n")
    book.write_text("- hosts: all\n")
    rc = cli.main(["converge", "--inventory", str(inv), "--playbook", str(book)])
    assert rc == 0, capsys.readouterr().err
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    assert "recap" in out and "gw-01" in out
    plain = re.findall(r"^\[ *\d+\.\ds\] .*$", out, flags=re.M)
    if terminal:
        assert plain == []  # the live table, no log lines
    else:
        assert plain[0].endswith("] play 'common' on all")
        assert any(line.endswith("gw-01: FAILED 'haproxy config': haproxy -c failed") for line in plain)
        assert plain[-1].endswith("] playbook done")
        assert "\x1b[" not in buf.getvalue()


@pytest.mark.parametrize("terminal", [False, True])
def test_lab_steps_progress_on_a_log_and_on_a_terminal(terminal):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=100)
    with rich_progress("lab up", console=console) as progress:
        progress("base image cached")
        progress("gw-01: sshd up")
    out = buf.getvalue()
    lines = re.findall(r"^\[ *\d+\.\ds\] lab up: (.*)$", out, flags=re.M)
    if terminal:
        assert lines == [] and "gw-01: sshd up" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    else:
        assert lines == ["base image cached", "gw-01: sshd up"]
        assert "\x1b[" not in out
