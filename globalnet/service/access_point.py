"""The access-point role every relay can play for hidden services.

Theory of operation.
- A service builds a circuit to us and sends RELAY_CONNECT service `register`;
  we answer OK and stay an endpoint for that circuit. Its first frame is
  SERVICE_REGISTER: the service key, a timestamp and a signature over
  (REGISTER_CONTEXT | our node id | key | timestamp), so only the key's holder
  can register, and a registration cannot be replayed at another access point.
- A client builds its own circuit to us and sends RELAY_CONNECT service
  `renzv` naming the service id (RENZV_CONNECT). We make a random cookie and
  send RENZV_REQUEST(cookie) down the service's registration circuit, and
  hold the client's request open (bounded wait).
- The service builds a fresh circuit to us with RELAY_CONNECT service `join`
  carrying the cookie. We answer OK to both (RENZV_CONNECT_OK to the client)
  and splice the two circuits: from then on we XOR and forward, nothing else.
The client and the service then run their own Noise handshake through the
splice, to a key derived from the service key, so we see only ciphertext; we
never learn where the service or the client is (both came through circuits).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

import structlog

from ..endpoint.session import EndReceived, FrameSession, RequestFrameReceived
from ..errors import ErrorKind, GnetError, ProtocolError
from ..identity import verify_signature
from ..relay.server import RelayHop
from ..wire.buffer import Reader, u64
from ..wire.commands import SERVICE_JOIN, SERVICE_REGISTER, SERVICE_RENDEZVOUS, RelayConnect
from ..wire.framing import FrameType
from ..wire.records import short_id
from .address import service_id

log = structlog.get_logger("globalnet.service")

REGISTER_CONTEXT = b"gnet/1 service register"
MAX_CLOCK_SKEW = 600
RENDEZVOUS_WAIT = 8.0  # inside the relay's 10 s RELAY_CONNECT deadline
MAX_REGISTRATIONS = 1024
MAX_PENDING = 256


def register_message(ap_id: bytes, service_key: bytes, timestamp: int) -> bytes:
    return REGISTER_CONTEXT + ap_id + service_key + timestamp.to_bytes(8, "big")


def encode_register(service_key: bytes, timestamp: int, signature: bytes) -> bytes:
    return service_key + u64(timestamp) + signature


def decode_register(body: bytes) -> tuple[bytes, int, bytes]:
    r = Reader(body)
    key, ts, sig = r.pull_bytes(32), r.pull_u64(), r.pull_bytes(64)
    r.expect_end()
    return key, ts, sig


@dataclass
class Registration:
    """Our end of a service's registration circuit."""

    ap: AccessPoint
    hop: RelayHop
    session: FrameSession
    service: bytes = b""  # service id once registered
    requests: int = 0

    def feed(self, data: bytes, end: bool) -> None:
        try:
            for ev in self.session.receive(data):
                if isinstance(ev, RequestFrameReceived) and ev.type is FrameType.SERVICE_REGISTER and not self.service:
                    self._register(ev.body)
                elif isinstance(ev, EndReceived):
                    self.hop.send_wire(self.session.send_end(), end=True)
                else:
                    raise ProtocolError("unexpected frame on a registration circuit")
        except GnetError as exc:
            self.hop.reset(exc.kind)
        if end:
            self._drop()

    def circuit_reset(self, kind: ErrorKind) -> None:
        self._drop()

    def _register(self, body: bytes) -> None:
        key, ts, sig = decode_register(body)
        if abs(time.time() - ts) > MAX_CLOCK_SKEW:
            raise GnetError(ErrorKind.PROTOCOL, "registration timestamp out of range")
        if not verify_signature(key, register_message(self.ap.node_id, key, ts), sig):
            raise GnetError(ErrorKind.HANDSHAKE_FAILED, "registration signature is invalid")
        if len(self.ap.registrations) >= MAX_REGISTRATIONS:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "too many services registered here")
        self.service = service_id(key)
        old = self.ap.registrations.get(self.service)
        self.ap.registrations[self.service] = self
        if old is not None and old is not self:
            old.hop.reset(ErrorKind.CLOSED)  # the service replaced its circuit
        self.hop.send_wire(self.session.send_frame(FrameType.SERVICE_REGISTERED, b""))
        log.debug("service registered", service=short_id(self.service))

    def ask(self, cookie: bytes) -> None:
        self.requests += 1
        self.hop.send_wire(self.session.send_frame(FrameType.RENZV_REQUEST, cookie))

    def _drop(self) -> None:
        if self.service and self.ap.registrations.get(self.service) is self:
            del self.ap.registrations[self.service]


@dataclass
class AccessPoint:
    node_id: bytes
    registrations: dict[bytes, Registration] = field(default_factory=dict)
    pending: dict[bytes, asyncio.Future[RelayHop]] = field(default_factory=dict)

    async def serve(self, hop: RelayHop, command: RelayConnect) -> None:
        if command.host == SERVICE_REGISTER:
            hop.start_endpoint(lambda session, h: Registration(self, h, session))
        elif command.host == SERVICE_RENDEZVOUS:
            await self._rendezvous(hop, command)
        elif command.host == SERVICE_JOIN:
            self._join(hop, command)
        else:
            raise GnetError(ErrorKind.NOT_SUPPORTED, f"unknown service command {command.host!r}")

    async def _rendezvous(self, client: RelayHop, command: RelayConnect) -> None:
        if command.node_id is None:
            raise GnetError(ErrorKind.PROTOCOL, "RENZV_CONNECT without a service id")
        registration = self.registrations.get(command.node_id)
        if registration is None:
            raise GnetError(ErrorKind.HOST_UNREACHABLE, "no such service registered at this access point")
        if len(self.pending) >= MAX_PENDING:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "too many rendezvous waiting")
        cookie = os.urandom(20)
        future: asyncio.Future[RelayHop] = asyncio.get_running_loop().create_future()
        self.pending[cookie] = future
        try:
            registration.ask(cookie)
            try:
                async with asyncio.timeout(RENDEZVOUS_WAIT):
                    service_side = await future
            except TimeoutError:
                raise GnetError(ErrorKind.TIMEOUT, "the service did not join the rendezvous") from None
        finally:
            self.pending.pop(cookie, None)
        if client.closed or service_side.closed:
            service_side.close(ErrorKind.CLOSED, "rendezvous abandoned")
            return
        client.accept_bridge_alone()  # RENZV_CONNECT_OK
        client.splice(service_side)

    def _join(self, service_side: RelayHop, command: RelayConnect) -> None:
        future = self.pending.get(command.node_id or b"")
        if future is None or future.done():
            raise GnetError(ErrorKind.NO_ROUTE, "no client waits with that cookie")
        service_side.accept_bridge_alone()
        future.set_result(service_side)
