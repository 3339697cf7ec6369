"""SOCKS5 UDP ASSOCIATE (RFC 1928 section 7): one UDP relay port per association.

The proxy binds a UDP port on its own listen address and tells the client
(BND.ADDR/BND.PORT). It takes datagrams only from the client that asked: the
TCP control connection's IP, and the port the client named in its request
(or, when it named none, the first port that sends; then that one only).
Fragments (FRAG != 0) are dropped, as most proxies do.

Circuits: one per association and isolation key, with destinations
multiplexed on it (each DATAGRAM frame names its destination), built when the
first datagram arrives so the exit can be chosen by that destination's port
and the exits' announced UDP rules. Why not one circuit per destination: a
DNS client or a game talks to a handful of peers at once, and one circuit per
peer would cost a circuit build (and a path choice an observer could count)
for each; the exit sees the destinations either way. `.gnet` destinations go
to their hidden service on a circuit of their own. Names are sent to the exit
and resolved there, never here. The association, its circuits and its port
close when the TCP control connection closes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from .errors import ProtocolError
from .link.udp import size_buffers
from .udp_tunnel import UdpClientNode, UdpFlow
from .wire.commands import Proto, RelayConnect
from .wire.datagram import Datagram
from .wire.pathspec import PathSpec, TargetService
from .wire.socks_udp import decode_udp_request, encode_udp_datagram

log = structlog.get_logger("globalnet.socks")

MAX_FLOWS = 16  # circuits per association: the exit's, and one per hidden service
SERVICE_SUFFIX = ".gnet"


class _Relay(asyncio.DatagramProtocol):
    def __init__(self, association: UdpAssociation) -> None:
        self.association = association

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.association.from_client(data, addr)


class UdpAssociation:
    def __init__(
        self,
        node: UdpClientNode,
        spec: PathSpec,
        client: tuple[str, int],
        isolation: object,
        idle_timeout: float,
    ) -> None:
        self.node = node
        self.spec = spec
        self.client_ip = client[0]
        self.client_port = client[1] or None  # None: the first datagram's port, then only that one
        self.isolation = isolation
        self.idle_timeout = idle_timeout
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[str, UdpFlow] = {}  # "" = the exit's circuit; else a service address
        self.defaults: dict[str, tuple[str, int]] = {}  # a flow's first destination ("" in replies)
        self.counts: Counter[str] = Counter()
        self.closed = False

    async def open(self, host: str) -> tuple[str, int]:
        """Bind the relay port on `host` (the proxy's listen address); returns BND.ADDR, BND.PORT."""
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: _Relay(self), local_addr=(host, 0))
        size_buffers(self.transport.get_extra_info("socket"))
        bound = self.transport.get_extra_info("sockname")
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for flow in list(self.flows.values()):
            flow.close()
        if self.transport is not None:
            self.transport.close()
        log.debug("udp association closed", **self.counts)

    # -- from the client ----------------------------------------------------
    def from_client(self, data: bytes, addr: Any) -> None:
        if self.closed:
            return
        if str(addr[0]) != self.client_ip or (self.client_port is not None and int(addr[1]) != self.client_port):
            self.counts["stranger"] += 1  # not the client that asked: ignored
            return
        self.client_port = int(addr[1])
        try:
            request = decode_udp_request(data)
        except ProtocolError:
            self.counts["malformed"] += 1
            return
        if request.is_fragment:
            self.counts["fragment"] += 1
            return
        host = request.host.rstrip(".").lower() if request.host.lower().rstrip(".").endswith(SERVICE_SUFFIX) else request.host
        key = host if host.endswith(SERVICE_SUFFIX) else ""
        flow = self.flows.get(key)
        if flow is None:
            if len(self.flows) >= MAX_FLOWS:
                self.counts["over_limit"] += 1
                return
            flow = UdpFlow(self._replier(key), self._forget, self.idle_timeout, self.node.udp_totals)
            self.flows[key] = flow
            self.defaults[key] = (host, request.port)
            self.node.spawn(flow.run(self._opener(key, host, request.port), self.node, "socks"), "socks udp flow")
        self.counts["datagrams_out"] += 1
        if key:
            flow.send("", 0, request.data)  # a service has one target
        else:
            flow.send(host, request.port, request.data)

    def _opener(self, key: str, host: str, port: int) -> Callable[[], Coroutine[Any, Any, Any]]:
        async def open_circuit() -> Any:
            if key:
                return await self.node.open_service(key, None, "socks udp", RelayConnect(Proto.UDP))
            if isinstance(self.spec.target, TargetService):
                return await self.node.open_service(self.spec.target.address, None, "socks udp", RelayConnect(Proto.UDP))
            return await self.node.open_circuit(
                self.spec.hops, RelayConnect(Proto.UDP, host, port), "socks udp", isolation=self.isolation
            )

        return open_circuit

    # -- back to the client ---------------------------------------------------
    def _replier(self, key: str) -> Callable[[Datagram], None]:
        def reply(datagram: Datagram) -> None:
            if self.transport is None or self.closed or self.client_port is None:
                return
            host, port = (datagram.host, datagram.port) if datagram.host else self.defaults[key]
            self.counts["datagrams_in"] += 1
            self.transport.sendto(encode_udp_datagram(host, port, datagram.payload), (self.client_ip, self.client_port))

        return reply

    def _forget(self, flow: UdpFlow) -> None:
        for key, known in list(self.flows.items()):
            if known is flow:
                del self.flows[key]
