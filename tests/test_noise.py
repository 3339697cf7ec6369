"""Tests for globalnet.crypto.noise: Noise_NK_25519_ChaChaPoly_BLAKE2b.

Three independent references pin the transcript: the cacophony test vector
(exact bytes), the ``noiseprotocol`` package (differential, both role
pairings, fixed and hypothesis-drawn keys), and our own round trips. Then
failing handshakes (Arti's ``failing_handshakes()``): every way a peer can
send bad bytes ends in HandshakeError and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_scalarmult_base
from noise.connection import Keypair, NoiseConnection  # type: ignore[import-untyped]

from globalnet.crypto import noise as gnoise
from globalnet.crypto.layers import AeadOpener, AeadSealer
from globalnet.crypto.noise import (
    MAX_MESSAGE_LEN,
    MAX_PAYLOAD_LEN,
    MIN_MESSAGE_LEN,
    HandshakeError,
    InitiatorState,
    TransportKeys,
    initiator_finish,
    initiator_start,
    responder_read,
    responder_write,
)

NAME = b"Noise_NK_25519_ChaChaPoly_BLAKE2b"
VECTOR = json.loads(
    (Path(__file__).parent / "vectors" / "noise_nk_25519_chachapoly_blake2b.json").read_text()
)

RESP_STATIC = bytes.fromhex("4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893")
RESP_STATIC_PUB = crypto_scalarmult_base(RESP_STATIC)
INIT_EPHEMERAL = bytes.fromhex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a")
RESP_EPHEMERAL = bytes.fromhex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b")
OTHER_STATIC = bytes(range(100, 132))
PROLOGUE = b"gnet/1" + bytes.fromhex("00112233445566778899aabbccddeeff00112233")

# Curve25519 points of small order (libsodium's blocklist), and the same with
# the ignored top bit set: X25519 with any clamped scalar maps them to zero.
LOW_ORDER_POINTS = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    b"\xec" + b"\xff" * 30 + b"\x7f",  # p - 1
    b"\xed" + b"\xff" * 30 + b"\x7f",  # p
    b"\xee" + b"\xff" * 30 + b"\x7f",  # p + 1
]
LOW_ORDER_POINTS += [p[:31] + bytes([p[31] | 0x80]) for p in LOW_ORDER_POINTS]

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the reference implementation ------------------------------------------


def _theirs(initiator: bool, prologue: bytes, static: bytes, ephemeral: bytes) -> NoiseConnection:
    """A noiseprotocol connection with pinned keys (it warns that's test-only)."""
    conn = NoiseConnection.from_name(NAME)
    if initiator:
        conn.set_as_initiator()
        conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, crypto_scalarmult_base(static))
    else:
        conn.set_as_responder()
        conn.set_keypair_from_private_bytes(Keypair.STATIC, static)
    conn.set_prologue(prologue)
    conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        conn.start_handshake()
    return conn


def _check_transport(ours: TransportKeys, theirs: NoiseConnection) -> None:
    """Same keys: their encrypt opens with our opener, our seal with their decrypt."""
    opener, sealer = AeadOpener(ours.recv_key), AeadSealer(ours.send_key)
    for i in range(3):
        msg = b"frame %d" % i
        assert opener.open(theirs.encrypt(msg)) == msg
        assert theirs.decrypt(sealer.seal(msg * 2)) == msg * 2


