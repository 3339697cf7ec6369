"""A client circuit over real links: build it hop by hop, then carry a stream.

The asyncio shell around `ClientCircuitCore`: it owns the first hop stream,
sends each hop's handshake and waits (bounded) for the reply, then hands the
stream to a `StreamPump`. Relays never choose hops; the caller gives the path.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from ..errors import ErrorKind, GnetError
from ..identity import verify_node_record
from ..link.hop_stream import HopStream
from ..link.quic_link import Link
from ..wire.commands import Proto, RelayConnect, RelayConnectFail
from ..wire.records import NodeRecord, short_id
from .core import ClientCircuitCore

log = structlog.get_logger("globalnet.circuit")

HOP_TIMEOUT = 10.0
_ids = itertools.count(1)


def next_circuit_id() -> int:
    """A fresh circuit id. Circuits that end at this node (console messages)
    take theirs from the same count, so ids in `list circuits` never collide."""
    return next(_ids)


@dataclass(frozen=True)
class HopTarget:
    """Where the next hop is: an address, a node id, or both (a pin)."""

    host: str = ""
    port: int = 0
    node_id: bytes | None = None

    def describe(self) -> str:
        where = f"{self.host}:{self.port}" if self.host else ""
        pin = self.node_id.hex()[:8] if self.node_id else ""
        return f"{where}#{pin}" if where and pin else where or pin


class CircuitConsumer(Protocol):
    """Who takes a client circuit's unwrapped bytes: a StreamPump, a DatagramPump,
    a hidden service's registration or session end."""

    def feed(self, data: bytes | bytearray, end: bool) -> None: ...

    def circuit_reset(self, kind: ErrorKind) -> None: ...


@dataclass
class ClientCircuit:
    """StreamHandler of the circuit's first hop stream."""

    stream: HopStream
    purpose: str = "tunnel"
    id: int = field(default_factory=next_circuit_id)
    core: ClientCircuitCore = field(default_factory=ClientCircuitCore)
    path: list[bytes] = field(default_factory=list)  # node ids, hop 1 first
    created: float = field(default_factory=time.monotonic)
    pump: CircuitConsumer | None = None
    error: GnetError | None = None
    _reply: asyncio.Future[object] | None = None
    closed: bool = False
    #: A UDP circuit's pump (its datagram counters show in `list circuits`).
    udp: Any = None
    #: Who this circuit is for (e.g. the SOCKS credentials' group). A circuit is
    #: never shared today; any future reuse must only share equal keys.
    isolation: Hashable | None = None

    def __post_init__(self) -> None:
        self.stream.handler = self

    # -- StreamHandler ---------------------------------------------------
    def stream_data(self, data: bytes, end: bool) -> None:
        if self.pump is not None:  # the hot path
            self.pump.feed(self.core.unwrap(data), end)
            return
        try:
            reply, error = self.core.receive(data, end)
        except GnetError as exc:
            self._fail(exc)
            return
        if reply is not None and self._reply is not None and not self._reply.done():
            self._reply.set_result(reply.reply)
        if error is not None:
            self._fail(error)

    def stream_reset(self, kind: ErrorKind) -> None:
        self.closed = True
        if self.pump is not None:
            self.pump.circuit_reset(kind)
        self._fail(GnetError(kind, "the circuit was reset"), reset=False)

    def _fail(self, error: GnetError, reset: bool = True) -> None:
        self.error = self.error or error
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(error)
        if reset:
            self.reset(error.kind)

    # -- CircuitEnd ------------------------------------------------------
    def send_wire(self, data: bytes, end: bool = False) -> None:
        self.stream.send(self.core.wrap(data) if data else data, end)

    def reset(self, kind: ErrorKind) -> None:
        self.closed = True
        self.stream.reset(kind)

    # -- building --------------------------------------------------------
    async def extend(self, record: NodeRecord, command: RelayConnect, timeout: float = HOP_TIMEOUT) -> bytes:
        """Add a hop: handshake with `record`'s node, carrying `command`. Returns OK's record bytes."""
        return await self.extend_to(record.node_id, record.onion_key, command, timeout)

    async def extend_to(self, node_id: bytes, onion_key: bytes, command: RelayConnect, timeout: float = HOP_TIMEOUT) -> bytes:
        """Add a hop known by id and key alone (e.g. a hidden service behind a rendezvous)."""
        self._reply = asyncio.get_running_loop().create_future()
        self.stream.send(self.core.start_hop(node_id, onion_key, command))
        self.path.append(node_id)
        try:
            async with asyncio.timeout(timeout):
                reply = await self._reply
        except TimeoutError:
            self.reset(ErrorKind.TIMEOUT)
            raise GnetError(ErrorKind.TIMEOUT, f"hop {short_id(node_id)} did not answer in {timeout:.0f} s") from None
        if isinstance(reply, RelayConnectFail):
            self.reset(reply.kind)
            raise GnetError(reply.kind, f"hop {short_id(node_id)} refused: {reply.reason}")
        return reply.record  # type: ignore[attr-defined]

    def attach(self, pump: CircuitConsumer) -> None:
        self.pump = pump
        if self.closed or self.error is not None:  # it died before it had a consumer: say so now
            pump.circuit_reset(self.error.kind if self.error is not None else ErrorKind.LINK_LOST)
            return
        early, early_end = self.core.take_early()
        if early or early_end:
            pump.feed(early, early_end)

    def statistics(self) -> dict[str, object]:
        s = self.core.session
        return {
            "id": self.id,
            "hops": [short_id(h) for h in self.path],
            "state": "closed" if self.closed else self.core.state.value,
            "age": round(time.monotonic() - self.created, 1),
            "bytes_sent": s.bytes_sent if s else 0,
            "bytes_received": s.bytes_received if s else 0,
            "purpose": self.purpose,
            **(self.udp.statistics() if self.udp is not None else {}),
        }


