"""UDP socket settings shared by listening and dialled links.

Why large buffers: a relay's socket takes bursts from many circuits at once;
with Linux's default 208 KiB receive buffer, a burst of a hundred new
circuits overflows it, and qh3 recovers from heavy loss slowly (seconds of
silence on a link while its loss timers back off). 4 MiB each way (capped
by net.core.rmem_max / wmem_max for an unprivileged process; forced past
the cap when running as root) keeps loopback and LAN bursts in the kernel.
"""

from __future__ import annotations

import socket

BUFFER_BYTES = 4 * 1024 * 1024


def size_buffers(sock: socket.socket, size: int = BUFFER_BYTES) -> None:
    for force, plain in ((getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF), (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF)):
        try:
            if force is None:
                raise PermissionError
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
            except OSError:
                pass  # keep the kernel's default
