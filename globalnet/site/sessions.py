"""Service sessions to a site's mirrors: pipelined site-protocol requests over one circuit each.

Why a socket pair: a service circuit already has a complete, tested byte pump
(StreamPump: credit, half-close, resets) that moves a TCP-like stream; the
session gives the pump one end of a kernel socket pair and speaks the site
protocol on the other, so no second implementation of credit exists here.
Requests are pipelined (up to the caller's limit) and answered in order.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Awaitable
from typing import Any, Protocol

import structlog

from ..dht.values import ValidValue
from ..endpoint.pump import StreamPump
from ..errors import ErrorKind, GnetError, ProtocolError
from ..service.node_api import ServiceOpener
from .protocol import ResponseDecoder, SiteResponse

log = structlog.get_logger("globalnet.site")

OPEN_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0
READ_SIZE = 256 * 1024
OPEN_TRIES = 2


class SiteNode(ServiceOpener, Protocol):
    """What the site face needs of the node: service sessions and the DHT (through circuits)."""

    async def dht_lookup(self, key: bytes) -> ValidValue | None: ...

    async def dht_publish(self, key: bytes, value: bytes) -> int: ...


class MirrorSession:
    """One service session to one mirror (its per-site .gnet address)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.closed = False
        self._writer: asyncio.StreamWriter | None = None
        self._pending: deque[asyncio.Future[SiteResponse]] = deque()
        self._decoder = ResponseDecoder()

    @classmethod
    async def open(cls, node: SiteNode, address: str) -> MirrorSession:
        session = cls(address)
        async with asyncio.timeout(OPEN_TIMEOUT):
            circuit = await node.open_service(address, None, "site")
        assert circuit.core.session is not None
        ours, theirs = socket.socketpair()
        try:
            pump_reader, pump_writer = await asyncio.open_connection(sock=theirs)
            reader, session._writer = await asyncio.open_connection(sock=ours)
        except BaseException:
            ours.close()
            theirs.close()
            circuit.reset(ErrorKind.CLOSED)
            node.forget_circuit(circuit)
            raise
        pump = StreamPump(circuit.core.session, circuit, pump_reader, pump_writer)
        circuit.attach(pump)

        async def run_pump() -> None:
            try:
                await pump.run()
            finally:
                pump_writer.close()
                node.forget_circuit(circuit)

        node.spawn(run_pump(), "site session pump")
        node.spawn(session._read(reader), "site session")
        return session

    async def _read(self, reader: asyncio.StreamReader) -> None:
        reason = "the mirror closed the session"
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                for response in self._decoder.responses(data):
                    if not self._pending:
                        raise ProtocolError("a response nobody asked for")
                    future = self._pending.popleft()
                    if not future.done():
                        future.set_result(response)
        except ProtocolError as exc:
            reason = exc.detail
        except (ConnectionError, OSError):
            pass
        finally:
            self.close(reason)

    def request(self, raw: bytes, timeout: float = REQUEST_TIMEOUT) -> Awaitable[SiteResponse]:
        """Send one encoded request; the awaitable gives its response (GnetError if the session dies)."""
        if self.closed or self._writer is None:
            raise GnetError(ErrorKind.CLOSED, "the session to the mirror is closed")
        future: asyncio.Future[SiteResponse] = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        self._writer.write(raw)

        async def wait() -> SiteResponse:
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                self.close("a request timed out")
                raise GnetError(ErrorKind.TIMEOUT, "the mirror did not answer in time") from None

        return wait()

    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        if self._writer is not None:
            self._writer.close()
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(GnetError(ErrorKind.CLOSED, reason))
                future.exception()


class SessionPool:
    """At most one live session per mirror address, opened on demand, shared by fetches and broadcasts.

    A session being opened is its own task: a caller that gives up (a fetch that
    finished with other mirrors) does not cancel a rendezvous another caller waits for."""

    def __init__(self, node: SiteNode) -> None:
        self.node = node
        self._sessions: dict[str, MirrorSession] = {}
        self._opening: dict[str, asyncio.Task[MirrorSession]] = {}

    async def get(self, address: str) -> MirrorSession:
        live = self._sessions.get(address)
        if live is not None and not live.closed:
            return live
        task = self._opening.get(address)
        if task is None:
            task = asyncio.ensure_future(self._open(address))
            self._opening[address] = task
            task.add_done_callback(lambda t: self._opened(address, t))
        return await asyncio.shield(task)

    async def _open(self, address: str) -> MirrorSession:
        """Two tries: a rendezvous fails now and then for reasons of the moment (an access
        point's circuit, a join that loses a race), and a browser should not see that."""
        for attempt in range(OPEN_TRIES):
            try:
                session = await MirrorSession.open(self.node, address)
            except (GnetError, TimeoutError, OSError) as exc:
                if attempt + 1 >= OPEN_TRIES:
                    if isinstance(exc, GnetError):
                        raise
                    raise GnetError(ErrorKind.TIMEOUT, f"no session to the mirror ({exc or 'timed out'})") from None
                log.debug("session to a mirror failed, trying again", reason=str(exc))
                continue
            self._sessions[address] = session
            return session
        raise AssertionError("unreachable")

    def _opened(self, address: str, task: asyncio.Task[MirrorSession]) -> None:
        if self._opening.get(address) is task:
            del self._opening[address]
        if not task.cancelled():
            task.exception()  # retrieved: the callers that waited got it

    def drop(self, address: str, reason: str) -> None:
        session = self._sessions.pop(address, None)
        if session is not None:
            session.close(reason)

    def close(self) -> None:
        for task in list(self._opening.values()):
            task.cancel()
        for address in list(self._sessions):
            self.drop(address, "closing")

    def statistics(self) -> dict[str, Any]:
        return {"sessions": sum(1 for s in self._sessions.values() if not s.closed)}
