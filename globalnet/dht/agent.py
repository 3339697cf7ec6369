"""Both ends of a `dht` circuit: the client's requests and the last hop that runs them.

The proposal's NET_getRandomLink + DHT_STORE/DHT_RETR: a node that wants a
value never asks from its own address; it sends the request through a
circuit, and the circuit's last hop (which only sees the circuit, not who
built it) performs the lookup or store and answers DHT_DATA.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from ..endpoint.session import EndReceived, FrameSession, RequestFrameReceived
from ..errors import ErrorKind, GnetError, ProtocolError
from ..wire.dhtframes import (
    DhtData,
    DhtRetr,
    DhtStatus,
    DhtStore,
    decode_data,
    decode_request,
    encode_data,
    encode_request,
)
from ..wire.framing import FrameType
from .values import ValidValue, validate_value

log = structlog.get_logger("globalnet.dht")

MAX_INFLIGHT = 8
REQUEST_TIMEOUT = 25.0


class CircuitEnd(Protocol):
    def send_wire(self, data: bytes, end: bool = False) -> None: ...

    def reset(self, kind: ErrorKind) -> None: ...


class DhtBackend(Protocol):
    async def publish(self, key: bytes, value: bytes, keep: bool = False) -> int: ...

    async def lookup(self, key: bytes) -> ValidValue | None: ...


class DhtAgent:
    """The last hop of a `dht` circuit: runs the client's requests on the DHT."""

    def __init__(self, dht: DhtBackend, session: FrameSession, end: CircuitEnd, spawn: Callable[[Any, str], None]) -> None:
        self.dht = dht
        self.session = session
        self.end = end
        self.spawn = spawn
        self.inflight = 0
        self.closed = False

    def feed(self, data: bytes | bytearray, end: bool) -> None:
        try:
            events = self.session.receive(data)
            for ev in events:
                if isinstance(ev, RequestFrameReceived):
                    self._request(ev)
                elif isinstance(ev, EndReceived):
                    self.end.send_wire(self.session.send_end() + b"", end=True)
                    self.closed = True
                else:
                    raise ProtocolError("only DHT frames on a dht circuit")
        except GnetError as exc:
            self.closed = True
            self.end.reset(exc.kind)

    def circuit_reset(self, kind: ErrorKind) -> None:
        self.closed = True

    def _request(self, ev: RequestFrameReceived) -> None:
        request = decode_request(ev.type, ev.body)
        if self.inflight >= MAX_INFLIGHT:
            self._answer(DhtData(request.req, DhtStatus.FAILED, b"busy"))
            return
        self.inflight += 1
        self.spawn(self._run(request), "dht agent request")

    async def _run(self, request: DhtStore | DhtRetr) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                if isinstance(request, DhtStore):
                    try:
                        validate_value(request.key, request.value)
                    except ProtocolError as exc:
                        self._answer(DhtData(request.req, DhtStatus.REFUSED, exc.detail.encode()[:200]))
                        return
                    stored = await self.dht.publish(request.key, request.value)
                    status = DhtStatus.OK if stored else DhtStatus.FAILED
                    self._answer(DhtData(request.req, status, bytes([min(stored, 255)])))
                else:
                    found = await self.dht.lookup(request.key)
                    if found is None:
                        self._answer(DhtData(request.req, DhtStatus.NOT_FOUND))
                    else:
                        self._answer(DhtData(request.req, DhtStatus.OK, found.value))
        except TimeoutError:
            self._answer(DhtData(request.req, DhtStatus.FAILED, b"timed out"))
        finally:
            self.inflight -= 1

    def _answer(self, data: DhtData) -> None:
        if not self.closed:
            self.end.send_wire(self.session.send_frame(FrameType.DHT_DATA, encode_data(data)))


