"""Faults at the entry points end cleanly (issue #23): bad input and unwritable folders are
refused in one line, exit code 2, before TensorFlow or JAX loads and before anything is
written; a killed proxy-data build leaves nothing that stays behind.

Commands run as subprocesses from the repository root with `-X importtime`, so each test also
sees which modules the command imported: a refusal that comes before any work imports no
numerical library.  Their outputs and caches are pointed into tmp_path.
"""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("tensorflow", "jax", "jaxlib", "keras")


def run(args, tmp_path, **env):
    """(exit code, stdout, stderr lines other than -X importtime's, top-level modules imported)."""
    environ = dict(os.environ, AXIAL_DEEPLAB_OUTPUT_DIR=str(tmp_path / "outputs"),
                   AXIAL_DEEPLAB_CACHE_DIR=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1")
    environ.pop("KERAS_BACKEND", None)
    environ.update(env)
    done = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)
    lines, modules = [], set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:"):
            modules.add(line.rsplit("|", 1)[-1].strip().split(".")[0])
        else:
            lines.append(line)
    return done.returncode, done.stdout, lines, modules


def assert_refused(result, *expected):
    code, _, err, modules = result
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    for text in expected:
        assert text in err[0]
    assert not modules & set(LIBRARIES), f"loaded {modules & set(LIBRARIES)} before refusing"


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --- 1. models.counting parses and checks its arguments before Keras loads ----------------------

def test_counting_command_line_answers_before_any_library_loads(tmp_path):
    code, out, err, modules = run(["-m", "models.counting", "--help"], tmp_path)
    assert code == 0 and err == []
    assert out.startswith("usage: python -m models.counting") and "--backend {tensorflow,jax}" in out
    assert not modules & set(LIBRARIES), f"--help loaded {modules & set(LIBRARIES)}"
    assert_refused(run(["-m", "models.counting", "resnet50", "--input-size", "x"], tmp_path),
                   "--input-size", "(see python -m models.counting --help)")
    assert_refused(run(["-m", "models.counting", "resnet50", "--backend", "torch"], tmp_path), "--backend")
    assert_refused(run(["-m", "models.counting", "resnet50", "--input-size", "0", "3"], tmp_path),
                   "--input-size must be positive, got 0 3")
    assert_refused(run(["-m", "models.counting"], tmp_path), "preset")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "cache").exists()


# --- 2. seeds are bounded by what numpy's seeding takes ------------------------------------------

def test_seeds_beyond_numpy_range_are_refused_in_one_line(tmp_path):
    import run_all

    assert_refused(run(["run_all.py", "--tables", "6", "--fidelity", "proxy", "--seeds", "4294967296,1,2"],
                       tmp_path), "seed 4294967296 is too large")
    assert tree(tmp_path) == []
    # The largest seed numpy takes (keras.utils.set_random_seed -> numpy.random.seed) is accepted.
    assert run_all.parse_seeds(f"{2**32 - 1},0,1") == (2**32 - 1, 0, 1)
    with pytest.raises(run_all.UsageError, match="too large"):
        run_all.parse_seeds(f"0,1,{2**32}")


# --- 3. output and cache folders: empty, unwritable, found before any work ----------------------

def test_unusable_output_and_cache_folders_are_refused_before_any_work(tmp_path):
    assert_refused(run(["run_all.py", "--tables", "1", "--output-dir", ""], tmp_path), "--output-dir is empty")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # A file where the output folder should be (as root a read-only folder is still writable).
    assert_refused(run(["run_all.py", "--tables", "1", "--output-dir", str(blocker)], tmp_path),
                   f"{blocker} is not a folder")
    # A file where one of its folders should be: the folders the check made are removed again.
    out = tmp_path / "out"
    out.mkdir()
    (out / "figures").write_text("")
    assert_refused(run(["run_all.py", "--tables", "1", "--output-dir", str(out)], tmp_path),
                   "figures is not a folder")
    assert tree(out) == ["figures"]
    # The cache folder (AXIAL_DEEPLAB_CACHE_DIR) too.
    assert_refused(run(["run_all.py", "--tables", "1", "--output-dir", str(tmp_path / "fresh")], tmp_path,
                       AXIAL_DEEPLAB_CACHE_DIR=str(blocker / "cache")), "cache folder")
    assert tree(tmp_path) == ["a-file", "out", "out/figures"]


