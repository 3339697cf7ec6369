"""Local port forwarding (`-tunnel "PORT>hop>...>host:port"`).

Each accepted TCP connection gets its own circuit (the proposal: "every
connection has its own set of relays"). A connection whose circuit cannot be
built is reset and the failure logged with the hop and the reason; the
listener keeps accepting, so the next connection tries again.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from .endpoint.pump import StreamPump, abort_with_reset
from .errors import ErrorKind, GnetError
from .service.node_api import SERVICE_TIMEOUT_FACTOR, ServiceOpener
from .site.address import decode_site_address, is_site_address
from .site.serve import SiteFront, serve_site
from .wire.commands import Proto, RelayConnect
from .wire.pathspec import PathSpec, TargetService, TargetTcp, format_path_spec

log = structlog.get_logger("globalnet.tunnel")

MAX_CONNECTIONS = 1024
BUILD_TIMEOUT = 30.0


class TunnelNode(ServiceOpener, Protocol):
    """What a tunnel uses of the node: circuits, hidden services, and its sites (`PORT>SITE.gnet`)."""

    @property
    def sites(self) -> SiteFront: ...


class Tunnel:
    def __init__(self, node: TunnelNode, spec: PathSpec) -> None:
        if not isinstance(spec.target, (TargetTcp, TargetService)):
            raise GnetError(ErrorKind.NOT_SUPPORTED, "a tunnel's target is host:port or a hidden service")
        self.node = node
        self.spec = spec
        self.target = spec.target
        self.server: asyncio.Server | None = None
        self.active = 0
        self.port = spec.listen_port

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, self.spec.listen_host, self.spec.listen_port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("tunnel listening", listen=f"{self.spec.listen_host}:{self.port}", hops=len(self.spec.hops))
        log.debug("tunnel path", spec=format_path_spec(self.spec))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= MAX_CONNECTIONS:
            abort_with_reset(writer)
            return
        if isinstance(self.target, TargetService) and is_site_address(self.target.address):
            self.node.spawn(self._serve_site(reader, writer, decode_site_address(self.target.address)), "tunnel site")
            return
        self.node.spawn(self._serve(reader, writer), "tunnel connection")

    async def _serve_site(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, site_key: bytes) -> None:
        """`-tunnel PORT>SITE.gnet`: a local HTTP port serving the signed site from verified bytes only."""
        self.active += 1
        try:
            await serve_site(reader, writer, self.node.sites, site_key)
        finally:
            self.active -= 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.active += 1
        circuit = None
        try:
            try:
                factor = SERVICE_TIMEOUT_FACTOR if isinstance(self.target, TargetService) else 1.0
                async with asyncio.timeout(BUILD_TIMEOUT * factor):
                    if isinstance(self.target, TargetService):
                        circuit = await self.node.open_service(self.target.address, self.target.then, "tunnel")
                    else:
                        final = RelayConnect(Proto.TCP, self.target.host, self.target.port)
                        circuit = await self.node.open_circuit(self.spec.hops, final, "tunnel")
            except TimeoutError:
                waited = self.node.resolver.waiting_reason
                reason = f"circuit build timed out ({waited})" if waited else "circuit build timed out"
                log.warning("tunnel connection failed", tunnel=self.port, reason=reason)
                abort_with_reset(writer)
                return
            except GnetError as exc:
                log.warning("tunnel connection failed", tunnel=self.port, reason=str(exc))
                abort_with_reset(writer)
                return
            assert circuit.core.session is not None
            pump = StreamPump(circuit.core.session, circuit, reader, writer)
            circuit.attach(pump)
            await pump.run()
            if pump.error is not None:
                log.info("tunnel connection cut", tunnel=self.port, circuit=circuit.id, reason=str(pump.error))
        finally:
            self.active -= 1
            if circuit is not None:
                self.node.forget_circuit(circuit)
