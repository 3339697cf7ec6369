"""Moves bytes between a local TCP connection and one end of a circuit.

The same pump serves the client (a tunnel or SOCKS connection) and the exit
(the connection to the target): one way to do it. The rules (read only while
the credit allows, return credit once TCP has taken the bytes, every abnormal
end a TCP reset) are `StreamCore`'s (endpoint/stream_core.py); this shell only
moves bytes between the core, the circuit and TCP.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from ..errors import ErrorKind, GnetError
from .session import DataReceived, EndReceived, FrameSession, MessageReceived, RequestFrameReceived
from .stream_core import READ_CHUNK, WRITE_LOW_WATER, Failed, Finished, StreamCore

log = structlog.get_logger("globalnet.endpoint")

__all__ = ["READ_CHUNK", "WRITE_LOW_WATER", "CircuitEnd", "StreamPump", "abort_with_reset"]


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
    """The asyncio shell around a `StreamCore`: moves bytes, nothing more."""

    def __init__(
        self,
        session: FrameSession,
        end: CircuitEnd,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        self.session = session
        self.core = StreamCore(session)
        self._end = end
        self._reader = reader
        self._writer = writer
        self._on_message = on_message
        self._credit = asyncio.Event()
        self._credit.set()
        self._done = asyncio.Event()
        self._draining: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._handlers: dict[type, Callable[[Any], None]] = {
            DataReceived: self._on_data,
            EndReceived: self._on_end,
            MessageReceived: self._on_text,
            RequestFrameReceived: self._on_request,
            Finished: self._on_finished,
            Failed: self._on_failed,
        }

    @property
    def error(self) -> GnetError | None:
        return self.core.error

    # -- from the circuit --------------------------------------------------
    def feed(self, data: bytes | bytearray, end: bool) -> None:
        """Stream bytes from the circuit (already unwrapped)."""
        handlers = self._handlers
        for ev in self.core.receive(data, end, self._loop.time()):
            handlers[type(ev)](ev)
        if self.session.send_credit > 0:
            self._credit.set()

    def circuit_reset(self, kind: ErrorKind) -> None:
        self.fail(GnetError(kind, "circuit reset"), tell_circuit=False)

    def _on_data(self, ev: DataReceived) -> None:
        writer = self._writer
        if writer.transport.is_closing():
            # The local side reset or closed its connection: asyncio would drop the
            # bytes and log a warning per write; the stream is over, say so to the far end.
            self.fail(GnetError(ErrorKind.CONNECTION_REFUSED, "local connection closed"), tell_circuit=True)
            return
        writer.write(ev.data)
        frame = self.core.credit_after_write(ev.wire_size, writer.transport.get_write_buffer_size())
        if frame is None:
            if self._draining is None:  # else the drain in flight returns it
                self._draining = asyncio.ensure_future(self._drain_then_credit())
        elif frame:
            self._end.send_wire(frame)

    def _on_end(self, ev: EndReceived) -> None:
        if self._writer.can_write_eof():
            self._writer.write_eof()

    def _on_text(self, ev: MessageReceived) -> None:
        if self._on_message is not None:
            self._on_message(ev.text)

    def _on_request(self, ev: RequestFrameReceived) -> None:
        """A stream end takes no requests: ignored, as before."""

    async def _drain_then_credit(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            self.fail(GnetError(ErrorKind.CONNECTION_REFUSED, "local connection reset"), tell_circuit=True)
            return
        finally:
            self._draining = None
        frame = self.core.credit_after_drain()
        if frame:
            self._end.send_wire(frame)

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
        core = self.core
        while not self._done.is_set():
            room = core.read_size()
            if room <= 0:
                self._credit.clear()
                await self._credit.wait()
                continue
            try:
                data = await self._reader.read(room)
            except (ConnectionError, OSError):
                self.fail(GnetError(ErrorKind.CONNECTION_REFUSED, "local connection reset"), tell_circuit=True)
                return
            if self._done.is_set():
                return
            if not data:
                wire, finished = core.upload_end()
                self._end.send_wire(wire)
                if finished is not None:
                    self._on_finished(finished)
                return
            try:
                wire = core.upload(data, self._loop.time())
            except GnetError as exc:  # our own misuse: cost this stream, not the task's owner
                self.fail(exc, tell_circuit=True)
                return
            self._end.send_wire(wire)

    def _on_finished(self, ev: Finished) -> None:
        self._end.send_wire(b"", end=True)
        self._writer.close()
        self._done.set()

    def _on_failed(self, ev: Failed) -> None:
        self._done.set()
        self._credit.set()
        abort_with_reset(self._writer)
        if ev.tell_circuit:
            self._end.reset(ev.error.kind)

    def fail(self, error: GnetError, tell_circuit: bool) -> None:
        """Abnormal end: reset the TCP side, and the circuit side if it does not know."""
        failed = self.core.fail(error, tell_circuit)
        if failed is not None:
            self._on_failed(failed)
