"""A whole circuit in memory: ClientCircuitCore, RelayHopCores and BridgeCores, no sockets.

The cores are wired by tests/fakenet.py (exact bytes, every byte a hop
receives and sends logged), so tests check what a relay can see with the real
cores, not a copy of the relay.
"""

from __future__ import annotations

import random

import nacl.public
import nacl.signing
import pytest

from globalnet.circuit.core import CircuitState, ClientCircuitCore, HopReply
from globalnet.crypto import initiator_start, responder_read, responder_write
from globalnet.endpoint.session import (
    DATA_OVERHEAD,
    DataReceived,
    EndReceived,
    FrameSession,
)
from globalnet.errors import ErrorKind, GnetError, ProtocolError
from globalnet.identity import verify_node_record
from globalnet.relay.hop import MAX_PENDING, ConnectRequested, HopState, RelayHopCore
from globalnet.wire.commands import (
    SERVICE_JOIN,
    Proto,
    RelayConnect,
    RelayConnectFail,
    RelayConnectOk,
    prologue_for,
)
from globalnet.wire.framing import prefix
from tests.fakenet import MAX_QUEUED, NOW, PAYLOAD, REPLY, TARGET, Client, Hop, build, connect, extend, leaks, make_hops

# -- building ------------------------------------------------------------------


def test_three_hop_circuit_builds() -> None:
    hops = make_hops()
    client = build(hops)
    assert client.core.state is CircuitState.OPEN
    assert client.core.hops == 3
    assert [h.core.state for h in hops] == [HopState.BRIDGE, HopState.BRIDGE, HopState.ENDPOINT]
    assert len(client.core.forward) == len(client.core.backward) == 2
    assert hops[2].requests == [TARGET]
    assert client.session is not None and hops[2].session is not None


@pytest.mark.parametrize("n", [1, 2, 5])
def test_circuits_of_other_lengths(n: int) -> None:
    hops = make_hops(n)
    client = build(hops)
    client.send(client.session.send_data(PAYLOAD))
    assert hops[-1].events == [DataReceived(PAYLOAD, len(PAYLOAD) + DATA_OVERHEAD)]


def test_first_message_exact_bytes() -> None:
    hop = make_hops(1)[0]
    ephemeral = bytes([0x42]) * 32
    wire = ClientCircuitCore().start_hop(hop.node_id, hop.record.onion_key, TARGET, ephemeral)
    _, message = initiator_start(
        hop.record.onion_key, b"gnet/1" + hop.node_id, TARGET.encode(), ephemeral
    )
    assert wire == prefix(message)
    assert len(message) == 32 + len(TARGET.encode()) + 16


def test_reply_may_arrive_byte_by_byte() -> None:
    hops = make_hops(1)
    client = connect(hops)
    extend(client, hops[0].record, TARGET)
    hops[0].accept_endpoint()
    reply = client.take()
    for i in range(len(reply) - 1):
        assert client.core.receive_reply(reply[i : i + 1]) is None
    assert client.core.receive_reply(reply[-1:]) == HopReply(RelayConnectOk())
    assert client.core.state is CircuitState.OPEN


def test_handshake_message_is_split_across_chunks() -> None:
    hops = make_hops(1)
    hop = hops[0]
    wire = ClientCircuitCore().start_hop(hop.node_id, hop.record.onion_key, TARGET)
    for i in range(len(wire) - 1):
        hop.from_upstream(wire[i : i + 1])
        assert hop.requests == [] and hop.core.state is HopState.HANDSHAKE
    hop.from_upstream(wire[-1:])
    assert hop.requests == [TARGET]


# -- data --------------------------------------------------------------------


def _exchange(client: Client, hops: list[Hop]) -> None:
    exit_session = hops[-1].session
    assert exit_session is not None
    client.send(client.session.send_data(PAYLOAD))
    hops[-1].send_up(exit_session.send_data(REPLY))
    assert client.receive() == [DataReceived(REPLY, len(REPLY) + DATA_OVERHEAD)]
    # credit goes back both ways, then both sides end cleanly
    hops[-1].send_up(exit_session.consumed(len(PAYLOAD) + DATA_OVERHEAD))
    client.send(client.session.consumed(len(REPLY) + DATA_OVERHEAD))
    assert client.receive() == []
    client.send(client.session.send_end())
    hops[-1].send_up(exit_session.send_end())
    assert client.receive() == [EndReceived()]


