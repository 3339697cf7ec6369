"""One end of a circuit: sealed frames and end-to-end credit (sans-IO).

Theory of operation. The two ends of a circuit (the client, and the hop that
reaches the target) exchange AEAD-sealed frames; relays in between only XOR
bytes and cannot parse them. Flow control lives here, end to end: each side
may have at most its congestion window (`VegasWindow`, endpoint/congestion.py:
from INITIAL_WINDOW up to the protocol's MAX_WINDOW) of DATA wire bytes that
the other side has not yet handed to its application. The receiver returns
credit with CREDIT frames once its application has taken the bytes; those
frames are also the sender's RTT samples. Because windows count wire bytes
(length prefix, header and tag included), a relay can enforce MAX_WINDOW
without parsing anything: no stream may ever buffer more than that.

A clean end of one direction is an END frame (authenticated, so a relay cannot
forge a clean close); the stream's FIN follows once both directions ended. A
FIN without END, a reset, or any frame that fails to open is abnormal and the
application connection is reset, never closed cleanly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import ErrorKind, GnetError, LocalProtocolError, ProtocolError
from ..wire.framing import (
    AEAD_TAG,
    FRAME_HEADER,
    LENGTH_PREFIX,
    MAX_DATA_BODY,
    MAX_DATA_WIRE,
    Frame,
    FrameType,
    MessageSplitter,
    credit_body,
    decode_frame,
    encode_frame,
    parse_credit,
    prefix,
    prefix_all,
)
from .congestion import INITIAL_WINDOW, MAX_WINDOW, VegasWindow

#: Where every circuit's window starts (the old fixed window). The most any
#: end may have in flight is MAX_WINDOW; relays enforce that.
WINDOW = INITIAL_WINDOW
#: Return credit once this much has been consumed (fewer CREDIT frames).
CREDIT_BATCH = WINDOW // 4
#: What a relay tolerates above WINDOW in one stream direction: control frames
#: (CREDIT, END) travel outside the window.
RELAY_SLACK = 64 * 1024
#: Per-frame wire overhead of a DATA frame.
DATA_OVERHEAD = LENGTH_PREFIX + FRAME_HEADER + AEAD_TAG


class Sealer(Protocol):
    def seal(self, plaintext: bytes) -> bytes: ...
    def seal_many(self, plaintexts: Sequence[bytes]) -> list[bytes]: ...


class Opener(Protocol):
    def open(self, ciphertext: bytes) -> bytes: ...


@dataclass(frozen=True)
class DataReceived:
    data: bytes
    wire_size: int  # what to pass to `consumed()` once the application took it


@dataclass(frozen=True)
class DatagramReceived:
    body: bytes  # a DATAGRAM frame body (wire/datagram.py)
    wire_size: int  # what to pass to `consumed()` once it was delivered (or dropped)


@dataclass(frozen=True)
class EndReceived:
    pass


@dataclass(frozen=True)
class MessageReceived:
    text: str


@dataclass(frozen=True)
class RequestFrameReceived:
    type: FrameType
    body: bytes


SessionEvent = DataReceived | DatagramReceived | EndReceived | MessageReceived | RequestFrameReceived

_REQUEST_FRAMES = (
    FrameType.DHT_STORE,
    FrameType.DHT_RETR,
    FrameType.DHT_DATA,
    FrameType.SERVICE_REGISTER,
    FrameType.SERVICE_REGISTERED,
    FrameType.RENZV_REQUEST,
)


def payload_for_credit(credit: int) -> int:
    """The most application bytes that fit in `credit` wire bytes."""
    full, rest = divmod(credit, MAX_DATA_WIRE)
    return full * MAX_DATA_BODY + max(0, rest - DATA_OVERHEAD)


class FrameSession:
    """Seal/open frames and keep the credit books for one end of a circuit."""

    def __init__(self, sealer: Sealer, opener: Opener) -> None:
        self._sealer = sealer
        self._opener = opener
        # one QUIC event may carry up to a whole window (after loss recovery, a burst)
        self._splitter = MessageSplitter(max_pending=MAX_WINDOW + RELAY_SLACK)
        self.window = VegasWindow()
        self._inflight = 0  # DATA wire bytes sent, not yet credited
        self._acked_total = 0
        self._offered = 0  # wire credit the last sendable() offered, not yet used
        self._now: float | None = None  # the clock of the bytes being received (for RTT samples)
        self._unconsumed = 0  # wire bytes received, not yet consumed by the app
        self._consumed_uncredited = 0
        self.local_ended = False
        self.remote_ended = False
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def send_credit(self) -> int:
        """Wire bytes of DATA that may be sent now: the window less what is in flight."""
        return max(0, self.window.cwnd - self._inflight)

    # -- sending ---------------------------------------------------------
    def sendable(self) -> int:
        """How many application bytes may be sent now."""
        if self.local_ended:
            return 0
        self._offered = self.send_credit  # honoured by send_data even if the window shrinks meanwhile
        return payload_for_credit(self._offered)

    def send_data(self, data: bytes | memoryview, now: float | None = None) -> bytes:
        """Seal `data` into DATA frames; the caller read at most `sendable()` bytes.
        `now` (the shell's clock) lets the CREDIT that acknowledges them give an RTT sample.

        The window may have shrunk since the caller asked `sendable()` (a CREDIT
        that ended a Vegas round arrived while it read from TCP): what that call
        offered still goes (it fit the window of then, so never more than the
        protocol's MAX_WINDOW); anything beyond the offer and the window is our
        own misuse."""
        if self.local_ended:
            raise LocalProtocolError("send after END")
        view = memoryview(data)
        # Check before sealing: a refused send must not use up AEAD nonces.
        frames = -(-len(view) // MAX_DATA_BODY)
        wire_size = len(view) + frames * DATA_OVERHEAD
        if wire_size > max(self.send_credit, self._offered) or wire_size > MAX_WINDOW - self._inflight:
            raise LocalProtocolError("send beyond the credit window")
        # each byte is copied once into its frame, sealed, and copied once into the wire
        plains = [encode_frame(FrameType.DATA, view[i : i + MAX_DATA_BODY]) for i in range(0, len(view), MAX_DATA_BODY)]
        wire = prefix_all(self._sealer.seal_many(plains))
        self._inflight += len(wire)
        self._offered = max(0, self._offered - len(wire))
        self.window.on_send(len(wire), self._inflight, now)
        self.bytes_sent += len(view)
        return wire

    def send_datagram(self, body: bytes) -> bytes | None:
        """One DATAGRAM frame inside the credit window, or None when the window
        has no room: UDP is never queued, the caller drops the datagram and counts it."""
        if self.local_ended or LENGTH_PREFIX + FRAME_HEADER + len(body) + AEAD_TAG > self.send_credit:
            return None
        wire = self._seal(FrameType.DATAGRAM, body)
        self._inflight += len(wire)
        self.window.on_send(len(wire), self._inflight, None)
        self.bytes_sent += len(body)
        return wire

    def send_end(self) -> bytes:
        """END: a clean end of what we send."""
        if self.local_ended:
            return b""
        self.local_ended = True
        return self._seal(FrameType.END)

    def send_message(self, text: str) -> bytes:
        return self._seal(FrameType.MESSAGE, text.encode("utf-8")[:MAX_DATA_BODY])

    def send_frame(self, ftype: FrameType, body: bytes) -> bytes:
        """A request/answer frame outside the data window (small, bounded in number by its user)."""
        return self._seal(ftype, body)

    def consumed(self, wire_size: int) -> bytes:
        """The application took data worth `wire_size`; maybe return a CREDIT frame."""
        self._unconsumed -= wire_size
        self._consumed_uncredited += wire_size
        if self._consumed_uncredited < CREDIT_BATCH and self._unconsumed > 0:
            return b""
        n, self._consumed_uncredited = self._consumed_uncredited, 0
        return self._seal(FrameType.CREDIT, credit_body(n)) if n else b""

    def _seal(self, ftype: FrameType, body: bytes = b"") -> bytes:
        return prefix(self._sealer.seal(encode_frame(ftype, body)))

    # -- receiving -------------------------------------------------------
    def receive(self, data: bytes | bytearray | memoryview, now: float | None = None) -> list[SessionEvent]:
        """Feed stream bytes (received at `now`); returns events. Raises GnetError (TAMPERED/PROTOCOL)."""
        self._now = now
        self._splitter.push(data)
        events: list[SessionEvent] = []
        while (message := self._splitter.pop()) is not None:
            try:
                plain = self._opener.open(message)
            except ValueError:
                raise GnetError(ErrorKind.TAMPERED, "a frame failed authentication") from None
            frame = decode_frame(plain)
            handler = _HANDLERS.get(frame.type)
            if handler is None:
                raise ProtocolError(f"unexpected {frame.type.name} frame")
            handler(self, frame, len(message), events)
        return events

    def _on_data(self, frame: Frame, size: int, events: list[SessionEvent]) -> None:
        if self.remote_ended:
            raise ProtocolError("DATA after END")
        wire = LENGTH_PREFIX + size
        self._unconsumed += wire
        if self._unconsumed > MAX_WINDOW:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "peer overran the credit window")
        self.bytes_received += len(frame.body)
        events.append(DataReceived(frame.body, wire))

    def _on_datagram(self, frame: Frame, size: int, events: list[SessionEvent]) -> None:
        wire = LENGTH_PREFIX + size
        self._unconsumed += wire
        if self._unconsumed > MAX_WINDOW:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "peer overran the credit window")
        self.bytes_received += len(frame.body)
        events.append(DatagramReceived(frame.body, wire))

    def _on_credit(self, frame: Frame, size: int, events: list[SessionEvent]) -> None:
        n = parse_credit(frame.body)
        self._inflight -= n
        if self._inflight < 0:
            raise ProtocolError("credit beyond the window: more than was sent")
        self._acked_total += n
        self.window.on_ack(n, self._acked_total, self._now)

    def _on_end(self, frame: Frame, size: int, events: list[SessionEvent]) -> None:
        if self.remote_ended:
            raise ProtocolError("END after END")
        self.remote_ended = True
        events.append(EndReceived())

    def _on_message(self, frame: Frame, size: int, events: list[SessionEvent]) -> None:
        events.append(MessageReceived(frame.body.decode("utf-8", "replace")))

    def _on_request(self, frame: Frame, size: int, events: list[SessionEvent]) -> None:
        events.append(RequestFrameReceived(frame.type, frame.body))


_FrameHandler = Callable[[FrameSession, Frame, int, list[SessionEvent]], None]
#: What each frame type does at a circuit end; any other type (ERROR, or one
#: this end does not take) is a protocol error.
_HANDLERS: dict[FrameType, _FrameHandler] = {
    FrameType.DATA: FrameSession._on_data,
    FrameType.DATAGRAM: FrameSession._on_datagram,
    FrameType.CREDIT: FrameSession._on_credit,
    FrameType.END: FrameSession._on_end,
    FrameType.MESSAGE: FrameSession._on_message,
    **{t: FrameSession._on_request for t in _REQUEST_FRAMES},
}
