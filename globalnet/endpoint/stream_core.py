"""One circuit end carrying one TCP stream: the pump's rules (sans-IO).

Theory of operation. `FrameSession` seals and opens frames and keeps the
credit books; this core adds what an end that talks to a TCP connection must
decide, so the asyncio `StreamPump` only moves bytes:
- how much to read from TCP now (`read_size()`: only what the credit allows);
- when to return credit: only once TCP has taken the bytes. While the TCP send
  buffer is short (at most `WRITE_LOW_WATER`), right away; otherwise after the
  shell has drained it (`credit_after_write()` returns None: drain, then
  `credit_after_drain()`). So a slow reader slows the far sender instead of
  filling relays;
- how the stream ends: END in both directions is a clean finish (`Finished`:
  FIN the circuit stream, close TCP); a FIN without END, a frame that fails to
  open, or a reset is `Failed`, and the shell resets TCP, so no application
  mistakes a cut transfer for a complete one.
The core never reads a clock or touches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ErrorKind, GnetError
from .session import DatagramReceived, DataReceived, EndReceived, FrameSession, MessageReceived, RequestFrameReceived

#: The most the shell reads from TCP in one go.
READ_CHUNK = 256 * 1024
#: Give credit right away while the TCP send buffer holds less than this.
WRITE_LOW_WATER = 64 * 1024


@dataclass(frozen=True)
class Finished:
    """Both directions ended with END: FIN the circuit stream, close TCP."""


@dataclass(frozen=True)
class Failed:
    """Abnormal end: reset TCP; if `tell_circuit`, reset the circuit too."""

    error: GnetError
    tell_circuit: bool


StreamEvent = DataReceived | EndReceived | MessageReceived | RequestFrameReceived | Finished | Failed


def _merged(bodies: list[bytes], wire: int) -> DataReceived:
    """One event for a run of DATA frames that arrived together.

    Why: a burst from the circuit holds many 16 KiB frames, and the shell wrote each
    DataReceived to TCP with its own send(), which woke the application for each. One
    write per burst costs one copy (b"".join); measured on a 1-stream download, the
    reading application's CPU per MiB halved (0.62 -> 0.32 ms) and our end's did not move."""
    return DataReceived(bodies[0] if len(bodies) == 1 else b"".join(bodies), wire)


class StreamCore:
    """Credit and end-of-stream rules for one circuit end pumped to TCP."""

    __slots__ = ("_uncredited", "done", "error", "session")

    def __init__(self, session: FrameSession) -> None:
        self.session = session
        self._uncredited = 0  # wire bytes handed to TCP, credit not yet returned
        self.done = False
        self.error: GnetError | None = None

    # -- from the circuit ------------------------------------------------
    def receive(self, data: bytes | bytearray, end: bool, now: float | None = None) -> list[StreamEvent]:
        """Circuit bytes (already unwrapped) in; events out, in order. The shell
        writes each `DataReceived` to TCP, then calls `credit_after_write()`.
        Consecutive DATA frames of one call come as one `DataReceived` (bodies
        joined, wire sizes summed)."""
        if self.done:
            return []
        events: list[StreamEvent] = []
        if data:
            try:
                run: list[bytes] = []  # consecutive DATA bodies, written to TCP as one
                run_wire = 0
                for ev in self.session.receive(data, now):
                    if type(ev) is DataReceived:
                        run.append(ev.data)
                        run_wire += ev.wire_size
                        continue
                    if type(ev) is DatagramReceived:
                        if run:  # what came before the error is delivered, in order
                            events.append(_merged(run, run_wire))
                        raise GnetError(ErrorKind.PROTOCOL, "a DATAGRAM frame on a stream circuit")
                    if run:
                        events.append(_merged(run, run_wire))
                        run, run_wire = [], 0
                    events.append(ev)  # type: ignore[arg-type]
                if run:
                    events.append(_merged(run, run_wire))
            except GnetError as exc:
                events.append(self.fail(exc, tell_circuit=True))  # type: ignore[arg-type]
                return events
        if end and not self.session.remote_ended:
            events.append(self.fail(GnetError(ErrorKind.LINK_LOST, "circuit ended without a clean END"), tell_circuit=False))  # type: ignore[arg-type]
            return events
        finished = self._finished()
        if finished is not None:
            events.append(finished)
        return events

    def credit_after_write(self, wire_size: int, tcp_buffered: int) -> bytes | None:
        """TCP took data worth `wire_size` and now buffers `tcp_buffered` bytes: a
        CREDIT frame to send (maybe b""), or None if TCP holds too much: drain
        it, then call `credit_after_drain()`."""
        self._uncredited += wire_size
        if tcp_buffered > WRITE_LOW_WATER:
            return None
        return self.credit_after_drain()

    def credit_after_drain(self) -> bytes:
        n, self._uncredited = self._uncredited, 0
        if not n or self.done:
            return b""
        return self.session.consumed(n)

    # -- from TCP ----------------------------------------------------------
    def read_size(self) -> int:
        """How many bytes to read from TCP now; 0: wait for credit."""
        if self.done:
            return 0
        return min(self.session.sendable(), READ_CHUNK)

    def upload(self, data: bytes, now: float | None = None) -> bytes:
        """TCP bytes (at most `read_size()`) read at `now` -> wire bytes for the circuit."""
        return self.session.send_data(data, now)

    def upload_end(self) -> tuple[bytes, Finished | None]:
        """TCP reached EOF: the END frame, and `Finished` if the far side ended too."""
        return self.session.send_end(), self._finished()

    # -- ends ----------------------------------------------------------------
    def _finished(self) -> Finished | None:
        s = self.session
        if s.local_ended and s.remote_ended and not self.done:
            self.done = True
            return Finished()
        return None

    def fail(self, error: GnetError, tell_circuit: bool) -> Failed | None:
        """An abnormal end (ours or reported); None if the stream already ended."""
        if self.done:
            return None
        self.done = True
        self.error = error
        return Failed(error, tell_circuit)
