"""The access-point role every relay can play for hidden services.

Theory of operation.
- A service builds a circuit to us and sends RELAY_CONNECT service `register`;
  we answer OK and stay an endpoint for that circuit. Its first frame is
  SERVICE_REGISTER: a registration key made for us alone (not the service's
  key: we never learn which service we serve), a timestamp, the hash of the
  proof a client must show, the PoW seed, and a signature over (REGISTER_CONTEXT
  | our node id | all that), so only the key's holder can register, and a
  registration cannot be replayed at another access point.
- A client builds its own circuit to us and sends RELAY_CONNECT service
  `renzv:<proof>:<nonce>:<effort>` naming the registration id (RENZV_CONNECT).
  The proof comes from the descriptor's inner layer (for a service with
  client authorization, only authorized clients have it): without the right
  proof, or with a replayed or wrong proof of work, we refuse. Otherwise we
  make a random cookie and send RENZV_REQUEST(cookie | effort) down the
  service's registration circuit, and hold the client's request open (bounded
  wait; when the queue is full, the lowest effort is pushed out).
- The service builds a fresh circuit to us with RELAY_CONNECT service `join`
  carrying the cookie. We answer OK to both (RENZV_CONNECT_OK to the client)
  and splice the two circuits: from then on we XOR and forward, nothing else.
The client and the service then run their own Noise handshake through the
splice, to a key derived from the service key, so we see only ciphertext; we
never learn where the service or the client is (both came through circuits).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from dataclasses import dataclass, field

import structlog

from ..endpoint.session import EndReceived, FrameSession, RequestFrameReceived
from ..errors import ErrorKind, GnetError, ProtocolError
from ..identity import verify_signature
from ..relay.server import RelayHop
from ..wire.buffer import Reader, u32, u64
from ..wire.commands import SERVICE_JOIN, SERVICE_REGISTER, SERVICE_RENDEZVOUS, RelayConnect
from ..wire.framing import FrameType
from ..wire.records import short_id
from .address import service_id
from .pow import NONCE_SIZE, ReplayCache, check_work

log = structlog.get_logger("globalnet.service")

REGISTER_CONTEXT = b"gnet/1 service register"
MAX_CLOCK_SKEW = 600
#: How long a client's RENZV_CONNECT waits for the service to join: the service builds a
#: fresh 3-hop circuit to us, which took over 8 s (the old wait) for one join in ten at 200
#: nodes on 2 cores; a timed-out wait made the client ask again and the service build
#: another join. The relay's deadline for service commands and the client's wait for our
#: answer are longer (CONNECT_TIMEOUT here, RENDEZVOUS_CLIENT_WAIT).
RENDEZVOUS_WAIT = 20.0
CONNECT_TIMEOUT = RENDEZVOUS_WAIT + 2.0
RENDEZVOUS_CLIENT_WAIT = CONNECT_TIMEOUT + 3.0
MAX_REGISTRATIONS = 1024
MAX_PENDING = 256
MAX_PENDING_PER_SERVICE = 64


def proof_hash(proof: bytes) -> bytes:
    return hashlib.blake2b(b"gnet rendezvous proof" + proof, digest_size=32).digest()


@dataclass(frozen=True)
class RegisterBody:
    key: bytes  # the registration key (made for this access point only)
    timestamp: int
    proof_hash: bytes
    pow_seed: bytes
    signature: bytes = b""

    def signed_message(self, ap_id: bytes) -> bytes:
        return REGISTER_CONTEXT + ap_id + self.key + u64(self.timestamp) + self.proof_hash + self.pow_seed

    def encode(self) -> bytes:
        return self.key + u64(self.timestamp) + self.proof_hash + self.pow_seed + self.signature


def decode_register(body: bytes) -> RegisterBody:
    r = Reader(body)
    reg = RegisterBody(r.pull_bytes(32), r.pull_u64(), r.pull_bytes(32), r.pull_bytes(32), r.pull_bytes(64))
    r.expect_end()
    return reg


@dataclass(frozen=True)
class RendezvousAsk:
    """What a client's RENZV_CONNECT carries besides the registration id."""

    proof: bytes
    nonce: bytes
    effort: int

    def encode(self) -> str:
        return f"{SERVICE_RENDEZVOUS}:{self.proof.hex()}:{self.nonce.hex()}:{self.effort}"