class CircuitLike(Protocol):
    """What DhtClient needs of a client circuit (circuit/ is not imported here)."""

    closed: bool

    def send_wire(self, data: bytes, end: bool = False) -> None: ...

    def reset(self, kind: ErrorKind) -> None: ...

    def attach(self, consumer: Any) -> None: ...


class DhtClient:
    """DHT_STORE / DHT_RETR through one reusable circuit, rebuilt when it dies."""

    def __init__(self, open_circuit: Callable[[], Awaitable[tuple[CircuitLike, FrameSession]]]) -> None:
        self._open = open_circuit
        self._circuit: CircuitLike | None = None
        self._session: FrameSession | None = None
        self._pending: dict[int, asyncio.Future[DhtData]] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(MAX_INFLIGHT)  # the agent answers "busy" beyond this

    async def _ensure(self) -> tuple[CircuitLike, FrameSession]:
        async with self._lock:
            if self._circuit is None or self._circuit.closed or self._session is None:
                self._circuit, self._session = await self._open()
                self._circuit.attach(self)
            return self._circuit, self._session

    async def _call(self, make: Callable[[int], DhtStore | DhtRetr]) -> DhtData:
        """One request; if the circuit fails under it, once more on a fresh circuit."""
        try:
            return await self._call_once(make)
        except GnetError as exc:
            if exc.kind is ErrorKind.PROTOCOL:
                raise
            if self._circuit is not None:
                self._circuit.reset(ErrorKind.CLOSED)
                self._circuit.closed = True
            return await self._call_once(make)

    async def _call_once(self, make: Callable[[int], DhtStore | DhtRetr]) -> DhtData:
        async with self._slots:
            return await self._request(make)

    async def _request(self, make: Callable[[int], DhtStore | DhtRetr]) -> DhtData:
        circuit, session = await self._ensure()
        req = next(self._ids) & 0xFFFFFFFF
        future: asyncio.Future[DhtData] = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        ftype, body = encode_request(make(req))
        circuit.send_wire(session.send_frame(ftype, body))
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                return await future
        except TimeoutError:
            raise GnetError(ErrorKind.TIMEOUT, "the DHT agent did not answer") from None
        finally:
            self._pending.pop(req, None)

    async def lookup(self, key: bytes) -> ValidValue | None:
        data = await self._call(lambda req: DhtRetr(req, key))
        if data.status is DhtStatus.FAILED:
            raise GnetError(ErrorKind.TIMEOUT, f"the DHT lookup failed ({data.payload.decode(errors='replace')})")
        if data.status is not DhtStatus.OK:
            return None
        try:
            return validate_value(key, data.payload)  # the agent is not trusted either
        except ProtocolError:
            return None

    async def publish(self, key: bytes, value: bytes) -> int:
        data = await self._call(lambda req: DhtStore(req, key, value))
        if data.status is DhtStatus.REFUSED:
            raise GnetError(ErrorKind.PROTOCOL, f"value refused: {data.payload.decode(errors='replace')}")
        return data.payload[0] if data.status is DhtStatus.OK and data.payload else 0

    # -- consumer of the circuit's bytes ------------------------------------
    def feed(self, data: bytes | bytearray, end: bool) -> None:
        session = self._session
        if session is None:
            return
        try:
            for ev in session.receive(data):
                if isinstance(ev, RequestFrameReceived) and ev.type is FrameType.DHT_DATA:
                    answer = decode_data(ev.body)
                    future = self._pending.get(answer.req)
                    if future is not None and not future.done():
                        future.set_result(answer)
        except GnetError as exc:
            self._fail(exc)
        if end:
            self._fail(GnetError(ErrorKind.LINK_LOST, "the DHT circuit closed"))

    def circuit_reset(self, kind: ErrorKind) -> None:
        self._fail(GnetError(kind, "the DHT circuit was reset"))

    def _fail(self, error: GnetError) -> None:
        if self._circuit is not None:
            self._circuit.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        if self._circuit is not None and not self._circuit.closed:
            self._circuit.reset(ErrorKind.CLOSED)
