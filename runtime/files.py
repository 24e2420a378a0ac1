"""Files written whole or not at all, and write failures as one-line errors.

Every output of the suite (tables, figures, the report, caches, metrics, checkpoints' side
files) is written to a temporary file beside its target and renamed over it, so an
interrupted run never leaves half a file and a failed write leaves the old one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
# Caches (counts, trained runs, prepared proxy data) live here; AXIAL_DEEPLAB_CACHE_DIR moves them.
CACHE_ROOT = Path(os.environ.get("AXIAL_DEEPLAB_CACHE_DIR") or ROOT / ".cache")


class WriteError(RuntimeError):
    """An output that cannot be written (read-only folder, a file where a folder should be...)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path | str, data: str | bytes) -> Path:
    """Write `data` to `path` via a temporary file and a rename; WriteError names the path."""
    path = Path(path)
    if not isinstance(data, (str, bytes)):
        raise TypeError(f"write_atomic writes str or bytes, not {type(data).__name__}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise WriteError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException as error:
        os.unlink(tmp)
        if isinstance(error, OSError):
            raise WriteError(f"cannot write {path}: {error.strerror or error}") from None
        raise
    return path


def write_if_changed(path: Path | str, data: str | bytes) -> bool:
    """Write atomically unless the file already holds exactly `data`; True if it was written.
    Re-running unchanged code then leaves a checkout's tracked outputs untouched."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    if path.is_file() and path.read_bytes() == raw:
        return False
    write_atomic(path, raw)
    return True