def test_read_only_output_folder_is_refused_before_any_work(tmp_path):
    if os.geteuid() == 0:  # root writes into read-only folders, but not into sysfs
        locked, why = Path("/sys/kernel"), "Operation not permitted"
    else:
        locked, why = tmp_path / "locked", "Permission denied"
        locked.mkdir()
        locked.chmod(0o555)
    try:
        assert_refused(run(["run_all.py", "--tables", "1", "--output-dir", str(locked)], tmp_path),
                       f"cannot write to {locked}/tables (--output-dir): {why}")
    finally:
        if locked.is_relative_to(tmp_path):
            locked.chmod(0o755)
    assert not (locked / "tables").exists()


def test_the_folder_check_leaves_no_trace(tmp_path):
    from runtime.cli import UsageError, check_writable

    check_writable([tmp_path / "a" / "b" / "tables", tmp_path / "a" / "b" / "figures"], "test")
    assert tree(tmp_path) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match=r"^cannot write to .*/file/x \(test\): .*/file is not a folder$"):
        check_writable([tmp_path / "new" / "x", tmp_path / "file" / "x"], "test")
    assert tree(tmp_path) == ["file"]


# --- 4. proxy data: staging folders of killed builds are removed; ordinary permissions -----------

def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_stale_staging_folders_go_and_prepared_data_are_ordinary_folders(tmp_path, monkeypatch, umask_022):
    from runtime import files
    from training import experiments

    cache = tmp_path / "proxy-data"
    monkeypatch.setattr(experiments, "DATA_CACHE_DIR", cache)
    cache.mkdir()
    stale = [cache / f".panoptic-{_dead_pid()}-0badc0de",  # its build was killed
             cache / ".panoptic-k2j3h4g5",  # tempfile.mkdtemp's name, from older code
             cache / f".panoptic-{os.getpid()}-00000000"]  # this pid, reused, but not made here
    for folder in stale:
        (folder / "annotations").mkdir(parents=True)
        (folder / "annotations" / "partial.json").write_text("{")
    live = cache / f".panoptic-{os.getppid()}-0000cafe"  # a running process's build
    live.mkdir()

    data = experiments.Data("panoptic-proxy", train=2, val=1, render_size=(17, 17))
    root = experiments.prepared_proxy(data)
    assert not any(folder.exists() for folder in stale)
    assert live.is_dir()
    assert sorted(p.name for p in cache.iterdir()) == sorted([live.name, root.name])
    assert (root / ".complete").exists() and len(list((root / "train2017").iterdir())) == 2
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert files.remove_stale_staging(cache, ".panoptic-") == []


def test_an_interrupted_build_removes_its_staging_folder(tmp_path, monkeypatch):
    from data import proxy
    from training import experiments

    cache = tmp_path / "proxy-data"
    monkeypatch.setattr(experiments, "DATA_CACHE_DIR", cache)

    def interrupted(root, split, *args, **kwargs):
        (Path(root) / split).mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(proxy, "write_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        experiments.prepared_proxy(experiments.Data("panoptic-proxy", train=1, val=1, render_size=(9, 9)))
    assert list(cache.iterdir()) == []


def test_two_builds_at_once_both_use_the_first_finished(tmp_path, monkeypatch):
    from data import proxy
    from training import experiments

    cache = tmp_path / "proxy-data"
    monkeypatch.setattr(experiments, "DATA_CACHE_DIR", cache)
    data = experiments.Data("panoptic-proxy", train=1, val=1, render_size=(9, 9))
    root = cache / f"panoptic-{proxy.renderer_key()}-1-1-9x9"

    def other_process_finishes_first(staging, split, *args, **kwargs):
        (Path(staging) / split).mkdir()
        if split == "val":  # meanwhile another process has renamed its complete copy into place
            root.mkdir()
            (root / "theirs").write_text("")
            (root / ".complete").write_text("")

    monkeypatch.setattr(proxy, "write_dataset", other_process_finishes_first)
    assert experiments.prepared_proxy(data) == root
    assert sorted(p.name for p in root.iterdir()) == [".complete", "theirs"]
    assert [p.name for p in cache.iterdir()] == [root.name]
