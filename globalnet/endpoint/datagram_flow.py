"""One circuit's UDP datagrams, sans-IO: frames in and out, drop counters, the idle rule.

Theory of operation. UDP has no retransmission and no backpressure, so a
circuit that carries it must never queue: a datagram goes out as one
DATAGRAM frame if the end-to-end credit window has room for it, and is
dropped and counted otherwise (the same window relays enforce for TCP, so a
UDP flood cannot grow any relay's memory past what a TCP stream could). A
received datagram is handed over at once and its credit returned at once
(the receiver never holds it), so the window only fills when the path
itself is the bottleneck. Payloads over MAX_DATAGRAM are never split: they
are dropped and counted as oversize.

A flow that neither sends nor receives for `idle_timeout` seconds expires:
`get_timer()` says when, `handle_timer(now)` says whether it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ErrorKind, GnetError
from ..wire.datagram import MAX_DATAGRAM, Datagram, decode_datagram, encode_datagram
from .session import DatagramReceived, EndReceived, FrameSession

DEFAULT_IDLE_TIMEOUT = 120.0


@dataclass
class DatagramCounters:
    sent: int = 0
    received: int = 0
    dropped_oversize: int = 0  # over MAX_DATAGRAM: never split
    dropped_window: int = 0  # the credit window was full
    dropped_other: int = 0  # refused by policy, unresolvable, unknown source...

    @property
    def dropped(self) -> int:
        return self.dropped_oversize + self.dropped_window + self.dropped_other


@dataclass
class Received:
    """What `receive()` yields: datagrams to deliver, bytes to send back, and whether the far end ended."""

    datagrams: list[Datagram] = field(default_factory=list)
    wire: bytes = b""
    ended: bool = False


class DatagramFlow:
    def __init__(self, session: FrameSession, now: float, idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        if idle_timeout <= 0:
            raise ValueError("the idle timeout must be positive")
        self.session = session
        self.idle_timeout = idle_timeout
        self.counters = DatagramCounters()
        self._last_activity = now
        self.expired = False

    def send(self, host: str, port: int, payload: bytes, now: float) -> bytes:
        """Wire bytes carrying one datagram, or b"" when it was dropped (and counted)."""
        if len(payload) > MAX_DATAGRAM:
            self.counters.dropped_oversize += 1
            return b""
        wire = self.session.send_datagram(encode_datagram(host, port, payload))
        if wire is None:
            self.counters.dropped_window += 1
            return b""
        self.counters.sent += 1
        self._last_activity = now
        return wire

    def receive(self, data: bytes | bytearray | memoryview, now: float) -> Received:
        """Feed circuit bytes. Raises GnetError (tampering, protocol) for the caller to reset the circuit."""
        out = Received()
        credit = 0
        for event in self.session.receive(data):
            if isinstance(event, DatagramReceived):
                credit += event.wire_size
                out.datagrams.append(decode_datagram(event.body))
            elif isinstance(event, EndReceived):
                out.ended = True
            else:
                raise GnetError(ErrorKind.PROTOCOL, f"a UDP circuit got a {type(event).__name__}")
        if out.datagrams:
            self.counters.received += len(out.datagrams)
            self._last_activity = now
        if credit:
            out.wire = self.session.consumed(credit)
        return out

    def get_timer(self) -> float:
        return self._last_activity + self.idle_timeout

    def handle_timer(self, now: float) -> bool:
        """True once the flow has been idle for `idle_timeout` (then it stays expired)."""
        if not self.expired and now >= self.get_timer():
            self.expired = True
        return self.expired

    def statistics(self) -> dict[str, int]:
        c = self.counters
        return {
            "datagrams_out": c.sent,
            "datagrams_in": c.received,
            "dropped": c.dropped,
            "dropped_window": c.dropped_window,
            "dropped_oversize": c.dropped_oversize,
        }