def test_data_crosses_the_circuit_intact_both_ways() -> None:
    hops = make_hops()
    client = build(hops)
    _exchange(client, hops)
    exit_hop = hops[2]
    assert exit_hop.error is None
    assert exit_hop.events == [DataReceived(PAYLOAD, len(PAYLOAD) + DATA_OVERHEAD), EndReceived()]
    assert client.session.send_credit == exit_hop.session.send_credit == 256 * 1024  # type: ignore[union-attr]
    assert client.session.remote_ended and client.session.local_ended


def test_big_transfer_in_random_chunks() -> None:
    """Chunk boundaries on the wire do not matter to XOR layers or frames."""
    hops = make_hops()
    client = build(hops)
    rng = random.Random(1)
    data = rng.randbytes(200_000)
    wire = client.core.wrap(client.session.send_data(data))
    i = 0
    while i < len(wire):
        n = rng.randint(1, 5000)
        hops[0].from_upstream(wire[i : i + n])
        i += n
    got = b"".join(e.data for e in hops[2].events if isinstance(e, DataReceived))
    assert got == data


def test_middle_relay_never_sees_plaintext() -> None:
    hops = make_hops()
    client = build(hops)
    _exchange(client, hops)
    for relay in hops[:2]:
        for direction in ("in-up", "out-down", "in-down", "out-up"):
            seen = relay.seen(direction)
            assert seen, (relay.name, direction)
            assert not leaks(PAYLOAD, seen), (relay.name, direction)
            assert not leaks(REPLY, seen), (relay.name, direction)
            assert b"secret-target" not in seen
    # the exit's own stream bytes are sealed too; only its session opens them
    assert not leaks(PAYLOAD, hops[2].seen("in-up"))
    assert not leaks(REPLY, hops[2].seen("out-up"))


def test_hop1_never_sees_who_hop3_is() -> None:
    """Hop 3's record travels back inside hop 2's handshake reply: hop 1 sees ciphertext."""
    hops = make_hops()
    client = build(hops)
    _exchange(client, hops)
    everything = b"".join(d for _, d in hops[0].log)
    for secret in (
        hops[2].node_id,
        hops[2].identity.public_key,
        hops[2].record.onion_key,
        b"192.0.2.3",
    ):
        assert secret not in everything


def test_every_hop_sees_the_same_sizes() -> None:
    hops = make_hops()
    client = build(hops)
    marks = [len(h.log) for h in hops]
    _exchange(client, hops)
    data_logs = [h.log[m:] for h, m in zip(hops, marks, strict=True)]
    forward = [[len(d) for what, d in log if what == "in-up"] for log in data_logs]
    backward = [[len(d) for what, d in log if what == "out-up"] for log in data_logs]
    assert forward[0] == forward[1] == forward[2]
    assert backward[0] == backward[1] == backward[2]
    for log in data_logs[:2]:
        ins = [d for what, d in log if what == "in-up"]
        outs = [d for what, d in log if what == "out-down"]
        assert [len(d) for d in ins] == [len(d) for d in outs]
        # same size, different bytes: each relay's layer changes every chunk
        assert all(a != b for a, b in zip(ins, outs, strict=True) if a)
        ins = [d for what, d in log if what == "in-down"]
        outs = [d for what, d in log if what == "out-up"]
        assert [len(d) for d in ins] == [len(d) for d in outs]
        assert all(a != b for a, b in zip(ins, outs, strict=True) if a)
    # the client's layers and the relays' keystreams stay in step
    for i, hop in enumerate(hops[:2]):
        assert hop.bridge is not None
        assert client.core.forward[i].position == hop.bridge.forward.position
        assert client.core.backward[i].position == hop.bridge.backward.position


def test_hop3_handshake_is_the_same_size_at_every_hop() -> None:
    hops = make_hops()
    client = connect(hops)
    extend(client, hops[0].record, RelayConnect(Proto.PEER, node_id=hops[1].node_id))
    hops[0].accept_bridge(hops[1])
    rec2 = verify_node_record(client.core.receive_reply(client.take()).reply.record, now=NOW)  # type: ignore[union-attr]
    extend(client, rec2, RelayConnect(Proto.PEER, node_id=hops[2].node_id))
    hops[1].accept_bridge(hops[2])
    rec3 = verify_node_record(client.core.receive_reply(client.take()).reply.record, now=NOW)  # type: ignore[union-attr]
    marks = [len(h.log) for h in hops]
    extend(client, rec3, TARGET)
    sizes = [
        [len(d) for what, d in h.log[m:] if what == "in-up"]
        for h, m in zip(hops, marks, strict=True)
    ]
    assert sizes[0] == sizes[1] == sizes[2] == [2 + 32 + len(TARGET.encode()) + 16]


# -- refusals and failures ------------------------------------------------------


