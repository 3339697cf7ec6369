"""A local TCP connection that resets while the circuit still sends: the pump
ends the stream and tells the far side, instead of writing into the dead
connection (asyncio would drop each write and log "socket.send() raised
exception." for every one after the fifth). Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pytest

from globalnet.crypto import AeadOpener, AeadSealer
from globalnet.endpoint.pump import StreamPump
from globalnet.endpoint.session import FrameSession
from globalnet.errors import ErrorKind

K_AB = bytes([0xA1]) * 32
K_BA = bytes([0xB2]) * 32


class RecordingEnd:
    """The circuit side of the pump: what it was sent and whether it was reset."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.resets: list[ErrorKind] = []

    def send_wire(self, data: bytes, end: bool = False) -> None:
        self.sent.append(data)

    def reset(self, kind: ErrorKind) -> None:
        self.resets.append(kind)


async def test_data_for_a_reset_local_connection_ends_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    app = socket.create_connection(listener.getsockname())
    conn, _ = await asyncio.get_running_loop().sock_accept(listener)
    listener.close()
    reader, writer = await asyncio.open_connection(sock=conn)

    far = FrameSession(AeadSealer(K_AB), AeadOpener(K_BA))
    end = RecordingEnd()
    pump = StreamPump(FrameSession(AeadSealer(K_BA), AeadOpener(K_AB)), end, reader, writer)

    # the local application goes away with a reset
    app.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    app.close()
    caplog.set_level(logging.WARNING, logger="asyncio")
    for _ in range(10):  # the circuit keeps delivering
        pump.feed(far.send_data(b"x" * 1000), end=False)
        await asyncio.sleep(0)
    assert end.resets == [ErrorKind.CONNECTION_REFUSED]  # the far side is told once
    assert pump.error is not None and pump.error.kind is ErrorKind.CONNECTION_REFUSED
    assert not [r for r in caplog.records if "socket.send() raised exception" in r.getMessage()]
    writer.close()