def _ours_vs_theirs(
    prologue: bytes, static: bytes, e_i: bytes, e_r: bytes, p1: bytes, p2: bytes
) -> None:
    # Our initiator against their responder.
    state, msg1 = initiator_start(crypto_scalarmult_base(static), prologue, p1, e_i)
    their_resp = _theirs(False, prologue, static, e_r)
    assert bytes(their_resp.read_message(msg1)) == p1
    their_msg2 = bytes(their_resp.write_message(p2))
    got, ikeys = initiator_finish(state, their_msg2)
    assert got == p2
    assert ikeys.handshake_hash == their_resp.get_handshake_hash()
    _check_transport(ikeys, their_resp)

    # Their initiator against our responder.
    their_init = _theirs(True, prologue, static, e_i)
    their_msg1 = bytes(their_init.write_message(p1))
    assert their_msg1 == msg1  # same bytes both ways
    rstate, got = responder_read(static, prologue, their_msg1)
    assert got == p1
    msg2, rkeys = responder_write(rstate, p2, e_r)
    assert msg2 == their_msg2
    assert bytes(their_init.read_message(msg2)) == p2
    assert rkeys.handshake_hash == their_init.get_handshake_hash() == ikeys.handshake_hash
    _check_transport(rkeys, their_init)

    # And the two of ours agree with each other.
    assert (ikeys.send_key, ikeys.recv_key) == (rkeys.recv_key, rkeys.send_key)
    assert ikeys.bridge_keys(True) == rkeys.bridge_keys(False)


# --- vectors and differential tests ----------------------------------------


def test_cacophony_vector() -> None:
    """The published transcript, byte for byte, including transport messages."""
    h = bytes.fromhex
    msgs = [(h(m["payload"]), h(m["ciphertext"])) for m in VECTOR["messages"]]
    assert crypto_scalarmult_base(h(VECTOR["resp_static"])) == h(VECTOR["init_remote_static"])

    state, msg1 = initiator_start(
        h(VECTOR["init_remote_static"]),
        h(VECTOR["init_prologue"]),
        msgs[0][0],
        h(VECTOR["init_ephemeral"]),
    )
    assert msg1 == msgs[0][1]
    rstate, payload = responder_read(h(VECTOR["resp_static"]), h(VECTOR["resp_prologue"]), msg1)
    assert payload == msgs[0][0]
    msg2, rkeys = responder_write(rstate, msgs[1][0], h(VECTOR["resp_ephemeral"]))
    assert msg2 == msgs[1][1]
    payload, ikeys = initiator_finish(state, msg2)
    assert payload == msgs[1][0]
    assert ikeys.handshake_hash == rkeys.handshake_hash == h(VECTOR["handshake_hash"])

    # Transport messages alternate, initiator first.
    sealers = [AeadSealer(ikeys.send_key), AeadSealer(rkeys.send_key)]
    openers = [AeadOpener(rkeys.recv_key), AeadOpener(ikeys.recv_key)]
    for i, (plain, cipher) in enumerate(msgs[2:]):
        assert sealers[i % 2].seal(plain) == cipher
        assert openers[i % 2].open(cipher) == plain


@pytest.mark.parametrize(
    ("p1", "p2"),
    [
        (b"", b""),
        (b"RELAY_CONNECT peer 00112233", b"RELAY_CONNECT_OK record"),
        (bytes(range(256)) * 4, b"x"),
        (b"m" * MAX_PAYLOAD_LEN, b"n" * MAX_PAYLOAD_LEN),
    ],
    ids=["empty", "short", "1KiB", "max"],
)
def test_differential_fixed_keys(p1: bytes, p2: bytes) -> None:
    _ours_vs_theirs(PROLOGUE, RESP_STATIC, INIT_EPHEMERAL, RESP_EPHEMERAL, p1, p2)


keys32 = st.binary(min_size=32, max_size=32)


@FAST
@given(
    prologue=st.binary(max_size=80),
    static=keys32,
    e_i=keys32,
    e_r=keys32,
    p1=st.binary(max_size=300),
    p2=st.binary(max_size=300),
)
def test_differential_random_keys(
    prologue: bytes, static: bytes, e_i: bytes, e_r: bytes, p1: bytes, p2: bytes
) -> None:
    _ours_vs_theirs(prologue, static, e_i, e_r, p1, p2)


def test_max_payload_gives_max_message() -> None:
    _, msg1 = initiator_start(RESP_STATIC_PUB, b"", bytes(MAX_PAYLOAD_LEN), INIT_EPHEMERAL)
    assert len(msg1) == MAX_MESSAGE_LEN


