"""Service descriptors: where a hidden service can be reached this period.

Layout (kind 2 DHT value): kind u8 | service key 32 | period u64 | seq u64 |
expires u64 | n u8 | n x access point node id 20 | signature 64 (by the
service key over everything before it). Stored under
BLAKE2b-160("gnet descriptor" | service key | period), so the DHT key changes
every period and nodes cannot tell which service a key belongs to without
knowing its address. Access points are node ids only: no descriptor carries
an IP address of the service.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ..dht.values import ValidValue, ValueKind, register_validator
from ..errors import ErrorKind, GnetError, ProtocolError
from ..identity import verify_signature
from ..wire.buffer import Reader, u8, u64

PERIOD = 24 * 3600
DESCRIPTOR_LIFETIME = 3 * 3600
MAX_ACCESS_POINTS = 8


def current_period(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // PERIOD)


def descriptor_key(service_key: bytes, period: int) -> bytes:
    return hashlib.blake2b(b"gnet descriptor" + service_key + period.to_bytes(8, "big"), digest_size=20).digest()


@dataclass(frozen=True)
class Descriptor:
    service_key: bytes
    period: int
    seq: int
    expires: int
    access_points: tuple[bytes, ...]
    signature: bytes = b""

    def signed_part(self) -> bytes:
        if len(self.access_points) > MAX_ACCESS_POINTS:
            raise ValueError("too many access points")
        return (
            u8(ValueKind.SERVICE_DESCRIPTOR)
            + self.service_key
            + u64(self.period)
            + u64(self.seq)
            + u64(self.expires)
            + u8(len(self.access_points))
            + b"".join(self.access_points)
        )

    def encode(self) -> bytes:
        return self.signed_part() + self.signature

    @property
    def key(self) -> bytes:
        return descriptor_key(self.service_key, self.period)


def decode_descriptor(value: bytes) -> Descriptor:
    r = Reader(value)
    if r.pull_u8() != ValueKind.SERVICE_DESCRIPTOR:
        raise ProtocolError("not a service descriptor")
    service_key = r.pull_bytes(32)
    period, seq, expires = r.pull_u64(), r.pull_u64(), r.pull_u64()
    n = r.pull_u8()
    if n == 0 or n > MAX_ACCESS_POINTS:
        raise ProtocolError(f"descriptor lists {n} access points")
    aps = tuple(r.pull_bytes(20) for _ in range(n))
    signature = r.pull_bytes(64)
    r.expect_end()
    return Descriptor(service_key, period, seq, expires, aps, signature)


def verify_descriptor(key: bytes, value: bytes, now: float | None = None) -> Descriptor:
    """Decode and check a descriptor found under `key`: ProtocolError if it is not genuine."""
    now = time.time() if now is None else now
    desc = decode_descriptor(value)
    if not verify_signature(desc.service_key, desc.signed_part(), desc.signature):
        raise ProtocolError("descriptor signature is invalid")
    if desc.key != key:
        raise ProtocolError("descriptor stored under another key")
    if desc.expires <= now:
        raise ProtocolError("descriptor has expired", ErrorKind.EXPIRED)
    if desc.expires - now > 2 * PERIOD:
        raise ProtocolError("descriptor lifetime is too long")
    return desc


def _validate(key: bytes, value: bytes, now: float) -> ValidValue:
    try:
        desc = verify_descriptor(key, value, now)
    except GnetError as exc:
        raise ProtocolError(f"descriptor refused: {exc.detail}") from None
    return ValidValue(key, value, desc.seq, desc.expires)


register_validator(ValueKind.SERVICE_DESCRIPTOR, _validate)