def decode_rendezvous_ask(host: str) -> RendezvousAsk:
    parts = host.split(":")
    if len(parts) != 4 or parts[0] != SERVICE_RENDEZVOUS:
        raise GnetError(ErrorKind.SERVICE_NOT_AUTHORIZED, "rendezvous request without a proof")
    try:
        proof, nonce, effort = bytes.fromhex(parts[1]), bytes.fromhex(parts[2]), int(parts[3])
    except ValueError:
        raise ProtocolError("malformed rendezvous request") from None
    if len(proof) != 32 or len(nonce) != NONCE_SIZE or not 0 <= effort < 1 << 32:
        raise ProtocolError("malformed rendezvous request")
    return RendezvousAsk(proof, nonce, effort)


@dataclass
class _Waiting:
    future: asyncio.Future[RelayHop]
    effort: int


@dataclass
class Registration:
    """Our end of a service's registration circuit."""

    ap: AccessPoint
    hop: RelayHop
    session: FrameSession
    service: bytes = b""  # registration id once registered
    requests: int = 0
    proof_hash: bytes = b""
    pow_seed: bytes = b""
    replays: ReplayCache = field(default_factory=lambda: ReplayCache(8192))
    waiting: dict[bytes, _Waiting] = field(default_factory=dict)

    def feed(self, data: bytes | bytearray, end: bool) -> None:
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
        reg = decode_register(body)
        if abs(time.time() - reg.timestamp) > MAX_CLOCK_SKEW:
            raise GnetError(ErrorKind.PROTOCOL, "registration timestamp out of range")
        if not verify_signature(reg.key, reg.signed_message(self.ap.node_id), reg.signature):
            raise GnetError(ErrorKind.HANDSHAKE_FAILED, "registration signature is invalid")
        if len(self.ap.registrations) >= MAX_REGISTRATIONS:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "too many services registered here")
        self.service = service_id(reg.key)
        self.proof_hash, self.pow_seed = reg.proof_hash, reg.pow_seed
        old = self.ap.registrations.get(self.service)
        self.ap.registrations[self.service] = self
        if old is not None and old is not self:
            old.hop.reset(ErrorKind.CLOSED)  # the service replaced its circuit
        self.hop.send_wire(self.session.send_frame(FrameType.SERVICE_REGISTERED, b""))
        log.debug("service registered", service=short_id(self.service))

    def admit(self, ask: RendezvousAsk) -> None:
        """Refuse a request without the descriptor's proof, or with a wrong or replayed proof of work."""
        if not hmac.compare_digest(proof_hash(ask.proof), self.proof_hash):
            raise GnetError(ErrorKind.SERVICE_NOT_AUTHORIZED, "wrong rendezvous proof")
        if not check_work(self.pow_seed, self.service, ask.nonce, ask.effort):
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "invalid proof of work")
        if ask.effort and self.replays.seen(ask.nonce):
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "replayed proof of work")

    def enqueue(self, cookie: bytes, waiting: _Waiting) -> None:
        """Hold a request; when full, the lowest effort (it or a waiting one) is refused."""
        if len(self.waiting) >= MAX_PENDING_PER_SERVICE:
            lowest_cookie = min(self.waiting, key=lambda c: self.waiting[c].effort)
            lowest = self.waiting[lowest_cookie]
            if lowest.effort >= waiting.effort:
                raise GnetError(ErrorKind.RESOURCE_LIMIT, "the service is busy (try with more proof of work)")
            del self.waiting[lowest_cookie]
            if not lowest.future.done():
                lowest.future.set_exception(GnetError(ErrorKind.RESOURCE_LIMIT, "pushed out by a request with more work"))
        self.waiting[cookie] = waiting
        self.requests += 1
        self.hop.send_wire(self.session.send_frame(FrameType.RENZV_REQUEST, cookie + u32(waiting.effort)))

    def _drop(self) -> None:
        """The registration circuit ended: forget it, and answer the clients waiting on it now.

        Their requests went down this circuit; the service will never join for them, so
        waiting out RENDEZVOUS_WAIT (20 s) would only delay the client's next access point.
        """
        if self.service and self.ap.registrations.get(self.service) is self:
            del self.ap.registrations[self.service]
        waiting, self.waiting = self.waiting, {}
        for entry in waiting.values():
            if not entry.future.done():
                entry.future.set_exception(GnetError(ErrorKind.HOST_UNREACHABLE, "the service left this access point"))


