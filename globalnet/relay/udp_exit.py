"""The exit end of a UDP circuit (RELAY_CONNECT udp host:port): a UDP socket and a DatagramFlow.

The exit sends each datagram to the address it resolved and checked against
its UDP policy (`-exit-allow-udp`; nothing by default), from one socket per
circuit and address family, so replies cannot mix between circuits. Like a
NAT, it accepts replies only from the addresses it sent to; anything else
reaching the socket is dropped. Names are checked before DNS (the same rules
as TCP) and resolved here, never by the client; resolutions are cached per
circuit (bounded). Datagrams that arrive while a name resolves wait in a
small bounded queue, and are dropped past it: UDP is never buffered without
limit. The circuit closes after `idle_timeout` without traffic.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from ..endpoint.datagram_flow import DatagramCounters
from ..endpoint.datagram_pump import DatagramPump
from ..endpoint.session import FrameSession
from ..errors import ErrorKind, GnetError
from ..link.udp import size_buffers
from ..policy.exit_policy import ExitPolicy
from ..policy.target_name import target_name_problem
from ..wire.datagram import Datagram

log = structlog.get_logger("globalnet.relay.udp")

MAX_PENDING = 64  # datagrams waiting for a name to resolve
MAX_NAMES = 64  # cached resolutions per circuit
MAX_PEERS = 256  # addresses replies are accepted from, per circuit
RESOLVE_TIMEOUT = 10.0
#: Kernel buffer of each circuit's socket: a window's burst (256 KiB of payload costs
#: about twice that in kernel accounting) must not overflow the default 208 KiB.
SOCKET_BUFFER = 1024 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CircuitEnd(Protocol):
    def send_wire(self, data: bytes, end: bool = False) -> None: ...

    def reset(self, kind: ErrorKind) -> None: ...


def check_udp_target(policy: ExitPolicy, host: str, port: int) -> None:
    """Refuse at RELAY_CONNECT what no datagram could pass (the client gets 0x02 at once)."""
    if not policy.enabled or not policy.allow:
        raise GnetError(ErrorKind.EXIT_POLICY, "this node does not exit UDP")
    if not policy.may_exit_to_port(port):
        raise GnetError(ErrorKind.EXIT_POLICY, f"UDP port {port} is not allowed by exit policy")
    problem = target_name_problem(host)
    if problem is not None:
        raise GnetError(ErrorKind.HOST_UNREACHABLE, problem)
    if host and not _is_literal(host):
        refusal = policy.name_refusal(host, port)
        if refusal is not None:
            raise GnetError(ErrorKind.EXIT_POLICY, refusal)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class _Socket(asyncio.DatagramProtocol):
    """Hands what a target sends to the circuit's endpoint, once it exists."""

    def __init__(self) -> None:
        self.owner: UdpExit | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.owner is not None:
            self.owner.from_target(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable etc.: UDP carries on
        if self.owner is not None:
            self.owner.flow.count("dropped_other")


def _same(protocol: _Socket) -> _Socket:
    return protocol


class UdpSockets:
    """The circuit's own sockets, one per address family, opened before RELAY_CONNECT_OK."""

    def __init__(self) -> None:
        self.transports: dict[int, asyncio.DatagramTransport] = {}
        self.protocols: list[_Socket] = []

    @classmethod
    async def open(cls) -> UdpSockets:
        loop = asyncio.get_running_loop()
        sockets = cls()
        for version, bind in ((4, "0.0.0.0"), (6, "::")):
            protocol = _Socket()
            try:
                transport, _ = await loop.create_datagram_endpoint(functools.partial(_same, protocol), local_addr=(bind, 0))
            except OSError:
                continue  # e.g. no IPv6 on this host: those destinations are dropped
            size_buffers(transport.get_extra_info("socket"), SOCKET_BUFFER)  # bursts of a window stay in the kernel
            sockets.transports[version] = transport
            sockets.protocols.append(protocol)
        if not sockets.transports:
            raise GnetError(ErrorKind.RESOURCE_LIMIT, "the exit cannot open a UDP socket")
        return sockets

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()


class UdpExit:
    """Endpoint of one UDP circuit at the exit (fed circuit bytes by the relay hop)."""

    def __init__(
        self,
        session: FrameSession,
        end: CircuitEnd,
        policy: ExitPolicy,
        target: tuple[str, int],
        idle_timeout: float,
        sockets: UdpSockets,
        on_close: Callable[[UdpExit], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        totals: DatagramCounters | None = None,
    ) -> None:
        self._on_close = on_close
        self.pump = DatagramPump(session, end, self._to_target, self._closed, idle_timeout, clock, totals)
        self.flow = self.pump.flow
        self._policy = policy
        self._target = target
        self._loop = asyncio.get_running_loop()
        self._sockets = sockets
        for protocol in sockets.protocols:
            protocol.owner = self
        self._names: OrderedDict[str, list[IPAddress]] = OrderedDict()
        self._peers: OrderedDict[tuple[str, int], tuple[str, int]] = OrderedDict()  # sockaddr -> name the client used
        self._pending = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- Endpoint (from the relay hop) ------------------------------------
    def feed(self, data: bytes | bytearray, end: bool) -> None:
        self.pump.feed(data, end)

    def circuit_reset(self, kind: ErrorKind) -> None:
        self.pump.circuit_reset(kind)

    def _closed(self, error: GnetError | None) -> None:
        if error is None:
            log.debug("udp circuit ended", **self.flow.statistics())
        for task in self._tasks:
            task.cancel()
        self._sockets.close()
        if self._on_close is not None:
            self._on_close(self)

    # -- toward the target --------------------------------------------------
    def _to_target(self, datagram: Datagram) -> None:
        host, port = (datagram.host, datagram.port) if datagram.host else self._target
        payload = datagram.payload
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            self._send_checked([literal], host, port, payload)
            return
        cached = self._names.get(host.lower())
        if cached is not None:
            self._send_checked(cached, host, port, payload)
            return
        problem = target_name_problem(host) or self._policy.name_refusal(host, port)
        if problem is not None or self._pending >= MAX_PENDING:
            self.flow.count("dropped_other")  # refused before DNS, or too many waiting
            return
        self._pending += 1
        task = self._loop.create_task(self._resolve_then_send(host, port, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve_then_send(self, host: str, port: int, payload: bytes) -> None:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except (OSError, UnicodeError, TimeoutError):
            self.flow.count("dropped_other")
            return
        finally:
            self._pending -= 1
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        self._names[host.lower()] = addresses
        while len(self._names) > MAX_NAMES:
            self._names.popitem(last=False)
        if not self.pump.closed:
            self._send_checked(addresses, host, port, payload)

    def _send_checked(self, addresses: list[IPAddress], shown_host: str, port: int, payload: bytes) -> None:
        for address in addresses:
            if not self._policy.check(address, port).allowed:
                continue
            transport = self._sockets.transports.get(address.version)
            if transport is None:
                continue
            sockaddr = (address.compressed, port)
            self._peers[sockaddr] = (shown_host, port)
            self._peers.move_to_end(sockaddr)
            while len(self._peers) > MAX_PEERS:
                self._peers.popitem(last=False)
            transport.sendto(payload, sockaddr)  # the address that was checked: no second resolution
            return
        self.flow.count("dropped_other")

    # -- from the target ------------------------------------------------------
    def from_target(self, payload: bytes, addr: Any) -> None:
        if self.pump.closed:
            return
        key = (ipaddress.ip_address(addr[0]).compressed, int(addr[1]))
        shown = self._peers.get(key)
        if shown is None:  # not an address we sent to: a stranger, dropped
            self.flow.count("dropped_other")
            return
        host, port = ("", 0) if shown == self._target else shown
        self.pump.send(host, port, payload)
