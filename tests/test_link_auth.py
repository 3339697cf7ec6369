"""The link's control stream: CHALLENGE / AUTH / AUTH_OK, then PING, PONG, CLOSE.

Two ControlChannels (listener and dialler) are wired by hand; each step
asserts the bytes sent back and the events, as aioquic's tests do.
"""

from __future__ import annotations

import time

import nacl.public
import nacl.signing
import pytest

from globalnet.errors import ErrorKind, GnetError, ProtocolError
from globalnet.identity import Identity, OnionKeys, solved_seed, verify_signature
from globalnet.link.auth import (
    AuthState,
    ControlChannel,
    ControlEvent,
    LinkReady,
    PeerClosed,
    PongReceived,
)
from globalnet.wire.control import (
    Auth,
    AuthOk,
    Challenge,
    Close,
    ControlDecoder,
    Ping,
    Pong,
    auth_transcript,
    encode_control,
)
from globalnet.wire.records import NodeRecord


def make_identity(seed: int) -> Identity:
    return Identity(
        nacl.signing.SigningKey(solved_seed(bytes([seed]) * 32)),
        OnionKeys(nacl.public.PrivateKey(bytes([seed + 50]) * 32), created=time.time()),
    )


LISTENER = make_identity(1)
DIALLER = make_identity(2)
OTHER = make_identity(3)
# verify_node_record() checks expiry against the clock, so records are made now
L_REC = LISTENER.make_record((("192.0.2.1", 4433),))
D_REC = DIALLER.make_record((("192.0.2.2", 4433),))
O_REC = OTHER.make_record((("192.0.2.3", 4433),))


def channels(expected: bytes | None = LISTENER.public_key) -> tuple[ControlChannel, ControlChannel]:
    listener = ControlChannel(LISTENER, L_REC, dialler=False)
    dialler = ControlChannel(DIALLER, D_REC, dialler=True, expected_peer_key=expected)
    return listener, dialler


def decode_one(data: bytes) -> object:
    [msg] = ControlDecoder().feed(data)
    return msg


def ready_pair() -> tuple[ControlChannel, ControlChannel]:
    listener, dialler = channels()
    auth, _ = dialler.receive(listener.start())
    ok, _ = listener.receive(auth)
    dialler.receive(ok)
    assert listener.state is dialler.state is AuthState.READY
    return listener, dialler


def auth_with(identity: Identity, record: NodeRecord, listener_id: bytes, nonce: bytes) -> bytes:
    return encode_control(Auth(record.encode(), identity.sign(auth_transcript(listener_id, nonce))))


# -- the handshake --------------------------------------------------------------


def test_handshake_step_by_step() -> None:
    listener, dialler = channels()
    assert listener.state is AuthState.WAIT_AUTH
    assert dialler.state is AuthState.WAIT_CHALLENGE

    challenge = listener.start()
    msg = decode_one(challenge)
    assert isinstance(msg, Challenge)
    nonce = msg.nonce
    assert len(nonce) == 32
    assert (
        challenge
        == b"\x01"
        + (32 + 2 + len(L_REC.encode())).to_bytes(2, "big")
        + nonce
        + len(L_REC.encode()).to_bytes(2, "big")
        + L_REC.encode()
    )

    auth, events = dialler.receive(challenge)
    assert events == []
    assert dialler.state is AuthState.WAIT_AUTH_OK
    assert dialler.peer == L_REC
    msg = decode_one(auth)
    assert isinstance(msg, Auth)
    assert msg.record == D_REC.encode()
    assert verify_signature(
        DIALLER.public_key, b"gnet/1 link auth" + LISTENER.node_id + nonce, msg.signature
    )
    # Ed25519 is deterministic: the exact AUTH bytes are known
    assert auth == auth_with(DIALLER, D_REC, LISTENER.node_id, nonce)

    ok, events = listener.receive(auth)
    assert ok == b"\x03\x00\x00"
    assert events == [LinkReady(D_REC)]
    assert listener.state is AuthState.READY
    assert listener.peer == D_REC

    out, events = dialler.receive(ok)
    assert out == b""
    assert events == [LinkReady(L_REC)]
    assert dialler.state is AuthState.READY