@dataclass
class AccessPoint:
    node_id: bytes
    registrations: dict[bytes, Registration] = field(default_factory=dict)
    pending: dict[bytes, Registration] = field(default_factory=dict)  # cookie -> whose queue holds it
    rendezvous_asks: int = 0  # requests that reached us (the load a flood puts on an access point)
    connect_timeout: float = CONNECT_TIMEOUT  # the relay's deadline for our commands

    async def serve(self, hop: RelayHop, command: RelayConnect) -> None:
        if command.host == SERVICE_REGISTER:
            hop.start_endpoint(lambda session, h: Registration(self, h, session))
        elif command.host.split(":")[0] == SERVICE_RENDEZVOUS:
            await self._rendezvous(hop, command)
        elif command.host == SERVICE_JOIN:
            self._join(hop, command)
        else:
            raise GnetError(ErrorKind.NOT_SUPPORTED, f"unknown service command {command.host!r}")

    async def _rendezvous(self, client: RelayHop, command: RelayConnect) -> None:
        if command.node_id is None:
            raise GnetError(ErrorKind.PROTOCOL, "RENZV_CONNECT without a service id")
        self.rendezvous_asks += 1
        registration = self.registrations.get(command.node_id)
        if registration is None:
            raise GnetError(ErrorKind.HOST_UNREACHABLE, "no such service registered at this access point")
        ask = decode_rendezvous_ask(command.host)
        registration.admit(ask)
        if len(self.pending) >= MAX_PENDING:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "too many rendezvous waiting")
        cookie = os.urandom(20)
        waiting = _Waiting(asyncio.get_running_loop().create_future(), ask.effort)
        registration.enqueue(cookie, waiting)
        self.pending[cookie] = registration
        try:
            try:
                async with asyncio.timeout(RENDEZVOUS_WAIT):
                    service_side = await waiting.future
            except TimeoutError:
                raise GnetError(ErrorKind.TIMEOUT, "the service did not join the rendezvous") from None
        finally:
            self.pending.pop(cookie, None)
            registration.waiting.pop(cookie, None)
        if client.closed or service_side.closed:
            service_side.close(ErrorKind.CLOSED, "rendezvous abandoned")
            return
        client.accept_bridge_alone()  # RENZV_CONNECT_OK
        client.splice(service_side)

    def _join(self, service_side: RelayHop, command: RelayConnect) -> None:
        cookie = command.node_id or b""
        registration = self.pending.get(cookie)
        waiting = registration.waiting.get(cookie) if registration is not None else None
        if waiting is None or waiting.future.done():
            # CLOSED, not NO_ROUTE: the client left (timed out, pushed out by more work);
            # another path would get the same answer, so the service must not retry it
            raise GnetError(ErrorKind.CLOSED, "no client waits with that cookie")
        service_side.accept_bridge_alone()
        waiting.future.set_result(service_side)
