"""Ctrl-C as a terminal sends it, for the tests that check a run ends at once."""

import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def interrupt(argv: list[str], ready, env=None, wait: float = 240) -> tuple[int, str, float, int]:
    """Start `argv` in its own process group, wait until `ready()` (or fail after `wait`
    seconds), send SIGINT to the whole group as a terminal's Ctrl-C does, and return (exit code,
    stderr, seconds from the signal to the exit, the group's id).

    The child gets Ctrl-C's default action: a pytest-xdist worker ignores SIGINT, and a process
    that inherits an ignored SIGINT installs no handler for it."""
    run = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + wait
        while not ready():
            assert run.poll() is None, f"ended before the signal: {run.communicate()}"
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.2)
        os.killpg(run.pid, signal.SIGINT)
        began = time.monotonic()
        _, err = run.communicate(timeout=30)
        return run.returncode, err, time.monotonic() - began, run.pid
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
