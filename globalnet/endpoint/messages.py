"""Console messages between nodes (sans-IO): the notes a message circuit carries.

Theory of operation. `send <nodeid> <text>` on a console builds a circuit whose
last hop is the destination node itself (RELAY_CONNECT proto MESSAGE). That
hop keeps its handshake's transport keys, so the two ends speak AEAD frames
that no relay on the path can read or forge. Every request is one MESSAGE
frame whose body is a short text note, ``<kind> <seq>[ <text>]``::

    msg <seq> <text>   show <text> on the destination's consoles
    ping <seq>         answer at once (a round trip through the circuit)
    ok <seq>           the destination has shown msg <seq>
    pong <seq>         the answer to ping <seq>
    err <seq> <why>    the destination refused request <seq>

Only the destination holds the keys that seal its answers, so `ok` is an
end-to-end, authenticated confirmation, not a relay's. The destination learns
the relay before it, never the sender. A kind the destination does not know
is answered with `err` (so kinds can be added later); a note it cannot parse,
or a DATA frame, is a protocol error and ends the circuit. Everything is
bounded: a note by the frame size, the text of `msg` by MAX_TEXT, the pace of
requests by a token bucket per circuit.

`MessageOutbox` is the sender's end, `MessageInbox` the destination's; both
are fed the circuit's bytes and return the bytes to send, and never touch a
socket or a clock (`now` is a parameter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ErrorKind, GnetError, ProtocolError
from .session import DataReceived, EndReceived, FrameSession, MessageReceived

#: The most UTF-8 bytes of text one `msg` may carry (one console line's worth).
MAX_TEXT = 1024
#: Sequence numbers are u32 in decimal; a sender starts at 1.
MAX_SEQ = 2**32 - 1
#: The destination's token bucket per circuit: sustained requests per second, and burst.
RATE = 5.0
BURST = 20
#: Refusals in a row after which the destination gives up on a circuit.
MAX_REFUSALS = 64

MSG, PING, OK, PONG, ERR = "msg", "ping", "ok", "pong", "err"
REQUESTS = frozenset({MSG, PING})
ANSWERS = frozenset({OK, PONG, ERR})

_NOTE_RE = re.compile(r"([a-z]{1,8}) ([1-9][0-9]{0,9})(?: (.*))?", re.DOTALL)


@dataclass(frozen=True)
class Note:
    kind: str
    seq: int
    text: str = ""


def encode_note(note: Note) -> str:
    if not 1 <= note.seq <= MAX_SEQ:
        raise ValueError(f"sequence number {note.seq} out of range")
    return f"{note.kind} {note.seq} {note.text}" if note.text else f"{note.kind} {note.seq}"


def decode_note(body: str) -> Note:
    """Parse a note; ProtocolError if it is not ``<kind> <seq>[ <text>]``."""
    match = _NOTE_RE.fullmatch(body)
    if match is None:
        raise ProtocolError("malformed message note")
    seq = int(match.group(2))
    if seq > MAX_SEQ:
        raise ProtocolError("message sequence number out of range")
    return Note(match.group(1), seq, match.group(3) or "")


def escape_text(text: str, limit: int = 4 * MAX_TEXT) -> str:
    """One printable line: control, format and other unprintable characters
    (newlines, ESC, bidi overrides) become escapes, so a message can neither
    forge console or log lines nor drive a terminal; cut to `limit`."""
    out = []
    size = 0
    for ch in text:
        if ch == "\\":
            piece = "\\\\"
        elif ch.isprintable():
            piece = ch
        elif ch in "\n\r\t":
            piece = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
        elif ord(ch) < 0x100:
            piece = f"\\x{ord(ch):02x}"
        elif ord(ch) < 0x10000:
            piece = f"\\u{ord(ch):04x}"
        else:
            piece = f"\\U{ord(ch):08x}"
        size += len(piece)
        if size > limit:
            out.append("...")
            break
        out.append(piece)
    return "".join(out)


# -- the destination's end -------------------------------------------------


@dataclass
class InboxOutput:
    wire: bytes = b""  # to send back (answers, END)
    shown: list[str] = field(default_factory=list)  # texts to show on the consoles
    ended: bool = False  # the sender ended cleanly; we answered END too


class MessageInbox:
    """The destination's end of one message circuit."""

    def __init__(self, session: FrameSession, now: float, rate: float = RATE, burst: int = BURST) -> None:
        self.session = session
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now
        self._refusals = 0
        self.messages = 0

    def receive(self, data: bytes | bytearray, now: float) -> InboxOutput:
        """Feed circuit bytes. Raises GnetError when the circuit must end."""
        out = InboxOutput()
        wire = []
        for event in self.session.receive(data):
            if isinstance(event, DataReceived):
                raise ProtocolError("DATA frame on a message circuit")
            if isinstance(event, EndReceived):
                wire.append(self.session.send_end())
                out.ended = True
            elif isinstance(event, MessageReceived):
                answer = self._answer(decode_note(event.text), now, out)
                if answer is not None:
                    wire.append(self.session.send_message(encode_note(answer)))
        out.wire = b"".join(wire)
        return out

    def _answer(self, note: Note, now: float, out: InboxOutput) -> Note | None:
        if note.kind in ANSWERS:
            return None  # never answer an answer (no loops)
        if note.kind not in REQUESTS:
            return self._refuse(note, f"unknown request '{note.kind}'")
        if not self._take_token(now):
            return self._refuse(note, "too many messages, slow down")
        if note.kind == PING:
            self._refusals = 0
            return Note(PONG, note.seq)
        if len(note.text.encode("utf-8")) > MAX_TEXT:
            return self._refuse(note, f"message longer than {MAX_TEXT} bytes")
        if not note.text:
            return self._refuse(note, "empty message")
        self._refusals = 0
        self.messages += 1
        out.shown.append(note.text)
        return Note(OK, note.seq)

    def _take_token(self, now: float) -> bool:
        self._tokens = min(float(self.burst), self._tokens + max(0.0, now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _refuse(self, note: Note, why: str) -> Note:
        self._refusals += 1
        if self._refusals > MAX_REFUSALS:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "too many refused message requests")
        return Note(ERR, note.seq, why)


# -- the sender's end ------------------------------------------------------


@dataclass
class OutboxOutput:
    answers: list[Note] = field(default_factory=list)
    ended: bool = False  # the destination ended the circuit cleanly


class MessageOutbox:
    """The sender's end of one message circuit: numbers requests, reads answers."""

    def __init__(self, session: FrameSession) -> None:
        self.session = session
        self._seq = 0

    def request(self, kind: str, text: str = "") -> tuple[int, bytes]:
        """Seal one request; returns its sequence number and the wire bytes."""
        if kind not in REQUESTS:
            raise ValueError(f"not a request: {kind}")
        if kind == MSG and not 0 < len(text.encode("utf-8")) <= MAX_TEXT:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, f"a message is 1..{MAX_TEXT} bytes of UTF-8")
        if self._seq >= MAX_SEQ:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "message sequence numbers used up")
        self._seq += 1
        return self._seq, self.session.send_message(encode_note(Note(kind, self._seq, text)))

    def receive(self, data: bytes | bytearray) -> OutboxOutput:
        """Feed circuit bytes. Raises GnetError when the circuit must end."""
        out = OutboxOutput()
        for event in self.session.receive(data):
            if isinstance(event, DataReceived):
                raise ProtocolError("DATA frame on a message circuit")
            if isinstance(event, EndReceived):
                out.ended = True
            elif isinstance(event, MessageReceived):
                note = decode_note(event.text)
                if note.kind in ANSWERS:
                    out.answers.append(note)
                # requests from the destination are not part of the protocol yet: ignored
        return out

    def close(self) -> bytes:
        """END: we are done with this circuit."""
        return self.session.send_end()
