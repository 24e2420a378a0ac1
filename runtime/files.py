"""Files written whole or not at all, and write failures as one-line errors.

Every output of the suite (tables, figures, the report, caches, metrics, checkpoints' side
files) is written to a temporary file beside its target and renamed over it, so an
interrupted run never leaves half a file and a failed write leaves the old one.
"""

from __future__ import annotations

import os
import secrets
import shutil
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


def write_set(files: dict[Path, str | bytes]) -> None:
    """Write several files as one set: every one is written to a temporary file first, and only
    when all of them could be are they renamed over their targets.  A failure (a read-only
    folder) leaves every old file as it was, and raises WriteError naming the path."""
    staged = []
    try:
        for path, data in files.items():
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                staged.append((tmp, path))
                with os.fdopen(fd, "wb") as f:
                    f.write(data.encode() if isinstance(data, str) else data)
                os.chmod(tmp, 0o666 & ~_umask())
            except OSError as error:
                raise WriteError(f"cannot write {path}: {error.strerror or error}") from None
        for tmp, path in staged:
            os.replace(tmp, path)
        staged = []
    finally:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# --- staging folders: a folder is built beside its place, then renamed into it (or removed) -----

_STAGED_HERE: set[Path] = set()  # the staging folders this process made (its pid may be an old one's)


def staging_folder(parent: Path, prefix: str) -> Path:
    """A new, empty folder `parent/<prefix><pid>-<random>` to build a data set in.  The pid names
    the process building it, so `remove_stale_staging` can tell a folder left by a killed build
    from one being written.  Made with ordinary permissions (0o777 & ~umask), not the 0o700 of
    tempfile.mkdtemp: renamed into place it is the data set's folder."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        _STAGED_HERE.add(path)
        return path


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OSError, OverflowError):
        return False
    return True


def remove_stale_staging(parent: Path, prefix: str) -> list[Path]:
    """Removes the staging folders `parent/<prefix>*` whose build has ended without renaming
    them (killed, even by SIGKILL), and returns them: those named after a process that no longer
    runs, or after this process but not made by it (a pid reused, as in a container), and those
    without a pid (made by older code).  A folder that another running process is writing is kept,
    so two processes can build at once."""
    removed = []
    parent = Path(parent)
    if not parent.is_dir():
        return removed
    for path in sorted(parent.glob(f"{prefix}*")):
        owner = path.name[len(prefix):].split("-", 1)[0]
        if owner.isdigit() and (path in _STAGED_HERE if int(owner) == os.getpid() else _running(int(owner))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
