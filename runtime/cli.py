"""What every command line of the suite shares: one-line usage errors, and output folders
checked before any work starts.

Entry points parse and check their arguments before TensorFlow or JAX loads (runtime/backend.py),
so `--help` and bad input answer at once: bad input is one line, `error: ...`, exit code 2.
This module imports nothing heavy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


class UsageError(Exception):
    """Bad command-line input: one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but its errors are one line (no usage dump): `error: ... (see --help)`."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def check_writable(folders, what: str) -> None:
    """Create each folder if missing and write and delete a probe file in it, so an output that
    cannot be written (read-only, a file where a folder should be) is found before any work
    starts.  UsageError names the first folder that fails.  The check leaves no trace: the
    folders it created are removed again (the run's writes create them when they write), so a
    run refused later, before writing anything, has still written nothing.  `what` says where
    the folder comes from (e.g. "--output-dir"), for the message."""
    created: list[Path] = []
    try:
        for folder in map(Path, folders):
            missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
            created += reversed(missing)  # outermost first
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
                os.close(fd)
                os.unlink(probe)
            except OSError as error:
                blocking = next((p for p in (folder, *folder.parents)
                                 if os.path.lexists(p) and not p.is_dir()), None)
                reason = f"{blocking} is not a folder" if blocking else error.strerror or str(error)
                raise UsageError(f"cannot write to {folder} ({what}): {reason}") from None
    finally:
        for path in reversed(created):  # innermost first; only empty folders go
            try:
                path.rmdir()
            except OSError:
                pass
