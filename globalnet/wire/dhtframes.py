"""DHT requests through a circuit: DHT_STORE, DHT_RETR and DHT_DATA (the proposal's names).

A client never queries the DHT from its own address: it builds a circuit whose
last hop was told `RELAY_CONNECT dht`, and sends these frames; that hop runs
the lookup or store and answers DHT_DATA.

DHT_STORE: req u32 | key 20 | value blob16
DHT_RETR:  req u32 | key 20
DHT_DATA:  req u32 | status u8 | payload blob16 (the value, or u8 nodes stored)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ProtocolError
from .buffer import Reader, blob16, u8, u32
from .framing import FrameType

KEY_SIZE = 20
MAX_VALUE = 4096


class DhtStatus(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1
    REFUSED = 2  # the value is not valid (unsigned, forged, expired, too large)
    FAILED = 3  # no node stored it / the lookup failed / too busy


@dataclass(frozen=True)
class DhtStore:
    req: int
    key: bytes
    value: bytes


@dataclass(frozen=True)
class DhtRetr:
    req: int
    key: bytes


@dataclass(frozen=True)
class DhtData:
    req: int
    status: DhtStatus
    payload: bytes = b""


DhtRequest = DhtStore | DhtRetr


def encode_request(req: DhtRequest) -> tuple[FrameType, bytes]:
    if isinstance(req, DhtStore):
        return FrameType.DHT_STORE, u32(req.req) + req.key + blob16(req.value, MAX_VALUE)
    return FrameType.DHT_RETR, u32(req.req) + req.key


def decode_request(ftype: FrameType, body: bytes) -> DhtRequest:
    r = Reader(body)
    req = r.pull_u32()
    key = r.pull_bytes(KEY_SIZE)
    if ftype is FrameType.DHT_STORE:
        value = r.pull_blob16(MAX_VALUE)
        r.expect_end()
        return DhtStore(req, key, value)
    if ftype is FrameType.DHT_RETR:
        r.expect_end()
        return DhtRetr(req, key)
    raise ProtocolError(f"{ftype.name} is not a DHT request")


def encode_data(data: DhtData) -> bytes:
    return u32(data.req) + u8(data.status) + blob16(data.payload, MAX_VALUE)


def decode_data(body: bytes) -> DhtData:
    r = Reader(body)
    req = r.pull_u32()
    raw = r.pull_u8()
    try:
        status = DhtStatus(raw)
    except ValueError:
        raise ProtocolError(f"unknown DHT status {raw}") from None
    payload = r.pull_blob16(MAX_VALUE)
    r.expect_end()
    return DhtData(req, status, payload)
