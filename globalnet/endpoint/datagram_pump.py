"""The asyncio shell of a UDP circuit end: moves DatagramFlow's bytes and runs its idle timer.

Used at both ends: a client (UDP tunnel, SOCKS UDP ASSOCIATE) attaches it to
its circuit; the exit and a hidden service hand it their circuit's bytes. It
delivers each received datagram to a callback and reports its end once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from ..errors import ErrorKind, GnetError
from ..wire.datagram import Datagram
from .datagram_flow import DatagramFlow
from .session import FrameSession


class CircuitEnd(Protocol):
    def send_wire(self, data: bytes, end: bool = False) -> None: ...

    def reset(self, kind: ErrorKind) -> None: ...


class DatagramPump:
    def __init__(
        self,
        session: FrameSession,
        end: CircuitEnd,
        deliver: Callable[[Datagram], None],
        on_close: Callable[[GnetError | None], None],
        idle_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.flow = DatagramFlow(session, clock(), idle_timeout)
        self._end = end
        self._deliver = deliver
        self._on_close = on_close
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self.closed = False
        self.error: GnetError | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._arm_timer()

    # -- toward the far end --------------------------------------------------
    def send(self, host: str, port: int, payload: bytes) -> bool:
        """Send one datagram (host "" = the circuit's own target); False if dropped (counted)."""
        if self.closed:
            return False
        wire = self.flow.send(host, port, payload, self._clock())
        if wire:
            self._end.send_wire(wire)
        return bool(wire)

    def close(self) -> None:
        """A clean end: END, then the stream's FIN."""
        if self.closed:
            return
        self._end.send_wire(self.flow.session.send_end(), end=True)
        self._finish(None)

    # -- from the circuit (Endpoint / what ClientCircuit.attach takes) ---------
    def feed(self, data: bytes | bytearray, end: bool) -> None:
        if self.closed:
            return
        try:
            got = self.flow.receive(data, self._clock()) if data else None
        except GnetError as exc:
            self._end.reset(exc.kind)
            self._finish(exc)
            return
        if got is not None:
            if got.wire:
                self._end.send_wire(got.wire)
            for datagram in got.datagrams:
                self._deliver(datagram)
            if got.ended:
                self.close()
                return
        if end:
            self._finish(GnetError(ErrorKind.LINK_LOST, "circuit ended without a clean END"))

    def circuit_reset(self, kind: ErrorKind) -> None:
        self._finish(GnetError(kind, "circuit reset"))

    # -- the idle rule -----------------------------------------------------------
    def _arm_timer(self) -> None:
        delay = max(0.0, self.flow.get_timer() - self._clock())
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        if self.closed:
            return
        if self.flow.handle_timer(self._clock()):
            self.close()  # idle: a clean end, both sides agree it is over
        else:
            self._arm_timer()

    def _finish(self, error: GnetError | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.error = error
        if self._timer is not None:
            self._timer.cancel()
        self._on_close(error)

    def statistics(self) -> dict[str, int]:
        return self.flow.statistics()