def test_refusal_at_hop2_reaches_the_client() -> None:
    hops = make_hops()
    client = connect(hops)
    extend(client, hops[0].record, RelayConnect(Proto.PEER, node_id=hops[1].node_id))
    hops[0].accept_bridge(hops[1])
    rec2 = verify_node_record(client.core.receive_reply(client.take()).reply.record, now=NOW)  # type: ignore[union-attr]
    extend(client, rec2, RelayConnect(Proto.PEER, node_id=hops[2].node_id))
    hops[1].refuse(ErrorKind.NO_ROUTE, "no link to that node")
    reply = client.core.receive_reply(client.take())
    assert reply == HopReply(RelayConnectFail(ErrorKind.NO_ROUTE, "no link to that node"))
    assert client.core.state is CircuitState.FAILED
    assert client.core.hops == 1
    assert hops[1].core.state is HopState.CLOSED
    with pytest.raises(GnetError) as info:
        client.core.start_hop(hops[2].node_id, hops[2].record.onion_key, TARGET)
    assert info.value.kind is ErrorKind.LOCAL_PROTOCOL


@pytest.mark.parametrize(
    "kind", [ErrorKind.EXIT_POLICY, ErrorKind.CONNECTION_REFUSED, ErrorKind.TIMEOUT]
)
def test_refusal_at_the_exit_carries_its_kind(kind: ErrorKind) -> None:
    hops = make_hops()
    client = connect(hops)
    record = hops[0].record
    for i in range(2):
        extend(client, record, RelayConnect(Proto.PEER, node_id=hops[i + 1].node_id))
        hops[i].accept_bridge(hops[i + 1])
        record = verify_node_record(client.core.receive_reply(client.take()).reply.record, now=NOW)  # type: ignore[union-attr]
    extend(client, record, TARGET)
    hops[2].refuse(kind, kind.describe)
    assert client.core.receive_reply(client.take()) == HopReply(
        RelayConnectFail(kind, kind.describe)
    )
    assert client.core.session is None


def test_wrong_onion_key_at_a_hop() -> None:
    """Hop 2 answers with a key other than the one in the record the client used."""
    hops = make_hops()
    hops[1] = Hop("hop2", seed=2, onion_keys=[bytes(nacl.public.PrivateKey(bytes([99]) * 32))])
    client = connect(hops)
    extend(client, hops[0].record, RelayConnect(Proto.PEER, node_id=hops[1].node_id))
    hops[0].accept_bridge(hops[1])
    rec2 = verify_node_record(client.core.receive_reply(client.take()).reply.record, now=NOW)  # type: ignore[union-attr]
    with pytest.raises(GnetError) as info:
        extend(client, rec2, RelayConnect(Proto.PEER, node_id=hops[2].node_id))
    assert info.value.kind is ErrorKind.HANDSHAKE_FAILED
    assert hops[1].requests == []


def test_wrong_node_id_in_the_prologue() -> None:
    """The prologue binds the hop's node id: a hop with the right key but another id refuses."""
    hop = Hop("hop1", seed=1, node_id_override=bytes(20))
    with pytest.raises(GnetError) as info:
        hop.from_upstream(ClientCircuitCore().start_hop(hop.node_id, hop.record.onion_key, TARGET))
    assert info.value.kind is ErrorKind.HANDSHAKE_FAILED


def test_previous_onion_key_works_during_the_grace_period() -> None:
    hop = Hop("hop1", seed=1)
    old_record = hop.record
    hop.identity.onion.rotate_if_due(NOW + 24 * 3600)
    rotated = RelayHopCore(hop.identity.onion.candidates(NOW + 24 * 3600 + 10), hop.node_id)
    wire = ClientCircuitCore().start_hop(old_record.node_id, old_record.onion_key, TARGET)
    assert rotated.receive(wire) == ConnectRequested(TARGET)
    expired = RelayHopCore(hop.identity.onion.candidates(NOW + 25 * 3600), hop.node_id)
    with pytest.raises(GnetError) as info:
        expired.receive(
            ClientCircuitCore().start_hop(old_record.node_id, old_record.onion_key, TARGET)
        )
    assert info.value.kind is ErrorKind.HANDSHAKE_FAILED


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("offset", [2, 3, 40, -1])
def test_byte_flipped_by_a_middle_relay_is_caught_at_the_end(direction: str, offset: int) -> None:
    hops = make_hops()
    client = build(hops)
    flips: list[int] = []

    def flip(buf: bytearray) -> None:
        if not flips:
            flips.append(offset)
            buf[offset] ^= 0x20

    if direction == "forward":
        hops[1].tamper_forward = flip
        client.send(client.session.send_data(PAYLOAD))
        assert hops[2].error is not None and hops[2].error.kind is ErrorKind.TAMPERED
        assert hops[2].events == []
    else:
        hops[1].tamper_backward = flip
        assert hops[2].session is not None
        hops[2].send_up(hops[2].session.send_data(REPLY))
        with pytest.raises(GnetError) as info:
            client.receive()
        assert info.value.kind is ErrorKind.TAMPERED
    assert flips


