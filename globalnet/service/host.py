"""Hosting a hidden service: keys on disk, access points, descriptor, sessions.

The service keeps registration circuits to a few access points (3 by
default, fewer on a small network, said in the log), each under a
registration key and proof made for that access point alone, publishes an
encrypted descriptor naming them (signed by this period's blinded key,
through a circuit like every DHT request of ours), republishes when an
access point or the suggested proof-of-work effort changes and before the
descriptor expires, and replaces an access point that dies. Rendezvous
requests queue by effort (service/pow.py) and are joined highest first. For
each rendezvous request it builds a fresh circuit to that access point, and
the client's end-to-end handshake arrives through it: the service answers it
exactly as a relay answers a hop (RelayHop, with the service's key instead of
an onion key), then connects the session to its target.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nacl.signing
import structlog

from ..endpoint.session import EndReceived, FrameSession, RequestFrameReceived
from ..errors import ErrorKind, GnetError
from ..identity import Identity, load_or_create_identity
from ..policy.exit_policy import ExitPolicy
from ..policy.exit_rule import ExitRule
from ..relay.server import RelayHop
from ..relay.udp_exit import UdpExit, UdpSockets
from ..storage.atomic import write_atomic
from ..wire.commands import SERVICE_JOIN, SERVICE_REGISTER, Proto, RelayConnect
from ..wire.framing import FrameType
from ..wire.pathspec import HopId, HopRandom
from ..wire.records import short_id
from .access_point import RegisterBody, proof_hash
from .address import encode_address, service_id, service_onion_key
from .client_auth import load_authorized_clients
from .descriptor import DESCRIPTOR_LIFETIME, PERIOD, AccessPointEntry, Descriptor, build_descriptor, current_period
from .node_api import ServiceHostNode
from .pow import EffortController, EffortQueue
from .settings import ServiceConfig

if TYPE_CHECKING:
    from ..circuit.builder import ClientCircuit

log = structlog.get_logger("globalnet.service")

ACCESS_POINTS = 3
REGISTER_TIMEOUT = 15.0
REPUBLISH_BEFORE = 1800  # seconds before the descriptor expires
MAX_SESSIONS = 256
MAX_JOINING = 8  # rendezvous joined at once; the rest wait in the effort queue
QUEUE_LIMIT = 128
QUEUE_WAIT = 8.0  # an access point holds a client this long
EFFORT_INTERVAL = 30.0  # how often the suggested effort is reconsidered
OTHER_HOPS = 2  # random relays before an access point on our circuits


@dataclass
class _ServiceKeys:
    """Stands where RelayHop expects the relay's identity: the service's key answers."""

    node_id: bytes
    onion_private: bytes

    @property
    def onion(self) -> _ServiceKeys:
        return self

    def candidates(self, now: float) -> list[bytes]:
        return [self.onion_private]


@dataclass
class _SessionContext:
    """What a RelayHop needs from its relay, for the service's end of a session."""

    identity: _ServiceKeys
    spawn: Any
    exit_policy: ExitPolicy
    target: tuple[str, int]
    setup_timeout: float = 10.0
    hops: set[Any] = field(default_factory=set)
    bytes_relayed: int = 0
    circuits_served: int = 0
    endpoints: dict[Any, Any] = field(default_factory=dict)
    access_point: None = None
    links: None = None
    udp: bool = False  # the target is UDP (NAME=udp:HOST:PORT)
    udp_idle_timeout: float = 120.0


class ServiceHop(RelayHop):
    """The service's end of one client session: its default target, or an allowed one."""

    relay: _SessionContext  # type: ignore[assignment]

    async def _open_exit(self, command: RelayConnect) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ctx = self.relay
        if ctx.udp:
            raise GnetError(ErrorKind.EXIT_POLICY, "this service's target is UDP: use a UDP tunnel or SOCKS UDP ASSOCIATE")
        if not command.host:
            host, port = ctx.target
            try:
                return await asyncio.open_connection(host, port)
            except OSError as exc:
                raise GnetError(ErrorKind.CONNECTION_REFUSED, f"the service's target is down ({exc.strerror})") from None
        if not ctx.exit_policy.enabled:
            raise GnetError(ErrorKind.EXIT_POLICY, "this service does not allow client-chosen targets")
        return await super()._open_exit(command)

    async def _open_udp_exit(self, command: RelayConnect) -> None:
        """A UDP session goes to the service's own UDP target, and nowhere else."""
        ctx = self.relay
        if not ctx.udp:
            raise GnetError(ErrorKind.EXIT_POLICY, "this service's target is TCP, not UDP")
        if command.host:
            raise GnetError(ErrorKind.EXIT_POLICY, "a UDP service takes datagrams for its own target only")
        host, port = ctx.target
        try:  # the owner's own target (often `localhost`): resolved here, once, like a TCP target
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise GnetError(ErrorKind.CONNECTION_REFUSED, f"the service's target does not resolve ({exc})") from None
        address = ipaddress.ip_address(infos[0][4][0])
        only_target = ExitPolicy(True, [ExitRule(ipaddress.ip_network(address), frozenset({port}))])
        sockets = await UdpSockets.open()
        if self.closed:
            sockets.close()
            return
        self._start_endpoint_of(
            lambda session, hop: UdpExit(session, hop, only_target, (str(address), port), ctx.udp_idle_timeout, sockets)
        )


