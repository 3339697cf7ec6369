"""All links of a node: listen, dial, one link per peer, keepalive.

Why a manager: circuits ask for "a link to node X at host:port" and must get
the same link whoever dialled first, so that one pair of nodes shares one QUIC
connection (streams are cheap, handshakes are not). When two nodes dial each
other at once, both keep the link dialled by the node with the smaller id and
retire the other, so they converge without talking about it.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from qh3.asyncio._transport import create_optimized_datagram_transport
from qh3.asyncio.server import QuicServer
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.tls import SignatureAlgorithm

from ..errors import ErrorKind, GnetError
from ..identity import Identity
from ..wire.records import NodeRecord, short_id
from .certs import certificate_pem
from .hop_stream import HopStream
from .listener import listen as listen_udp
from .liveness import IDLE_CLOSE
from .path_mtu import datagram_size_for
from .quic_link import ALPN, Link
from .udp import size_buffers

log = structlog.get_logger("globalnet.link")

KEEPALIVE_INTERVAL = 15.0
DIAL_TIMEOUT = 10.0
MAX_LINKS = 1024


@dataclass(frozen=True)
class LinkSettings:
    idle_timeout: float = 60.0
    max_datagram_size: int = 1452  # the most a link sends; 1200 where the route cannot carry it (path_mtu.py)
    dial_timeout: float = DIAL_TIMEOUT
    idle_close: float = IDLE_CLOSE  # a dialled link nothing keeps closes after this long unused (liveness.py)


class LinkManager:
    def __init__(
        self,
        identity: Identity,
        make_record: Callable[[], NodeRecord],
        settings: LinkSettings = LinkSettings(),
    ) -> None:
        self.identity = identity
        self._make_record = make_record
        self._record: NodeRecord | None = None
        self.settings = settings
        self._closed_in = 0  # stream bytes of links already closed (traffic totals)
        self._closed_out = 0
        self.links: dict[bytes, Link] = {}  # node id -> the link in use
        self.all_links: set[Link] = set()
        self._by_address: dict[tuple[str, int], bytes] = {}  # dialled address -> node id
        self._dials: dict[tuple[str, int], asyncio.Task[Link]] = {}
        self._server: QuicServer | None = None
        self.listen_address: tuple[str, int] | None = None
        self.on_stream: Callable[[HopStream], None] = lambda hs: hs.reset(ErrorKind.NOT_SUPPORTED)
        self.on_link_ready: list[Callable[[Link], None]] = []
        self.on_peers: Callable[[Link, list[bytes]], None] = lambda link, records: None
        self.on_dht: Callable[[Link, bytes], None] = lambda link, message: None
        self._cert = certificate_pem(identity)

    # -- records ---------------------------------------------------------
    def own_record(self) -> NodeRecord:
        if self._record is None or self._record.expires - time.time() < 3600:
            self._record = self._make_record()
        return self._record

    def refresh_record(self) -> None:
        self._record = None

    # -- configuration ---------------------------------------------------
    def _quic_config(self, client: bool) -> QuicConfiguration:
        config = QuicConfiguration(
            is_client=client,
            alpn_protocols=[ALPN],
            idle_timeout=self.settings.idle_timeout,
            max_datagram_size=self.settings.max_datagram_size,
            probe_datagram_size=False,  # qh3 2.1's probe never changes the size (link/path_mtu.py)
        )
        if client:
            # No CA: the certificate's key *is* the peer's identity, checked by
            # the Link against the pin and the control-stream record.
            config.verify_mode = ssl.CERT_NONE
            config.signature_algorithms = [SignatureAlgorithm.ED25519]
        else:
            config.load_cert_chain(self._cert[0], self._cert[1])
        return config

    # -- listening -------------------------------------------------------
    async def listen(self, host: str, port: int) -> tuple[str, int]:
        factory = functools.partial(Link, manager=self, dialler=False)
        self._server = await listen_udp(host, port, self._quic_config(client=False), factory)
        assert self._server._transport is not None
        sockname = self._server._transport.get_extra_info("sockname")
        self.listen_address = (sockname[0], sockname[1])
        return self.listen_address

    # -- dialling --------------------------------------------------------
    async def get_link(self, host: str, port: int, node_id: bytes | None = None) -> Link:
        """A ready link to the node at host:port (pinned to node_id if given)."""
        key = (host, port)
        known = node_id if node_id is not None else self._by_address.get(key)
        if known is not None:
            existing = self.links.get(known)
            if existing is not None and existing.is_ready and (node_id is None or existing.peer_id == node_id):
                return existing
        task = self._dials.get(key)
        if task is None:
            task = asyncio.ensure_future(self._dial(host, port, node_id))
            self._dials[key] = task
            task.add_done_callback(lambda t: self._dial_done(key, t))
        link = await asyncio.shield(task)
        if len(self._by_address) >= MAX_LINKS * 4:
            self._by_address.clear()  # a cache: it only saves a dial
        self._by_address[key] = link.peer_id
        if node_id is not None and link.peer_id != node_id:
            raise GnetError(
                ErrorKind.PIN_MISMATCH, f"{host}:{port} is node {link.peer_id.hex()}, not the pinned {node_id.hex()}"
            )
        return self.links.get(link.peer_id, link)

    def _dial_done(self, key: tuple[str, int], task: asyncio.Future[Link]) -> None:
        """Forget a finished dial, and mark its error seen: every waiter may have been
        cancelled (shielded), and the error is theirs to see, not the loop's to print."""
        self._dials.pop(key, None)
        if not task.cancelled():
            task.exception()

    async def _dial(self, host: str, port: int, node_id: bytes | None) -> Link:
        # The timeout's TimeoutError appears only when the `async with` block exits, so it is
        # caught out here: a dial that runs out of time closes its link and fails as a
        # GnetError, which is what every caller handles (make testnet found it escaping).
        started: list[Link] = []
        try:
            return await self._dial_within(host, port, node_id, started)
        except TimeoutError:
            for link in started:
                link.close_link(ErrorKind.TIMEOUT, "link set-up timed out")
            raise GnetError(ErrorKind.TIMEOUT, f"no answer from {host}:{port}") from None

    async def _dial_within(self, host: str, port: int, node_id: bytes | None, started: list[Link]) -> Link:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.settings.dial_timeout):
            literal = ip_literal(host)
            if literal is not None:  # no resolver thread for an address (most hops)
                family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
                addr: tuple[Any, ...] = (str(literal), port) if literal.version == 4 else (str(literal), port, 0, 0)
            else:
                try:
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                except socket.gaierror as exc:
                    raise GnetError(ErrorKind.NO_ROUTE, f"cannot resolve {host}: {exc.strerror}") from None
                family, _, _, _, addr = infos[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            size_buffers(sock)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
            # connected: an ICMP "port unreachable" (a node that is gone) comes back
            # as ECONNREFUSED at once, instead of a silent dial timeout
            sock.connect(addr)
            config = self._quic_config(client=True)
            config.max_datagram_size = datagram_size_for(addr, self.settings.max_datagram_size)
            quic = QuicConnection(configuration=config)
            factory = functools.partial(Link, quic, manager=self, dialler=True, expected_id=node_id, address=(host, port))
            _transport, protocol = await create_optimized_datagram_transport(loop, factory, sock=sock)
            link: Link = protocol  # type: ignore[assignment]
            link.owned_transport = True
            self.all_links.add(link)
            link.connect(addr)
            started.append(link)
            await asyncio.shield(link.ready)
            return link

    # -- callbacks from links --------------------------------------------
    def link_ready(self, link: Link) -> None:
        self.all_links.add(link)
        peer_id = link.peer_id
        if len(self.links) >= MAX_LINKS and peer_id not in self.links:
            link.close_link(ErrorKind.RESOURCE_LIMIT, "too many links")
            return
        current = self.links.get(peer_id)
        if current is None or not current.is_ready or current is link:
            self.links[peer_id] = link
        else:
            winner = min((current, link), key=self._dialler_id)
            loser = link if winner is current else current
            self.links[peer_id] = winner
            log.debug("duplicate link", peer=short_id(peer_id), keep="dialled" if winner.dialler else "accepted")
            loser.retiring = True
        if not link.ready.done():
            link.ready.set_result(link)
        log.debug("link up", peer=short_id(peer_id), dialled=link.dialler)
        for callback in self.on_link_ready:
            callback(link)

    def _dialler_id(self, link: Link) -> bytes:
        return self.identity.node_id if link.dialler else link.peer_id

    def incoming_stream(self, hs: HopStream) -> None:
        # a retiring link still serves new streams: the peer may not have retired it yet
        self.on_stream(hs)

    def link_closed(self, link: Link) -> None:
        if link in self.all_links:
            self._closed_in += link.total_in
            self._closed_out += link.total_out
        self.all_links.discard(link)
        if link.peer is not None and self.links.get(link.peer_id) is link:
            del self.links[link.peer_id]
            # a retired duplicate may still be up: promote it
            for other in self.all_links:
                if other.peer is not None and other.peer_id == link.peer_id and other.is_ready:
                    self.links[link.peer_id] = other
                    break
        if link.peer is not None:
            reason = link.close_reason
            log.debug("link down", peer=short_id(link.peer_id), reason=str(reason) if reason else "closed")

    # -- upkeep ----------------------------------------------------------
    async def run_keepalive(self) -> None:
        """Ping every link we dialled and keep (a bootstrap peer, one of a relay's minimum
        links), so QUIC's idle timeout and NATs keep it up; the PONG keeps it up on the other
        side too, so the listener need not ping as well. Drop retired duplicates.

        Only kept links: a link carrying circuits pings by itself when it falls quiet
        (liveness.py), and an unused one should close. Pinging every dialled link woke a relay
        of a 200-node network ~8 times a second for nothing (each ping a PONG and ACKs on both
        sides, ~60 dialled links each, every 15 s), and kept unused links up until their idle
        close. Unpinged, an unused link ends at QUIC's idle timeout on both sides at once,
        which also spares the race of one side closing while the other opens a stream."""
        while True:
            await asyncio.sleep(KEEPALIVE_INTERVAL)  # each link's liveness core has its own timer
            for link in list(self.all_links):
                if link.retiring and not link.streams:
                    link.close_link(ErrorKind.CLOSED, "duplicate link")
                elif link.is_ready and link.dialler and link.kept:
                    link.send_ping()

    def close(self) -> None:
        for link in list(self.all_links):
            link.close_link(ErrorKind.CLOSED, "node shutting down")
        if self._server is not None:
            self._server.close()
            self._server = None

    def traffic(self) -> tuple[int, int]:
        """Stream bytes (in, out) over every link this node ever had: bandwidth graphs and metrics."""
        live = list(self.all_links)
        return self._closed_in + sum(k.total_in for k in live), self._closed_out + sum(k.total_out for k in live)

    def statistics(self) -> dict[str, int]:
        return {"links": len(self.links), "connections": len(self.all_links)}


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