def test_random_ephemeral_by_default() -> None:
    """No ephemeral given: a fresh one each time, so fresh keys each time."""
    runs = []
    for _ in range(2):
        state, msg1 = initiator_start(RESP_STATIC_PUB, PROLOGUE, b"hi")
        rstate, _ = responder_read(RESP_STATIC, PROLOGUE, msg1)
        msg2, rkeys = responder_write(rstate, b"ok")
        payload, ikeys = initiator_finish(state, msg2)
        assert payload == b"ok"
        assert ikeys.send_key == rkeys.recv_key
        runs.append((msg1[:32], msg2[:32], ikeys.send_key))
    assert all(a != b for a, b in zip(runs[0], runs[1], strict=True))


def test_steps_are_pure() -> None:
    """Frozen states: replaying a step with the same inputs gives the same output."""
    state, msg1 = initiator_start(RESP_STATIC_PUB, PROLOGUE, b"a", INIT_EPHEMERAL)
    rstate, _ = responder_read(RESP_STATIC, PROLOGUE, msg1)
    assert responder_write(rstate, b"b", RESP_EPHEMERAL) == responder_write(
        rstate, b"b", RESP_EPHEMERAL
    )
    msg2, _ = responder_write(rstate, b"b", RESP_EPHEMERAL)
    assert initiator_finish(state, msg2) == initiator_finish(state, msg2)
    with pytest.raises(AttributeError):
        state.chaining_key = bytes(64)  # type: ignore[misc]


# --- transport keys and the bridge keys --------------------------------------


@pytest.fixture
def both_keys() -> tuple[TransportKeys, TransportKeys]:
    state, msg1 = initiator_start(RESP_STATIC_PUB, PROLOGUE, b"", INIT_EPHEMERAL)
    rstate, _ = responder_read(RESP_STATIC, PROLOGUE, msg1)
    msg2, rkeys = responder_write(rstate, b"", RESP_EPHEMERAL)
    _, ikeys = initiator_finish(state, msg2)
    return ikeys, rkeys


def test_bridge_keys(both_keys: tuple[TransportKeys, TransportKeys]) -> None:
    ikeys, rkeys = both_keys
    forward, backward = ikeys.bridge_keys(initiator=True)
    assert (forward, backward) == rkeys.bridge_keys(initiator=False)
    assert ikeys.bridge_keys(True) == ikeys.bridge_keys(False)  # the flag never changes them
    assert len(forward) == len(backward) == 32
    assert len({forward, backward, ikeys.send_key, ikeys.recv_key}) == 4
    with pytest.raises(TypeError):
        ikeys.bridge_keys(1)  # type: ignore[arg-type]


def test_bridge_keys_need_more_than_the_handshake_hash(
    both_keys: tuple[TransportKeys, TransportKeys],
) -> None:
    """h is computable from public data (the previous hop sees both messages and
    knows our onion key and node id), so bridge keys must not be a function of h
    alone: they come from the secret chaining key."""
    ikeys, _ = both_keys
    from_hash_only = hashlib.blake2b(
        b"gnet/1 bridge forward", key=ikeys.handshake_hash, digest_size=32
    ).digest()
    assert from_hash_only not in ikeys.bridge_keys(True)


def test_secrets_stay_out_of_repr(both_keys: tuple[TransportKeys, TransportKeys]) -> None:
    ikeys, _ = both_keys
    text = repr(ikeys)
    for secret in (ikeys.send_key, ikeys.recv_key, ikeys.bridge_secret):
        assert repr(secret)[2:-1] not in text
    state, _ = initiator_start(RESP_STATIC_PUB, b"", b"", INIT_EPHEMERAL)
    assert repr(INIT_EPHEMERAL)[2:-1] not in repr(state)


def test_transport_keys_check_lengths() -> None:
    with pytest.raises(ValueError):
        TransportKeys(bytes(31), bytes(32), bytes(64), bytes(64))
    with pytest.raises(ValueError):
        TransportKeys(bytes(32), bytes(32), bytes(32), bytes(64))


# --- failing handshakes -------------------------------------------------------


