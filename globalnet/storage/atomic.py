"""Crash-safe writes for every file in the data dir.

Why: a node can die at any instant (SIGKILL, power loss, OOM killer). A key
file or peers.dat written in place can be left empty or half-written, and the
next start then fails ("not a PEM key") or forgets its identity. Every
data-dir write goes through `write_atomic`: the bytes go to a fresh temporary
file in the same directory, are fsync'ed, then `os.replace` (or `os.link` for
a create-only write) swaps them in, and the directory is fsync'ed so the
rename itself survives. A reader sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "write_atomic"]


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable (the directory entry itself)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o600, *, exclusive: bool = False) -> None:
    """Replace `path` with `data` atomically and durably; the file gets `mode` from the start.

    `exclusive=True` creates the file only if it does not exist yet
    (FileExistsError otherwise), for keys that must never be overwritten.
    The temporary file (``.NAME.*.tmp``) is removed on any failure.
    """
    target = Path(path)
    directory = target.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)  # mkstemp makes it 0600; keys never exist with a wider mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, target)  # fails if the target exists: never clobbers a key
            tmp.unlink()
        else:
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(directory)
