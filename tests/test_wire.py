"""Wire codecs: RELAY_CONNECT and its replies, control messages, frames, splitting.

Each codec has one table of (value, exact bytes) that drives both the encoder
and the decoder (h11's habit). Bounds are checked the same way everywhere: a
message truncated at any byte, with a trailing byte, with an oversized field or
an unknown type is a ProtocolError, and hypothesis feeds arbitrary bytes to
every decoder to show nothing else ever escapes.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from globalnet.errors import ErrorKind, GnetError, ProtocolError
from globalnet.wire.buffer import Reader, blob16, str8, u16, u32, u64
from globalnet.wire.commands import (
    MAX_HOST,
    NO_NODE_ID,
    Cmd,
    Proto,
    RelayConnect,
    RelayConnectFail,
    RelayConnectOk,
    decode_relay_connect,
    decode_reply,
    prologue_for,
)
from globalnet.wire.control import (
    AUTH_CONTEXT,
    MAX_CONTROL_BODY,
    Auth,
    AuthOk,
    Challenge,
    Close,
    ControlDecoder,
    ControlType,
    Ping,
    Pong,
    auth_transcript,
    encode_control,
)
from globalnet.wire.framing import (
    MAX_DATA_BODY,
    MAX_DATA_WIRE,
    MAX_MESSAGE,
    Frame,
    FrameType,
    MessageSplitter,
    credit_body,
    decode_frame,
    encode_frame,
    parse_credit,
    prefix,
)
from globalnet.wire.records import MAX_RECORD_SIZE, decode_node_record

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NID = bytes(range(1, 21))
RECORD = b"GNR1" + bytes(range(100))  # opaque here: the codecs carry records as blobs

# --------------------------------------------------------------------------
# buffer.Reader
# --------------------------------------------------------------------------


def test_reader_pulls_big_endian_fields() -> None:
    r = Reader(bytes.fromhex("01 0203 04050607 08090a0b0c0d0e0f 03616263 0002ffee"))
    assert r.pull_u8() == 0x01
    assert r.pull_u16() == 0x0203
    assert r.pull_u32() == 0x04050607
    assert r.pull_u64() == 0x08090A0B0C0D0E0F
    assert r.pull_str8() == "abc"
    assert r.pull_blob16(2) == b"\xff\xee"
    assert r.remaining() == 0
    r.expect_end()


def test_writers_are_big_endian() -> None:
    assert u16(0x0102) == b"\x01\x02"
    assert u32(0x01020304) == b"\x01\x02\x03\x04"
    assert u64(1) == b"\x00" * 7 + b"\x01"
    assert str8("é") == b"\x02\xc3\xa9"
    assert blob16(b"ab", 2) == b"\x00\x02ab"


@pytest.mark.parametrize(
    "data, pull",
    [
        (b"", Reader.pull_u8),
        (b"\x01", Reader.pull_u16),
        (b"\x01\x02\x03", Reader.pull_u32),
        (b"\x00" * 7, Reader.pull_u64),
        (b"\x03ab", Reader.pull_str8),
        (b"\x00\x03ab", lambda r: r.pull_blob16(10)),
        (b"\x02\xc3\x28", Reader.pull_str8),  # not UTF-8
        (b"\x05hello", lambda r: r.pull_str8(4)),  # over its bound
        (b"\x00\x05hello", lambda r: r.pull_blob16(4)),
        (b"x", Reader.expect_end),
    ],
    ids=[
        "u8",
        "u16",
        "u32",
        "u64",
        "str8-short",
        "blob16-short",
        "str8-utf8",
        "str8-bound",
        "blob16-bound",
        "trailing",
    ],
)
def test_reader_errors_are_protocol_errors(data: bytes, pull) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError):
        pull(Reader(data))


def test_writers_refuse_oversized_fields() -> None:
    with pytest.raises(ValueError):
        str8("x" * 256)
    with pytest.raises(ValueError):
        str8("abc", max_len=2)
    with pytest.raises(ValueError):
        blob16(b"abc", 2)


def test_protocol_error_is_a_gnet_error_of_kind_protocol() -> None:
    err = ProtocolError("bad")
    assert isinstance(err, GnetError)
    assert err.kind is ErrorKind.PROTOCOL
    assert str(err) == "protocol violation: bad"


# --------------------------------------------------------------------------
# RELAY_CONNECT and replies
# --------------------------------------------------------------------------

RELAY_CONNECT_VECTORS = [
    pytest.param(
        RelayConnect(Proto.PEER, node_id=NID),
        b"\x01\x01" + NID + b"\x00\x00" + b"\x00",
        id="peer-by-node-id",
    ),
    pytest.param(
        RelayConnect(Proto.PEER, "relay.example", 4433, NID),
        b"\x01\x01" + NID + b"\x11\x51" + b"\x0drelay.example",
        id="peer-address-with-pin",
    ),
    pytest.param(
        RelayConnect(Proto.PEER, "192.0.2.7", 4433),
        b"\x01\x01" + bytes(20) + b"\x11\x51" + b"\x09192.0.2.7",
        id="peer-address-no-pin",
    ),
    pytest.param(
        RelayConnect(Proto.TCP, "example.com", 443),
        b"\x01\x02" + bytes(20) + b"\x01\xbb" + b"\x0bexample.com",
        id="tcp-name",
    ),
    pytest.param(
        RelayConnect(Proto.TCP, "2001:db8::1", 22),
        b"\x01\x02" + bytes(20) + b"\x00\x16" + b"\x0b2001:db8::1",
        id="tcp-ipv6",
    ),
    pytest.param(
        RelayConnect(Proto.TCP, "bücher.example", 80),
        b"\x01\x02" + bytes(20) + b"\x00\x50" + b"\x0fb\xc3\xbccher.example",
        id="tcp-utf8-name",
    ),
    pytest.param(
        RelayConnect(Proto.UDP, "10.0.0.1", 53),
        b"\x01\x03" + bytes(20) + b"\x00\x35" + b"\x0810.0.0.1",
        id="udp",
    ),
    pytest.param(
        RelayConnect(Proto.SERVICE, node_id=NID),
        b"\x01\x04" + NID + b"\x00\x00\x00",
        id="service-with-node-id",
    ),
    pytest.param(
        RelayConnect(Proto.SERVICE, "abcdef.gnet", 0),
        b"\x01\x04" + bytes(20) + b"\x00\x00" + b"\x0babcdef.gnet",
        id="service-by-name",
    ),
    pytest.param(RelayConnect(Proto.DHT), b"\x01\x05" + bytes(20) + b"\x00\x00\x00", id="dht"),
    pytest.param(
        RelayConnect(Proto.TCP, "h" * MAX_HOST, 65535),
        b"\x01\x02" + bytes(20) + b"\xff\xff" + b"\xfd" + b"h" * MAX_HOST,
        id="tcp-longest-host",
    ),
]


@pytest.mark.parametrize("command, wire", RELAY_CONNECT_VECTORS)
def test_relay_connect_encode(command: RelayConnect, wire: bytes) -> None:
    assert command.encode() == wire


@pytest.mark.parametrize("command, wire", RELAY_CONNECT_VECTORS)
def test_relay_connect_decode(command: RelayConnect, wire: bytes) -> None:
    assert decode_relay_connect(wire) == command


@pytest.mark.parametrize("command, wire", RELAY_CONNECT_VECTORS)
def test_relay_connect_truncated_at_every_byte(command: RelayConnect, wire: bytes) -> None:
    for i in range(len(wire)):
        with pytest.raises(ProtocolError):
            decode_relay_connect(wire[:i])


@pytest.mark.parametrize("command, wire", RELAY_CONNECT_VECTORS)
def test_relay_connect_trailing_byte(command: RelayConnect, wire: bytes) -> None:
    with pytest.raises(ProtocolError, match="trailing"):
        decode_relay_connect(wire + b"\x00")


def test_relay_connect_all_zero_node_id_means_none() -> None:
    assert NO_NODE_ID == bytes(20)
    assert (
        decode_relay_connect(RelayConnect(Proto.PEER, node_id=NO_NODE_ID).encode()).node_id is None
    )


@pytest.mark.parametrize(
    "wire, match",
    [
        (b"\x02\x02" + bytes(20) + b"\x00\x00\x00", "expected RELAY_CONNECT"),
        (b"\x00\x02" + bytes(20) + b"\x00\x00\x00", "expected RELAY_CONNECT"),
        (b"\x01\x00" + bytes(20) + b"\x00\x00\x00", "unknown proto 0"),
        (b"\x01\x07" + bytes(20) + b"\x00\x00\x00", "unknown proto 7"),
        (b"\x01\xff" + bytes(20) + b"\x00\x00\x00", "unknown proto 255"),
        (b"\x01\x02" + bytes(20) + b"\x00\x50\xfe" + b"h" * 254, "exceeds 253"),
        (b"\x01\x02" + bytes(20) + b"\x00\x50\x02\xc3\x28", "not UTF-8"),
    ],
    ids=["cmd-ok", "cmd-zero", "proto-0", "proto-7", "proto-255", "host-254", "host-not-utf8"],
)
def test_relay_connect_malformed(wire: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_relay_connect(wire)


def test_relay_connect_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(ValueError):
        RelayConnect(Proto.TCP, "h" * (MAX_HOST + 1), 80).encode()
    with pytest.raises(ValueError):
        RelayConnect(Proto.PEER, node_id=b"\x01" * 19).encode()


REPLY_VECTORS = [
    pytest.param(RelayConnectOk(), b"\x02\x00\x00", id="ok-empty"),
    pytest.param(RelayConnectOk(RECORD), b"\x02\x00\x68" + RECORD, id="ok-with-record"),
    pytest.param(
        RelayConnectOk(b"r" * MAX_RECORD_SIZE),
        b"\x02\x10\x00" + b"r" * MAX_RECORD_SIZE,
        id="ok-largest-record",
    ),
    pytest.param(
        RelayConnectFail(ErrorKind.EXIT_POLICY, "port 25 denied"),
        b"\x03\x02\x0eport 25 denied",
        id="fail-exit-policy",
    ),
    pytest.param(
        RelayConnectFail(ErrorKind.NO_ROUTE, ""), b"\x03\x03\x00", id="fail-no-route-no-reason"
    ),
    pytest.param(RelayConnectFail(ErrorKind.CLOSED, "bye"), b"\x03\x0e\x03bye", id="fail-closed"),
]


@pytest.mark.parametrize("reply, wire", REPLY_VECTORS)
def test_reply_encode(reply: RelayConnectOk | RelayConnectFail, wire: bytes) -> None:
    assert reply.encode() == wire


@pytest.mark.parametrize("reply, wire", REPLY_VECTORS)
def test_reply_decode(reply: RelayConnectOk | RelayConnectFail, wire: bytes) -> None:
    assert decode_reply(wire) == reply


@pytest.mark.parametrize("reply, wire", REPLY_VECTORS)
def test_reply_truncated_at_every_byte(
    reply: RelayConnectOk | RelayConnectFail, wire: bytes
) -> None:
    for i in range(len(wire)):
        with pytest.raises(ProtocolError):
            decode_reply(wire[:i])


@pytest.mark.parametrize("reply, wire", REPLY_VECTORS)
def test_reply_trailing_byte(reply: RelayConnectOk | RelayConnectFail, wire: bytes) -> None:
    with pytest.raises(ProtocolError, match="trailing"):
        decode_reply(wire + b"x")


@pytest.mark.parametrize("cmd", [0x00, Cmd.RELAY_CONNECT, 0x04, 0xFF])
def test_reply_unknown_command(cmd: int) -> None:
    with pytest.raises(ProtocolError, match="expected RELAY_CONNECT_OK or _FAIL"):
        decode_reply(bytes([cmd]) + b"\x00\x00")


def test_reply_record_over_bound() -> None:
    with pytest.raises(ProtocolError, match="exceeds 4096"):
        decode_reply(b"\x02\x10\x01" + b"r" * (MAX_RECORD_SIZE + 1))
    with pytest.raises(ValueError):
        RelayConnectOk(b"r" * (MAX_RECORD_SIZE + 1)).encode()


@pytest.mark.parametrize("code", [0, 16, 0xFF])
def test_reply_unknown_fail_code_reads_as_protocol(code: int) -> None:
    assert decode_reply(bytes([0x03, code, 0x01]) + b"?") == RelayConnectFail(
        ErrorKind.PROTOCOL, "?"
    )


def test_reply_fail_reason_is_cut_to_200_bytes_on_a_character_boundary() -> None:
    wire = RelayConnectFail(ErrorKind.TIMEOUT, "é" * 150).encode()  # 300 bytes of UTF-8
    assert wire[:3] == b"\x03\x06\xc8"
    assert decode_reply(wire) == RelayConnectFail(ErrorKind.TIMEOUT, "é" * 100)
    wire = RelayConnectFail(
        ErrorKind.TIMEOUT, "x" + "é" * 150
    ).encode()  # cut falls inside a character
    assert decode_reply(wire) == RelayConnectFail(ErrorKind.TIMEOUT, "x" + "é" * 99)


def test_prologue_binds_the_node_id() -> None:
    assert prologue_for(NID) == b"gnet/1" + NID


@FAST
@given(st.binary(max_size=300))
def test_decode_relay_connect_never_raises_anything_else(data: bytes) -> None:
    try:
        command = decode_relay_connect(data)
    except ProtocolError:
        return
    assert command.encode() == data  # whatever decodes is canonical


@FAST
@given(st.binary(min_size=22, max_size=40).map(lambda b: b"\x01" + bytes([1 + b[0] % 5]) + b[1:]))
def test_decode_relay_connect_near_valid_input(data: bytes) -> None:
    try:
        command = decode_relay_connect(data)
    except ProtocolError:
        return
    assert command.encode() == data


@FAST
@given(
    st.builds(
        RelayConnect,
        st.sampled_from(Proto),
        st.text(max_size=60).filter(lambda s: len(s.encode()) <= MAX_HOST),
        st.integers(0, 65535),
        st.one_of(st.none(), st.binary(min_size=20, max_size=20).filter(lambda b: b != NO_NODE_ID)),
    )
)
def test_relay_connect_round_trip(command: RelayConnect) -> None:
    assert decode_relay_connect(command.encode()) == command


@FAST
@given(st.binary(max_size=300))
def test_decode_reply_never_raises_anything_else(data: bytes) -> None:
    try:
        reply = decode_reply(data)
    except ProtocolError:
        return
    if isinstance(reply, RelayConnectOk):
        assert reply.encode() == data


@FAST
@given(st.sampled_from(ErrorKind), st.text(max_size=80))
def test_reply_fail_round_trip(kind: ErrorKind, reason: str) -> None:
    reply = decode_reply(RelayConnectFail(kind, reason).encode())
    assert isinstance(reply, RelayConnectFail)
    # a peer cannot make us believe in our own misuse: LOCAL_PROTOCOL reads as PROTOCOL
    assert reply.kind is (ErrorKind.PROTOCOL if kind is ErrorKind.LOCAL_PROTOCOL else kind)
    assert reason.startswith(reply.reason)


# --------------------------------------------------------------------------
# control messages
# --------------------------------------------------------------------------

NONCE = bytes(range(32))
SIG = bytes(range(64, 128))

CONTROL_VECTORS = [
    pytest.param(
        Challenge(NONCE, RECORD), b"\x01\x00\x8a" + NONCE + b"\x00\x68" + RECORD, id="challenge"
    ),
    pytest.param(Auth(RECORD, SIG), b"\x02\x00\xaa" + b"\x00\x68" + RECORD + SIG, id="auth"),
    pytest.param(AuthOk(), b"\x03\x00\x00", id="auth-ok"),
    pytest.param(
        Ping(0x0102030405060708), b"\x04\x00\x08\x01\x02\x03\x04\x05\x06\x07\x08", id="ping"
    ),
    pytest.param(Pong(2**64 - 1), b"\x05\x00\x08" + b"\xff" * 8, id="pong-max"),
    pytest.param(Pong(0), b"\x05\x00\x08" + b"\x00" * 8, id="pong-zero"),
    pytest.param(
        Close(ErrorKind.CLOSED, "duplicate link"), b"\x06\x00\x10\x0e\x0eduplicate link", id="close"
    ),
    pytest.param(Close(ErrorKind.TIMEOUT, ""), b"\x06\x00\x02\x06\x00", id="close-no-reason"),
]


@pytest.mark.parametrize("msg, wire", CONTROL_VECTORS)
def test_control_encode(msg: object, wire: bytes) -> None:
    assert encode_control(msg) == wire  # type: ignore[arg-type]


@pytest.mark.parametrize("msg, wire", CONTROL_VECTORS)
def test_control_decode(msg: object, wire: bytes) -> None:
    assert ControlDecoder().feed(wire) == [msg]


@pytest.mark.parametrize("msg, wire", CONTROL_VECTORS)
def test_control_decode_byte_by_byte(msg: object, wire: bytes) -> None:
    decoder = ControlDecoder()
    for i in range(len(wire) - 1):
        assert decoder.feed(wire[i : i + 1]) == []
    assert decoder.feed(wire[-1:]) == [msg]


@pytest.mark.parametrize("msg, wire", CONTROL_VECTORS)
def test_control_body_shorter_than_its_fields(msg: object, wire: bytes) -> None:
    """A length field that cuts the body short is malformed (not 'wait for more')."""
    body = wire[3:]  # AuthOk has no body, so nothing to cut short
    for n in range(len(body)):
        with pytest.raises(ProtocolError):
            ControlDecoder().feed(wire[:1] + u16(n) + body[:n])


@pytest.mark.parametrize("msg, wire", CONTROL_VECTORS)
def test_control_body_with_trailing_byte(msg: object, wire: bytes) -> None:
    body = wire[3:] + b"\x00"
    with pytest.raises(ProtocolError, match="trailing"):
        ControlDecoder().feed(wire[:1] + u16(len(body)) + body)


def test_control_several_messages_in_one_chunk() -> None:
    stream = b"".join(encode_control(m) for m in (Ping(1), Pong(2), AuthOk()))
    assert ControlDecoder().feed(stream) == [Ping(1), Pong(2), AuthOk()]


@pytest.mark.parametrize("t", [0x00, 0x08, 0xFF])
def test_control_unknown_type(t: int) -> None:
    with pytest.raises(ProtocolError, match="unknown control message type"):
        ControlDecoder().feed(bytes([t]) + b"\x00\x00")


def test_control_oversized_body_is_refused_from_its_header() -> None:
    """The decoder does not wait for (and buffer) a body over its bound."""
    with pytest.raises(ProtocolError, match=f"exceeds {MAX_CONTROL_BODY}"):
        ControlDecoder().feed(b"\x04" + u16(MAX_CONTROL_BODY + 1))
    # the largest allowed body is only malformed once it has arrived
    decoder = ControlDecoder()
    assert decoder.feed(b"\x02" + u16(MAX_CONTROL_BODY)) == []
    with pytest.raises(ProtocolError):
        decoder.feed(b"\x00" * MAX_CONTROL_BODY)


def test_control_record_over_bound() -> None:
    body = u16(MAX_RECORD_SIZE + 1) + b"r" * (MAX_RECORD_SIZE + 1) + SIG
    with pytest.raises(ProtocolError, match="exceeds 4096"):
        ControlDecoder().feed(b"\x02" + u16(len(body)) + body)


def test_control_close_reason_is_cut_to_200_characters() -> None:
    wire = encode_control(Close(1, "x" * 300))
    assert ControlDecoder().feed(wire) == [Close(1, "x" * 200)]


def test_control_close_reason_with_multibyte_characters_is_bounded() -> None:
    """A long non-ASCII reason (an IDN host name in str(exc)) must still encode."""
    wire = encode_control(Close(ErrorKind.NO_ROUTE, "é" * 300))
    [msg] = ControlDecoder().feed(wire)
    assert isinstance(msg, Close)
    assert msg.code == ErrorKind.NO_ROUTE
    assert ("é" * 300).startswith(msg.reason) and len(msg.reason.encode()) <= 200


def test_auth_transcript_layout() -> None:
    assert AUTH_CONTEXT == b"gnet/1 link auth"
    assert auth_transcript(NID, NONCE) == b"gnet/1 link auth" + NID + NONCE


def test_control_type_values() -> None:
    assert [int(t) for t in ControlType] == [1, 2, 3, 4, 5, 6, 7]


def _control_messages() -> st.SearchStrategy[object]:
    blob = st.binary(max_size=200)
    return st.one_of(
        st.builds(Challenge, st.binary(min_size=32, max_size=32), blob),
        st.builds(Auth, blob, st.binary(min_size=64, max_size=64)),
        st.just(AuthOk()),
        st.builds(Ping, st.integers(0, 2**64 - 1)),
        st.builds(Pong, st.integers(0, 2**64 - 1)),
        st.builds(
            Close,
            st.integers(0, 255),
            st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=200),
        ),
    )


@FAST
@given(st.lists(_control_messages(), max_size=6), st.lists(st.integers(0, 2000), max_size=10))
def test_control_decoder_chunking_invariance(msgs: list[object], cuts: list[int]) -> None:
    stream = b"".join(encode_control(m) for m in msgs)  # type: ignore[arg-type]
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    decoder = ControlDecoder()
    out: list[object] = []
    for a, b in pairwise(points):
        out += decoder.feed(stream[a:b])
    assert out == msgs


@FAST
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_control_decoder_arbitrary_bytes(chunks: list[bytes]) -> None:
    decoder = ControlDecoder()
    try:
        for chunk in chunks:
            for msg in decoder.feed(chunk):
                assert isinstance(msg, (Challenge, Auth, AuthOk, Ping, Pong, Close))
    except ProtocolError:
        pass


@FAST
@given(st.integers(1, 6), st.binary(max_size=120))
def test_control_decoder_arbitrary_body_of_a_known_type(t: int, body: bytes) -> None:
    try:
        ControlDecoder().feed(bytes([t]) + u16(len(body)) + body)
    except ProtocolError:
        pass


# --------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------

FRAME_VECTORS = [
    pytest.param(Frame(FrameType.DATA, b"hello"), b"\x01\x00\x05hello", id="data"),
    pytest.param(Frame(FrameType.DATA, b""), b"\x01\x00\x00", id="data-empty"),
    pytest.param(
        Frame(FrameType.DATA, b"\xaa" * MAX_DATA_BODY),
        b"\x01\x40\x00" + b"\xaa" * MAX_DATA_BODY,
        id="data-largest",
    ),
    pytest.param(
        Frame(FrameType.CREDIT, credit_body(65536)), b"\x02\x00\x04\x00\x01\x00\x00", id="credit"
    ),
    pytest.param(Frame(FrameType.END, b""), b"\x03\x00\x00", id="end"),
    pytest.param(Frame(FrameType.ERROR, b"\x02\x02no"), b"\x04\x00\x04\x02\x02no", id="error"),
    pytest.param(Frame(FrameType.MESSAGE, "hé".encode()), b"\x05\x00\x03h\xc3\xa9", id="message"),
]


@pytest.mark.parametrize("frame, wire", FRAME_VECTORS)
def test_frame_encode(frame: Frame, wire: bytes) -> None:
    assert encode_frame(frame.type, frame.body) == wire


@pytest.mark.parametrize("frame, wire", FRAME_VECTORS)
def test_frame_decode(frame: Frame, wire: bytes) -> None:
    assert decode_frame(wire) == frame


@pytest.mark.parametrize("frame, wire", FRAME_VECTORS)
def test_frame_truncated_at_every_byte(frame: Frame, wire: bytes) -> None:
    for i in range(len(wire)):
        with pytest.raises(ProtocolError):
            decode_frame(wire[:i])


@pytest.mark.parametrize("frame, wire", FRAME_VECTORS)
def test_frame_bytes_after_the_body_are_padding(frame: Frame, wire: bytes) -> None:
    assert decode_frame(wire + b"\x00" * 7) == frame


@pytest.mark.parametrize("t", [0x00, 0x07, 0xFF])
def test_frame_unknown_type(t: int) -> None:
    with pytest.raises(ProtocolError, match="unknown frame type"):
        decode_frame(bytes([t]) + b"\x00\x00")


def test_frame_body_over_bound() -> None:
    with pytest.raises(ProtocolError, match="exceeds 16384"):
        decode_frame(b"\x01" + u16(MAX_DATA_BODY + 1) + b"\x00" * (MAX_DATA_BODY + 1))
    with pytest.raises(ValueError):
        encode_frame(FrameType.DATA, b"\x00" * (MAX_DATA_BODY + 1))


def test_data_wire_constant() -> None:
    """Prefix 2 + header 3 + body + AEAD tag 16."""
    assert MAX_DATA_WIRE == 2 + 3 + 16384 + 16


@pytest.mark.parametrize(
    "n, wire", [(0, b"\x00\x00\x00\x00"), (1, b"\x00\x00\x00\x01"), (2**32 - 1, b"\xff" * 4)]
)
def test_credit_body(n: int, wire: bytes) -> None:
    assert credit_body(n) == wire
    assert parse_credit(wire) == n


@pytest.mark.parametrize("body", [b"", b"\x00\x00\x00", b"\x00\x00\x00\x01\x00"])
def test_credit_body_must_be_four_bytes(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_credit(body)


@FAST
@given(st.binary(max_size=200))
def test_decode_frame_never_raises_anything_else(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except ProtocolError:
        return
    assert data.startswith(encode_frame(frame.type, frame.body))


@FAST
@given(st.sampled_from(FrameType), st.binary(max_size=300), st.binary(max_size=20))
def test_frame_round_trip(ftype: FrameType, body: bytes, padding: bytes) -> None:
    assert decode_frame(encode_frame(ftype, body) + padding) == Frame(ftype, body)


# --------------------------------------------------------------------------
# length prefixes and MessageSplitter
# --------------------------------------------------------------------------

PREFIX_VECTORS = [
    pytest.param(b"", b"\x00\x00", id="empty"),
    pytest.param(b"abc", b"\x00\x03abc", id="short"),
    pytest.param(b"\x07" * 300, b"\x01\x2c" + b"\x07" * 300, id="two-byte-length"),
    pytest.param(b"m" * MAX_MESSAGE, b"\xff\xff" + b"m" * MAX_MESSAGE, id="largest"),
]


@pytest.mark.parametrize("message, wire", PREFIX_VECTORS)
def test_prefix_encode(message: bytes, wire: bytes) -> None:
    assert prefix(message) == wire


@pytest.mark.parametrize("message, wire", PREFIX_VECTORS)
def test_prefix_decode(message: bytes, wire: bytes) -> None:
    splitter = MessageSplitter()
    splitter.push(wire)
    assert splitter.pop() == message
    assert splitter.pop() is None
    assert splitter.pending == 0


@pytest.mark.parametrize("message, wire", PREFIX_VECTORS)
def test_splitter_waits_for_a_whole_message(message: bytes, wire: bytes) -> None:
    for i in range(0, len(wire), max(1, len(wire) // 50)):
        splitter = MessageSplitter()
        splitter.push(wire[:i])
        assert splitter.pop() is None
        assert splitter.pending == i
        splitter.push(wire[i:])
        assert splitter.pop() == message


def test_prefix_refuses_oversized_message() -> None:
    with pytest.raises(ValueError):
        prefix(b"\x00" * (MAX_MESSAGE + 1))


def test_splitter_take_rest_returns_the_bytes_after_the_last_pop() -> None:
    splitter = MessageSplitter()
    splitter.push(prefix(b"hello") + b"\x01\x02\x03")
    assert splitter.pop() == b"hello"
    assert splitter.pending == 3
    assert splitter.take_rest() == b"\x01\x02\x03"
    assert splitter.pending == 0
    assert splitter.pop() is None
    splitter.push(prefix(b"again"))
    assert splitter.pop() == b"again"


def test_splitter_max_pending() -> None:
    splitter = MessageSplitter(max_pending=10)
    splitter.push(b"\x00\x10" + b"\x00" * 8)  # 10 bytes of a 16-byte message: at the bound
    with pytest.raises(ProtocolError, match="more than 10 bytes pending"):
        splitter.push(b"\x00")


def test_splitter_max_pending_counts_only_unpopped_bytes() -> None:
    splitter = MessageSplitter(max_pending=10)
    splitter.push(prefix(b"12345678"))  # 10 bytes
    assert splitter.pop() == b"12345678"
    splitter.push(prefix(b"abcdefgh"))  # popped bytes no longer count
    assert splitter.pop() == b"abcdefgh"
    splitter.push(b"\x00\x01")
    with pytest.raises(ProtocolError):
        splitter.push(b"\x00" * 9)


def test_splitter_default_bound_holds_four_largest_messages() -> None:
    splitter = MessageSplitter()
    splitter.push(prefix(b"m" * MAX_MESSAGE) * 4)
    with pytest.raises(ProtocolError):
        splitter.push(b"\x00")


@FAST
@given(
    st.lists(st.binary(max_size=600), max_size=12),
    st.lists(st.integers(0, 8000), max_size=20),
)
def test_splitter_chunking_invariance(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(prefix(m) for m in messages)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    splitter = MessageSplitter()
    out: list[bytes] = []
    for a, b in pairwise(points):
        splitter.push(stream[a:b])
        while (m := splitter.pop()) is not None:
            out.append(m)
    assert out == messages
    assert splitter.pending == 0


@FAST
@given(st.lists(st.binary(max_size=300), max_size=10), st.integers(1, 600))
def test_splitter_arbitrary_bytes(chunks: list[bytes], bound: int) -> None:
    splitter = MessageSplitter(max_pending=bound)
    try:
        for chunk in chunks:
            splitter.push(chunk)
            while (m := splitter.pop()) is not None:
                assert isinstance(m, bytes)
            assert splitter.pending <= bound
    except ProtocolError:
        pass


# --------------------------------------------------------------------------
# node records (decoder robustness; signing is in test_records.py)
# --------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=400))
def test_decode_node_record_never_raises_anything_else(data: bytes) -> None:
    try:
        record = decode_node_record(data)
    except ProtocolError:
        return
    assert record.encode() == data


@FAST
@given(st.binary(min_size=69, max_size=300))
def test_decode_node_record_with_valid_magic(data: bytes) -> None:
    data = b"GNR1" + data
    try:
        record = decode_node_record(data)
    except ProtocolError:
        return
    assert record.encode() == data
