"""The local SOCKS5 proxy (`-proxy "[HOST:]PORT>hop>...>internet"`).

A thin asyncio shell around `wire.socks.SocksParser` (SOCKS5, RFC 1929 auth,
HTTP CONNECT; all parsing and every reply byte live there). Per accepted
connection:

1. the handshake, bounded in time (`handshake_timeout`: a slow or silent
   client is dropped) and in bytes (the parser's bounds);
2. one circuit for this connection, built through the proxy's hops with the
   request's target as the exit's RELAY_CONNECT tcp. A name goes to the exit
   as a name and is resolved there, never here (no DNS leak); a `.gnet` name
   goes to the hidden service instead (`open_service_stream`) and never
   reaches an exit. The wait is bounded by `request_timeout` (twice that for a hidden
   service; both also cover a node that is still learning relays), and a request that
   waits long gets a log line saying why;
3. the reply: success, or the failure's `ErrorKind.socks_reply` code; then
   bytes flow through a `StreamPump` exactly as for a tunnel (tunnel.py).

Isolation: each request carries an `IsolationKey` (the listener and a salted
digest of the credentials), handed to the circuit layer with the circuit, so
connections with different credentials can never share a circuit, even if
circuits are one day reused (as Tor's IsolateSOCKSAuth). Logs name targets
only at debug level.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from .circuit.builder import ClientCircuit
from .circuit.resolve import NoExitError
from .endpoint.pump import StreamPump, abort_with_reset
from .errors import ErrorKind, GnetError
from .link.manager import LinkManager
from .peertable import PeerTable
from .policy.exit_policy import udp_policy_from_summary
from .service.address import AddressError
from .service.node_api import SERVICE_TIMEOUT_FACTOR
from .site.address import decode_site_address, is_site_address
from .site.serve import SiteFront, serve_site
from .socks_udp import UdpAssociation
from .udp_tunnel import UdpClientNode
from .wire.commands import Proto, RelayConnect
from .wire.host_port import format_host_port
from .wire.pathspec import HopAddr, HopId, PathSpec, TargetService, TargetTcp, format_path_spec
from .wire.socks import SocksParser
from .wire.socks_messages import Associate, Connect, Credentials, ProxyAuth, Reject, Send

log = structlog.get_logger("globalnet.socks")


class SocksNode(UdpClientNode, Protocol):
    """What a SOCKS proxy uses of the node: circuits, services, and the relays and links
    it knows (to tell "no exit allows this" from "not connected yet")."""

    @property
    def peers(self) -> PeerTable: ...
    @property
    def links(self) -> LinkManager: ...
    @property
    def sites(self) -> SiteFront: ...

#: A client must complete its greeting, auth and request within this.
HANDSHAKE_TIMEOUT = 10.0
#: Concurrent client connections per proxy (handshaking or carrying data).
MAX_CLIENTS = 512
READ_CHUNK = 4096
#: How long a reply may take to leave before a failed connection is cut.
CLOSE_TIMEOUT = 5.0
#: A request for a circuit to the internet must be answered within this (-proxy-timeout); one
#: for a hidden service within twice that (service.node_api.SERVICE_TIMEOUT_FACTOR).
REQUEST_TIMEOUT = 30.0
#: A request still waiting for its circuit after this gets a log line saying
#: why, at most one line per WAIT_NOTICE_EVERY per proxy.
WAIT_NOTICE = 2.0
WAIT_NOTICE_EVERY = 10.0
SERVICE_SUFFIX = ".gnet"

# Salt for the credentials' digest: the key is compared, never reversed, and
# an unsalted hash of a short password would be easy to guess from a dump.
_ISOLATION_SALT = os.urandom(16)


@dataclass(frozen=True)
class IsolationKey:
    """Who a circuit is for: circuits with different keys are never shared."""

    proxy: str  # the listener, "127.0.0.1:9050"
    auth: bytes | None  # salted digest of the credentials; None: none given

    @classmethod
    def for_request(cls, proxy: str, credentials: Credentials | None) -> IsolationKey:
        if credentials is None:
            return cls(proxy, None)
        h = hashlib.blake2b(digest_size=16, key=_ISOLATION_SALT)
        for part in (credentials.username, credentials.password):
            h.update(len(part).to_bytes(2, "big") + part)
        return cls(proxy, h.digest())


def is_service_name(host: str) -> bool:
    """A hidden service address: reached inside the network, never resolved."""
    return host.rstrip(".").lower().endswith(SERVICE_SUFFIX)


async def open_service_stream(node: SocksNode, address: str, then: TargetTcp | None, isolation: IsolationKey) -> ClientCircuit:
    """A circuit to the hidden service `address` (`<name>.gnet`).

    The service decides where a session goes: its own target when `then` is
    None (a SOCKS request for NAME.gnet:PORT, whatever the port, as a tunnel
    to a service), or `then`, reached from the service's side if the service
    allows it (a proxy whose path ends at a service). The service circuit
    picks its own relays (descriptor lookup, access point); the name never
    reaches an exit or a resolver. An unknown service, a bad address or all
    access points down are HOST_UNREACHABLE (0x04).
    """
    circuit = await node.open_service(address, then, "socks")
    circuit.isolation = isolation
    return circuit


class SocksProxy:
    def __init__(
        self,
        node: SocksNode,
        spec: PathSpec,
        auth: ProxyAuth | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        udp_idle_timeout: float = 120.0,
    ) -> None:
        self.node = node
        self.udp_idle_timeout = udp_idle_timeout
        self.spec = spec
        self.auth = Credentials(auth.username.encode(), auth.password.encode()) if auth else None
        self.request_timeout = request_timeout
        self.handshake_timeout = HANDSHAKE_TIMEOUT
        self.max_clients = MAX_CLIENTS
        self.server: asyncio.Server | None = None
        self.port = spec.listen_port
        self.active = 0
        self.waiting = 0
        self.counts: Counter[str] = Counter()
        self._last_notice = -WAIT_NOTICE_EVERY

    @property
    def listen(self) -> str:
        return format_host_port(self.spec.listen_host, self.port)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, self.spec.listen_host, self.spec.listen_port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("socks proxy listening", listen=self.listen, hops=len(self.spec.hops), auth="required" if self.auth else "optional")
        log.debug("socks proxy path", spec=format_path_spec(self.spec))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def statistics(self) -> dict[str, Any]:
        return {"listen": self.listen, "active": self.active, "waiting": self.waiting, **self.counts}

    # -- one client --------------------------------------------------------
    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= self.max_clients:
            self.counts["over_limit"] += 1
            log.debug("socks client refused", reason=f"{self.max_clients} clients already")
            abort_with_reset(writer)
            return
        self.active += 1  # counted here, so a burst of accepts cannot pass the limit
        self.node.spawn(self._serve(reader, writer), "socks connection")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        circuit: ClientCircuit | None = None
        try:
            parser = SocksParser(self.auth)
            try:
                async with asyncio.timeout(self.handshake_timeout):
                    request = await self._handshake(parser, reader, writer)
            except TimeoutError:
                self.counts["handshake_timeouts"] += 1
                log.debug("socks client dropped", reason=f"no complete request within {self.handshake_timeout:g} s")
                abort_with_reset(writer)
                return
            if request is None:
                return
            if isinstance(request, Associate):
                self.counts["udp_associations"] += 1
                await self._associate(parser, request, reader, writer)
                return
            self.counts["requests"] += 1
            if request.target.is_name and is_site_address(request.target.host):
                # a signed site: answered here from verified content, never by connecting anywhere
                self.counts["site_requests"] += 1
                writer.write(parser.reply_success())
                key = decode_site_address(request.target.host.rstrip("."))
                await serve_site(reader, writer, self.node.sites, key, initial=request.early)
                return
            try:
                circuit = await self._open(request)
            except GnetError as exc:
                code = exc.kind.socks_reply
                self.counts[f"reply_{code}"] += 1
                # the detail may name the target (an exit's policy reason): debug only;
                # what is said at info names no host or address
                extra: dict[str, Any] = {}
                if isinstance(exc, NoExitError):
                    extra = {"port": exc.port, "exits_considered": exc.exits}
                reason = exc.problem if isinstance(exc, AddressError) else exc.kind.describe
                log.info("socks request failed", proxy=self.port, kind=exc.kind.name, reply=code, reason=reason, **extra)
                log.debug("socks request failure detail", proxy=self.port, reason=str(exc))
                writer.write(parser.reply_failure(code, exc.kind.describe))
                await _close_gently(writer)
                return
            self.counts["reply_0"] += 1
            await self._carry(parser, request, circuit, reader, writer)
        except BaseException:  # shutdown or a bug: never leave the client hanging
            abort_with_reset(writer)
            raise
        finally:
            self.active -= 1
            if circuit is not None:
                self.node.forget_circuit(circuit)

    async def _handshake(
        self, parser: SocksParser, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Connect | Associate | None:
        """Read until the parser has a request; None if the client left or was rejected."""
        while True:
            try:
                data = await reader.read(READ_CHUNK)
            except (ConnectionError, OSError):
                return None
            if not data:
                writer.close()
                return None
            for event in parser.feed(data):
                if isinstance(event, Send):
                    writer.write(event.data)
                elif isinstance(event, Reject):
                    self.counts["rejected"] += 1
                    log.debug("socks client rejected", reason=event.reason)
                    if event.data:
                        writer.write(event.data)
                    await _close_gently(writer)
                    return None
                else:
                    return event

    async def _associate(
        self, parser: SocksParser, request: Associate, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """UDP ASSOCIATE: a relay port for this client until its TCP connection closes."""
        if not self._udp_exit_possible():
            self.counts["reply_2"] += 1
            log.info("socks udp refused", proxy=self.port, reason="no known exit allows UDP", reply=0x02)
            writer.write(parser.reply_failure(0x02, "no known exit allows UDP"))
            await _close_gently(writer)
            return
        peer = writer.get_extra_info("peername")
        claimed = request.source
        source_port = claimed.port if claimed.host in (peer[0], "0.0.0.0", "::") else 0
        association = UdpAssociation(
            self.node, self.spec, (peer[0], source_port),
            IsolationKey.for_request(self.listen, request.credentials), self.udp_idle_timeout,
        )
        try:
            host, port = await association.open(self.spec.listen_host)
            writer.write(parser.reply_associated(host, port))
            log.debug("socks udp association", proxy=self.port, relay_port=port)
            while await reader.read(READ_CHUNK):  # the control connection carries nothing more
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            association.close()
            writer.close()

    def _udp_exit_possible(self) -> bool:
        """False only when the node knows relays and none announces UDP exit rules
        (a path pinned to one exit: that exit's record, if known)."""
        if isinstance(self.spec.target, TargetService):
            return True
        relays = self.node.peers.relays()
        last = self.spec.hops[-1] if self.spec.hops else None
        if isinstance(last, HopId) or isinstance(last, HopAddr) and last.node_id is not None:
            relays = [r for r in relays if r.node_id == last.node_id]
        elif isinstance(last, HopAddr):
            relays = [r for r in relays if (last.host, last.port) in r.addresses]
        if not relays:
            return True  # not known (yet): let the first datagram's circuit say
        return any(r.is_exit and udp_policy_from_summary(r.exit_policy).enabled for r in relays)

    async def _open(self, request: Connect) -> ClientCircuit:
        """The request's circuit, within its timeout; GnetError says why not."""
        target = request.target
        key = IsolationKey.for_request(self.listen, request.credentials)
        log.debug(
            "socks request",
            proxy=self.port,
            target=format_host_port(target.host, target.port),
            atyp=target.atyp.name,
            flavor=request.flavor.value,
        )
        opening: Coroutine[Any, Any, ClientCircuit]
        timeout = self.request_timeout * SERVICE_TIMEOUT_FACTOR
        if isinstance(self.spec.target, TargetService):
            # the request names what the service's side should reach
            opening = open_service_stream(self.node, self.spec.target.address, TargetTcp(target.host, target.port), key)
        elif target.is_name and is_service_name(target.host):
            opening = open_service_stream(self.node, target.host.rstrip(".").lower(), None, key)
        else:
            final = RelayConnect(Proto.TCP, target.host, target.port)
            opening = self.node.open_circuit(self.spec.hops, final, "socks", isolation=key)
            timeout = self.request_timeout
        loop = asyncio.get_running_loop()
        notice = loop.call_later(WAIT_NOTICE, self._notice_waiting)
        self.waiting += 1
        try:
            async with asyncio.timeout(timeout):
                return await opening
        except TimeoutError:
            waited = self.node.resolver.waiting_reason
            detail = f"no circuit within {timeout:g} s" + (f" ({waited})" if waited else "")
            raise GnetError(ErrorKind.TIMEOUT, detail) from None
        finally:
            self.waiting -= 1
            notice.cancel()

    def _notice_waiting(self) -> None:
        """Say why requests wait (once in a while, not per request)."""
        now = asyncio.get_running_loop().time()
        if now - self._last_notice < WAIT_NOTICE_EVERY:
            return
        self._last_notice = now
        if not self.node.links.links:
            reason = "no relay is linked yet: the node is still learning relays"
        else:
            reason = "the circuit is still being built: a relay on the path is slow or not answering"
        log.info("socks requests waiting", proxy=self.port, waiting=self.waiting, reason=reason, timeout=self.request_timeout)

    async def _carry(
        self,
        parser: SocksParser,
        request: Connect,
        circuit: ClientCircuit,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Reply success, then move bytes as a tunnel does."""
        session = circuit.core.session
        assert session is not None
        writer.write(parser.reply_success())
        pump = StreamPump(session, circuit, reader, writer)
        if request.early:  # sent before our reply; bounded by the parser (well within a window)
            circuit.send_wire(session.send_data(request.early))
        circuit.attach(pump)
        await pump.run()
        if pump.error is not None:
            log.debug("socks connection cut", proxy=self.port, circuit=circuit.id, reason=str(pump.error))


async def _close_gently(writer: asyncio.StreamWriter) -> None:
    """Let a final reply leave, then close (FIN: the client must read the reply)."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.drain()
    except (TimeoutError, ConnectionError, OSError):
        abort_with_reset(writer)
        return
    writer.close()
