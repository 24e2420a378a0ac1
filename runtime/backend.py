"""The Keras backend (TensorFlow or JAX) and a quiet start-up of the numerical libraries.

Keras fixes its backend when it is first imported, from `KERAS_BACKEND`; every entry point
chooses it (`--backend`, default: `KERAS_BACKEND` if set, else tensorflow) before anything
imports Keras, so argument errors and `--help` answer without loading a library.

TensorFlow's C++ runtime prints start-up notices straight to file descriptor 2 while its
shared libraries load (absl's "All log messages before absl::InitializeLog() ...", oneDNN's
"custom operations are on", the CPU-feature guard), and which ones depends on the CPU:
`TF_CPP_MIN_LOG_LEVEL` does not reach them on every machine.  `quiet_startup()` installs an
import hook that points descriptor 2 at a temporary file while `tensorflow`, `jax` or
`jaxlib` load, wherever they are first imported (an entry point, Keras itself, a worker
process); what they printed is shown only if the import fails.
`AXIAL_DEEPLAB_LIBRARY_NOTICES=1` turns the hook off, to see the notices.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import tempfile
from contextlib import contextmanager

BACKENDS = ("tensorflow", "jax")
DEFAULT_BACKEND = "tensorflow"
QUIET_MODULES = ("tensorflow", "jax", "jaxlib")


class BackendError(RuntimeError):
    """A backend that cannot be used (unknown, not installed, or another one already loaded)."""


def default_backend() -> str:
    return os.environ.get("KERAS_BACKEND") or DEFAULT_BACKEND


def choose(name: str | None = None) -> str:
    """Fix the Keras backend for this process (and the processes it starts); returns it.

    Must run before Keras is imported; choosing the backend Keras already has is a no-op."""
    name = name or default_backend()
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise BackendError(f"Keras is already loaded with the {current} backend; the backend "
                               "is fixed at start-up (KERAS_BACKEND or --backend)")
        return name
    if importlib.util.find_spec(name) is None:
        raise BackendError(f"the {name} backend needs the {name} package, which is not installed "
                           "(pip install -r requirements.txt)")
    os.environ["KERAS_BACKEND"] = name
    quiet_startup()
    if name == "jax":
        _jax_compilation_cache()
    return name


def _jax_compilation_cache() -> None:
    """XLA's compiled programs kept on disk (under the suite's cache folder): a model trained
    again -- another seed, a resumed run, the next session -- compiles from the cache (measured
    here: the first step of a proxy classifier 66 s -> 20 s; what remains is tracing)."""
    import jax

    from runtime.files import CACHE_ROOT

    jax.config.update("jax_compilation_cache_dir", str(CACHE_ROOT / "jax-compilation"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def choose_from_argv(argv: list[str]) -> str:
    """The backend named by `--backend X` / `--backend=X` in a command line, chosen before the
    command's parser (whose help may need modules that load Keras) is built; the parser itself
    should still declare --backend, with `add_argument(parser)`."""
    name = None
    for i, token in enumerate(argv):
        if token == "--backend" and i + 1 < len(argv):
            name = argv[i + 1]
        elif token.startswith("--backend="):
            name = token.split("=", 1)[1]
    return choose(name)


def add_argument(parser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")


@contextmanager
def stderr_captured():
    """Point file descriptor 2 at a temporary file; yields a function returning what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)

        def captured() -> str:
            sink.flush()
            sink.seek(0)
            return sink.read().decode(errors="replace")
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader with descriptor 2 captured; replays it if the import fails."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        error, notices = None, ""
        with stderr_captured() as captured:
            try:
                self.loader.exec_module(module)
            except BaseException as raised:  # shown with what the library printed, then re-raised
                error, notices = raised, captured()
        if error is not None:
            sys.stderr.write(notices)
            raise error


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in QUIET_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and not isinstance(spec.loader, _QuietLoader):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def quiet_startup() -> None:
    """Install the import hook (once); harmless when the libraries are already loaded."""
    if os.environ.get("AXIAL_DEEPLAB_LIBRARY_NOTICES") == "1":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's later, ordinary logging
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())


def tensorflow():
    """TensorFlow, for the code paths that need it (tf.distribute, tf.train checkpoints, tfds);
    a one-line error where it is not installed (e.g. the JAX-only GPU machine)."""
    if importlib.util.find_spec("tensorflow") is None:
        raise BackendError("this needs TensorFlow, which is not installed here; the JAX backend "
                           "(--backend jax) runs without it")
    quiet_startup()
    import tensorflow as tf

    return tf
