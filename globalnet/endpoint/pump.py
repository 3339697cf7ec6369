"""Moves bytes between a local TCP connection and one end of a circuit.

The same pump serves the client (a tunnel or SOCKS connection) and the exit
(the connection to the target): one way to do it. It reads from TCP only
while the circuit's credit allows, returns credit only once TCP has taken the
bytes (so a slow reader slows the far sender, instead of filling relays), and
turns every abnormal end into a TCP reset, so no application mistakes a cut
transfer for a complete one.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Protocol

import structlog

from ..errors import ErrorKind, GnetError
from .session import DataReceived, EndReceived, FrameSession, MessageReceived

log = structlog.get_logger("globalnet.endpoint")

READ_CHUNK = 256 * 1024
#: Give credit right away while the TCP send buffer holds less than this.
WRITE_LOW_WATER = 64 * 1024


class CircuitEnd(Protocol):
    """What the pump writes to: a hop stream, or a client circuit with its layers."""

    def send_wire(self, data: bytes, end: bool = False) -> None: ...

    def reset(self, kind: ErrorKind) -> None: ...


def abort_with_reset(writer: asyncio.StreamWriter) -> None:
    """Close a TCP connection with RST (SO_LINGER 0), not FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class StreamPump:
    def __init__(
        self,
        session: FrameSession,
        end: CircuitEnd,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        self.session = session
        self._end = end
        self._reader = reader
        self._writer = writer
        self._on_message = on_message
        self._credit = asyncio.Event()
        self._credit.set()
        self._done = asyncio.Event()
        self._uncredited = 0
        self._draining: asyncio.Task[None] | None = None
        self.error: GnetError | None = None
        self._stream_finished = False

    # -- from the circuit --------------------------------------------------
    def feed(self, data: bytes | bytearray, end: bool) -> None:
        """Stream bytes from the circuit (already unwrapped)."""
        if self._done.is_set():
            return
        try:
            if data:
                for ev in self.session.receive(data):
                    if isinstance(ev, DataReceived):
                        self._deliver(ev)
                    elif isinstance(ev, EndReceived):
                        if self._writer.can_write_eof():
                            self._writer.write_eof()
                    elif isinstance(ev, MessageReceived) and self._on_message:
                        self._on_message(ev.text)
                if self.session.send_credit > 0:
                    self._credit.set()
        except GnetError as exc:
            self.fail(exc, tell_circuit=True)
            return
        if end:
            self._stream_finished = True
            if not self.session.remote_ended:
                self.fail(GnetError(ErrorKind.LINK_LOST, "circuit ended without a clean END"), tell_circuit=False)
                return
        self._maybe_finish()

    def circuit_reset(self, kind: ErrorKind) -> None:
        self.fail(GnetError(kind, "circuit reset"), tell_circuit=False)

    def _deliver(self, ev: DataReceived) -> None:
        self._writer.write(ev.data)
        self._uncredited += ev.wire_size
        if self._writer.transport.get_write_buffer_size() <= WRITE_LOW_WATER:
            self._give_credit()
        elif self._draining is None:
            self._draining = asyncio.ensure_future(self._drain_then_credit())

    def _give_credit(self) -> None:
        n, self._uncredited = self._uncredited, 0
        if n:
            frame = self.session.consumed(n)
            if frame:
                self._end.send_wire(frame)

    async def _drain_then_credit(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            self.fail(GnetError(ErrorKind.CONNECTION_REFUSED, "local connection reset"), tell_circuit=True)
            return
        finally:
            self._draining = None
        if not self._done.is_set():
            self._give_credit()

    # -- the pump ----------------------------------------------------------
    async def run(self) -> None:
        """Upload until EOF, then wait for the far side; returns when all is over."""
        try:
            await self._upload()
            await self._done.wait()
        except asyncio.CancelledError:
            self.fail(GnetError(ErrorKind.CLOSED, "shutting down"), tell_circuit=True)
            raise
        finally:
            if self._draining is not None:
                self._draining.cancel()

    async def _upload(self) -> None:
        session = self.session
        while not self._done.is_set():
            room = session.sendable()
            if room <= 0:
                self._credit.clear()
                await self._credit.wait()
                continue
            try:
                data = await self._reader.read(min(room, READ_CHUNK))
            except (ConnectionError, OSError):
                self.fail(GnetError(ErrorKind.CONNECTION_REFUSED, "local connection reset"), tell_circuit=True)
                return
            if self._done.is_set():
                return
            if not data:
                self._end.send_wire(session.send_end())
                self._maybe_finish()
                return
            self._end.send_wire(session.send_data(data))

    def _maybe_finish(self) -> None:
        s = self.session
        if s.local_ended and s.remote_ended and not self._done.is_set():
            self._end.send_wire(b"", end=True)
            self._writer.close()
            self._done.set()

    def fail(self, error: GnetError, tell_circuit: bool) -> None:
        """Abnormal end: reset the TCP side, and the circuit side if it does not know."""
        if self._done.is_set():
            return
        self.error = error
        self._done.set()
        self._credit.set()
        abort_with_reset(self._writer)
        if tell_circuit:
            self._end.reset(error.kind)

    @property
    def finished(self) -> bool:
        return self._done.is_set()