class CircuitAsStream:
    """Lets a RelayHop answer through a circuit (the service's side of a rendezvous)."""

    def __init__(self, circuit: ClientCircuit) -> None:
        self.circuit = circuit
        self.link = circuit.stream.link
        self.handler: Any = None
        self.finished_receiving = False

    def send(self, data: bytes | bytearray, end: bool = False) -> None:
        self.circuit.send_wire(bytes(data), end)

    def reset(self, kind: ErrorKind) -> None:
        self.circuit.reset(kind)

    def buffered(self) -> int:
        return self.circuit.stream.buffered()

    # the circuit's consumer
    def feed(self, data: bytes | bytearray, end: bool) -> None:
        self.finished_receiving = self.finished_receiving or end
        self.handler.stream_data(bytes(data), end)

    def circuit_reset(self, kind: ErrorKind) -> None:
        self.handler.stream_reset(kind)


@dataclass
class _Intro:
    """Our end of a registration circuit to one access point."""

    service: HostedService
    ap: bytes
    circuit: ClientCircuit
    session: FrameSession
    entry: AccessPointEntry
    registered: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    dead: bool = False

    def feed(self, data: bytes | bytearray, end: bool) -> None:
        try:
            for ev in self.session.receive(data):
                if isinstance(ev, RequestFrameReceived) and ev.type is FrameType.SERVICE_REGISTERED:
                    if not self.registered.done():
                        self.registered.set_result(None)
                elif isinstance(ev, RequestFrameReceived) and ev.type is FrameType.RENZV_REQUEST and len(ev.body) == 24:
                    self.service.rendezvous_requested(self.ap, ev.body[:20], int.from_bytes(ev.body[20:], "big"))
                elif isinstance(ev, EndReceived):
                    pass
        except GnetError as exc:
            self.circuit.reset(exc.kind)
            self.circuit_reset(exc.kind)
            return
        if end:
            self.circuit_reset(ErrorKind.LINK_LOST)

    def circuit_reset(self, kind: ErrorKind) -> None:
        if not self.dead:
            self.dead = True
            self.service.intro_lost(self)
        if not self.registered.done():
            self.registered.set_exception(GnetError(kind, "registration circuit closed"))
            self.registered.exception()


