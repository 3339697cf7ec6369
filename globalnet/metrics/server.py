"""A small local HTTP server: `/metrics` (Prometheus), `/` (status page), `/status.json`.

Bounds: a request head of at most 8 KiB read within 5 s, GET only, 32
clients at once, one request per connection. The Host header must name this
machine (127.0.0.1, localhost, ::1 or the address bound), so a web page
elsewhere cannot read the status through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from typing import Any

import structlog

from .counters import NodeCounters
from .history import BandwidthHistory
from .page import STATUS_PAGE
from .registry import CONTENT_TYPE, NodeMetrics
from .source import MetricsSettings, MetricsSource

log = structlog.get_logger("globalnet.metrics")

MAX_HEAD = 8192
HEAD_TIMEOUT = 5.0
MAX_CLIENTS = 32
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class MetricsServer:
    def __init__(self, settings: MetricsSettings, source: MetricsSource, metrics: NodeMetrics, spawn: Spawn) -> None:
        self.settings = settings
        self.source = source
        self.metrics = metrics
        self.spawn = spawn
        self.history = BandwidthHistory(settings.history_seconds)
        self.server: asyncio.Server | None = None
        self.address: tuple[str, int] = (settings.host, settings.port)
        self.active = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, self.settings.host, self.settings.port, limit=MAX_HEAD)
        sock = self.server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        self.metrics.attach(self.source)
        self.spawn(self._sample(), "metrics sampler")
        log.info("metrics and status page", url=f"http://{self.address_text()}/")

    def address_text(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _sample(self) -> None:
        while True:
            self.history.feed(time.monotonic(), *self.source.traffic())
            await asyncio.sleep(self.settings.sample_every)

    # -- one client -----------------------------------------------------------
    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= MAX_CLIENTS:
            writer.close()
            return
        self.active += 1
        self.spawn(self._serve(reader, writer), "metrics client")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            if len(head) > MAX_HEAD:
                await self._send(writer, 431, "text/plain", b"request head too large\n")
                return
            status, ctype, body = self._route(head)
            await self._send(writer, status, ctype, body)
        finally:
            self.active -= 1
            writer.close()

    def _route(self, head: bytes) -> tuple[int, str, bytes]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, "text/plain", b"bad request\n"
        method, target = parts[0], parts[1]
        host = next((line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("host:")), "")
        if not self._host_is_local(host):
            return 403, "text/plain", b"this status page answers only to its own address\n"
        if method != "GET":
            return 405, "text/plain", b"GET only\n"
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE, self.metrics.exposition()
        if path == "/status.json":
            return 200, "application/json", self._status_json()
        if path == "/":
            return 200, "text/html; charset=utf-8", STATUS_PAGE
        return 404, "text/plain", b"not found: try / or /metrics\n"

    def _host_is_local(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
        return name.lower() in _LOCAL_HOSTS or name == self.address[0] or name.strip("[]") == self.address[0]

    def _status_json(self) -> bytes:
        status = self.source.snapshot()
        body = asdict(status)
        body["bandwidth"] = self.history.as_json(time.monotonic())
        body["bandwidth_span"] = self.settings.history_seconds
        body["traffic"] = dict(zip(("in", "out"), self.source.traffic()))
        return json.dumps(body).encode()

    async def _send(self, writer: asyncio.StreamWriter, status: int, ctype: str, body: bytes) -> None:
        reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
                  431: "Request Header Fields Too Large"}.get(status, "Error")  # fmt: skip
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src 'self'\r\nConnection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode() + body)
            await writer.drain()
        except (ConnectionError, OSError):
            pass


async def start_metrics(settings: MetricsSettings, source: MetricsSource, counters: NodeCounters, spawn: Spawn) -> MetricsServer:
    server = MetricsServer(settings, source, NodeMetrics(counters), spawn)
    await server.start()
    return server
