"""A whole circuit in memory: ClientCircuitCore and three RelayHopCores, no sockets.

`Hop` below is a synchronous copy of what the asyncio shell
(relay/relay.py, `RelayHop`) does around a `RelayHopCore`:
- before the decision, bytes from upstream go to `core.receive()`;
- `accept_bridge()` sends the reply up, then every chunk from upstream gets the
  forward keystream XORed in and goes down, and every chunk from downstream
  gets the backward keystream and goes up (bytes buffered during the decision
  are passed on with `take_pending()`);
- `accept_endpoint()` sends the reply up and feeds later bytes to the
  FrameSession (errors are kept, as the pump does).
Everything a hop receives and sends is logged, so tests can check what a
relay can see.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

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
    SessionEvent,
)
from globalnet.errors import ErrorKind, GnetError, ProtocolError
from globalnet.identity import Identity, OnionKeys, verify_node_record
from globalnet.relay.hop import MAX_PENDING, BridgeKeys, ConnectRequested, HopState, RelayHopCore
from globalnet.wire.commands import (
    Proto,
    RelayConnect,
    RelayConnectFail,
    RelayConnectOk,
    prologue_for,
)
from globalnet.wire.framing import prefix
from globalnet.wire.records import NodeRecord

NOW = 1_700_000_000
TARGET = RelayConnect(Proto.TCP, "secret-target.example", 8443)
#: 4 KiB that is easy to spot: no 16-byte window of it should be visible to a relay.
PAYLOAD = b"".join(b"<plaintext%05d>" % i for i in range(256))
REPLY = b"".join(b"[answer-%06d]\n" % i for i in range(256))[:4096]
assert len(PAYLOAD) == len(REPLY) == 4096


@dataclass
class Hop:
    """One relay's hop stream, moved by hand (see the module docstring)."""

    name: str
    seed: int
    onion_keys: list[bytes] | None = None  # what the core accepts; default: the record's key
    node_id_override: bytes | None = None
    up: Callable[[bytes], None] = lambda data: None
    down: Hop | None = None
    keys: BridgeKeys | None = None
    session: FrameSession | None = None
    requests: list[RelayConnect] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)
    error: GnetError | None = None
    log: list[tuple[str, bytes]] = field(default_factory=list)
    tamper_forward: Callable[[bytearray], None] = lambda buf: None
    tamper_backward: Callable[[bytearray], None] = lambda buf: None

    def __post_init__(self) -> None:
        onion = nacl.public.PrivateKey(bytes([self.seed]) * 32)
        self.identity = Identity(
            nacl.signing.SigningKey(bytes([self.seed + 100]) * 32), OnionKeys(onion, NOW)
        )
        self.identity.onion.current = onion
        self.record: NodeRecord = self.identity.make_record(
            ((f"192.0.2.{self.seed}", 4433),), now=NOW
        )
        keys = (
            self.onion_keys if self.onion_keys is not None else self.identity.onion.candidates(NOW)
        )
        self.core = RelayHopCore(keys, self.node_id_override or self.identity.node_id)

    @property
    def node_id(self) -> bytes:
        return self.identity.node_id

    # RelayHop.stream_data
    def from_upstream(self, data: bytes) -> None:
        self.log.append(("in-up", data))
        if self.keys is not None:
            buf = bytearray(data)
            self.tamper_forward(buf)
            self.keys.forward.xor_into(buf)
            assert self.down is not None
            self._send_down(bytes(buf))
            return
        if self.session is not None:
            try:
                self.events += self.session.receive(data)
            except GnetError as exc:
                self.error = exc
            return
        request = self.core.receive(data)
        if request is not None:
            assert isinstance(request, ConnectRequested)
            self.requests.append(request.command)

    # RelayHop.from_downstream
    def from_downstream(self, data: bytes) -> None:
        self.log.append(("in-down", data))
        assert self.keys is not None
        buf = bytearray(data)
        self.tamper_backward(buf)
        self.keys.backward.xor_into(buf)
        self.send_up(bytes(buf))

    def send_up(self, data: bytes) -> None:
        self.log.append(("out-up", data))
        self.up(data)

    def _send_down(self, data: bytes) -> None:
        self.log.append(("out-down", data))
        assert self.down is not None
        self.down.from_upstream(data)

    # RelayHop._bridge
    def accept_bridge(self, nxt: Hop) -> None:
        self.down = nxt
        nxt.up = self.from_downstream
        wire, self.keys = self.core.accept_bridge(nxt.record.encode())
        self.send_up(wire)
        pending = self.core.take_pending()
        if pending:
            self.from_upstream(pending)

    # RelayHop._start_endpoint
    def accept_endpoint(self) -> None:
        wire, self.session = self.core.accept_endpoint()
        self.send_up(wire)
        pending = self.core.take_pending()
        if pending:
            self.events += self.session.receive(pending)

    def refuse(self, kind: ErrorKind, reason: str) -> None:
        self.send_up(self.core.refuse(kind, reason))

    def seen(self, direction: str) -> bytes:
        return b"".join(d for what, d in self.log if what == direction)


