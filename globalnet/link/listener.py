"""The listening UDP socket: qh3's QuicServer on qh3's batched datagram transport.

Why: qh3's `serve()` listens through asyncio's plain datagram endpoint, one
recvfrom() and one callback per datagram received and one sendto() per
datagram sent. Dialled links already use qh3's `OptimizedDatagramTransport`
(quinn-udp: recvmmsg with UDP GRO, sendmsg with UDP GSO), so on a relay the
accepted side of every bridge cost several times the dialled side (profiled:
sendto() alone was 30% of a bridge's CPU). Here the listener gets the same
transport, and the datagrams of one receive burst are handed to their
connection in one `receive_many_datagrams` call instead of one at a time.

Why not plain recvmmsg/sendmmsg (once in the C extension, since removed): they
batch syscalls but not the kernel's per-datagram work; GSO/GRO pass a whole
burst through the stack as one buffer (on loopback and on real NICs with UDP
offload), which quinn-udp already does. `bench/udp_io.py` measures it against
plain sendto/recvfrom.

Routing a batch: a 1-RTT (short header) packet names its connection in the
destination connection id at a fixed offset, so consecutive datagrams for the
same connection are grouped without parsing more; anything else (long header
packets: handshakes, new connections, version negotiation) takes QuicServer's
own per-datagram path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import socket
from collections.abc import Callable
from typing import Any

from qh3.asyncio._transport import create_optimized_datagram_transport
from qh3.asyncio.protocol import QuicConnectionProtocol
from qh3.asyncio.server import QuicServer, serve
from qh3.quic.configuration import QuicConfiguration

from . import qh3_fastpath  # qh3 per-datagram logging skipped when no qlog is set; whole GRO buffers
from .path_mtu import datagram_size_for
from .udp import size_buffers


class BatchingQuicServer(QuicServer):
    """QuicServer that accepts a burst of datagrams in one call, and sizes each
    new connection's datagrams for the route back to its peer (path_mtu.py)."""

    _sized: dict[int, QuicConfiguration]

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        assert isinstance(data, bytes)
        if len(data) >= 1200 and data[0] & 0x80 and len(data) > 6:  # long header: maybe a new connection
            dcid = data[6 : 6 + data[5]]
            if dcid not in self._protocols:
                base = self._configuration
                self._configuration = self._configuration_for(addr)
                try:
                    super().datagram_received(data, addr)
                finally:
                    self._configuration = base
                return
        super().datagram_received(data, addr)

    def _configuration_for(self, addr: Any) -> QuicConfiguration:
        base = self._configuration
        size = datagram_size_for(addr, base.max_datagram_size)
        if size == base.max_datagram_size:
            return base
        if not hasattr(self, "_sized"):
            self._sized = {}
        if size not in self._sized:
            self._sized[size] = dataclasses.replace(base, max_datagram_size=size)
        return self._sized[size]

    def gro_buffers_received(self, buffers: list[tuple[bytes, int]], addr: Any) -> None:
        """GRO buffers from one peer (qh3_fastpath.on_readable): each whole to the connection
        its first datagram names (a 1-RTT packet), else datagram by datagram.

        GRO merges by address, not by connection: a buffer goes whole only when every
        datagram in it is a 1-RTT packet naming the same connection id (else one forged
        datagram at its head, with another connection's id, would cost the whole buffer);
        any other buffer is split and each datagram routed on its own."""
        cid_end = 1 + self._configuration.connection_id_length

        def whole_to(item: tuple[bytes, int]) -> Any:
            buffer, segment_size = item
            if not buffer or not _one_connection(buffer, segment_size, cid_end):
                return None
            protocol = self._protocols.get(buffer[1:cid_end])
            return protocol if hasattr(protocol, "gro_buffers_received") else None

        for target, run in itertools.groupby(buffers, key=whole_to):  # consecutive buffers, one destination
            if target is not None:
                target.gro_buffers_received(list(run), addr)
            else:
                self.datagrams_received(qh3_fastpath.split_gro_buffers(run), addr)

    def datagrams_received(self, datagrams: list[bytes], addr: Any) -> None:
        cid_end = 1 + self._configuration.connection_id_length
        protocols = self._protocols
        batch: list[bytes] = []
        target: QuicConnectionProtocol | None = None
        datagrams.reverse()  # taken out as they go: a batch's bytes are freed once it is handled
        while datagrams:
            data = datagrams.pop()
            if data and not data[0] & 0x80:  # short header: DCID is data[1:cid_end]
                protocol = protocols.get(data[1:cid_end])
                if protocol is not None:
                    if protocol is not target:
                        if batch:
                            target.datagrams_received(batch, addr)  # type: ignore[union-attr]
                            batch = []
                        target = protocol
                    batch.append(data)
                    continue
            if batch:
                target.datagrams_received(batch, addr)  # type: ignore[union-attr]
                batch, target = [], None
            self.datagram_received(data, addr)
        if batch:
            target.datagrams_received(batch, addr)  # type: ignore[union-attr]


def _one_connection(buffer: bytes, segment_size: int, cid_end: int) -> bool:
    """Every datagram of a GRO buffer is a 1-RTT (short header) packet with the first one's id."""
    if buffer[0] & 0x80:
        return False
    cid = buffer[1:cid_end]
    for offset in range(segment_size, len(buffer), segment_size) if segment_size > 0 else ():
        if buffer[offset] & 0x80 or buffer[offset + 1 : offset + cid_end] != cid:
            return False
    return True


async def listen_batched(
    host: str,
    port: int,
    configuration: QuicConfiguration,
    create_protocol: Callable[..., QuicConnectionProtocol],
) -> BatchingQuicServer:
    """Like qh3's `serve()`, on the batched transport (GRO/GSO, recvmmsg)."""
    loop = asyncio.get_running_loop()
    try:  # an address (the usual -listen): no resolver thread, which would idle for the node's life
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST)
    except socket.gaierror:  # a name
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    size_buffers(sock)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    _, server = await create_optimized_datagram_transport(
        loop, lambda: BatchingQuicServer(configuration=configuration, create_protocol=create_protocol), sock=sock
    )
    assert isinstance(server, BatchingQuicServer)
    return server


async def listen(
    host: str,
    port: int,
    configuration: QuicConfiguration,
    create_protocol: Callable[..., QuicConnectionProtocol],
) -> QuicServer:
    """The node's listener: batched, unless GNET_LISTEN_IO=plain asks for qh3's
    own `serve()` (kept for before/after measurements)."""
    if os.environ.get("GNET_LISTEN_IO") == "plain":
        return await serve(host, port, configuration=configuration, create_protocol=create_protocol)
    return await listen_batched(host, port, configuration, create_protocol)
