"""What the DHT stores: signed values only, each with a sequence number and an expiry.

A value is `kind u8 | body`. Each kind has a validator that checks the body's
signature and that it belongs under the key it is stored at; a node refuses
to store (and a lookup ignores) anything unsigned, forged, oversized,
expired or of an unknown kind. Node records are kind 1 (key = node id);
hidden-service descriptors register kind 2.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ErrorKind, GnetError, ProtocolError
from ..identity import verify_node_record
from ..wire.records import NODE_ID_SIZE, NodeRecord

MAX_VALUE = 4096
KEY_SIZE = NODE_ID_SIZE


class ValueKind(enum.IntEnum):
    NODE_RECORD = 1
    SERVICE_DESCRIPTOR = 2


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
        raise ProtocolError("DHT value has expired", ErrorKind.EXPIRED)
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