def test_handshake_fed_byte_by_byte() -> None:
    listener, dialler = channels()

    def trickle(channel: ControlChannel, data: bytes) -> tuple[bytes, list[ControlEvent]]:
        out, events = b"", []
        for i in range(len(data)):
            o, e = channel.receive(data[i : i + 1])
            out += o
            events += e
        return out, events

    auth, _ = trickle(dialler, listener.start())
    ok, l_events = trickle(listener, auth)
    _, d_events = trickle(dialler, ok)
    assert l_events == [LinkReady(D_REC)]
    assert d_events == [LinkReady(L_REC)]


def test_every_challenge_has_a_fresh_nonce() -> None:
    challenges = [
        decode_one(ControlChannel(LISTENER, L_REC, dialler=False).start()) for _ in range(8)
    ]
    nonces = {c.nonce for c in challenges if isinstance(c, Challenge)}
    assert len(nonces) == 8


def test_dialler_without_an_expected_key_accepts_any_valid_listener() -> None:
    listener, dialler = channels(expected=None)
    _, _ = dialler.receive(listener.start())
    assert dialler.peer == L_REC


def test_dialler_refuses_a_listener_with_another_key() -> None:
    listener, dialler = channels(expected=OTHER.public_key)
    with pytest.raises(GnetError) as info:
        dialler.receive(listener.start())
    assert info.value.kind is ErrorKind.HANDSHAKE_FAILED
    assert dialler.state is AuthState.WAIT_CHALLENGE


def test_dialler_refuses_an_invalid_listener_record() -> None:
    listener, dialler = channels()
    msg = decode_one(listener.start())
    assert isinstance(msg, Challenge)
    bad = bytearray(msg.record)
    bad[-1] ^= 1
    with pytest.raises(ProtocolError, match="signature"):
        dialler.receive(encode_control(Challenge(msg.nonce, bytes(bad))))


# -- AUTH failures ------------------------------------------------------------------


def _nonce_of(listener: ControlChannel) -> tuple[bytes, bytes]:
    challenge = listener.start()
    msg = decode_one(challenge)
    assert isinstance(msg, Challenge)
    return challenge, msg.nonce


def test_auth_over_the_wrong_listener_id() -> None:
    listener, _ = channels()
    _, nonce = _nonce_of(listener)
    with pytest.raises(GnetError) as info:
        listener.receive(auth_with(DIALLER, D_REC, OTHER.node_id, nonce))
    assert info.value.kind is ErrorKind.HANDSHAKE_FAILED
    assert listener.state is AuthState.WAIT_AUTH and listener.peer is None


def test_auth_over_the_wrong_nonce() -> None:
    listener, _ = channels()
    _, nonce = _nonce_of(listener)
    wrong = bytes(b ^ 0xFF for b in nonce)
    with pytest.raises(GnetError) as info:
        listener.receive(auth_with(DIALLER, D_REC, LISTENER.node_id, wrong))
    assert info.value.kind is ErrorKind.HANDSHAKE_FAILED


def test_auth_replayed_from_another_connection() -> None:
    first, dialler = channels()
    auth, _ = dialler.receive(first.start())
    second = ControlChannel(LISTENER, L_REC, dialler=False)
    second.start()  # its own, different nonce
    with pytest.raises(GnetError) as info:
        second.receive(auth)
    assert info.value.kind is ErrorKind.HANDSHAKE_FAILED
    # the original connection still accepts it
    assert first.receive(auth)[1] == [LinkReady(D_REC)]


def test_auth_signed_by_a_key_other_than_the_records() -> None:
    listener, _ = channels()
    _, nonce = _nonce_of(listener)
    # OTHER signs, but presents DIALLER's (valid) record: it does not hold that key
    with pytest.raises(GnetError) as info:
        listener.receive(auth_with(OTHER, D_REC, LISTENER.node_id, nonce))
    assert info.value.kind is ErrorKind.HANDSHAKE_FAILED


def test_auth_with_an_invalid_record() -> None:
    listener, _ = channels()
    _, nonce = _nonce_of(listener)
    record = bytearray(D_REC.encode())
    record[-1] ^= 1
    sig = DIALLER.sign(auth_transcript(LISTENER.node_id, nonce))
    with pytest.raises(ProtocolError):
        listener.receive(encode_control(Auth(bytes(record), sig)))


def test_a_node_that_dialled_itself() -> None:
    listener, _ = channels()
    _, nonce = _nonce_of(listener)
    with pytest.raises(GnetError) as info:
        listener.receive(auth_with(LISTENER, L_REC, LISTENER.node_id, nonce))
    assert info.value.kind is ErrorKind.HANDSHAKE_FAILED


