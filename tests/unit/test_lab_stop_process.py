"""llmcluster.lab._sys.stop_process: the one terminate-wait-kill of the processes the lab's tests and
benches start (the stand-in engines, the real-model engine)."""

from __future__ import annotations

import subprocess
import sys
import time

from llmcluster.lab._sys import stop_process


def test_a_process_that_ends_on_sigterm_is_not_killed():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop_process(proc, timeout=10) == -15


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout():
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "up\n"  # SIGTERM is ignored from here on
    t = time.monotonic()
    assert stop_process(proc, timeout=1) == -9
    assert 0.9 <= time.monotonic() - t < 10
    proc.stdout.close()


def test_an_ended_process_keeps_its_status():
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    assert stop_process(proc) == 3
