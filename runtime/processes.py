"""Worker processes that end with their parent, and Ctrl-C that ends a run at once.

Counting the paper's models runs in a pool of fresh interpreters ("spawn": TensorFlow is not
fork-safe).  A worker asks the kernel to kill it when its parent dies (Linux prctl
PR_SET_PDEATHSIG) and, everywhere, watches its parent's pid, so a parent killed by SIGKILL
leaves no worker behind writing caches.  Workers ignore SIGINT: Ctrl-C reaches the whole
process group, and only the parent decides (it terminates the pool at once).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _initialise_worker(parent_pid: int, initializer, initargs) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # also discards one pending from the start-up
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # the parent's mask is inherited
    _die_with(parent_pid)
    from runtime import backend

    backend.quiet_startup()
    if initializer is not None:
        initializer(*initargs)


def spawn_pool(workers: int, initializer=None, initargs=()) -> multiprocessing.pool.Pool:
    """A pool of `workers` fresh interpreters that die with this process.  Use it as a context
    manager: leaving the block (normally or by an exception, Ctrl-C included) terminates it."""
    import multiprocessing.pool  # noqa: F401  (the type in the annotation)

    context = multiprocessing.get_context("spawn")
    # Ignored signals stay ignored across exec: a worker ignores SIGINT from its first
    # instruction, not only once its initializer runs (else Ctrl-C during its start-up prints
    # a traceback per worker).  The parent also blocks SIGINT meanwhile: on Linux a blocked
    # signal stays pending even while ignored, so a Ctrl-C that arrives while the workers
    # start is delivered once the handler is back, instead of being lost (the run would go on).
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return context.Pool(workers, initializer=_initialise_worker,
                            initargs=(os.getpid(), initializer, initargs))
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
