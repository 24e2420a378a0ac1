"""Faults end cleanly (issue #10): library start-up notices, killed and interrupted runs,
unwritable outputs, and a checkout left as it was.

The start-up test does not rely on this machine's CPU being noisy: a `sitecustomize` on the
child's path makes every import of TensorFlow print what TensorFlow prints on CPUs with
oneDNN (to file descriptor 2, as its C++ runtime does), so the test fails wherever the suite
lets such notices through.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.interrupts import interrupt

ROOT = Path(__file__).resolve().parent.parent
NOTICE = "I0000 00:00:1 port.cc:153] oneDNN custom operations are on (simulated start-up notice)"

NOISY_SITECUSTOMIZE = f'''
import importlib.abc, importlib.machinery, os, sys

class _Noisy(importlib.abc.MetaPathFinder):
    """Makes `import tensorflow` print a start-up notice to fd 2 before it loads."""
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None
        real = spec.loader

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return real.create_module(spec)

            def exec_module(self, module):
                os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                            b"written to STDERR\\n{NOTICE}\\n")
                real.exec_module(module)
        spec.loader = Loader()
        return spec

sys.meta_path.insert(0, _Noisy())
'''


@pytest.fixture
def noisy_env(tmp_path):
    site = tmp_path / "noisy-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NOISY_SITECUSTOMIZE)
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{ROOT}")
    env.pop("AXIAL_DEEPLAB_LIBRARY_NOTICES", None)
    return env


def run(args, env, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


POOL_SCRIPT = textwrap.dedent("""
    from runtime.processes import spawn_pool

    def load(_):
        import tensorflow as tf
        return tf.__version__

    if __name__ == "__main__":
        with spawn_pool(2) as pool:
            print(sorted(set(pool.map(load, range(2)))))
