"""Binding the node's local ports: an error that names the setting, for the one line at start."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..wire.host_port import format_host_port


@contextlib.contextmanager
def naming_bind_errors(flag: str, host: str, port: int, note: str = "") -> Iterator[None]:
    """Re-raise a failed bind naming the flag and address: the bare errno (or asyncio's
    "error while attempting to bind on address ...") says neither which setting nor why in
    words an operator reads. The errno is kept, so a PermissionError stays one."""
    try:
        yield
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        where = " ".join(part for part in (format_host_port(host, port), note) if part)
        raise OSError(exc.errno, f"{flag} {where}: {reason}") from None
