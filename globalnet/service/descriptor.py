"""Service descriptors: where a hidden service can be reached this period, readable only by its clients.

What a DHT node stores (kind 2, dht/values.BlindedValue): the blinded key of
this period, the period, seq, expiry, a ciphertext and a signature by the
blinded key, under a DHT key derived from the blinded key. That is all it
learns: not the address, not the access points, and nothing that links two
periods (the blinded key, the ciphertext and the signature all change).

Inside (rend-spec-v3 section 2.5, our encoding):
- outer layer, sealed to (address, period): version | auth flag | ephemeral
  X25519 key | client entries (client_auth.py) | the inner layer;
- inner layer, sealed to (address, period, cookie): the descriptor cookie is
  all zero for a service without client authorization, else only an
  authorized client recovers it. It holds the PoW seed and suggested effort
  and, per access point, its node id, the registration id the service used
  there and the proof an access point demands before it asks for a
  rendezvous. No descriptor carries an IP address or the service's key.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

import nacl.bindings as sodium

from ..crypto.blinding import BlindedSigner, blind_public_key
from ..dht.values import BlindedValue, ValueKind, blinded_value_key, verify_blinded_value
from ..errors import ErrorKind, GnetError, ProtocolError
from ..wire.buffer import Reader, u8, u32
from .client_auth import COOKIE_SIZE, auth_entries, decode_entries, encode_entries, find_cookie
from .descriptor_crypto import LayerError, open_descriptor_body, seal_descriptor_body

PERIOD = 24 * 3600
DESCRIPTOR_LIFETIME = 3 * 3600
MAX_ACCESS_POINTS = 8
VERSION = 1
OUTER = b"hs-outer"
INNER = b"hs-inner"
NO_COOKIE = bytes(COOKIE_SIZE)
PROOF_SIZE = 32
SEED_SIZE = 32


def current_period(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // PERIOD)


def descriptor_key(service_key: bytes, period: int) -> bytes:
    """The DHT key of the service's descriptor for `period`: from the blinded key only."""
    return blinded_value_key(ValueKind.SERVICE_DESCRIPTOR, blind_public_key(service_key, period))


def subcredential(service_key: bytes, period: int) -> bytes:
    """Binds client-auth entries to this service and period (rend-spec-v3's subcredential)."""
    return hashlib.blake2b(b"gnet subcredential" + service_key + blind_public_key(service_key, period), digest_size=32).digest()


@dataclass(frozen=True)
class AccessPointEntry:
    """One access point: its node id, the id the service registered under there, and the proof it wants."""

    node_id: bytes
    registration_id: bytes
    proof: bytes


@dataclass(frozen=True)
class Descriptor:
    """A descriptor as the service writes it and an (authorized) client reads it."""

    period: int
    seq: int
    expires: int
    access_points: tuple[AccessPointEntry, ...]
    pow_seed: bytes = bytes(SEED_SIZE)
    pow_effort: int = 0
    authorized: bool = False  # the service wants client authorization

    @property
    def access_point_ids(self) -> tuple[bytes, ...]:
        return tuple(a.node_id for a in self.access_points)


def _encode_inner(desc: Descriptor) -> bytes:
    if not 0 < len(desc.access_points) <= MAX_ACCESS_POINTS:
        raise ValueError(f"a descriptor names 1-{MAX_ACCESS_POINTS} access points")
    return (
        u8(VERSION) + desc.pow_seed + u32(desc.pow_effort) + u8(len(desc.access_points))
        + b"".join(a.node_id + a.registration_id + a.proof for a in desc.access_points)
    )


def _decode_inner(data: bytes) -> tuple[tuple[AccessPointEntry, ...], bytes, int]:
    r = Reader(data)
    if r.pull_u8() != VERSION:
        raise ProtocolError("unknown descriptor version")
    seed, effort, n = r.pull_bytes(SEED_SIZE), r.pull_u32(), r.pull_u8()
    if not 0 < n <= MAX_ACCESS_POINTS:
        raise ProtocolError(f"descriptor lists {n} access points")
    aps = tuple(AccessPointEntry(r.pull_bytes(20), r.pull_bytes(20), r.pull_bytes(PROOF_SIZE)) for _ in range(n))
    r.expect_end()
    return aps, seed, effort


def build_descriptor(seed: bytes, service_key: bytes, desc: Descriptor, clients: list[bytes] | None = None) -> BlindedValue:
    """The signed DHT value for `desc`; `clients` (X25519 public keys) turns on client authorization."""
    cookie = os.urandom(COOKIE_SIZE) if clients is not None else NO_COOKIE
    ephemeral = os.urandom(32)
    entries = auth_entries(cookie, ephemeral, clients or [], subcredential(service_key, desc.period))
    inner = seal_descriptor_body(INNER, service_key, desc.period, _encode_inner(desc), cookie)
    outer_plain = (
        u8(VERSION) + u8(1 if clients is not None else 0) + bytes(sodium.crypto_scalarmult_base(ephemeral))
        + encode_entries(entries) + inner
    )
    body = seal_descriptor_body(OUTER, service_key, desc.period, outer_plain)
    signer = BlindedSigner(seed, desc.period)
    value = BlindedValue(ValueKind.SERVICE_DESCRIPTOR, signer.public_key, desc.period, desc.seq, desc.expires, body)
    return BlindedValue(value.kind, value.blinded_key, value.period, value.seq, value.expires, body, signer.sign(value.signed_message()))


def open_descriptor(service_key: bytes, key: bytes, value: bytes, client_key: bytes | None, now: float | None = None) -> Descriptor:
    """Check a value found under `key` and decrypt it; ProtocolError if not genuine, a
    SERVICE_NOT_AUTHORIZED GnetError if the service wants a client key we do not have."""
    now = time.time() if now is None else now
    blinded = verify_blinded_value(key, value, now)
    if blinded.blinded_key != blind_public_key(service_key, blinded.period):
        raise ProtocolError("descriptor is not this service's")
    try:
        outer = open_descriptor_body(OUTER, service_key, blinded.period, blinded.body)
    except LayerError:
        raise ProtocolError("the descriptor's outer layer does not open") from None
    r = Reader(outer)
    if r.pull_u8() != VERSION:
        raise ProtocolError("unknown descriptor version")
    auth = r.pull_u8() == 1
    ephemeral_public = r.pull_bytes(32)
    entries = decode_entries(r)
    inner_sealed = r.pull_bytes(r.remaining())
    cookie = NO_COOKIE
    if auth:
        if client_key is None:
            raise GnetError(
                ErrorKind.SERVICE_NOT_AUTHORIZED,
                "the service requires client authorization and this node has no client key (gclient --gen-client-key)",
            )
        found = find_cookie(entries, ephemeral_public, client_key, subcredential(service_key, blinded.period))
        if found is None:
            raise GnetError(ErrorKind.SERVICE_NOT_AUTHORIZED, "the service does not list this node's client key")
        cookie = found
    try:
        inner = open_descriptor_body(INNER, service_key, blinded.period, inner_sealed, cookie)
    except LayerError:
        if auth:
            raise GnetError(ErrorKind.SERVICE_NOT_AUTHORIZED, "the service's inner layer does not open with our key") from None
        raise ProtocolError("the descriptor's inner layer does not open") from None
    aps, seed, effort = _decode_inner(inner)
    return Descriptor(blinded.period, blinded.seq, blinded.expires, aps, seed, effort, auth)
