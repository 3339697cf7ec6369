"""A fake network for the sans-IO cores: exact bytes, a fake clock, no sockets.

Cores (`RelayHopCore`, `BridgeCore`, `ClientCircuitCore`, `FrameSession`,
`StreamCore`, `LivenessCore`) are plain classes fed bytes and `now`. Here they
are wired to each other by direct calls: a `Hop` passes what arrives from the
client side to its core and what its core returns to the next hop, logging
every byte, so a test sees exactly what a relay sees. Faults on a wire
(`tamper_forward`, `tamper_backward`) flip bytes on the way into a hop. Time
is a `FakeClock` the test advances; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import nacl.public
import nacl.signing

from globalnet.circuit.core import ClientCircuitCore
from globalnet.endpoint.session import FrameSession, SessionEvent
from globalnet.errors import ErrorKind, GnetError
from globalnet.identity import Identity, OnionKeys, solved_seed, verify_node_record
from globalnet.relay.bridge import BridgeCore
from globalnet.relay.hop import ConnectRequested, HopState, RelayHopCore
from globalnet.relay.server import MAX_QUEUED
from globalnet.wire.commands import Proto, RelayConnect, RelayConnectOk
from globalnet.wire.records import NodeRecord

NOW = 1_700_000_000
TARGET = RelayConnect(Proto.TCP, "secret-target.example", 8443)
#: 4 KiB that is easy to spot: no 16-byte window of it should be visible to a relay.
PAYLOAD = b"".join(b"<plaintext%05d>" % i for i in range(256))
REPLY = b"".join(b"[answer-%06d]\n" % i for i in range(256))[:4096]
assert len(PAYLOAD) == len(REPLY) == 4096




@dataclass
class FakeClock:
    """Time for cores under test: it moves only when the test says so."""

    now: float = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class Hop:
    """One relay's hop: the real `RelayHopCore` and `BridgeCore`, wired to its
    neighbours by direct calls (every byte delivered exactly, in order, logged)."""

    name: str
    seed: int
    onion_keys: list[bytes] | None = None  # what the core accepts; default: the record's key
    node_id_override: bytes | None = None
    up: Callable[[bytes], None] = lambda data: None
    down: Hop | None = None
    bridge: BridgeCore | None = None
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
            nacl.signing.SigningKey(solved_seed(bytes([self.seed + 100]) * 32)), OnionKeys(onion, NOW)
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

    def from_upstream(self, data: bytes) -> None:
        self.log.append(("in-up", data))
        if self.bridge is not None:
            buf = bytearray(data)
            self.tamper_forward(buf)  # a fault on the wire into this hop
            self._send_down(bytes(self.bridge.toward_exit(buf, queued=0)))
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

    def from_downstream(self, data: bytes) -> None:
        self.log.append(("in-down", data))
        assert self.bridge is not None
        buf = bytearray(data)
        self.tamper_backward(buf)
        self.send_up(bytes(self.bridge.toward_client(buf, queued=0)))

    def send_up(self, data: bytes) -> None:
        self.log.append(("out-up", data))
        self.up(data)

    def _send_down(self, data: bytes) -> None:
        self.log.append(("out-down", data))
        assert self.down is not None
        self.down.from_upstream(data)

    def accept_bridge(self, nxt: Hop) -> None:
        self.down = nxt
        nxt.up = self.from_downstream
        wire, self.bridge = self.core.accept_bridge(nxt.record.encode(), MAX_QUEUED)
        self.send_up(wire)
        pending = self.core.take_pending()
        if pending:
            self.from_upstream(pending)

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
