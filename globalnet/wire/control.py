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
from dataclasses import dataclass

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


def encode_control(msg: ControlMessage) -> bytes:
    if isinstance(msg, Challenge):
        t, body = ControlType.CHALLENGE, msg.nonce + blob16(msg.record, MAX_RECORD_SIZE)
    elif isinstance(msg, Auth):
        t, body = ControlType.AUTH, blob16(msg.record, MAX_RECORD_SIZE) + msg.signature
    elif isinstance(msg, AuthOk):
        t, body = ControlType.AUTH_OK, b""
    elif isinstance(msg, Ping):
        t, body = ControlType.PING, u64(msg.nonce)
    elif isinstance(msg, Pong):
        t, body = ControlType.PONG, u64(msg.nonce)
    elif isinstance(msg, Peers):
        records = msg.records[:MAX_PEERS_PER_MESSAGE]
        t, body = ControlType.PEERS, u8(len(records)) + b"".join(blob16(r, MAX_RECORD_SIZE) for r in records)
    else:
        t, body = ControlType.CLOSE, u8(msg.code) + str8(msg.reason.encode()[:200].decode("utf-8", "ignore"))
    return u8(t) + u16(len(body)) + body


def _decode_body(t: int, r: Reader) -> ControlMessage:
    if t == ControlType.CHALLENGE:
        return Challenge(r.pull_bytes(CHALLENGE_SIZE), r.pull_blob16(MAX_RECORD_SIZE))
    if t == ControlType.AUTH:
        return Auth(r.pull_blob16(MAX_RECORD_SIZE), r.pull_bytes(64))
    if t == ControlType.AUTH_OK:
        return AuthOk()
    if t == ControlType.PING:
        return Ping(r.pull_u64())
    if t == ControlType.PONG:
        return Pong(r.pull_u64())
    if t == ControlType.PEERS:
        n = r.pull_u8()
        if n > MAX_PEERS_PER_MESSAGE:
            raise ProtocolError(f"PEERS with {n} records, at most {MAX_PEERS_PER_MESSAGE}")
        return Peers(tuple(r.pull_blob16(MAX_RECORD_SIZE) for _ in range(n)))
    if t == ControlType.CLOSE:
        return Close(r.pull_u8(), r.pull_str8())
    raise ProtocolError(f"unknown control message type {t:#x}")


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