@pytest.fixture
def transcript() -> tuple[InitiatorState, bytes, bytes]:
    state, msg1 = initiator_start(RESP_STATIC_PUB, PROLOGUE, b"hello", INIT_EPHEMERAL)
    rstate, _ = responder_read(RESP_STATIC, PROLOGUE, msg1)
    msg2, _ = responder_write(rstate, b"world", RESP_EPHEMERAL)
    return state, msg1, msg2


def test_wrong_responder_static_key() -> None:
    """The client used another node's onion key: the hop cannot read message 1."""
    _, msg1 = initiator_start(crypto_scalarmult_base(OTHER_STATIC), PROLOGUE, b"", INIT_EPHEMERAL)
    with pytest.raises(HandshakeError):
        responder_read(RESP_STATIC, PROLOGUE, msg1)


def test_wrong_prologue(transcript: tuple[InitiatorState, bytes, bytes]) -> None:
    _, msg1, _ = transcript
    with pytest.raises(HandshakeError):
        responder_read(RESP_STATIC, b"gnet/1" + bytes(20), msg1)


def test_message2_from_wrong_handshake(transcript: tuple[InitiatorState, bytes, bytes]) -> None:
    state, _, _ = transcript
    other_state, msg1 = initiator_start(RESP_STATIC_PUB, PROLOGUE, b"hello", OTHER_STATIC)
    rstate, _ = responder_read(RESP_STATIC, PROLOGUE, msg1)
    msg2, _ = responder_write(rstate, b"world", RESP_EPHEMERAL)
    initiator_finish(other_state, msg2)
    with pytest.raises(HandshakeError):
        initiator_finish(state, msg2)


def test_truncated_messages(transcript: tuple[InitiatorState, bytes, bytes]) -> None:
    state, msg1, msg2 = transcript
    for n in range(len(msg1)):
        with pytest.raises(HandshakeError):
            responder_read(RESP_STATIC, PROLOGUE, msg1[:n])
    for n in range(len(msg2)):
        with pytest.raises(HandshakeError):
            initiator_finish(state, msg2[:n])


def test_extended_messages(transcript: tuple[InitiatorState, bytes, bytes]) -> None:
    state, msg1, msg2 = transcript
    with pytest.raises(HandshakeError):
        responder_read(RESP_STATIC, PROLOGUE, msg1 + b"\x00")
    with pytest.raises(HandshakeError):
        initiator_finish(state, msg2 + b"\x00")


def _bit_flips(message: bytes) -> Iterator[bytes]:
    for i in range(len(message) * 8):
        flipped = bytearray(message)
        flipped[i // 8] ^= 1 << (i % 8)
        yield bytes(flipped)


def test_any_flipped_bit_fails(transcript: tuple[InitiatorState, bytes, bytes]) -> None:
    # Includes bit 255 of the ephemeral key, which X25519 ignores: the key
    # is hashed into h as sent, so the MAC still catches it.
    state, msg1, msg2 = transcript
    for bad in _bit_flips(msg1):
        with pytest.raises(HandshakeError):
            responder_read(RESP_STATIC, PROLOGUE, bad)
    for bad in _bit_flips(msg2):
        with pytest.raises(HandshakeError):
            initiator_finish(state, bad)


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8] + p.hex()[-2:])
def test_low_order_ephemeral(point: bytes, transcript: tuple[InitiatorState, bytes, bytes]) -> None:
    state, msg1, msg2 = transcript
    with pytest.raises(HandshakeError):
        responder_read(RESP_STATIC, PROLOGUE, point + msg1[32:])
    with pytest.raises(HandshakeError):
        initiator_finish(state, point + msg2[32:])


@pytest.mark.parametrize("point", LOW_ORDER_POINTS[:4], ids=lambda p: p.hex()[:8])
def test_low_order_responder_static(point: bytes) -> None:
    """A peer record with a low-order onion key is refused by the client."""
    with pytest.raises(HandshakeError):
        initiator_start(point, PROLOGUE, b"", INIT_EPHEMERAL)