async def build_circuit(
    first: Link,
    hops: list[HopTarget],
    final: RelayConnect,
    purpose: str = "tunnel",
    final_wait: float = HOP_TIMEOUT,
) -> ClientCircuit:
    """Build a circuit whose hop 1 is `first`'s peer and whose further hops are `hops`.

    The last hop receives `final` (e.g. RELAY_CONNECT tcp host:port) and must answer within
    `final_wait` (longer for a rendezvous, which waits for the service). Raises GnetError
    naming the hop and the reason.
    """
    assert first.peer is not None
    try:
        stream = first.open_stream()
    except GnetError as exc:
        exc.node_id = first.peer.node_id
        raise
    circuit = ClientCircuit(stream, purpose)
    record = first.peer
    try:
        for nxt in hops:
            command = RelayConnect(Proto.PEER, nxt.host, nxt.port, nxt.node_id)
            try:
                record_bytes = await circuit.extend(record, command)
            except GnetError as exc:
                if exc.kind in (ErrorKind.NO_ROUTE, ErrorKind.TIMEOUT, ErrorKind.PIN_MISMATCH):
                    exc.node_id = nxt.node_id  # the hop we could not reach
                raise
            try:
                record = verify_node_record(record_bytes)
            except GnetError as exc:
                circuit.reset(ErrorKind.PROTOCOL)
                raise GnetError(ErrorKind.PROTOCOL, f"hop {short_id(record.node_id)} sent a bad record for {nxt.describe()}: {exc.detail}") from None
            if nxt.node_id is not None and record.node_id != nxt.node_id:
                circuit.reset(ErrorKind.PIN_MISMATCH)
                raise GnetError(ErrorKind.PIN_MISMATCH, f"{nxt.describe()} answered as {record.node_id.hex()}")
        await circuit.extend(record, final, final_wait)
    except asyncio.CancelledError:
        circuit.reset(ErrorKind.CLOSED)
        raise
    log.debug(
        "circuit built",
        circuit=circuit.id,
        purpose=purpose,
        hops=[short_id(h) for h in circuit.path],
        ms=round((time.monotonic() - circuit.created) * 1000, 3),  # `make bench` reads this
    )
    return circuit
