"""A mirror's answering side: the target of its per-site hidden service (asyncio shell).

Why a 127.0.0.1 listener (one per mirrored site, on a port the kernel picks)
rather than an in-process handler: the hidden-service code already turns a
rendezvous into a TCP connection to the service's target (ServiceHop, with
its credit, pumps and limits), so the mirror gets every property of a
service session unchanged and the site code never touches circuits. The
listener binds 127.0.0.1 only and serves one site, so a connection to it
learns nothing a session to the mirror's .gnet address would not.

Each connection is one client session: pipelined requests (protocol.py)
answered in order from the verified cache; a malformed request closes that
connection only.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import structlog

from ..errors import ProtocolError
from .announcements import AnnouncementStore
from .cache import SiteCache
from .protocol import RequestDecoder, RequestType, SiteRequest, Status, encode_response, refusal

log = structlog.get_logger("globalnet.site")

MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 120.0  # a session with no request for this long is closed
READ_SIZE = 64 * 1024

#: (message bytes, peer label) -> None if taken, else the reason it was refused
BroadcastHandler = Callable[[bytes, str], "str | None"]


class SiteResponder:
    def __init__(self, cache: SiteCache, site_key: bytes, on_broadcast: BroadcastHandler, announcements: AnnouncementStore) -> None:
        self.cache = cache
        self.announcements = announcements
        self.site_key = site_key
        self.on_broadcast = on_broadcast
        self.server: asyncio.Server | None = None
        self.port = 0
        self.active = 0
        self.served_chunks = 0
        self._labels = itertools.count(1)

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= MAX_CONNECTIONS:
            writer.close()
            return
        self.active += 1
        # the session is anonymous: a label only keys the broadcast core's per-peer rate limit
        label = f"session-{next(self._labels)}"
        decoder = RequestDecoder()
        try:
            while True:
                async with asyncio.timeout(IDLE_TIMEOUT):
                    data = await reader.read(READ_SIZE)
                if not data:
                    break
                for request in decoder.requests(data):
                    writer.write(self.answer(request, label))
                await writer.drain()
        except ProtocolError as exc:
            log.debug("site session closed", reason=exc.detail)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self.active -= 1
            writer.close()

    def answer(self, request: SiteRequest, label: str) -> bytes:
        if request.type is RequestType.MANIFEST:
            data = self.cache.manifest_bytes(self.site_key)
            return encode_response(Status.OK, data) if data is not None else refusal(Status.NOT_FOUND, "no copy yet")
        if request.type is RequestType.CHUNK:
            try:
                digest, index = request.chunk
            except ProtocolError as exc:
                return refusal(Status.BAD_REQUEST, exc.detail)
            chunk = self.cache.read_chunk(self.site_key, digest, index)
            if chunk is None:
                return refusal(Status.NOT_FOUND, "no such chunk here")
            self.served_chunks += 1
            return encode_response(Status.OK, chunk)
        if request.type is RequestType.ANNOUNCEMENTS:
            if request.body:
                return refusal(Status.BAD_REQUEST, "an announcements request has an empty body")
            return encode_response(Status.OK, self.announcements.encode(self.site_key))
        reason = self.on_broadcast(request.body, label)
        return encode_response(Status.OK) if reason is None else refusal(Status.REFUSED, reason)
