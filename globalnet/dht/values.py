"""What the DHT stores: signed values only, each with a sequence number and an expiry.

A value is `kind u8 | body`. Each kind has a validator that checks the body's
signature and that it belongs under the key it is stored at; a node refuses
to store (and a lookup ignores) anything unsigned, forged, oversized,
expired or of an unknown kind. Node records are kind 1 (key = node id);
hidden-service descriptors are kind 2, a blinded value (see BlindedValue):
a DHT node checks them against the blinded key alone and learns nothing else.
Kind 3 (TopicSlotValue) lets many writers list themselves under one topic (a
site's mirrors under the site's blinded key): each writer signs its own value
with its own blinded key, in one of TOPIC_SLOTS slots.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..crypto.blinding import verify_blinded
from ..errors import GnetError, ProtocolError
from ..identity import verify_node_record
from ..wire.buffer import Reader, blob16, u8, u64
from ..wire.records import NODE_ID_SIZE, NodeRecord

MAX_VALUE = 4096
KEY_SIZE = NODE_ID_SIZE


class ValueKind(enum.IntEnum):
    NODE_RECORD = 1
    SERVICE_DESCRIPTOR = 2
    TOPIC_SLOT = 3


@dataclass(frozen=True)
class ValidValue:
    key: bytes
    value: bytes
    seq: int
    expires: int


Validator = Callable[[bytes, bytes, float], ValidValue]
_VALIDATORS: dict[int, Validator] = {}


def register_validator(kind: ValueKind, validator: Validator) -> None:
    _VALIDATORS[int(kind)] = validator


def validate_value(key: bytes, value: bytes, now: float | None = None) -> ValidValue:
    """Check a value for `key`; raises ProtocolError saying why it is refused."""
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ProtocolError("DHT key must be 20 bytes")
    if not isinstance(value, bytes) or not value:
        raise ProtocolError("DHT value must be non-empty bytes")
    if len(value) > MAX_VALUE:
        raise ProtocolError(f"DHT value of {len(value)} bytes exceeds {MAX_VALUE}")
    validator = _VALIDATORS.get(value[0])
    if validator is None:
        raise ProtocolError(f"DHT value of unknown kind {value[0]} (only signed values are stored)")
    now = time.time() if now is None else now
    valid = validator(key, value, now)
    if valid.expires <= now:
        raise ProtocolError("DHT value has expired")
    return valid


def node_record_value(record: NodeRecord) -> tuple[bytes, bytes]:
    """(key, value) under which a node publishes its record."""
    return record.node_id, bytes([ValueKind.NODE_RECORD]) + record.encode()


def record_from_value(value: bytes) -> NodeRecord:
    return verify_node_record(value[1:])


def _validate_node_record(key: bytes, value: bytes, now: float) -> ValidValue:
    try:
        record = verify_node_record(value[1:], now)
    except GnetError as exc:
        raise ProtocolError(f"node record refused: {exc.detail}") from None
    if record.node_id != key:
        raise ProtocolError("node record stored under another node's id")
    return ValidValue(key, value, record.seq, record.expires)


register_validator(ValueKind.NODE_RECORD, _validate_node_record)


# -- blinded values: what a DHT node may know of a hidden service's descriptor -------------
BLINDED_KEY_SIZE = 32
SIGNATURE_SIZE = 64
MAX_LIFETIME = 2 * 24 * 3600
_BLINDED_CONTEXT = b"gnet blinded value"


def blinded_value_key(kind: int, blinded_key: bytes) -> bytes:
    """The DHT key of a blinded value: from the blinded key only (it changes every period)."""
    return hashlib.blake2b(_BLINDED_CONTEXT + bytes([kind]) + blinded_key, digest_size=KEY_SIZE).digest()


@dataclass(frozen=True)
class BlindedValue:
    """kind u8 | blinded key 32 | period u64 | seq u64 | expires u64 | body blob16 | signature 64.

    The signature (by the blinded private key) covers the context string and
    everything before it. `body` is ciphertext whose meaning only the kind's
    owner layer knows; a DHT node sees exactly these fields and nothing else."""

    kind: int
    blinded_key: bytes
    period: int
    seq: int
    expires: int
    body: bytes
    signature: bytes = b""

    def signed_part(self) -> bytes:
        return u8(self.kind) + self.blinded_key + u64(self.period) + u64(self.seq) + u64(self.expires) + blob16(self.body, MAX_VALUE)

    def signed_message(self) -> bytes:
        return _BLINDED_CONTEXT + self.signed_part()

    def encode(self) -> bytes:
        return self.signed_part() + self.signature

    @property
    def key(self) -> bytes:
        return blinded_value_key(self.kind, self.blinded_key)


def decode_blinded_value(value: bytes) -> BlindedValue:
    r = Reader(value)
    kind = r.pull_u8()
    blinded_key = r.pull_bytes(BLINDED_KEY_SIZE)
    period, seq, expires = r.pull_u64(), r.pull_u64(), r.pull_u64()
    body = r.pull_blob16(MAX_VALUE)
    signature = r.pull_bytes(SIGNATURE_SIZE)
    r.expect_end()
    return BlindedValue(kind, blinded_key, period, seq, expires, body, signature)


def verify_blinded_value(key: bytes, value: bytes, now: float) -> BlindedValue:
    """Signature, key, expiry and lifetime against the blinded key only: ProtocolError if not genuine."""
    blinded = decode_blinded_value(value)
    if not verify_blinded(blinded.blinded_key, blinded.signed_message(), blinded.signature):
        raise ProtocolError("signature by the blinded key is invalid")
    _check_placement(blinded.key == key, "value stored under another key", blinded.expires, now)
    return blinded


def _check_placement(right_key: bool, wrong_key: str, expires: int, now: float) -> None:
    """What every signed value must show a DHT node besides its signature: its key and a sane lifetime."""
    if not right_key:
        raise ProtocolError(wrong_key)
    if expires <= now:
        raise ProtocolError("value has expired")
    if expires - now > MAX_LIFETIME:
        raise ProtocolError("value lifetime is too long")


def _signed_validator(verify: Callable[[bytes, bytes, float], BlindedValue | TopicSlotValue], what: str) -> Validator:
    """A validator for a kind of value signed by its own (blinded) key: `verify`, then its seq and expiry."""

    def validate(key: bytes, value: bytes, now: float) -> ValidValue:
        try:
            signed = verify(key, value, now)
        except GnetError as exc:
            raise ProtocolError(f"{what} refused: {exc.detail}") from None
        return ValidValue(key, value, signed.seq, signed.expires)

    return validate


# -- topic slots: many writers under one topic, each signing its own value ----------------
TOPIC_SLOTS = 16
_TOPIC_CONTEXT = b"gnet topic slot"


def topic_slot_key(topic: bytes, slot: int) -> bytes:
    """The DHT key of `slot` under `topic` (e.g. a site's blinded key for the period)."""
    return hashlib.blake2b(_TOPIC_CONTEXT + topic + u8(slot), digest_size=KEY_SIZE).digest()


def topic_slot_of(writer_key: bytes) -> int:
    """The slot a writer's key must use: a writer cannot pick someone else's slot for free."""
    return hashlib.blake2b(_TOPIC_CONTEXT + b" slot" + writer_key, digest_size=1).digest()[0] % TOPIC_SLOTS


@dataclass(frozen=True)
class TopicSlotValue:
    """kind u8 (3) | topic 32 | writer key 32 | seq u64 | expires u64 | body blob16 | signature 64.

    `writer_key` is the writer's own (blinded) Ed25519 key, `body` ciphertext
    only the topic's owners can open. A DHT node checks the signature, that
    the key is the writer's slot under the topic, and the lifetime; it learns
    the topic and an unlinkable writer key, nothing else."""

    topic: bytes
    writer_key: bytes
    seq: int
    expires: int
    body: bytes
    signature: bytes = b""

    def signed_message(self) -> bytes:
        return _TOPIC_CONTEXT + self.signed_part()

    def signed_part(self) -> bytes:
        return u8(ValueKind.TOPIC_SLOT) + self.topic + self.writer_key + u64(self.seq) + u64(self.expires) + blob16(self.body, MAX_VALUE)

    def encode(self) -> bytes:
        return self.signed_part() + self.signature

    @property
    def key(self) -> bytes:
        return topic_slot_key(self.topic, topic_slot_of(self.writer_key))


def decode_topic_slot_value(value: bytes) -> TopicSlotValue:
    r = Reader(value)
    if r.pull_u8() != ValueKind.TOPIC_SLOT:
        raise ProtocolError("not a topic slot value")
    topic, writer = r.pull_bytes(BLINDED_KEY_SIZE), r.pull_bytes(BLINDED_KEY_SIZE)
    seq, expires = r.pull_u64(), r.pull_u64()
    body = r.pull_blob16(MAX_VALUE)
    signature = r.pull_bytes(SIGNATURE_SIZE)
    r.expect_end()
    return TopicSlotValue(topic, writer, seq, expires, body, signature)


def verify_topic_slot_value(key: bytes, value: bytes, now: float) -> TopicSlotValue:
    slot = decode_topic_slot_value(value)
    if not verify_blinded(slot.writer_key, slot.signed_message(), slot.signature):
        raise ProtocolError("signature by the writer key is invalid")
    _check_placement(slot.key == key, "value stored under another key or slot", slot.expires, now)
    return slot


register_validator(ValueKind.SERVICE_DESCRIPTOR, _signed_validator(verify_blinded_value, "blinded value"))
register_validator(ValueKind.TOPIC_SLOT, _signed_validator(verify_topic_slot_value, "topic slot value"))
