"""The relay side over real links: answer hops, bridge them, exit to TCP.

Asyncio shell around `RelayHopCore`. Each incoming hop stream gets a `RelayHop`.
After the handshake the hop either bridges (XOR + forward, one call per
chunk, nothing parsed) or, at the end of a circuit, opens the TCP target and
hands both ends to a `StreamPump`. The rules live in the sans-IO cores
(`relay/hop.py`, `relay/bridge.py`); this module only moves bytes and timers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

import structlog

from ..endpoint.congestion import MAX_WINDOW
from ..endpoint.datagram_flow import DEFAULT_IDLE_TIMEOUT, DatagramCounters
from ..endpoint.pump import StreamPump
from ..endpoint.session import RELAY_SLACK, FrameSession
from ..errors import ErrorKind, GnetError
from ..identity import Identity
from ..link.hop_stream import HopStream
from ..link.manager import LinkManager
from ..policy.exit_policy import ExitPolicy
from ..wire.commands import Proto, RelayConnect
from .bridge import BridgeCore
from .budget import DEFAULT_BUDGET, PRESSURE_QUEUE, RelayBudget
from .exit_connect import open_exit_connection
from .hop import HopState, RelayHopCore
from .udp_exit import UdpExit, UdpSockets, check_udp_target

log = structlog.get_logger("globalnet.relay")

CONNECT_TIMEOUT = 10.0
#: A hop stream must deliver its whole first handshake message within this.
SETUP_TIMEOUT = 10.0
#: A relay resets a stream that queues more than this: the protocol's largest
#: window, and control frames (a well-behaved end never has more in flight).
MAX_QUEUED = MAX_WINDOW + RELAY_SLACK  # = budget.PER_CIRCUIT
MAX_HOPS = 8192

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class Endpoint(Protocol):
    """What the last hop hands a circuit's bytes to: a TCP pump, a DHT agent, ..."""

    def feed(self, data: bytes | bytearray, end: bool) -> None: ...

    def circuit_reset(self, kind: ErrorKind) -> None: ...


class AccessPointRole(Protocol):
    """Serves RELAY_CONNECT service (register / rendezvous / join); see service/access_point.py."""

    #: How long the relay lets one of its commands run (a rendezvous waits for the service).
    connect_timeout: float

    async def serve(self, hop: RelayHop, command: RelayConnect) -> None: ...


#: UDP circuits an exit carries at once (each holds two sockets).
MAX_UDP_EXITS = 512

#: Makes the endpoint for a RELAY_CONNECT proto other than tcp/peer (the node registers them).
EndpointFactory = Callable[[FrameSession, "RelayHop"], Endpoint]


class RelayService:
    def __init__(self, identity: Identity, links: LinkManager, exit_policy: ExitPolicy, spawn: Spawn) -> None:
        self.identity = identity
        self.links = links
        self.exit_policy = exit_policy
        self.spawn = spawn
        self.hops: set[RelayHop] = set()
        self.bytes_relayed = 0
        self.circuits_served = 0
        self.setup_timeout = SETUP_TIMEOUT
        self.endpoints: dict[Proto, EndpointFactory] = {}
        self.access_point: AccessPointRole | None = None
        #: UDP exit rules (-exit-allow-udp); off unless rules are given.
        self.udp_policy = ExitPolicy(False)
        self.udp_idle_timeout = DEFAULT_IDLE_TIMEOUT
        self.udp_exits: set[UdpExit] = set()
        self.udp_totals = DatagramCounters()  # datagrams this exit carried and dropped, ever
        #: What this relay may hold for all circuits (-relay-budget); see relay/budget.py.
        self.budget = RelayBudget(DEFAULT_BUDGET)
        self._budget_timer: asyncio.TimerHandle | None = None
        links.on_stream = self.accept

    def accept(self, stream: HopStream) -> None:
        if len(self.hops) >= MAX_HOPS:
            stream.reset(ErrorKind.RESOURCE_LIMIT)
            return
        self.hops.add(RelayHop(self, stream))
        if self._budget_timer is None:
            self._arm_budget()

    # -- the memory budget's timer (runs while there are hops) ----------------
    def _arm_budget(self) -> None:
        loop = asyncio.get_running_loop()
        when = max(self.budget.get_timer(), loop.time())
        self._budget_timer = loop.call_at(when, self._check_budget)

    def _check_budget(self) -> None:
        self._budget_timer = None
        held = sum(link.send_buffer_size_total() for link in self.links.all_links)
        self._shed(held, self.budget.handle_timer(asyncio.get_running_loop().time(), held, self._holdings))
        if self.hops:
            self._arm_budget()

    def pressed(self, size: int) -> None:
        """A bridge forwarded onto a backed-up stream: check early now and then."""
        if self.budget.pressed(size):
            held = sum(link.send_buffer_size_total() for link in self.links.all_links)
            self._shed(held, self.budget.check(held, self._holdings))
            if held > self.budget.calm and self._budget_timer is not None:  # no longer calm: the fast timer
                self._budget_timer.cancel()
                self._budget_timer = None
                self.budget.schedule(asyncio.get_running_loop().time(), held)
                self._arm_budget()

    def _shed(self, held: int, victims: Sequence[object]) -> None:
        for hop in victims:
            assert isinstance(hop, RelayHop)
            log.info("circuit reset: relay memory budget", held=held, budget=self.budget.total)
            hop.close(ErrorKind.RESOURCE_LIMIT, source="relay memory budget")

    def _holdings(self) -> list[tuple[int, RelayHop]]:
        return [(hop.held(), hop) for hop in self.hops]

    def statistics(self) -> dict[str, int]:
        bridges = sum(1 for h in self.hops if h.core.state is HopState.BRIDGE)
        exits = sum(1 for h in self.hops if h.core.state is HopState.ENDPOINT)
        relayed = self.bytes_relayed + sum(h.bridge.bytes_relayed for h in self.hops if h.bridge is not None)
        return {
            "bridges": bridges,
            "exits": exits,
            "udp_exits": len(self.udp_exits),
            "bytes_relayed": relayed,
            "circuits_served": self.circuits_served,
            "budget_peak": self.budget.peak,
            "budget_shed": self.budget.shed,
        }