def test_reply_tampered_on_the_way_back_fails_the_handshake() -> None:
    hops = make_hops()
    client = connect(hops)
    extend(client, hops[0].record, RelayConnect(Proto.PEER, node_id=hops[1].node_id))
    hops[0].accept_bridge(hops[1])
    rec2 = verify_node_record(client.core.receive_reply(client.take()).reply.record, now=NOW)  # type: ignore[union-attr]
    hops[0].tamper_backward = lambda buf: buf.__setitem__(-1, buf[-1] ^ 1)
    extend(client, rec2, TARGET)
    hops[1].accept_endpoint()
    with pytest.raises(GnetError) as info:
        client.core.receive_reply(client.take())
    assert info.value.kind is ErrorKind.HANDSHAKE_FAILED
    assert client.core.state is CircuitState.FAILED


# -- RelayHopCore alone -----------------------------------------------------------


def _hop_and_message(command: RelayConnect = TARGET) -> tuple[Hop, bytes]:
    hop = Hop("hop1", seed=1)
    return hop, ClientCircuitCore().start_hop(hop.node_id, hop.record.onion_key, command)


def test_data_before_the_decision_is_buffered_up_to_max_pending() -> None:
    hop, message = _hop_and_message()
    core = hop.core
    assert core.receive(message + b"early") == ConnectRequested(TARGET)
    assert core.state is HopState.DECIDING
    assert core.receive(b"x" * (MAX_PENDING - 5)) is None  # exactly MAX_PENDING pending
    with pytest.raises(ProtocolError, match="pending"):
        core.receive(b"x")


def test_bytes_buffered_during_the_decision_are_handed_over() -> None:
    hop, message = _hop_and_message()
    hop.core.receive(message + b"early")
    hop.core.receive(b" and more")
    _, session = hop.core.accept_endpoint()
    assert hop.core.take_pending() == b"early and more"
    assert hop.core.take_pending() == b""
    assert isinstance(session, FrameSession)


def test_a_bridge_forwards_bytes_buffered_during_its_decision() -> None:
    """As RelayHop._bridge does: take_pending() goes down the new bridge, XORed."""
    hops = make_hops(2)
    client = connect(hops)
    wire = client.core.start_hop(
        hops[0].node_id, hops[0].record.onion_key, RelayConnect(Proto.PEER, node_id=hops[1].node_id)
    )
    hops[0].from_upstream(wire + b"z")  # a (misbehaving) client that did not wait for the reply
    hops[0].accept_bridge(hops[1])
    client.core.receive_reply(client.take())
    expected = client.core.forward[0].xor(b"z")  # the same keystream, from the client's side
    assert hops[0].seen("out-down") == expected
    assert hops[1].core.state is HopState.HANDSHAKE


def test_garbage_command_closes_the_hop() -> None:
    hop = Hop("hop1", seed=1)
    _, message = initiator_start(
        hop.record.onion_key, prologue_for(hop.node_id), b"\x01\x09" + bytes(23)
    )
    with pytest.raises(ProtocolError, match="unknown proto"):
        hop.core.receive(prefix(message))
    assert hop.core.state is HopState.CLOSED


@pytest.mark.parametrize(
    "message", [b"", b"\x00" * 47, b"\x00" * 200], ids=["empty", "short", "zeros"]
)
def test_garbage_handshake_is_handshake_failed(message: bytes) -> None:
    hop = Hop("hop1", seed=1)
    with pytest.raises(GnetError) as info:
        hop.core.receive(prefix(message))
    assert info.value.kind is ErrorKind.HANDSHAKE_FAILED


def test_hop_core_refuses_calls_out_of_state() -> None:
    hop, message = _hop_and_message()
    with pytest.raises(GnetError) as info:
        hop.core.accept_endpoint()  # nothing to answer yet
    assert info.value.kind is ErrorKind.LOCAL_PROTOCOL
    hop.core.receive(message)
    hop.core.accept_endpoint()
    for call in (
        hop.core.accept_endpoint,
        lambda: hop.core.refuse(ErrorKind.TIMEOUT, "x"),
        lambda: hop.core.receive(b"x"),
    ):
        with pytest.raises(GnetError) as info:
            call()
        assert info.value.kind is ErrorKind.LOCAL_PROTOCOL


