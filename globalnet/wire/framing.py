"""Length-prefixed messages on a byte stream, and the frames inside a sealed layer.

Two levels, both bounded:
- On a hop stream every message (a handshake message or a sealed frame) is
  `length u16 | bytes`. `MessageSplitter` cuts a byte stream into them.
- Inside the last hop's AEAD layer a message opens to a frame
  `type u8 | length u16 | body | padding`; data frames carry at most 16 KiB.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ProtocolError
from .buffer import Reader, u8, u16, u32

MAX_MESSAGE = 65535
MAX_DATA_BODY = 16 * 1024
AEAD_TAG = 16
LENGTH_PREFIX = 2
FRAME_HEADER = 3
#: Wire bytes of one full data frame: prefix + header + body + tag.
MAX_DATA_WIRE = LENGTH_PREFIX + FRAME_HEADER + MAX_DATA_BODY + AEAD_TAG


class FrameType(enum.IntEnum):
    DATA = 0x01  # application bytes
    CREDIT = 0x02  # u32: wire bytes of DATA the sender of CREDIT has consumed
    END = 0x03  # clean end of this direction (half-close)
    ERROR = 0x04  # reserved (an abnormal end is a stream reset); a circuit end refuses it
    MESSAGE = 0x05  # a console text message (send <id> <text>)
    DATAGRAM = 0x06  # one UDP datagram (wire/datagram.py), inside the credit window like DATA
    DHT_STORE = 0x10  # (the proposal's names) a DHT request for the circuit's last hop
    DHT_RETR = 0x11
    DHT_DATA = 0x12  # the answer to either
    SERVICE_REGISTER = 0x20  # a hidden service registers with its access point
    SERVICE_REGISTERED = 0x21
    RENZV_REQUEST = 0x22  # access point -> service: a client waits at rendezvous cookie X


@dataclass(frozen=True)
class Frame:
    type: FrameType
    body: bytes


def encode_frame(ftype: FrameType, body: bytes | memoryview = b"") -> bytes:
    """`type u8 | length u16 | body`; `body` may be a view (one copy, into the frame)."""
    if len(body) > MAX_DATA_BODY:
        raise ValueError(f"frame body of {len(body)} bytes exceeds {MAX_DATA_BODY}")
    return b"".join((u8(ftype) + u16(len(body)), body))


def decode_frame(plain: bytes) -> Frame:
    """Parse an opened frame; trailing bytes after the body are padding."""
    r = Reader(plain)
    ftype = r.pull_u8()
    length = r.pull_u16()
    if length > MAX_DATA_BODY:
        raise ProtocolError(f"frame body of {length} bytes exceeds {MAX_DATA_BODY}")
    body = r.pull_bytes(length)
    try:
        kind = FrameType(ftype)
    except ValueError:
        raise ProtocolError(f"unknown frame type {ftype:#x}") from None
    return Frame(kind, body)


def credit_body(n: int) -> bytes:
    return u32(n)


def parse_credit(body: bytes) -> int:
    r = Reader(body)
    n = r.pull_u32()
    r.expect_end()
    return n


def prefix(message: bytes) -> bytes:
    """`length u16 | message` for the hop stream."""
    return prefix_all([message])


def prefix_all(messages: list[bytes]) -> bytes:
    """`prefix()` of each message, concatenated, in one copy; ValueError for one over MAX_MESSAGE."""
    parts: list[bytes] = []
    for message in messages:
        if len(message) > MAX_MESSAGE:
            raise ValueError(f"message of {len(message)} bytes exceeds {MAX_MESSAGE}")
        parts += (u16(len(message)), message)
    return b"".join(parts)


class MessageSplitter:
    """Cuts a byte stream into length-prefixed messages, one at a time.

    `pop()` returns one whole message or None, so a caller that changes mode
    after a message (handshake -> bridge, handshake -> frames) can take the
    bytes that follow with `take_rest()` untouched. Buffers at most
    `max_pending` bytes; a peer that sends more before they can be consumed is
    a protocol error.
    """

    __slots__ = ("_buf", "_pos", "max_pending")

    def __init__(self, max_pending: int = 4 * (MAX_MESSAGE + LENGTH_PREFIX)) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_pending = max_pending

    def push(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        if len(self._buf) > self.max_pending:
            raise ProtocolError(f"more than {self.max_pending} bytes pending on a stream")

    def pop(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 2:
            return None
        end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
        if end > len(buf):
            return None
        self._pos = end
        return bytes(buf[pos + 2 : end])

    def take_rest(self) -> bytes:
        """Bytes after the last popped message (used when a stream changes mode)."""
        rest = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return rest

    @property
    def pending(self) -> int:
        return len(self._buf) - self._pos
