"""Console messages between nodes: the asyncio shell around endpoint/messages.py.

Two halves, one per end of a message circuit:
- `MessageService` is the destination's side. RelayService hands it every
  circuit that ends at this node with proto MESSAGE (`open` is the relay's
  endpoint factory for that proto);
  each message is shown on every console (`listeners`) and logged at info,
  escaped to one bounded line: it is the user's message, the point of the
  feature, not a payload. The sender stays unknown: the circuit arrives from
  a relay.
- `Messenger` is the sender's side. It keeps one circuit per destination and
  reuses it for the next send (the proposal: "establishes a circuit to the
  peer if such circuit does not exist"), closing it after MESSAGE_IDLE unused.
  The path comes from `Node.path_to`, the one place that decides it.
Every wait has a timeout and every table a bound; a misbehaving far end ends
its circuit, never the node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from .circuit.builder import ClientCircuit, next_circuit_id
from .endpoint.messages import ERR, MSG, PING, MessageInbox, MessageOutbox, Note, escape_text
from .endpoint.pump import CircuitEnd
from .endpoint.session import FrameSession
from .errors import ErrorKind, GnetError
from .identity import Identity
from .service.node_api import ServiceOpener
from .wire.commands import Proto, RelayConnect
from .wire.pathspec import Hop

log = structlog.get_logger("globalnet.messages")


class MessagingNode(ServiceOpener, Protocol):
    """What the messenger uses of the node: circuits, services, its own id and the path rule."""

    @property
    def identity(self) -> Identity: ...

    def path_to(self, node_id: bytes, via: tuple[Hop, ...] | None = None) -> tuple[Hop, ...]: ...

#: A sender's circuit to one destination is closed after this long unused.
MESSAGE_IDLE = 300.0
#: The destination closes a message circuit unused for this long (the sender's idle close comes first).
INBOUND_IDLE = 900.0
BUILD_TIMEOUT = 30.0
REPLY_TIMEOUT = 10.0
#: After a clean close, the far end has this long to answer with its own END.
CLOSE_GRACE = 10.0
MAX_CHANNELS = 32  # destinations with an open circuit, per node
MAX_INBOUND = 64  # message circuits ending here at once
MAX_WAITING = 64  # requests awaiting an answer, per circuit

Listener = Callable[[int, str], None]


# -- the destination's side ------------------------------------------------


class InboundCircuit:
    """The destination's end of one message circuit (the relay hop's endpoint)."""

    def __init__(self, service: MessageService, session: FrameSession, end: CircuitEnd) -> None:
        loop = asyncio.get_running_loop()
        self.id = next_circuit_id()
        self.service = service
        self.session = session
        self.end = end
        self.inbox = MessageInbox(session, loop.time())
        self.created = time.monotonic()
        self.closed = False
        self._fin = False  # the sender's side of the stream has ended
        self._idle = loop.call_later(service.idle_timeout, self._idle_expired)

    # -- relay endpoint ------------------------------------------------
    def feed(self, data: bytes | bytearray, end: bool) -> None:
        self._fin = self._fin or end
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        try:
            out = self.inbox.receive(data, loop.time())
        except GnetError as exc:
            log.debug("message circuit broke the protocol", circuit=self.id, reason=str(exc))
            self._finish()
            self.end.reset(exc.kind)
            return
        self._idle.cancel()
        self._idle = loop.call_later(self.service.idle_timeout, self._idle_expired)
        for text in out.shown:
            self.service.show(self.id, text)
        if out.wire or out.ended:
            self.end.send_wire(out.wire, end=out.ended)
        if out.ended:
            self._finish()
        elif end:
            self._finish()
            self.end.reset(ErrorKind.LINK_LOST)  # FIN without END: not a clean end

    def circuit_reset(self, kind: ErrorKind) -> None:
        self._finish()

    # -- ending --------------------------------------------------------
    def _idle_expired(self) -> None:
        if not self.closed:
            log.debug("message circuit idle, closing", circuit=self.id)
            self.end.send_wire(self.session.send_end(), end=True)
            self._finish()
            asyncio.get_running_loop().call_later(CLOSE_GRACE, self._reap)

    def _reap(self) -> None:
        """The sender never answered our END: reset, so the hop and its stream go."""
        if not self._fin:
            self.end.reset(ErrorKind.CLOSED)

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._idle.cancel()
        self.service.circuits.pop(self.id, None)

    def close(self, kind: ErrorKind = ErrorKind.CLOSED) -> None:
        """Close from this side (the console's `circuit close`, too many circuits)."""
        if not self.closed:
            self._finish()
            self.end.reset(kind)

    def statistics(self) -> dict[str, object]:
        return {
            "id": self.id,
            "hops": [],  # the destination knows only the relay before it, and shows none
            "state": "closed" if self.closed else "open",
            "age": round(time.monotonic() - self.created, 1),
            "bytes_sent": self.session.bytes_sent,
            "bytes_received": self.session.bytes_received,
            "purpose": "message (in)",
            "messages": self.inbox.messages,
        }


class MessageService:
    """Circuits that end at this node with proto MESSAGE."""

    def __init__(self, max_circuits: int = MAX_INBOUND) -> None:
        self.max_circuits = max_circuits
        self.idle_timeout = INBOUND_IDLE
        self.circuits: dict[int, InboundCircuit] = {}
        self.listeners: list[Listener] = []
        self.received = 0

    def open(self, session: FrameSession, end: CircuitEnd) -> InboundCircuit:
        """The relay's endpoint factory for proto MESSAGE (RELAY_CONNECT_OK is already out)."""
        circuit = InboundCircuit(self, session, end)
        if len(self.circuits) >= self.max_circuits:
            log.debug("too many message circuits, refusing one", circuits=len(self.circuits))
            circuit.close(ErrorKind.RESOURCE_LIMIT)
            return circuit
        self.circuits[circuit.id] = circuit
        log.debug("message circuit opened", circuit=circuit.id)
        return circuit

    def show(self, circuit_id: int, text: str) -> None:
        """A message arrived: log it and show it on every console."""
        self.received += 1
        line = escape_text(text)
        log.info("console message received", circuit=circuit_id, text=line)
        for listener in list(self.listeners):
            try:
                listener(circuit_id, line)
            except Exception:
                log.exception("message listener failed")


# -- the sender's side -----------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """An authenticated answer from the destination."""

    circuit: int
    rtt: float  # seconds from request to answer
    built: float | None  # seconds the circuit took to build; None when an open one was reused
    hops: int


ChannelKey = tuple[bytes | str, tuple[Hop, ...] | None]  # a node id or a service address


class MessageChannel:
    """Our end of the circuit to one destination (the ClientCircuit's pump)."""

    def __init__(self, messenger: Messenger, key: ChannelKey, circuit: ClientCircuit) -> None:
        assert circuit.core.session is not None
        self.messenger = messenger
        self.key = key
        self.circuit = circuit
        self.outbox = MessageOutbox(circuit.core.session)
        self.waiting: dict[int, asyncio.Future[Note]] = {}
        self.closed = False
        self.last_used = time.monotonic()
        self._idle: asyncio.TimerHandle | None = None
        self.touch()

    def touch(self) -> None:
        self.last_used = time.monotonic()
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self.messenger.idle_timeout, self._idle_expired)

    def _idle_expired(self) -> None:
        if self.waiting:
            self.touch()
        else:
            log.debug("message circuit idle, closing", circuit=self.circuit.id)
            self.close()

    # -- pump interface of the ClientCircuit ---------------------------
    def feed(self, data: bytes | bytearray, end: bool) -> None:
        if self.closed:
            return
        try:
            out = self.outbox.receive(data)
        except GnetError as exc:
            self._end(exc, reset=True)
            return
        for note in out.answers:
            future = self.waiting.pop(note.seq, None)
            if future is not None and not future.done():
                future.set_result(note)
        if out.ended:  # the destination closed (idle, shutdown): answer END, FIN
            self.circuit.send_wire(self.outbox.close(), end=True)
            self._end(GnetError(ErrorKind.CLOSED, "the destination closed the message circuit"), reset=False)
        elif end:
            self._end(GnetError(ErrorKind.LINK_LOST, "the message circuit ended without END"), reset=True)

    def circuit_reset(self, kind: ErrorKind) -> None:
        self._end(GnetError(kind, "the message circuit was reset"), reset=False)

    # -- use -----------------------------------------------------------
    async def request(self, kind: str, text: str, timeout: float) -> Note:
        if self.closed:
            raise GnetError(ErrorKind.CLOSED, "the message circuit is closed")
        if len(self.waiting) >= MAX_WAITING:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "too many requests waiting for an answer")
        seq, wire = self.outbox.request(kind, text)
        future: asyncio.Future[Note] = asyncio.get_running_loop().create_future()
        self.waiting[seq] = future
        self.circuit.send_wire(wire)
        self.touch()
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            self._end(GnetError(ErrorKind.TIMEOUT, "no answer"), reset=True)
            raise GnetError(ErrorKind.TIMEOUT, f"no answer from the destination within {timeout:.0f} s") from None
        finally:
            self.waiting.pop(seq, None)

    # -- ending --------------------------------------------------------
    def close(self) -> None:
        """Clean close: END and FIN; reset if the far end does not answer in CLOSE_GRACE."""
        if self.closed:
            return
        self.circuit.send_wire(self.outbox.close(), end=True)
        self._end(GnetError(ErrorKind.CLOSED, "the message circuit was closed"), reset=False)
        asyncio.get_running_loop().call_later(CLOSE_GRACE, self._reap)

    def _reap(self) -> None:
        """The far end never answered our END: reset, so the stream leaves the link's table."""
        stream = self.circuit.stream
        if not (stream.finished_receiving or stream.closed):
            self.circuit.reset(ErrorKind.CLOSED)

    def _end(self, error: GnetError, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: the waiter may be gone
        self.waiting.clear()
        if reset:
            self.circuit.reset(error.kind)
        self.messenger.forget(self)


class Messenger:
    """Sends console messages and pings; one reusable circuit per destination."""

    def __init__(self, node: MessagingNode) -> None:
        self.node = node
        self.channels: dict[ChannelKey, MessageChannel] = {}
        self.idle_timeout = MESSAGE_IDLE

    async def send(self, target: bytes | str, text: str, via: tuple[Hop, ...] | None = None) -> Delivery:
        """Deliver `text` to the node `target`; returns once the destination confirmed it."""
        return await self._request(target, via, MSG, text)

    async def ping(self, target: bytes | str, via: tuple[Hop, ...] | None = None) -> Delivery:
        return await self._request(target, via, PING, "")

    async def _request(self, target: bytes | str, via: tuple[Hop, ...] | None, kind: str, text: str) -> Delivery:
        if target == self.node.identity.node_id:
            raise GnetError(ErrorKind.NO_ROUTE, "that is this node's own id")
        channel, built = await self._channel(target, via)
        loop = asyncio.get_running_loop()
        started = loop.time()
        note = await channel.request(kind, text, REPLY_TIMEOUT)
        rtt = loop.time() - started
        if note.kind == ERR:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, f"the destination refused it: {escape_text(note.text, 200)}")
        log.debug("message answered", circuit=channel.circuit.id, kind=note.kind)
        return Delivery(channel.circuit.id, rtt, built, len(channel.circuit.path))

    async def _channel(self, target: bytes | str, via: tuple[Hop, ...] | None) -> tuple[MessageChannel, float | None]:
        key: ChannelKey = (target, via)
        channel = self.channels.get(key)
        if channel is not None and not channel.closed:
            return channel, None
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(BUILD_TIMEOUT):
                if isinstance(target, str):  # a hidden service: through a rendezvous, to the service's node
                    circuit = await self.node.open_service(target, None, "message", RelayConnect(Proto.MESSAGE))
                else:
                    final = RelayConnect(Proto.MESSAGE, node_id=target)
                    circuit = await self.node.open_circuit(self.node.path_to(target, via), final, "message")
        except TimeoutError:
            raise GnetError(ErrorKind.TIMEOUT, f"the circuit was not built within {BUILD_TIMEOUT:.0f} s") from None
        built = loop.time() - started
        log.debug("message circuit built", circuit=circuit.id)
        channel = MessageChannel(self, key, circuit)
        circuit.attach(channel)
        existing = self.channels.get(key)
        if existing is not None and not existing.closed:  # a concurrent send built one first
            channel.close()
            return existing, None
        self.channels[key] = channel
        if len(self.channels) > MAX_CHANNELS:
            min(self.channels.values(), key=lambda c: c.last_used).close()
        return channel, built

    def forget(self, channel: MessageChannel) -> None:
        if self.channels.get(channel.key) is channel:
            del self.channels[channel.key]
        self.node.forget_circuit(channel.circuit)

    def close(self) -> None:
        for channel in list(self.channels.values()):
            channel.close()