class HostedService:
    def __init__(
        self, node: ServiceHostNode, config: ServiceConfig, access_points: int = ACCESS_POINTS, home: Path | None = None
    ) -> None:
        self.node = node
        self.config = config
        self.name = config.name
        # `home`: where the key lives when it is not an operator's service (a site mirror's identity)
        self.dir = home if home is not None else Path(node.config.data_dir) / "services" / config.name
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.key: Identity = load_or_create_identity(self.dir / "private.key")
        self.public = self.key.public_key
        self.address = encode_address(self.public)
        self.id = service_id(self.public)
        hostname = self.dir / "hostname"
        if not hostname.exists() or hostname.read_text().strip() != self.address:
            write_atomic(hostname, (self.address + "\n").encode())
        self.clients: list[bytes] | None = None
        if config.auth:  # a bad key file is an error at start, not a silent lock-out
            auth_dir = self.dir / "authorized_clients"
            auth_dir.mkdir(exist_ok=True, mode=0o700)
            self.clients = load_authorized_clients(auth_dir)
        self.wanted = access_points
        self.pow_seed = os.urandom(32)
        now = time.monotonic()
        self.requests: EffortQueue[tuple[bytes, bytes]] = EffortQueue(QUEUE_LIMIT, QUEUE_WAIT)
        self.effort = EffortController(EFFORT_INTERVAL, QUEUE_LIMIT, now)
        self.joining = 0
        self.joined = 0  # rendezvous joined since start (tests, statistics)
        self._said = ""
        self._goal = access_points
        self.intros: dict[bytes, _Intro] = {}
        self.changed = asyncio.Event()
        self.published: Descriptor | None = None
        self.sessions = 0
        self.publish_count = 0
        keys = _ServiceKeys(self.id, service_onion_key(bytes(self.key.signing_key)))
        allow = ExitPolicy(True, config.allow) if config.allow else ExitPolicy(False)
        self.context = _SessionContext(keys, node.spawn, allow, config.target, udp=config.udp)

    # -- the service's life --------------------------------------------------
    async def run(self) -> None:
        log.info(
            "hidden service", name=self.name, file=str(self.dir / "hostname"),
            authorized_clients=len(self.clients) if self.clients is not None else "anyone",
        )
        if self.clients == []:
            log.warning(
                "client authorization is on and no client is authorized yet: put one public key per file "
                "(gclient --gen-client-key prints one) in the service's authorized_clients/",
                name=self.name,
            )
        self.node.spawn(self._effort_loop(), "service effort")
        while True:
            self.reload_clients()
            await self._fill_access_points()
            if self._needs_publish():
                await self._publish()
            self.changed.clear()
            try:
                async with asyncio.timeout(1.0 if len(self.intros) < self._goal or self.published is None else 60.0):
                    await self.changed.wait()
            except TimeoutError:
                pass

    def reload_clients(self) -> None:
        """Re-read authorized_clients/: a removed file revokes that client at the next descriptor,
        and new registrations make the proofs it may have seen worthless."""
        if self.clients is None:
            return
        try:
            clients = load_authorized_clients(self.dir / "authorized_clients")
        except GnetError as exc:
            log.warning("authorized clients unchanged", service=self.name, reason=exc.detail)
            return
        if clients != self.clients:
            revoked = bool(set(self.clients) - set(clients))
            self.clients = clients
            log.info("authorized clients changed", service=self.name, clients=len(clients))
            self.published = None  # republish now
            if revoked:
                for intro in list(self.intros.values()):
                    intro.circuit.reset(ErrorKind.CLOSED)
                    intro.circuit_reset(ErrorKind.CLOSED)

    def access_point_goal(self) -> int:
        """How many access points this network allows. Our circuits never pass through our
        own access points, so each one we take is a relay fewer for our other circuits:
        keep 3 relays (a full DHT circuit) besides them, and at least OTHER_HOPS + 1 in all."""
        known = len(self.node.peers.relays())
        if known < OTHER_HOPS + 1:
            goal = 0
        else:
            goal = max(1, min(self.wanted, known - 3))
        if goal < self.wanted:
            if goal == 0:
                said = (
                    f"waiting for relays: this node knows {known}, a hidden service needs at least "
                    f"{OTHER_HOPS + 1} ({OTHER_HOPS + 1 - known} more) to publish"
                )
            else:
                said = (
                    f"small network: {goal} access point(s) instead of {self.wanted}; "
                    f"{self.wanted + 3 - known} more relays would give all {self.wanted}"
                )
            if said != self._said:
                log.info(said, service=self.name, relays_known=known)
                self._said = said
        return goal

    async def _fill_access_points(self) -> None:
        tries = 0
        goal = self._goal = self.access_point_goal()
        while len(self.intros) < goal and tries < 2 * goal:
            tries += 1
            # never a relay we are linked to (it would see our address and serve us)
            linked = set(self.node.links.links)
            candidates = [r for r in self.node.peers.relays() if r.node_id not in self.intros and r.node_id not in linked]
            if not candidates:
                said = f"waiting for an access point: all {len(self.node.peers.relays())} known relays are our link peers or access points already"
                if said != self._said:
                    log.info(said, service=self.name)
                    self._said = said
                return
            ap = random.choice(candidates).node_id
            try:
                await self._register(ap)
                self.changed.set()
            except (GnetError, TimeoutError) as exc:
                log.debug("access point failed", service=self.name, ap=short_id(ap), reason=str(exc))
                self.node.peers.failed(ap)

    async def _register(self, ap: bytes) -> None:
        circuit = await self.node.open_circuit(
            (HopRandom(), HopRandom(), HopId(ap)), RelayConnect(Proto.SERVICE, SERVICE_REGISTER), "service",
            avoid=self._access_points_and(ap), vanguards=True,
        )
        assert circuit.core.session is not None
        registration_key = nacl.signing.SigningKey.generate()  # for this access point only
        proof = os.urandom(32)
        registration_public = bytes(registration_key.verify_key)
        entry = AccessPointEntry(ap, service_id(registration_public), proof)
        intro = _Intro(self, ap, circuit, circuit.core.session, entry)
        circuit.attach(intro)
        body = RegisterBody(registration_public, int(time.time()), proof_hash(proof), self.pow_seed)
        body = RegisterBody(body.key, body.timestamp, body.proof_hash, body.pow_seed, registration_key.sign(body.signed_message(ap)).signature)
        circuit.send_wire(intro.session.send_frame(FrameType.SERVICE_REGISTER, body.encode()))
        async with asyncio.timeout(REGISTER_TIMEOUT):
            await intro.registered
        self.intros[ap] = intro
        log.debug("access point up", service=self.name, ap=short_id(ap))

    def _access_points_and(self, ap: bytes) -> set[bytes]:
        """Our access points never serve as other hops of our circuits, so none of them
        sees us (the service's node) on a link and also knows it serves us."""
        return set(self.intros) | {ap}

    def intro_lost(self, intro: _Intro) -> None:
        if self.intros.get(intro.ap) is intro:
            del self.intros[intro.ap]
            log.info("access point lost, replacing it", service=self.name, ap=short_id(intro.ap))
            self.changed.set()

    def _needs_publish(self) -> bool:
        if not self.intros:
            return False
        if self.published is None:
            return True
        if set(self.published.access_points) != {i.entry for i in self.intros.values()}:
            return True
        if self.published.pow_effort != self.effort.effort:
            return True
        return self.published.expires - time.time() < REPUBLISH_BEFORE or self.published.period != current_period()

    async def _publish(self, now: float | None = None) -> None:
        """Publish this period's descriptor (and the next period's near the boundary).
        `now` lets a test publish for another period."""
        now = time.time() if now is None else now
        period = current_period(now)
        periods = [period]
        if (period + 1) * PERIOD - now < DESCRIPTOR_LIFETIME:
            periods.append(period + 1)  # near the boundary, clients may already ask for the next one
        entries = tuple(i.entry for i in self.intros.values())
        for p in periods:
            desc = Descriptor(p, int(now * 1000), int(now) + DESCRIPTOR_LIFETIME, entries, self.pow_seed, self.effort.effort, self.clients is not None)
            value = build_descriptor(bytes(self.key.signing_key), self.public, desc, self.clients)
            try:
                stored = await self.node.dht_publish(value.key, value.encode())
            except GnetError as exc:
                log.warning("cannot publish the service descriptor", service=self.name, reason=str(exc))
                return
            if p == period:
                self.published = desc
                self.publish_count += 1
                log.info(
                    "service descriptor published", service=self.name, access_points=len(desc.access_points),
                    stored_on=stored, suggested_effort=desc.pow_effort,
                )
                self.node.service_published(self.name)  # bootstrap progress

    # -- sessions --------------------------------------------------------------
    def rendezvous_requested(self, ap: bytes, cookie: bytes, effort: int) -> None:
        """Queue a request by effort; join the best ones while we have capacity."""
        self.requests.push((ap, cookie), effort, time.monotonic())
        self._start_joins()

    def _start_joins(self) -> None:
        while self.joining < MAX_JOINING and self.sessions < MAX_SESSIONS:
            request = self.requests.pop(time.monotonic())
            if request is None:
                return
            self.joining += 1
            self.sessions += 1
            self.node.spawn(self._join(*request), "service session")

    async def _effort_loop(self) -> None:
        """Raise the suggested effort under load and lower it when idle (see pow.EffortController)."""
        while True:
            await asyncio.sleep(1.0)
            self.effort.observe(len(self.requests), self.requests.dropped)
            self.requests.dropped = 0
            changed = self.effort.handle_timer(time.monotonic())
            if changed is not None:
                log.info("suggested proof-of-work effort changed", service=self.name, effort=changed)
                self.changed.set()

    async def _join(self, ap: bytes, cookie: bytes) -> None:
        """Join one rendezvous (counted in `joining` until the circuit is up), then serve it."""
        try:
            try:
                circuit = await self.node.open_circuit(
                    (HopRandom(), HopRandom(), HopId(ap)), RelayConnect(Proto.SERVICE, SERVICE_JOIN, node_id=cookie), "service",
                    avoid=self._access_points_and(ap), vanguards=True,
                )
            finally:
                self.joining -= 1
        except GnetError as exc:
            self.sessions -= 1
            self._start_joins()
            log.debug("cannot join a rendezvous", service=self.name, ap=short_id(ap), reason=str(exc))
            return
        except BaseException:
            self.sessions -= 1
            raise
        self.joined += 1
        self._start_joins()
        message_endpoint = self.node.relay.endpoints.get(Proto.MESSAGE)
        if message_endpoint is not None:  # console `send <address>.gnet text` reaches this node's consoles
            self.context.endpoints[Proto.MESSAGE] = message_endpoint
        stream = CircuitAsStream(circuit)
        hop = ServiceHop(self.context, stream)  # type: ignore[arg-type]
        circuit.attach(stream)
        try:
            while not hop.closed and not circuit.closed:
                await asyncio.sleep(1.0)
        finally:
            self.sessions -= 1
            self.node.forget_circuit(circuit)
            self._start_joins()

    def statistics(self) -> dict[str, object]:
        return {
            "name": self.name,
            "address": self.address,
            "access_points": [short_id(a) for a in self.intros],
            "sessions": self.sessions,
            "suggested_effort": self.effort.effort,
            "queued_requests": len(self.requests),
        }
