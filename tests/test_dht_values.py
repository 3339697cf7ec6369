"""Signed values only: what a DHT node stores and what a lookup accepts."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from globalnet.dht.storage import SignedStorage
from globalnet.dht.values import MAX_VALUE, ValueKind, node_record_value, validate_value
from globalnet.errors import ProtocolError
from globalnet.identity import Identity
from tests.identities import next_identity


def _record(identity: Identity, seq: int, now: float | None = None):  # type: ignore[no-untyped-def]
    return identity.make_record((("127.0.0.1", 9001),), now=now, seq=seq)


def test_a_signed_record_is_valid_under_its_node_id() -> None:
    ident = next_identity()
    key, value = node_record_value(_record(ident, 5))
    valid = validate_value(key, value)
    assert valid.seq == 5 and valid.key == ident.node_id


@pytest.mark.parametrize(
    "mutate, why",
    [
        (lambda k, v: (k, v[:-1] + bytes([v[-1] ^ 1])), "signature"),  # forged signature
        (lambda k, v: (bytes(20), v), "another node"),  # stored under the wrong key
        (lambda k, v: (k, bytes([99]) + v[1:]), "unknown kind"),  # unsigned / unknown kind
        (lambda k, v: (k, b""), "non-empty"),
        (lambda k, v: (k, v + bytes(MAX_VALUE)), "exceeds"),  # oversized
        (lambda k, v: (k[:10], v), "20 bytes"),
    ],
    ids=["forged", "wrong-key", "unknown-kind", "empty", "oversized", "short-key"],
)
def test_invalid_values_are_refused(mutate, why) -> None:  # type: ignore[no-untyped-def]
    key, value = node_record_value(_record(next_identity(), 1))
    bad_key, bad_value = mutate(key, value)
    with pytest.raises(ProtocolError, match=why):
        validate_value(bad_key, bad_value)


def test_expired_values_are_refused() -> None:
    ident = next_identity()
    old = _record(ident, 1, now=time.time() - 2 * 24 * 3600)
    key, value = node_record_value(old)
    with pytest.raises(ProtocolError, match="expired"):
        validate_value(key, value)


def test_a_record_resigned_by_another_key_is_refused() -> None:
    ident, other = next_identity(), next_identity()
    record = _record(ident, 1)
    forged = replace(record, signature=other.sign(record.signed_part()))
    key, value = node_record_value(forged)
    with pytest.raises(ProtocolError, match="signature"):
        validate_value(key, value)


def test_storage_keeps_the_highest_sequence_and_refuses_replays() -> None:
    ident = next_identity()
    store = SignedStorage()
    key, v2 = node_record_value(_record(ident, 2))
    _, v1 = node_record_value(_record(ident, 1))
    _, v3 = node_record_value(_record(ident, 3))
    assert store.put(key, v2)
    assert not store.put(key, v1)  # a replayed lower sequence does not replace
    assert store.get(key) == v2
    assert store.put(key, v3)
    assert store.get(key) == v3
    assert store.refused == 1


def test_storage_refuses_forgeries_and_drops_expired_values() -> None:
    ident = next_identity()
    store = SignedStorage()
    key, value = node_record_value(_record(ident, 1))
    assert not store.put(key, value[:-1] + bytes([value[-1] ^ 1]))
    assert store.put(key, value)
    valid = store.get_valid(key)
    assert valid is not None
    assert store.get_valid(key, now=valid.expires + 1) is None  # dropped at its own expiry
    assert len(store) == 0


def test_storage_is_bounded() -> None:
    store = SignedStorage(max_values=5)
    for _ in range(8):
        key, value = node_record_value(_record(next_identity(), 1))
        assert store.put(key, value)
    assert len(store) == 5


def test_republish_iterates_only_live_values() -> None:
    store = SignedStorage()
    key, value = node_record_value(_record(next_identity(), 1))
    store.put(key, value, now=time.time() - 100)
    assert [k for k, _ in store.iter_older_than(50)] == [key]
    assert list(store.iter_older_than(1000)) == []


def test_value_kinds_are_stable() -> None:
    assert ValueKind.NODE_RECORD == 1 and ValueKind.SERVICE_DESCRIPTOR == 2
