"""Messages on a link's control stream (plaintext inside QUIC's TLS).

The listener opens the control stream as soon as QUIC's handshake completes and
sends CHALLENGE (a fresh nonce and its own signed record). The dialler answers
AUTH: its signed record and an Ed25519 signature over
(AUTH_CONTEXT | listener node id | challenge), which proves it holds its
identity key on this very connection (QUIC servers here receive no client
certificate). The listener answers AUTH_OK; until then the link carries nothing
else. PING/PONG keep an RTT estimate; CLOSE says why a link is dropped.

Each message: type u8 | length u16 | body (at most MAX_CONTROL_BODY).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError
from .buffer import Reader, blob16, str8, u8, u16, u64
from .records import MAX_RECORD_SIZE

AUTH_CONTEXT = b"gnet/1 link auth"
CHALLENGE_SIZE = 32
MAX_CONTROL_BODY = 60000
#: Records in one PEERS message (a bounded random sample).
MAX_PEERS_PER_MESSAGE = 32


class ControlType(enum.IntEnum):
    CHALLENGE = 0x01
    AUTH = 0x02
    AUTH_OK = 0x03
    PING = 0x04
    PONG = 0x05
    CLOSE = 0x06
    PEERS = 0x07


@dataclass(frozen=True)
class Challenge:
    nonce: bytes
    record: bytes


@dataclass(frozen=True)
class Auth:
    record: bytes
    signature: bytes


@dataclass(frozen=True)
class AuthOk:
    pass


@dataclass(frozen=True)
class Ping:
    nonce: int


@dataclass(frozen=True)
class Pong:
    nonce: int


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True)
class Peers:
    records: tuple[bytes, ...]


ControlMessage = Challenge | Auth | AuthOk | Ping | Pong | Close | Peers


def auth_transcript(listener_id: bytes, nonce: bytes) -> bytes:
    return AUTH_CONTEXT + listener_id + nonce


def _peers_body(msg: Peers) -> bytes:
    records = msg.records[:MAX_PEERS_PER_MESSAGE]
    return u8(len(records)) + b"".join(blob16(r, MAX_RECORD_SIZE) for r in records)


def _decode_peers(r: Reader) -> Peers:
    n = r.pull_u8()
    if n > MAX_PEERS_PER_MESSAGE:
        raise ProtocolError(f"PEERS with {n} records, at most {MAX_PEERS_PER_MESSAGE}")
    return Peers(tuple(r.pull_blob16(MAX_RECORD_SIZE) for _ in range(n)))


#: One table per direction: message class -> (type, body encoder); type -> body decoder.
_ENCODERS: dict[type, tuple[ControlType, Callable[[Any], bytes]]] = {
    Challenge: (ControlType.CHALLENGE, lambda m: m.nonce + blob16(m.record, MAX_RECORD_SIZE)),
    Auth: (ControlType.AUTH, lambda m: blob16(m.record, MAX_RECORD_SIZE) + m.signature),
    AuthOk: (ControlType.AUTH_OK, lambda m: b""),
    Ping: (ControlType.PING, lambda m: u64(m.nonce)),
    Pong: (ControlType.PONG, lambda m: u64(m.nonce)),
    Peers: (ControlType.PEERS, _peers_body),
    Close: (ControlType.CLOSE, lambda m: u8(m.code) + str8(m.reason.encode()[:200].decode("utf-8", "ignore"))),
}
_DECODERS: dict[int, Callable[[Reader], ControlMessage]] = {
    ControlType.CHALLENGE: lambda r: Challenge(r.pull_bytes(CHALLENGE_SIZE), r.pull_blob16(MAX_RECORD_SIZE)),
    ControlType.AUTH: lambda r: Auth(r.pull_blob16(MAX_RECORD_SIZE), r.pull_bytes(64)),
    ControlType.AUTH_OK: lambda r: AuthOk(),
    ControlType.PING: lambda r: Ping(r.pull_u64()),
    ControlType.PONG: lambda r: Pong(r.pull_u64()),
    ControlType.PEERS: _decode_peers,
    ControlType.CLOSE: lambda r: Close(r.pull_u8(), r.pull_str8()),
}


def encode_control(msg: ControlMessage) -> bytes:
    t, encode = _ENCODERS[type(msg)]
    body = encode(msg)
    return u8(t) + u16(len(body)) + body


def _decode_body(t: int, r: Reader) -> ControlMessage:
    decode = _DECODERS.get(t)
    if decode is None:
        raise ProtocolError(f"unknown control message type {t:#x}")
    return decode(r)


class ControlDecoder:
    """Bytes in, control messages out; holds at most one message of 8 KiB."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[ControlMessage]:
        self._buf += data
        out: list[ControlMessage] = []
        while len(self._buf) >= 3:
            t = self._buf[0]
            length = (self._buf[1] << 8) | self._buf[2]
            if length > MAX_CONTROL_BODY:
                raise ProtocolError(f"control message of {length} bytes exceeds {MAX_CONTROL_BODY}")
            if len(self._buf) < 3 + length:
                break
            r = Reader(bytes(self._buf[3 : 3 + length]))
            del self._buf[: 3 + length]
            msg = _decode_body(t, r)
            r.expect_end()
            out.append(msg)
        return out
