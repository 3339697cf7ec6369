"""Signed node records: exact layout, round trip, and every way verification fails.

Keys are fixed seeds and every time is passed in explicitly, so the bytes are
the same on every run (Ed25519 signatures are deterministic).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import nacl.public
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from globalnet.errors import GnetError, ProtocolError
from globalnet.identity import (
    MAX_CLOCK_SKEW,
    RECORD_LIFETIME,
    Identity,
    OnionKeys,
    solved_seed,
    verify_node_record,
    verify_signature,
)
from globalnet.wire.records import (
    FLAG_EXIT,
    FLAG_RELAY,
    MAX_ADDRESSES,
    MAX_RECORD_SIZE,
    NodeRecord,
    decode_node_record,
    node_id_of,
    short_id,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NOW = 1_700_000_000
WEEK = 7 * 24 * 3600


def fixed_identity(seed: int = 1) -> Identity:
    signing = nacl.signing.SigningKey(solved_seed(bytes([seed]) * 32))
    onion = nacl.public.PrivateKey(bytes([seed + 100]) * 32)
    return Identity(signing, OnionKeys(onion, created=NOW))


def sign(identity: Identity, record: NodeRecord) -> NodeRecord:
    return replace(record, signature=identity.sign(record.signed_part()))


IDENT = fixed_identity()
UNSIGNED = NodeRecord(
    identity_key=IDENT.public_key,
    onion_key=bytes(IDENT.onion.current.public_key),
    flags=FLAG_RELAY | FLAG_EXIT,
    addresses=(("192.0.2.1", 4433), ("2001:db8::1", 443)),
    exit_policy="accept *:443",
    published=NOW,
    expires=NOW + RECORD_LIFETIME,
    seq=42,
)
SIGNED = sign(IDENT, UNSIGNED)
SIGNED_PART = (
    b"GNR1"
    + IDENT.public_key
    + bytes(IDENT.onion.current.public_key)
    + b"\x03"  # flags: relay | exit
    + b"\x02"  # two addresses
    + b"\x09192.0.2.1"
    + b"\x11\x51"
    + b"\x0b2001:db8::1"
    + b"\x01\xbb"
    + b"\x0caccept *:443"
    + NOW.to_bytes(8, "big")
    + (NOW + RECORD_LIFETIME).to_bytes(8, "big")
    + (42).to_bytes(8, "big")
)


# -- layout and codec -------------------------------------------------------


def test_record_layout() -> None:
    assert UNSIGNED.signed_part() == SIGNED_PART
    assert SIGNED.encode() == SIGNED_PART + SIGNED.signature
    assert len(SIGNED.signature) == 64
    assert verify_signature(IDENT.public_key, SIGNED_PART, SIGNED.signature)


def test_record_decode() -> None:
    assert decode_node_record(SIGNED_PART + SIGNED.signature) == SIGNED


def test_record_properties() -> None:
    assert SIGNED.node_id == hashlib.blake2b(IDENT.public_key, digest_size=20).digest()
    assert SIGNED.node_id == node_id_of(IDENT.public_key) == IDENT.node_id
    assert len(SIGNED.node_id) == 20
    assert short_id(SIGNED.node_id) == SIGNED.node_id.hex()[:8]
    assert SIGNED.is_exit
    assert not replace(SIGNED, flags=FLAG_RELAY).is_exit


def test_unsigned_record_does_not_encode() -> None:
    with pytest.raises(ValueError, match="not signed"):
        UNSIGNED.encode()


def test_too_many_addresses_do_not_encode() -> None:
    record = replace(SIGNED, addresses=(("192.0.2.1", 1),) * (MAX_ADDRESSES + 1))
    with pytest.raises(ValueError):
        record.encode()


def test_record_truncated_at_every_byte() -> None:
    wire = SIGNED.encode()
    for i in range(len(wire)):
        with pytest.raises(ProtocolError):
            decode_node_record(wire[:i])


def test_record_trailing_byte() -> None:
    with pytest.raises(ProtocolError, match="trailing"):
        decode_node_record(SIGNED.encode() + b"\x00")


def test_record_wrong_magic() -> None:
    with pytest.raises(ProtocolError, match="not a node record"):
        decode_node_record(b"GNR2" + SIGNED.encode()[4:])


def test_record_over_size_bound() -> None:
    with pytest.raises(ProtocolError, match="exceeds 4096"):
        decode_node_record(SIGNED.encode() + b"\x00" * MAX_RECORD_SIZE)


def _with_addresses(raw_addresses: bytes, n: int) -> bytes:
    head = b"GNR1" + bytes(32) + bytes(32) + b"\x01" + bytes([n])
    tail = b"\x00" + bytes(24) + bytes(64)
    return head + raw_addresses + tail


def test_record_with_more_than_four_addresses() -> None:
    addrs = b"\x01a\x00\x01" * 5
    assert len(decode_node_record(_with_addresses(addrs[:16], 4)).addresses) == 4
    with pytest.raises(ProtocolError, match="5 addresses"):
        decode_node_record(_with_addresses(addrs, 5))


@pytest.mark.parametrize(
    "address", [b"\x00\x11\x51", b"\x01a\x00\x00"], ids=["empty-host", "port-0"]
)
def test_record_with_an_empty_address(address: bytes) -> None:
    with pytest.raises(ProtocolError, match="empty address"):
        decode_node_record(_with_addresses(address, 1))


@FAST
@given(
    flags=st.integers(0, 255),
    addresses=st.lists(
        st.tuples(st.text(min_size=1, max_size=40), st.integers(1, 65535)), max_size=MAX_ADDRESSES
    ).map(tuple),
    policy=st.text(max_size=60),
    published=st.integers(0, 2**64 - 1),
    expires=st.integers(0, 2**64 - 1),
    seq=st.integers(0, 2**64 - 1),
)
def test_record_round_trip(
    flags: int,
    addresses: tuple[tuple[str, int], ...],
    policy: str,
    published: int,
    expires: int,
    seq: int,
) -> None:
    record = replace(
        SIGNED,
        flags=flags,
        addresses=addresses,
        exit_policy=policy,
        published=published,
        expires=expires,
        seq=seq,
    )
    assert decode_node_record(record.encode()) == record


# -- verification -----------------------------------------------------------


def test_verify_accepts_a_good_record() -> None:
    assert verify_node_record(SIGNED.encode(), now=NOW) == SIGNED


def test_make_record_round_trip() -> None:
    record = IDENT.make_record((("198.51.100.4", 9000),), now=NOW + 0.75)
    assert record.published == NOW
    assert record.expires == NOW + RECORD_LIFETIME
    assert record.seq == 1_700_000_000_750
    assert record.onion_key == bytes(IDENT.onion.current.public_key)
    assert record.flags == FLAG_RELAY and record.exit_policy == "reject *"
    assert verify_node_record(record.encode(), now=NOW + 10) == record
    assert IDENT.make_record((), seq=7, now=NOW).seq == 7


def test_forged_signature() -> None:
    forger = fixed_identity(2)
    forged = replace(UNSIGNED, signature=forger.sign(UNSIGNED.signed_part()))  # claims IDENT's key
    with pytest.raises(ProtocolError, match="signature is invalid"):
        verify_node_record(forged.encode(), now=NOW)


def test_flipped_signature_bit() -> None:
    wire = bytearray(SIGNED.encode())
    for i in range(len(wire) - 64, len(wire)):
        wire[i] ^= 0x01
        with pytest.raises(ProtocolError):
            verify_node_record(bytes(wire), now=NOW)
        wire[i] ^= 0x01


@pytest.mark.parametrize(
    "change",
    [
        {"identity_key": fixed_identity(3).public_key},
        {"onion_key": bytes(32)},
        {"flags": FLAG_RELAY},
        {"addresses": (("192.0.2.66", 4433),)},
        {"addresses": ()},
        {"exit_policy": "accept *:*"},
        {"published": NOW - 1},
        {"expires": NOW + RECORD_LIFETIME + 1},
        {"seq": 43},
    ],
    ids=lambda c: next(iter(c)),
)
def test_field_changed_after_signing(change: dict[str, Any]) -> None:
    tampered = replace(SIGNED, **change)  # keeps the old signature
    with pytest.raises(ProtocolError, match="signature is invalid"):
        verify_node_record(tampered.encode(), now=NOW)


def test_every_signed_byte_is_covered() -> None:
    wire = bytearray(SIGNED.encode())
    for i in range(len(wire) - 64):
        wire[i] ^= 0x80
        with pytest.raises(ProtocolError):
            verify_node_record(bytes(wire), now=NOW)
        wire[i] ^= 0x80


def test_expired() -> None:
    wire = SIGNED.encode()
    assert verify_node_record(wire, now=SIGNED.expires - 1)
    with pytest.raises(ProtocolError, match="expired"):
        verify_node_record(wire, now=SIGNED.expires)
    with pytest.raises(ProtocolError, match="expired"):
        verify_node_record(wire, now=SIGNED.expires + 3600)


def test_published_in_the_future() -> None:
    wire = SIGNED.encode()
    assert verify_node_record(wire, now=NOW - MAX_CLOCK_SKEW)  # within the allowed skew
    with pytest.raises(ProtocolError, match="in the future"):
        verify_node_record(wire, now=NOW - MAX_CLOCK_SKEW - 1)
    with pytest.raises(ProtocolError, match="in the future"):
        verify_node_record(wire, now=NOW - 86400)


def test_lifetime_too_long() -> None:
    week = sign(IDENT, replace(UNSIGNED, expires=NOW + WEEK))
    assert verify_node_record(week.encode(), now=NOW)
    longer = sign(IDENT, replace(UNSIGNED, expires=NOW + WEEK + 1))
    with pytest.raises(ProtocolError, match="lifetime is too long"):
        verify_node_record(longer.encode(), now=NOW)


def test_verify_errors_are_gnet_errors() -> None:
    for bad in (b"", b"GNR1", SIGNED.encode()[:-1] + b"\x00"):
        with pytest.raises(GnetError):
            verify_node_record(bad, now=NOW)


@FAST
@given(st.binary(max_size=64), st.binary(max_size=80), st.binary(max_size=80))
def test_verify_signature_never_raises(key: bytes, message: bytes, signature: bytes) -> None:
    assert verify_signature(key, message, signature) in (True, False)


@FAST
@given(st.integers(0, len(SIGNED_PART) + 63), st.integers(1, 255))
def test_any_changed_byte_fails_verification(index: int, xor: int) -> None:
    wire = bytearray(SIGNED.encode())
    wire[index] ^= xor
    with pytest.raises(ProtocolError):
        verify_node_record(bytes(wire), now=NOW)