""")


def test_no_library_start_up_notice_reaches_the_terminal(noisy_env, tmp_path):
    # The simulation is real: with the suite's hook switched off, the notice shows.
    shown = run(["-c", "from runtime import backend; backend.choose(); import keras"],
                dict(noisy_env, AXIAL_DEEPLAB_LIBRARY_NOTICES="1"))
    assert NOTICE in shown.stderr
    # Bad input is one line, whatever the CPU prints (no library is loaded at all).
    bad = run(["run_all.py", "--tables", "12"], noisy_env)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == ["error: unknown table '12': the paper has tables 1-9"]
    # A command that loads TensorFlow in its own process...
    counting = run(["-m", "models.counting", "resnet50", "--input-size", "32", "32"], noisy_env)
    assert counting.returncode == 0, counting.stderr
    assert counting.stderr == ""
    # ...and in spawned worker processes, as the counting pool does.
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    pooled = run([str(script)], noisy_env)
    assert pooled.returncode == 0, pooled.stderr
    assert pooled.stderr == ""


KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from runtime.processes import spawn_pool

    def work(_):
        with open(os.path.join(sys.argv[1], str(os.getpid())), "w"):
            pass
        time.sleep(600)

    if __name__ == "__main__":
        with spawn_pool(2) as pool:
            pool.map(work, range(2))
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_workers_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    pids = tmp_path / "pids"
    pids.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(pids)], cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert _wait_for(lambda: len(list(pids.iterdir())) == 2, 60), "workers did not start"
        workers = [int(p.name) for p in pids.iterdir()]
        parent.kill()  # SIGKILL: no cleanup code of the parent runs
        parent.wait()
        assert _wait_for(lambda: not any(map(_alive, workers)), 5), "a worker outlived its parent"
    finally:
        parent.kill()


def test_ctrl_c_ends_a_counting_run_at_once_with_one_line(tmp_path):
    # Cold counting of Tab. 2 (a pool of spawned workers, minutes of work); Ctrl-C reaches the
    # whole process group, as from a terminal.
    env = dict(os.environ, AXIAL_DEEPLAB_CACHE_DIR=str(tmp_path / "cache"),
               AXIAL_DEEPLAB_OUTPUT_DIR=str(tmp_path / "out"))
    began = time.monotonic()  # then the workers are loading TensorFlow and counting
    code, err, elapsed, group = interrupt([sys.executable, "run_all.py", "--tables", "2", "--quiet"],
                                          ready=lambda: time.monotonic() - began > 8, env=env)
    assert code == 130
    assert err.splitlines() == ["interrupted: finished counts and training checkpoints are kept; run the "
                                "same command again to continue"]
    assert elapsed < 3, f"took {elapsed:.1f} s to stop"
    def survivors():
        pids = subprocess.run(["pgrep", "-s", str(group)], capture_output=True, text=True).stdout.split()
        return {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                for pid in pids if Path(f"/proc/{pid}/cmdline").exists()}
    assert _wait_for(lambda: not survivors(), 3), survivors()


def _send_to_the_process():
    # As a terminal's Ctrl-C is: the kernel may hand it to any thread not blocking it
    # (pytest-xdist's worker has several).
    os.kill(os.getpid(), signal.SIGINT)


def _send_from_another_thread():
    # The case CI met: a thread that does not block SIGINT is where the kernel delivers it.
    import threading

    def send():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.raise_signal(signal.SIGINT)

    sender = threading.Thread(target=send)
    sender.start()
    sender.join()


@pytest.mark.parametrize("send", [_send_to_the_process, _send_from_another_thread], ids=["process", "thread"])
def test_a_ctrl_c_while_the_workers_start_is_not_lost(monkeypatch, send):
    # A Ctrl-C that arrives while the parent spawns the workers must still end the run once
    # the pool exists, and stop the workers that started (CI lost one: the run went on).
    import multiprocessing

    from runtime import processes

    terminated = []

    class Pool:
        def terminate(self):
            terminated.append(True)

    class Context:
        def Pool(self, *args, **kwargs):
            send()
            return Pool()

    monkeypatch.setattr(multiprocessing, "get_context", lambda method: Context())
    # Python's own Ctrl-C handler, as in a terminal (a pytest-xdist worker ignores SIGINT).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            processes.spawn_pool(2)
            time.sleep(1)  # the interrupt is delivered before this ends
    finally:
        signal.signal(signal.SIGINT, previous)
    assert terminated  # the workers that had started are stopped, not left to the caller


def test_a_discarded_interrupt_prints_no_traceback_and_other_errors_still_do():
    """Under JAX a Ctrl-C can land in a garbage-collector callback, where Python discards it and
    prints "Exception ignored in ... Traceback": the watcher says the one line instead."""
    import types

    from runtime import processes

    import socket

    seen = []
    reader, writer = socket.socketpair()
    with reader, writer:
        hook = processes._quiet_lost_interrupts(seen.append, writer)
        hook(types.SimpleNamespace(exc_value=KeyboardInterrupt()))
        assert seen == [] and reader.recv(8) == bytes([signal.SIGINT])  # the watcher hears of it
        other = types.SimpleNamespace(exc_value=ValueError("a real one"))
        hook(other)
        assert seen == [other]


def test_unwritable_outputs_are_one_line_errors(tmp_path, capsys, output_dir):
    import run_all

    # (output_dir: run_all.main moves the output folder; the fixture puts it back afterwards.)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # As root a read-only folder is still writable, so the output folder is a file instead.
    assert run_all.main(["--tables", "1", "--quiet", "--output-dir", str(blocker)]) == 2
    err = capsys.readouterr().err
    # Found before any work starts (runtime/cli.check_writable), not after the counting.
    assert err.startswith(f"error: cannot write to {blocker}/tables (--output-dir)") and len(err.splitlines()) == 1


def test_unwritable_report_file_from_a_permission_error(tmp_path, monkeypatch):
    # The ordinary user's case: the folder refuses the file.
    import tempfile

    from runtime.files import WriteError, write_atomic

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError, match=r"^cannot write .*index.html: Permission denied$"):
        write_atomic(tmp_path / "report" / "index.html", "x")


@pytest.mark.heavy
def test_a_clean_checkout_stays_clean(tmp_path):
    """`run_all.py --check` and a plain re-run leave a committed checkout as it was (git status
    empty): --check writes nothing, and re-running unchanged code rewrites no output."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    clone = tmp_path / "clone"
    for name in files:
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).write_bytes((ROOT / name).read_bytes())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], cwd=clone, check=True)
    subprocess.run(git + ["add", "-A"], cwd=clone, check=True)
    subprocess.run(git + ["commit", "-qm", "snapshot"], cwd=clone, check=True)
    env = dict(os.environ, AXIAL_DEEPLAB_CACHE_DIR=str(ROOT / ".cache"))
    env.pop("AXIAL_DEEPLAB_OUTPUT_DIR")
    for args in (["--tables", "1", "--check"], ["--tables", "1"]):
        result = subprocess.run([sys.executable, "run_all.py", "--quiet", *args], cwd=clone, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
        assert [line for line in status.splitlines() if not line.endswith("report/")] == [], (args, status)