# -- order ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg",
    [AuthOk(), Ping(1), Pong(1), Auth(D_REC.encode(), bytes(64))],
    ids=lambda m: type(m).__name__,
)
def test_dialler_waiting_for_the_challenge(msg: object) -> None:
    _, dialler = channels()
    with pytest.raises(ProtocolError, match="not expected in state wait-challenge"):
        dialler.receive(encode_control(msg))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "msg",
    [AuthOk(), Ping(1), Pong(1), Challenge(bytes(32), L_REC.encode())],
    ids=lambda m: type(m).__name__,
)
def test_listener_waiting_for_auth(msg: object) -> None:
    listener, _ = channels()
    listener.start()
    with pytest.raises(ProtocolError, match="not expected in state wait-auth"):
        listener.receive(encode_control(msg))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "msg", [Ping(1), Pong(1), Challenge(bytes(32), L_REC.encode())], ids=lambda m: type(m).__name__
)
def test_dialler_waiting_for_auth_ok(msg: object) -> None:
    listener, dialler = channels()
    dialler.receive(listener.start())
    with pytest.raises(ProtocolError, match="not expected in state wait-auth-ok"):
        dialler.receive(encode_control(msg))  # type: ignore[arg-type]


@pytest.mark.parametrize("side", ["listener", "dialler"])
@pytest.mark.parametrize(
    "msg",
    [AuthOk(), Challenge(bytes(32), L_REC.encode()), Auth(D_REC.encode(), bytes(64))],
    ids=lambda m: type(m).__name__,
)
def test_no_second_handshake_once_ready(side: str, msg: object) -> None:
    listener, dialler = ready_pair()
    channel = listener if side == "listener" else dialler
    with pytest.raises(ProtocolError, match="not expected in state ready"):
        channel.receive(encode_control(msg))  # type: ignore[arg-type]


def test_malformed_bytes_are_protocol_errors() -> None:
    listener, _ = channels()
    listener.start()
    with pytest.raises(ProtocolError):
        listener.receive(b"\x09\x00\x00")


# -- after the handshake --------------------------------------------------------------


def test_ping_pong_both_ways() -> None:
    listener, dialler = ready_pair()
    ping = listener.ping(7)
    assert ping == b"\x04\x00\x08" + (7).to_bytes(8, "big")
    pong, events = dialler.receive(ping)
    assert pong == encode_control(Pong(7)) == b"\x05\x00\x08" + (7).to_bytes(8, "big")
    assert events == []
    assert listener.receive(pong) == (b"", [PongReceived(7)])

    pong, events = listener.receive(dialler.ping(2**64 - 1))
    assert events == []
    assert dialler.receive(pong) == (b"", [PongReceived(2**64 - 1)])


def test_several_pings_in_one_chunk() -> None:
    listener, dialler = ready_pair()
    out, events = dialler.receive(listener.ping(1) + listener.ping(2) + listener.ping(3))
    assert out == b"".join(encode_control(Pong(n)) for n in (1, 2, 3))
    assert events == []


def test_close_gives_peer_closed() -> None:
    listener, dialler = ready_pair()
    close = listener.close(ErrorKind.CLOSED, "duplicate link")
    assert close == b"\x06\x00\x10\x0e\x0eduplicate link"
    assert dialler.receive(close) == (b"", [PeerClosed(ErrorKind.CLOSED, "duplicate link")])


@pytest.mark.parametrize("state", ["before-start", "wait-auth", "wait-challenge", "wait-auth-ok"])
def test_close_is_accepted_in_every_state(state: str) -> None:
    listener, dialler = channels()
    if state == "wait-auth":
        listener.start()
    if state == "wait-auth-ok":
        dialler.receive(listener.start())
    channel = dialler if state.startswith("wait-challenge") or state == "wait-auth-ok" else listener
    close = encode_control(Close(ErrorKind.TIMEOUT, "link authentication timed out"))
    assert channel.receive(close) == (
        b"",
        [PeerClosed(ErrorKind.TIMEOUT, "link authentication timed out")],
    )


def test_close_with_an_unknown_code_reads_as_protocol() -> None:
    _, dialler = channels()
    assert dialler.receive(encode_control(Close(200, "?"))) == (
        b"",
        [PeerClosed(ErrorKind.PROTOCOL, "?")],
    )