@dataclass
class Client:
    core: ClientCircuitCore
    first: Hop
    inbox: list[bytes]

    def send(self, wire: bytes) -> None:
        """Wrap frames in every forward layer and hand them to hop 1."""
        self.first.from_upstream(self.core.wrap(wire))

    def take(self) -> bytes:
        data = b"".join(self.inbox)
        self.inbox.clear()
        return data

    def receive(self) -> list[SessionEvent]:
        assert self.core.session is not None
        return self.core.session.receive(self.core.unwrap(self.take()))

    @property
    def session(self) -> FrameSession:
        assert self.core.session is not None
        return self.core.session


def make_hops(n: int = 3) -> list[Hop]:
    return [Hop(f"hop{i + 1}", seed=i + 1) for i in range(n)]


def connect(hops: list[Hop]) -> Client:
    client = Client(ClientCircuitCore(), hops[0], [])
    hops[0].up = client.inbox.append
    return client


def extend(client: Client, record: NodeRecord, command: RelayConnect) -> None:
    client.first.from_upstream(client.core.start_hop(record.node_id, record.onion_key, command))


def build(hops: list[Hop], final: RelayConnect = TARGET) -> Client:
    """Build client -> hops[0] -> ... -> hops[-1] -> final, checking each step."""
    client = connect(hops)
    record = hops[0].record  # hop 1's record comes with the link
    for i, hop in enumerate(hops):
        last = i == len(hops) - 1
        command = final if last else RelayConnect(Proto.PEER, node_id=hops[i + 1].node_id)
        extend(client, record, command)
        assert hop.requests == [command]
        assert hop.core.state is HopState.DECIDING
        if last:
            hop.accept_endpoint()
        else:
            hop.accept_bridge(hops[i + 1])
        reply = client.core.receive_reply(client.take())
        assert reply is not None
        assert isinstance(reply.reply, RelayConnectOk)
        if not last:
            record = verify_node_record(reply.reply.record, now=NOW + 1)
            assert record == hops[i + 1].record
        else:
            assert reply.reply == RelayConnectOk(b"")
    return client


def windows(data: bytes, n: int = 16) -> set[bytes]:
    return {data[i : i + n] for i in range(len(data) - n + 1)}


def leaks(secret: bytes, seen: bytes, n: int = 16) -> bool:
    """True if any n-byte window of `secret` occurs anywhere in `seen`."""
    wanted = windows(secret, n)
    return any(seen[i : i + n] in wanted for i in range(len(seen) - n + 1))


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
        assert hop.keys is not None
        assert client.core.forward[i].position == hop.keys.forward.position
        assert client.core.backward[i].position == hop.keys.backward.position


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