def test_all_zero_dh_is_refused_even_if_libsodium_allows_it(
    monkeypatch: pytest.MonkeyPatch, transcript: tuple[InitiatorState, bytes, bytes]
) -> None:
    """Belt and braces: our own zero check, in case a libsodium build does not refuse."""
    _, msg1, _ = transcript
    monkeypatch.setattr(gnoise, "crypto_scalarmult", lambda n, p: bytes(32))
    with pytest.raises(HandshakeError, match="low-order"):
        gnoise._dh(RESP_STATIC, msg1[:32])
    with pytest.raises(HandshakeError, match="low-order"):
        responder_read(RESP_STATIC, PROLOGUE, msg1)


def test_bad_responder_static_length() -> None:
    for n in (0, 31, 33):
        with pytest.raises(HandshakeError):
            initiator_start(bytes(n), PROLOGUE, b"", INIT_EPHEMERAL)


def test_oversized_messages_rejected() -> None:
    state, _ = initiator_start(RESP_STATIC_PUB, PROLOGUE, b"", INIT_EPHEMERAL)
    with pytest.raises(HandshakeError):
        responder_read(RESP_STATIC, PROLOGUE, bytes(MAX_MESSAGE_LEN + 1))
    with pytest.raises(HandshakeError):
        initiator_finish(state, bytes(MAX_MESSAGE_LEN + 1))


def test_local_mistakes_are_value_errors() -> None:
    """Our own bugs are loud ValueErrors, not 'the peer misbehaved'."""
    with pytest.raises(ValueError):
        initiator_start(RESP_STATIC_PUB, PROLOGUE, bytes(MAX_PAYLOAD_LEN + 1), INIT_EPHEMERAL)
    with pytest.raises(ValueError):
        initiator_start(RESP_STATIC_PUB, PROLOGUE, b"", bytes(31))
    _, msg1 = initiator_start(RESP_STATIC_PUB, PROLOGUE, b"", INIT_EPHEMERAL)
    with pytest.raises(ValueError):
        responder_read(bytes(31), PROLOGUE, msg1)
    rstate, _ = responder_read(RESP_STATIC, PROLOGUE, msg1)
    with pytest.raises(ValueError):
        responder_write(rstate, bytes(MAX_PAYLOAD_LEN + 1), RESP_EPHEMERAL)
    assert not issubclass(HandshakeError, ValueError)


# --- fuzzing: only HandshakeError escapes --------------------------------------


@FAST
@given(message=st.binary(max_size=200))
def test_fuzz_responder_read(message: bytes) -> None:
    with pytest.raises(HandshakeError):
        responder_read(RESP_STATIC, PROLOGUE, message)


@FAST
@given(message=st.binary(max_size=200))
def test_fuzz_initiator_finish(message: bytes) -> None:
    state, _ = initiator_start(RESP_STATIC_PUB, PROLOGUE, b"", INIT_EPHEMERAL)
    with pytest.raises(HandshakeError):
        initiator_finish(state, message)


@FAST
@given(data=st.data())
def test_fuzz_mutated_messages(data: st.DataObject) -> None:
    """Near-valid messages: random edits to a real message 1 or 2."""
    state, msg1 = initiator_start(RESP_STATIC_PUB, PROLOGUE, b"payload", INIT_EPHEMERAL)
    rstate, _ = responder_read(RESP_STATIC, PROLOGUE, msg1)
    msg2, _ = responder_write(rstate, b"reply", RESP_EPHEMERAL)
    which = data.draw(st.sampled_from([1, 2]))
    original = msg1 if which == 1 else msg2
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    mutated = mutated[:cut] + data.draw(st.binary(max_size=8))
    if bytes(mutated) == original:
        return
    with pytest.raises(HandshakeError):
        if which == 1:
            responder_read(RESP_STATIC, PROLOGUE, bytes(mutated))
        else:
            initiator_finish(state, bytes(mutated))


def test_minimum_message_len_is_key_plus_tag() -> None:
    assert MIN_MESSAGE_LEN == 48
