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
    # While the workers start, SIGINT is blocked in this thread: a worker inherits the blocked
    # mask across exec, so a Ctrl-C to the process group waits in it until its initializer
    # has set it to be ignored (else each worker prints a traceback).  This process meanwhile
    # notes a Ctrl-C with its own handler, which does not depend on which thread the kernel
    # picks to deliver it (another thread may not block it), and acts on it once the pool
    # exists: it is never lost (CI lost one when this process ignored SIGINT instead).
    interrupted = []
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        pool = context.Pool(workers, initializer=_initialise_worker,
                            initargs=(os.getpid(), initializer, initargs))
    finally:  # unblock first: one pending here is delivered (and noted) at once
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        signal.signal(signal.SIGINT, previous)
    if interrupted and previous is not signal.SIG_IGN:
        pool.terminate()
        signal.raise_signal(signal.SIGINT)  # the caller's own handling of it (KeyboardInterrupt)
    return pool


INTERRUPTED = ("interrupted: finished counts and training checkpoints are kept; run the same command "
               "again to continue")
# Set by the code that reported an interrupt, so that the watcher does not say it twice.
interrupt_reported = threading.Event()


def exit_promptly_on_interrupt(grace: float = 1.0) -> None:
    """Make Ctrl-C end this process within about `grace` seconds, whatever it is doing.

    Python raises KeyboardInterrupt in the main thread between bytecodes, and the normal path
    (run_all.main) reports it and exits 130.  But the exception can be lost: under JAX it often
    lands in JAX's garbage-collector callback, where Python discards it ("Exception ignored
    in: <function _xla_gc_callback>"), and training went on to the end; under TensorFlow the
    unwinding of `fit` took 19 s.  So a watcher thread hears every SIGINT through the signal
    wake-up file descriptor (written by the C-level handler the moment the signal arrives,
    from any thread) and, if the process still runs `grace` seconds later, says the one line
    and exits 130 itself.  Every file the suite writes is written whole or not at all
    (runtime/files.py, the checkpoints' renames), so exiting at any point keeps the last
    checkpoint intact and the run resumable.  A KeyboardInterrupt Python discards is not
    printed either (the traceback of a gc callback told the user nothing).  Main thread only;
    call it once."""
    import socket

    if threading.current_thread() is not threading.main_thread() or hasattr(exit_promptly_on_interrupt, "sockets"):
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def watch():
        while True:
            received = reader.recv(64)
            if signal.SIGINT not in received:
                continue
            time.sleep(grace)
            if not interrupt_reported.is_set():
                print(INTERRUPTED, file=sys.stderr, flush=True)
            os._exit(130)

    threading.Thread(target=watch, daemon=True, name="interrupt-watch").start()
    exit_promptly_on_interrupt.sockets = (reader, writer)  # kept open for the process's life
    sys.unraisablehook = _quiet_lost_interrupts(sys.unraisablehook, writer)


def _quiet_lost_interrupts(default, watcher=None):
    """An unraisable-exception hook that drops a KeyboardInterrupt Python had to discard (in
    JAX's garbage-collector callback, say) instead of printing its traceback, and tells the
    `watcher` socket of exit_promptly_on_interrupt (which then reports it in one line and
    exits 130), even if something else has since taken the signal wake-up descriptor.  Every
    other exception goes to `default`."""
    def hook(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            default(unraisable)
            return
        if watcher is not None:
            try:
                watcher.send(bytes([signal.SIGINT]))
            except OSError:
                pass  # its buffer is full: the watcher has been told already
    return hook


def exit_after_interrupt(code: int = 130) -> None:
    """End the process now, once the interrupt has been reported: the interpreter's own shutdown
    (TensorFlow's exit handlers, joining the input pipeline's threads) took seconds, and the
    watcher cannot act during it.  Nothing is lost: every output is written whole or not at all.
    multiprocessing's own finalisers still run (they release the worker pool's semaphores,
    which its resource tracker would otherwise report as leaked)."""
    from multiprocessing import util

    try:
        util._run_finalizers()
    except Exception:  # noqa: BLE001 (exiting all the same)
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