class _Downstream:
    """Handler of a bridge's stream to the next hop: XOR backward, send up."""

    __slots__ = ("hop",)

    def __init__(self, hop: RelayHop) -> None:
        self.hop = hop

    def stream_data(self, data: bytes, end: bool) -> None:
        self.hop.from_downstream(data, end)

    def stream_reset(self, kind: ErrorKind) -> None:
        self.hop.close(kind, source="downstream")


class RelayHop:
    """Handler of one incoming hop stream (the side toward the client).

    Only moves bytes: the handshake and its deadline are `RelayHopCore`'s, the
    bridge's XOR and queue cap are `BridgeCore`'s."""

    def __init__(self, relay: RelayService, upstream: HopStream) -> None:
        self.relay = relay
        self.upstream = upstream
        loop = asyncio.get_running_loop()
        self.core = RelayHopCore(
            relay.identity.onion.candidates(time.time()), relay.identity.node_id, loop.time(), relay.setup_timeout
        )
        self.downstream: HopStream | None = None
        self.bridge: BridgeCore | None = None
        self.partner: RelayHop | None = None  # a rendezvous splice: the other circuit's hop
        self.endpoint: Endpoint | None = None
        self.task: asyncio.Future[None] | None = None
        self.closed = False
        upstream.handler = self
        when = self.core.get_timer()
        self._timer: asyncio.TimerHandle | None = loop.call_at(when, self._on_timer) if when is not None else None

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.core.handle_timer(asyncio.get_running_loop().time())
        except GnetError as exc:
            self.close(exc.kind, source=exc.detail or "set-up deadline")

    # -- StreamHandler (upstream) ------------------------------------------
    def stream_data(self, data: bytes, end: bool) -> None:
        bridge = self.bridge
        if bridge is not None:  # the hot path
            down = self.downstream
            queued = down.buffered() if down is not None else 0
            try:
                buf = bridge.toward_exit(data, queued)
            except GnetError as exc:
                self.close(exc.kind, source=exc.detail or "bridge")
                return
            assert down is not None
            down.send(buf, end)
            if queued > PRESSURE_QUEUE:
                self.relay.pressed(len(buf))
            if end and down.finished_receiving:
                self._forget()
            return
        if self.endpoint is not None:
            self.endpoint.feed(data, end)
            if end:
                self._forget()
            return
        try:
            request = self.core.receive(data)
        except GnetError as exc:
            log.debug("hop set-up failed", link=self.upstream.link.label(), reason=str(exc))
            self.close(exc.kind, source="handshake")
            return
        if request is not None:
            self._cancel_timer()
            self.relay.spawn(self._serve(request.command), "relay hop")
        if end:
            self.close(ErrorKind.PROTOCOL, source="client ended the stream during set-up")

    def stream_reset(self, kind: ErrorKind) -> None:
        self.close(kind, source="upstream")

    def from_downstream(self, data: bytes, end: bool) -> None:
        bridge = self.bridge
        if bridge is None:
            return
        up = self.upstream
        queued = up.buffered()
        try:
            buf = bridge.toward_client(data, queued)
        except GnetError as exc:
            self.close(exc.kind, source=exc.detail or "bridge")
            return
        up.send(buf, end)
        if queued > PRESSURE_QUEUE:
            self.relay.pressed(len(buf))
        if end and up.finished_receiving:
            self._forget()

    def close(self, kind: ErrorKind, source: str) -> None:
        """Abnormal end: reset both sides, mirroring the reset across the bridge."""
        if self.closed:
            return
        self.closed = True
        log.debug("hop closed", kind=kind.name, source=source)
        self.upstream.reset(kind)
        if self.downstream is not None:
            self.downstream.reset(kind)
        if self.endpoint is not None:
            self.endpoint.circuit_reset(kind)
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.partner is not None:
            self.partner.close(kind, source="rendezvous partner")
        self._cancel_timer()
        self._forget()

    def held(self) -> int:
        """Bytes queued for this circuit here (both directions), for the relay's budget."""
        down = self.downstream
        return self.upstream.buffered() + (down.buffered() if down is not None else 0)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _forget(self) -> None:
        if self in self.relay.hops:
            self.relay.hops.discard(self)
            if self.bridge is not None:  # counted once, when the hop goes (nothing per chunk)
                self.relay.bytes_relayed += self.bridge.bytes_relayed

    # -- CircuitEnd for the exit's pump -------------------------------------
    def send_wire(self, data: bytes, end: bool = False) -> None:
        self.upstream.send(data, end)

    def reset(self, kind: ErrorKind) -> None:
        self.close(kind, source="endpoint")

    # -- acting on RELAY_CONNECT: one handler per proto -------------------
    async def _serve(self, command: RelayConnect) -> None:
        self.task = asyncio.current_task()
        try:
            async with asyncio.timeout(self._connect_timeout(command.proto)):
                pump = await self._handler_for(command.proto)(self, command)
        except TimeoutError:
            self._refuse(GnetError(ErrorKind.TIMEOUT, "the next hop or target did not answer in time"))
            return
        except GnetError as exc:
            self._refuse(exc)
            return
        if pump is not None:
            await pump.run()
            self._forget()

    def _connect_timeout(self, proto: Proto) -> float:
        access_point = self.relay.access_point
        return access_point.connect_timeout if proto is Proto.SERVICE and access_point is not None else CONNECT_TIMEOUT

    def _handler_for(self, proto: Proto) -> _ProtoHandler:
        handler = _PROTO_HANDLERS.get(proto)
        if handler is not None:
            return handler
        if proto in self.relay.endpoints:
            return RelayHop._serve_registered
        return RelayHop._serve_unsupported

    async def _serve_peer(self, command: RelayConnect) -> StreamPump | None:
        await self._bridge(command)
        return None

    async def _serve_tcp(self, command: RelayConnect) -> StreamPump | None:
        reader, writer = await self._open_exit(command)
        return self._start_endpoint(reader, writer)

    async def _serve_udp(self, command: RelayConnect) -> StreamPump | None:
        await self._open_udp_exit(command)
        return None

    async def _serve_service(self, command: RelayConnect) -> StreamPump | None:
        if self.relay.access_point is None:
            return await self._serve_unsupported(command)
        await self.relay.access_point.serve(self, command)
        return None

    async def _serve_registered(self, command: RelayConnect) -> StreamPump | None:
        self._start_endpoint_of(self.relay.endpoints[command.proto])
        return None

    async def _serve_unsupported(self, command: RelayConnect) -> StreamPump | None:
        raise GnetError(ErrorKind.NOT_SUPPORTED, f"proto {command.proto.name.lower()} is not supported here")

    def _refuse(self, exc: GnetError) -> None:
        if self.closed or self.core.state is not HopState.DECIDING:
            return
        log.debug("refused", kind=exc.kind.name, reason=exc.detail)
        self.upstream.send(self.core.refuse(exc.kind, exc.detail or exc.kind.describe), end=True)
        self._forget()

    async def _bridge(self, command: RelayConnect) -> None:
        links = self.relay.links
        me = self.relay.identity.node_id
        if command.node_id == me:
            raise GnetError(ErrorKind.NO_ROUTE, "asked to extend to itself")
        link = links.links.get(command.node_id) if command.node_id else None
        if link is None or not link.is_ready:
            if not command.host:
                raise GnetError(ErrorKind.NO_ROUTE, f"no link to node {command.node_id.hex() if command.node_id else '?'} and no address")
            link = await links.get_link(command.host, command.port, command.node_id)
        if link.peer_id == me:
            raise GnetError(ErrorKind.NO_ROUTE, "asked to extend to itself")
        if self.closed:
            return
        try:
            down = link.open_stream()
        except GnetError:
            if not command.host:
                raise
            # the link died under us (its close not yet seen): dial afresh, once
            link = await links.get_link(command.host, command.port, command.node_id)
            down = link.open_stream()
        assert link.peer is not None
        down.handler = _Downstream(self)
        self.downstream = down
        wire, self.bridge = self.core.accept_bridge(link.peer.encode(), self.relay.budget.per_circuit)
        self.upstream.send(wire)
        self.relay.circuits_served += 1
        pending = self.core.take_pending()
        if pending:
            self.stream_data(pending, False)

    async def _open_exit(self, command: RelayConnect) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The TCP target (a hidden service's hop overrides this with the service's own target)."""
        return await open_exit_connection(self.relay.exit_policy, command.host, command.port)

    async def _open_udp_exit(self, command: RelayConnect) -> None:
        relay = self.relay
        if not relay.exit_policy.enabled:
            raise GnetError(ErrorKind.EXIT_POLICY, "this node is not an exit")
        check_udp_target(relay.udp_policy, command.host, command.port)
        if len(relay.udp_exits) >= MAX_UDP_EXITS:  # two sockets each: bound the exit's file descriptors
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "this exit carries as many UDP circuits as it allows")
        sockets = await UdpSockets.open()
        if self.closed:
            sockets.close()
            return
        target = (command.host, command.port)

        def make(session: FrameSession, hop: RelayHop) -> UdpExit:
            udp = UdpExit(
                session, hop, relay.udp_policy, target, relay.udp_idle_timeout, sockets, relay.udp_exits.discard,
                totals=relay.udp_totals,
            )
            relay.udp_exits.add(udp)
            return udp

        self._start_endpoint_of(make)

    def splice(self, partner: RelayHop) -> None:
        """Join two circuits that both end here (a rendezvous): each side's bytes lose
        this hop's layer of their circuit and gain this hop's layer of the other one,
        so the two ends speak to each other through us, and we read nothing."""
        assert self.bridge is not None and partner.bridge is not None
        self.partner, partner.partner = partner, self
        self.downstream, partner.downstream = partner.upstream, self.upstream
        self.bridge.splice(partner.bridge.backward)
        partner.bridge.splice(self.bridge.backward)

    def start_endpoint(self, factory: EndpointFactory) -> None:
        self._start_endpoint_of(factory)

    def accept_bridge_alone(self) -> None:
        """RELAY_CONNECT_OK as a bridge with no next hop yet (a rendezvous half)."""
        wire, self.bridge = self.core.accept_bridge(b"", self.relay.budget.per_circuit)
        self.upstream.send(wire)
        self.relay.circuits_served += 1

    def _start_endpoint_of(self, factory: EndpointFactory) -> None:
        wire, session = self.core.accept_endpoint()
        self.upstream.send(wire)
        self.relay.circuits_served += 1
        self.endpoint = factory(session, self)
        pending = self.core.take_pending()
        if pending:
            self.endpoint.feed(pending, False)

    def _start_endpoint(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> StreamPump:
        wire, session = self.core.accept_endpoint()
        self.upstream.send(wire)
        self.relay.circuits_served += 1
        self.endpoint = pump = StreamPump(session, self, reader, writer)
        pending = self.core.take_pending()
        if pending:
            pump.feed(pending, False)
        return pump


_ProtoHandler = Callable[[RelayHop, RelayConnect], Coroutine[Any, Any, StreamPump | None]]
#: What a hop does with each RELAY_CONNECT proto; endpoints registered by the node
#: (`RelayService.endpoints`) come next, anything else is refused.
_PROTO_HANDLERS: dict[Proto, _ProtoHandler] = {
    Proto.PEER: RelayHop._serve_peer,
    Proto.TCP: RelayHop._serve_tcp,
    Proto.UDP: RelayHop._serve_udp,
    Proto.SERVICE: RelayHop._serve_service,
}