def test_hop_core_handshake_message_over_the_bound() -> None:
    hop = Hop("hop1", seed=1)
    with pytest.raises(ProtocolError):
        hop.core.receive(b"\xff\xff" + bytes(MAX_PENDING))


# -- ClientCircuitCore alone --------------------------------------------------------


def test_client_core_refuses_calls_out_of_state() -> None:
    core = ClientCircuitCore()
    with pytest.raises(GnetError) as info:
        core.receive_reply(b"\x00")
    assert info.value.kind is ErrorKind.PROTOCOL
    hop = Hop("hop1", seed=1)
    core.start_hop(hop.node_id, hop.record.onion_key, TARGET)
    with pytest.raises(GnetError) as info:
        core.start_hop(hop.node_id, hop.record.onion_key, TARGET)
    assert info.value.kind is ErrorKind.LOCAL_PROTOCOL


def test_bytes_after_a_bridge_reply_are_a_protocol_error() -> None:
    hops = make_hops(2)
    client = connect(hops)
    extend(client, hops[0].record, RelayConnect(Proto.PEER, node_id=hops[1].node_id))
    hops[0].accept_bridge(hops[1])
    with pytest.raises(GnetError) as info:
        client.core.receive_reply(client.take() + b"\x00")
    assert info.value.kind is ErrorKind.PROTOCOL


def test_target_data_right_behind_the_exit_reply() -> None:
    """The exit's reply and its first frame may arrive in one chunk.

    take_pending() hands over the frame, already unwrapped.
    """
    hops = make_hops(2)
    client = connect(hops)
    extend(client, hops[0].record, RelayConnect(Proto.PEER, node_id=hops[1].node_id))
    hops[0].accept_bridge(hops[1])
    rec2 = verify_node_record(client.core.receive_reply(client.take()).reply.record, now=NOW)  # type: ignore[union-attr]
    extend(client, rec2, TARGET)
    hops[1].accept_endpoint()
    assert hops[1].session is not None
    hops[1].send_up(hops[1].session.send_data(b"220 banner\r\n"))
    assert client.core.receive_reply(client.take()) == HopReply(RelayConnectOk())
    early = client.core.take_pending()
    assert client.session.receive(early) == [DataReceived(b"220 banner\r\n", 12 + DATA_OVERHEAD)]


def test_reply_with_a_bad_payload_is_a_protocol_error() -> None:
    hop = Hop("hop1", seed=1)
    client = ClientCircuitCore()
    wire = client.start_hop(hop.node_id, hop.record.onion_key, TARGET)
    state, _ = responder_read(
        bytes(hop.identity.onion.current), prologue_for(hop.node_id), wire[2:]
    )
    reply, _ = responder_write(state, b"\x07junk")  # a hop that answers nonsense
    with pytest.raises(ProtocolError):
        client.receive_reply(prefix(reply))
    assert client.state is CircuitState.FAILED


# -- a service's join: the client's bytes may follow the access point's reply at once ----------


def _join_reply(command: RelayConnect) -> tuple[Client, bytes, object]:
    hops = make_hops(1)
    client = connect(hops)
    extend(client, hops[0].record, command)
    ap = hops[0]
    wire, bridge = ap.core.accept_bridge(ap.record.encode(), MAX_QUEUED)  # the access point's reply, then a bridge
    return client, wire, bridge


def test_a_join_keeps_the_bytes_that_follow_the_access_points_reply_in_the_same_read() -> None:
    client, wire, bridge = _join_reply(RelayConnect(Proto.SERVICE, SERVICE_JOIN, node_id=b"\x01" * 20))
    follow = bytes(bridge.toward_client(bytearray(b"the client's handshake"), queued=0))  # type: ignore[attr-defined]
    reply, error = client.core.receive(wire + follow, False)
    assert reply is not None and error is None and client.core.state is CircuitState.IDLE
    more = bytes(bridge.toward_client(bytearray(b", then more"), queued=0))  # type: ignore[attr-defined]
    assert client.core.receive(more, False) == (None, None)  # before the service's consumer is attached
    assert client.core.take_early() == (b"the client's handshake, then more", False)


def test_bytes_after_an_extend_reply_are_still_a_protocol_error() -> None:
    client, wire, bridge = _join_reply(RelayConnect(Proto.PEER, node_id=make_hops(2)[1].node_id))
    follow = bytes(bridge.toward_client(bytearray(b"nobody asked"), queued=0))  # type: ignore[attr-defined]
    with pytest.raises(GnetError, match="bytes after a bridge's reply"):
        client.core.receive(wire + follow, False)
