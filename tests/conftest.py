"""Shared test set-up: the Keras backend chosen quietly, outputs kept out of the checkout,
deterministic seeds.

Tests never write into the repository: every output (tables/, figures/, report/) goes to a
session folder that starts as a copy of the committed tables and figures, and subprocesses
inherit it through AXIAL_DEEPLAB_OUTPUT_DIR.  `make test` therefore leaves `git status` clean.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from runtime import backend

backend.choose()  # KERAS_BACKEND, else tensorflow; library start-up notices kept off stderr

ROOT = Path(__file__).resolve().parent.parent
_OUTPUTS = Path(tempfile.mkdtemp(prefix="axial-deeplab-test-outputs-"))
for _folder in ("tables", "figures"):
    shutil.copytree(ROOT / _folder, _OUTPUTS / _folder)
os.environ["AXIAL_DEEPLAB_OUTPUT_DIR"] = str(_OUTPUTS)

import keras  # noqa: E402
import pytest  # noqa: E402

from reproductions import runner  # noqa: E402
from tests import fast_graphs  # noqa: E402

runner.use_output_dir(_OUTPUTS)
fast_graphs.use()


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


@pytest.fixture
def output_dir(tmp_path, monkeypatch):
    """A fresh, empty output folder for one test (tables/, figures/, report/ under it)."""
    for name, value in (("OUTPUT_DIR", tmp_path), ("TABLES_DIR", tmp_path / "tables"),
                        ("FIGURES_DIR", tmp_path / "figures")):
        monkeypatch.setattr(runner, name, value)
    monkeypatch.setenv("AXIAL_DEEPLAB_OUTPUT_DIR", str(tmp_path))
    return tmp_path


def _checkout_state() -> str | None:
    """`git status` of the checkout with the content of every changed file, or None outside git."""
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
        diff = subprocess.run(["git", "diff", "--binary"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return status + diff.decode(errors="replace")


_STATE_AT_START = _checkout_state()


def pytest_collection_modifyitems(session, config, items):
    """Tests marked `heavy` first: with two xdist workers, a long test that starts last keeps one
    core busy while the other has nothing left (minutes of CI wall time)."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


def pytest_sessionfinish(session, exitstatus):
    """The tests must leave the checkout as they found it (issue #10): fail the session if not."""
    shutil.rmtree(_OUTPUTS, ignore_errors=True)
    if _STATE_AT_START is not None and _checkout_state() != _STATE_AT_START:
        status = subprocess.run(["git", "status", "--short"], cwd=ROOT, capture_output=True, text=True).stdout
        print(f"\nERROR: the tests changed the checkout (git status now):\n{status}")
        session.exitstatus = 1
