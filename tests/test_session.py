"""FrameSession: sealed frames and end-to-end credit between two circuit ends.

Two sessions share fixed keys (a->b and b->a), so every wire byte is
predictable; a third, raw AeadSealer on a's key plays a peer that ignores the
rules (overruns the window, sends DATA after END, forges CREDIT).
"""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from globalnet.crypto import AeadOpener, AeadSealer
from globalnet.endpoint.congestion import MAX_WINDOW
from globalnet.endpoint.session import (
    CREDIT_BATCH,
    DATA_OVERHEAD,
    RELAY_SLACK,
    WINDOW,
    DataReceived,
    EndReceived,
    FrameSession,
    MessageReceived,
    SessionEvent,
    payload_for_credit,
)
from globalnet.errors import ErrorKind, GnetError, ProtocolError
from globalnet.wire.framing import (
    MAX_DATA_BODY,
    MAX_DATA_WIRE,
    FrameType,
    credit_body,
    encode_frame,
    prefix,
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

K_AB = bytes([0xA1]) * 32  # a seals, b opens
K_BA = bytes([0xB2]) * 32  # b seals, a opens
#: Application bytes that exactly fill a fresh window: 15 full frames + one of 16048.
WINDOW_PAYLOAD = 15 * MAX_DATA_BODY + (WINDOW - 15 * MAX_DATA_WIRE - DATA_OVERHEAD)


def pair() -> tuple[FrameSession, FrameSession]:
    a = FrameSession(AeadSealer(K_AB), AeadOpener(K_BA))
    b = FrameSession(AeadSealer(K_BA), AeadOpener(K_AB))
    return a, b


def sealed(sealer: AeadSealer, ftype: FrameType, body: bytes = b"") -> bytes:
    return prefix(sealer.seal(encode_frame(ftype, body)))


def noise_nonce(n: int) -> bytes:
    return bytes(4) + n.to_bytes(8, "little")


def wire_size(payload: int) -> int:
    """Wire bytes of `payload` application bytes sent in one send_data() call."""
    return payload + DATA_OVERHEAD * math.ceil(payload / MAX_DATA_BODY)


# -- exact bytes --------------------------------------------------------------


def test_data_frame_exact_bytes() -> None:
    a, _ = pair()
    aead = ChaCha20Poly1305(K_AB)
    assert a.send_data(b"hi") == b"\x00\x15" + aead.encrypt(noise_nonce(0), b"\x01\x00\x02hi", None)
    assert a.send_data(b"") == b""  # nothing to send, no nonce used
    assert a.send_message("yo") == b"\x00\x15" + aead.encrypt(
        noise_nonce(1), b"\x05\x00\x02yo", None
    )
    assert a.send_end() == b"\x00\x13" + aead.encrypt(noise_nonce(2), b"\x03\x00\x00", None)


def test_credit_frame_exact_bytes() -> None:
    a, b = pair()
    wire = a.send_data(b"x" * 100)
    [ev] = b.receive(wire)
    assert ev == DataReceived(b"x" * 100, 121)
    credit = b.consumed(121)
    assert credit == b"\x00\x17" + ChaCha20Poly1305(K_BA).encrypt(
        noise_nonce(0), b"\x02\x00\x04\x00\x00\x00\x79", None
    )


# -- data ---------------------------------------------------------------------


def test_data_round_trip_both_ways() -> None:
    a, b = pair()
    assert b.receive(a.send_data(b"ping")) == [DataReceived(b"ping", 2 + 3 + 4 + 16)]
    assert a.receive(b.send_data(b"pong!")) == [DataReceived(b"pong!", 2 + 3 + 5 + 16)]
    assert (a.bytes_sent, a.bytes_received, b.bytes_sent, b.bytes_received) == (4, 5, 5, 4)


def test_data_is_chunked_into_16_kib_frames() -> None:
    a, b = pair()
    data = bytes(i % 251 for i in range(40000))
    wire = a.send_data(data)
    assert len(wire) == 40000 + 3 * DATA_OVERHEAD
    events = b.receive(wire)
    assert [len(e.data) for e in events if isinstance(e, DataReceived)] == [16384, 16384, 7232]
    assert [e.wire_size for e in events if isinstance(e, DataReceived)] == [16405, 16405, 7253]
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == data


def test_send_data_accepts_a_memoryview() -> None:
    a, b = pair()
    data = bytearray(b"abcdef")
    assert b.receive(a.send_data(memoryview(data)[1:4])) == [DataReceived(b"bcd", 24)]


@FAST
@given(st.lists(st.binary(max_size=3000), max_size=5), st.lists(st.integers(0, 20000), max_size=12))
def test_receive_is_chunking_invariant(payloads: list[bytes], cuts: list[int]) -> None:
    a, b = pair()
    stream = b"".join(a.send_data(p) for p in payloads) + a.send_message("m") + a.send_end()
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    events = []
    for lo, hi in pairwise(points):
        events += b.receive(stream[lo:hi])
    data = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert data == b"".join(payloads)
    assert events[-2:] == [MessageReceived("m"), EndReceived()]


def test_message_frames() -> None:
    a, b = pair()
    assert b.receive(a.send_message("héllo wörld")) == [MessageReceived("héllo wörld")]
    [ev] = b.receive(a.send_message("x" * 20000))
    assert ev == MessageReceived("x" * MAX_DATA_BODY)
    raw = AeadSealer(K_AB)
    for _ in range(2):
        raw.seal(b"")  # catch up with a's two messages
    assert b.receive(sealed(raw, FrameType.MESSAGE, b"\xff ok")) == [MessageReceived("\ufffd ok")]


# -- credit -------------------------------------------------------------------


def test_sender_cannot_exceed_the_window() -> None:
    a, b = pair()
    assert a.send_credit == WINDOW
    assert a.sendable() == WINDOW_PAYLOAD == 261808
    wire = a.send_data(bytes(WINDOW_PAYLOAD))
    assert len(wire) == WINDOW
    assert a.send_credit == 0
    assert a.sendable() == 0
    with pytest.raises(GnetError) as info:
        a.send_data(b"x")
    assert info.value.kind is ErrorKind.LOCAL_PROTOCOL
    # the receiver took exactly one window: no more, no less
    events = b.receive(wire)
    assert sum(e.wire_size for e in events if isinstance(e, DataReceived)) == WINDOW


def test_credit_returned_via_consumed_restores_the_window() -> None:
    a, b = pair()
    events = b.receive(a.send_data(bytes(WINDOW_PAYLOAD)))
    credits = b"".join(b.consumed(e.wire_size) for e in events if isinstance(e, DataReceived))
    assert a.receive(credits) == []
    assert a.send_credit == WINDOW
    assert a.sendable() == WINDOW_PAYLOAD
    # and the window can be used again, end to end
    events = b.receive(a.send_data(bytes(WINDOW_PAYLOAD)))
    assert sum(len(e.data) for e in events if isinstance(e, DataReceived)) == WINDOW_PAYLOAD


def test_credit_is_batched_until_the_reader_is_idle() -> None:
    a, b = pair()
    events = b.receive(a.send_data(b"1" * 100) + a.send_data(b"2" * 100) + a.send_data(b"3" * 100))
    assert a.send_credit == WINDOW - 3 * 121
    assert b.consumed(events[0].wire_size) == b""  # type: ignore[union-attr]
    assert b.consumed(events[1].wire_size) == b""  # type: ignore[union-attr]
    credit = b.consumed(events[2].wire_size)  # type: ignore[union-attr]
    assert credit  # nothing left unconsumed: give it all back now
    a.receive(credit)
    assert a.send_credit == WINDOW


def test_credit_is_returned_once_a_batch_is_consumed() -> None:
    a, b = pair()
    events = [
        e for e in b.receive(a.send_data(bytes(WINDOW_PAYLOAD))) if isinstance(e, DataReceived)
    ]
    frames = [b.consumed(e.wire_size) for e in events]
    # 16405-byte frames: the 4th consumed crosses CREDIT_BATCH (65536)
    assert [bool(f) for f in frames[:4]] == [False, False, False, True]
    a.receive(frames[3])
    assert a.send_credit == 4 * MAX_DATA_WIRE
    assert 4 * MAX_DATA_WIRE >= CREDIT_BATCH > 3 * MAX_DATA_WIRE


def test_receiver_rejects_a_peer_that_overruns_the_window() -> None:
    """The receiver holds at most the protocol's MAX_WINDOW (whatever the sender's cwnd)."""
    _, b = pair()
    raw = AeadSealer(K_AB)
    n_full = MAX_WINDOW // MAX_DATA_WIRE
    full = b"".join(sealed(raw, FrameType.DATA, bytes(MAX_DATA_BODY)) for _ in range(n_full))
    last = sealed(raw, FrameType.DATA, bytes(MAX_WINDOW - len(full) - DATA_OVERHEAD))
    assert len(full + last) == MAX_WINDOW
    wire = full + last
    events = [e for i in range(0, len(wire), 65536) for e in b.receive(wire[i : i + 65536])]
    assert len(events) == n_full + 1  # exactly the maximum window is allowed
    with pytest.raises(GnetError) as info:
        b.receive(sealed(raw, FrameType.DATA, b""))  # 21 bytes too many
    assert info.value.kind is ErrorKind.RESOURCE_LIMIT


def test_receiver_window_frees_up_as_the_application_consumes() -> None:
    _, b = pair()
    raw = AeadSealer(K_AB)
    events = b.receive(
        b"".join(sealed(raw, FrameType.DATA, bytes(MAX_DATA_BODY)) for _ in range(15))
    )
    for e in events:
        b.consumed(e.wire_size)  # type: ignore[union-attr]
    # everything was consumed, so a whole window may be in flight again
    events = b.receive(
        b"".join(sealed(raw, FrameType.DATA, bytes(MAX_DATA_BODY)) for _ in range(15))
    )
    assert len(events) == 15


def test_credit_beyond_the_window_is_a_protocol_error() -> None:
    a, _ = pair()
    raw = AeadSealer(K_BA)
    with pytest.raises(ProtocolError, match="credit beyond the window"):
        a.receive(sealed(raw, FrameType.CREDIT, credit_body(1)))


def test_credit_with_a_bad_body_is_a_protocol_error() -> None:
    a, _ = pair()
    raw = AeadSealer(K_BA)
    with pytest.raises(ProtocolError):
        a.receive(sealed(raw, FrameType.CREDIT, b"\x00\x00\x01"))


def test_a_refused_send_leaves_the_session_usable() -> None:
    a, b = pair()
    first = a.send_data(bytes(WINDOW_PAYLOAD - 100))
    assert a.send_credit == 100
    with pytest.raises(GnetError):
        a.send_data(bytes(200))  # 221 wire bytes > 100 of credit
    assert a.send_credit == 100 and a.bytes_sent == WINDOW_PAYLOAD - 100
    second = a.send_data(bytes(50))  # 71 wire bytes fit
    events = b.receive(first + second)
    assert events[-1] == DataReceived(bytes(50), 71)


@FAST
@given(st.integers(0, 5 * WINDOW))
def test_payload_for_credit_is_the_largest_payload_that_fits(credit: int) -> None:
    n = payload_for_credit(credit)
    assert wire_size(n) <= credit
    assert wire_size(n + 1) > credit


@settings(max_examples=25, deadline=None)
@given(st.integers(0, WINDOW))
def test_sendable_matches_what_send_data_accepts(used: int) -> None:
    a, _ = pair()
    a._inflight = used  # as if `used` wire bytes were in flight
    n = a.sendable()
    assert n == payload_for_credit(WINDOW - used)
    assert len(a.send_data(bytes(n))) <= WINDOW - used
    b, _ = pair()
    b._inflight = used
    with pytest.raises(GnetError):
        b.send_data(bytes(n + 1))


@pytest.mark.parametrize(
    "credit, payload",
    [
        (0, 0),
        (DATA_OVERHEAD, 0),
        (DATA_OVERHEAD + 1, 1),
        (MAX_DATA_WIRE - 1, MAX_DATA_BODY - 1),
        (MAX_DATA_WIRE, MAX_DATA_BODY),
        (MAX_DATA_WIRE + DATA_OVERHEAD, MAX_DATA_BODY),
        (MAX_DATA_WIRE + DATA_OVERHEAD + 1, MAX_DATA_BODY + 1),
        (WINDOW, WINDOW_PAYLOAD),
    ],
)
def test_payload_for_credit_vectors(credit: int, payload: int) -> None:
    assert payload_for_credit(credit) == payload


# -- END ----------------------------------------------------------------------


def test_end_round_trip_and_half_close() -> None:
    a, b = pair()
    assert b.receive(a.send_data(b"last") + a.send_end()) == [
        DataReceived(b"last", 25),
        EndReceived(),
    ]
    assert a.local_ended and b.remote_ended
    assert not b.local_ended and not a.remote_ended
    assert a.sendable() == 0
    assert a.send_end() == b""  # idempotent
    with pytest.raises(GnetError) as info:
        a.send_data(b"more")
    assert info.value.kind is ErrorKind.LOCAL_PROTOCOL
    # the other direction is still open, and credit still flows to the ended side
    assert a.receive(b.send_data(b"reply")) == [DataReceived(b"reply", 26)]
    assert a.receive(b.consumed(25)) == []
    assert a.send_credit == WINDOW
    assert a.receive(b.send_end()) == [EndReceived()]


def test_data_after_end_is_a_protocol_error() -> None:
    _, b = pair()
    raw = AeadSealer(K_AB)
    b.receive(sealed(raw, FrameType.END))
    with pytest.raises(ProtocolError, match="DATA after END"):
        b.receive(sealed(raw, FrameType.DATA, b"late"))


def test_end_after_end_is_a_protocol_error() -> None:
    _, b = pair()
    raw = AeadSealer(K_AB)
    with pytest.raises(ProtocolError, match="END after END"):
        b.receive(sealed(raw, FrameType.END) + sealed(raw, FrameType.END))


def test_message_after_end_is_allowed() -> None:
    _, b = pair()
    raw = AeadSealer(K_AB)
    assert b.receive(sealed(raw, FrameType.END) + sealed(raw, FrameType.MESSAGE, b"bye")) == [
        EndReceived(),
        MessageReceived("bye"),
    ]


def test_error_frame_ends_the_session_abnormally() -> None:
    _, b = pair()
    raw = AeadSealer(K_AB)
    with pytest.raises(ProtocolError):
        b.receive(sealed(raw, FrameType.ERROR, bytes([ErrorKind.TIMEOUT]) + b"\x04slow"))


def test_unknown_frame_type_inside_a_good_seal() -> None:
    _, b = pair()
    raw = AeadSealer(K_AB)
    with pytest.raises(ProtocolError, match="unknown frame type"):
        b.receive(prefix(raw.seal(b"\x09\x00\x00")))
    _, b = pair()
    raw = AeadSealer(K_AB)
    with pytest.raises(ProtocolError):
        b.receive(prefix(raw.seal(b"\x01\x00\x09short")))


# -- tampering ----------------------------------------------------------------


def _tamper_stream() -> tuple[bytes, bytes, list[SessionEvent]]:
    """A head of small frames of every kind a sender makes, then 64 KiB more frames."""
    a, b = pair()
    head = a.send_data(b"0123456789") + a.send_message("hi") + a.send_data(b"")
    head += a.send_data(b"z")
    tail = a.send_data(bytes(4 * MAX_DATA_BODY)) + a.send_end()
    return head, tail, b.receive(head + tail)


def test_any_flipped_bit_is_tampering() -> None:
    """Any bit flipped in a frame that more stream follows fails as TAMPERED.

    A flip in a length prefix moves the message boundary, so the message cut
    out fails authentication too (given enough following bytes to cut it).
    """
    head, tail, clean = _tamper_stream()
    assert len(clean) == 3 + 4 + 1
    assert len(tail) > 65537
    for i in range(len(head)):
        for bit in range(8):
            stream = bytearray(head)
            stream[i] ^= 1 << bit
            b = FrameSession(AeadSealer(K_BA), AeadOpener(K_AB))
            with pytest.raises(GnetError) as info:
                b.receive(bytes(stream) + tail)
            assert info.value.kind is ErrorKind.TAMPERED, (i, bit)


@pytest.mark.parametrize("kind", ["data", "end", "message", "credit"])
def test_flipped_bit_in_the_last_frame(kind: str) -> None:
    """A flip in the body or tag of the last frame fails at once."""
    a, _ = pair()
    if kind == "data":
        wire = a.send_data(b"payload")
    elif kind == "end":
        wire = a.send_end()
    elif kind == "message":
        wire = a.send_message("text")
    else:
        wire = sealed(AeadSealer(K_AB), FrameType.CREDIT, credit_body(0))
    for i in range(2, len(wire)):
        for bit in range(8):
            stream = bytearray(wire)
            stream[i] ^= 1 << bit
            b = FrameSession(AeadSealer(K_BA), AeadOpener(K_AB))
            with pytest.raises(GnetError) as info:
                b.receive(bytes(stream))
            assert info.value.kind is ErrorKind.TAMPERED


def test_tampered_session_stays_failed() -> None:
    a, b = pair()
    good1 = a.send_data(b"one")
    good2 = a.send_data(b"two")
    bad = bytearray(good1)
    bad[-1] ^= 1
    with pytest.raises(GnetError):
        b.receive(bytes(bad))
    with pytest.raises(GnetError) as info:
        b.receive(good2)  # never resynchronised
    assert info.value.kind is ErrorKind.TAMPERED


@pytest.mark.parametrize("how", ["replayed", "reordered", "dropped", "short", "empty"])
def test_replay_reorder_drop_are_tampering(how: str) -> None:
    a, b = pair()
    f1, f2, f3 = a.send_data(b"1"), a.send_data(b"2"), a.send_data(b"3")
    stream = {
        "replayed": f1 + f1,
        "reordered": f2 + f1,
        "dropped": f1 + f3,
        "short": prefix(b"\x00" * 15),
        "empty": prefix(b""),
    }[how]
    with pytest.raises(GnetError) as info:
        b.receive(stream)
    assert info.value.kind is ErrorKind.TAMPERED


def test_receive_buffer_is_bounded() -> None:
    """At most the protocol's maximum window (+ slack) pending in one go: one QUIC
    event after loss recovery may carry a whole window, never more."""
    _, b = pair()
    with pytest.raises(ProtocolError, match="pending"):
        b.receive(bytes(MAX_WINDOW + RELAY_SLACK + 1))


@FAST
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_arbitrary_bytes_only_raise_gnet_errors(chunks: list[bytes]) -> None:
    _, b = pair()
    try:
        for chunk in chunks:
            b.receive(chunk)
    except GnetError:
        pass
