"""The link layer's UDP path: the batched listener, the datagram size choice,
and qh3's fast path (same bytes delivered as qh3's own methods)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from typing import Any

import pytest
from qh3._hazmat import pull_quic_header
from qh3.asyncio._transport import OptimizedDatagramTransport
from qh3.asyncio.protocol import QuicConnectionProtocol
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.tls import SignatureAlgorithm

from globalnet.errors import ErrorKind
from globalnet.link import path_mtu, qh3_fastpath
from globalnet.link.bursts import slices
from globalnet.link.certs import certificate_pem
from globalnet.link.hop_stream import HopStream
from globalnet.link.listener import BatchingQuicServer
from globalnet.link.manager import LinkManager, LinkSettings
from globalnet.link.path_mtu import FULL_DATAGRAM, MIN_DATAGRAM, choose_datagram_size, datagram_size_for
from tests.identities import next_identity
from tests.inproc import attach_socket, open_circuit, start_client, start_relay
from tests.targets import EchoServer, pattern, serve

V4, V6 = socket.AF_INET, socket.AF_INET6


# -- the datagram size -------------------------------------------------------------
@pytest.mark.parametrize(
    ("mtu", "family", "limit", "size"),
    [
        (65536, V4, 1452, 1452),  # loopback
        (1500, V4, 1452, 1452),  # Ethernet
        (1500, V6, 1452, 1452),  # Ethernet, IPv6: exactly fits
        (1480, V4, 1452, 1452),
        (1479, V4, 1452, 1200),  # one byte short: fall back
        (1499, V6, 1452, 1200),
        (1420, V6, 1452, 1200),  # WireGuard
        (1280, V6, 1452, 1200),  # IPv6 minimum MTU
        (None, V4, 1452, 1200),  # unknown route
        (1500, V4, 1300, 1300),  # a lower configured limit is kept where it fits
        (1500, V4, 9000, 1452),  # never more than 1452
        (65536, V4, 1000, 1200),  # never less than QUIC's 1200
    ],
)
def test_datagram_size_choice(mtu: int | None, family: int, limit: int, size: int) -> None:
    assert choose_datagram_size(mtu, family, limit) == size


def test_loopback_route_carries_full_datagrams() -> None:
    mtu = path_mtu.route_mtu("127.0.0.1", 9)
    assert mtu is not None and mtu >= 1480
    assert datagram_size_for(("127.0.0.1", 9)) == FULL_DATAGRAM
    assert datagram_size_for(("::ffff:127.0.0.1", 9, 0, 0)) == FULL_DATAGRAM
    assert datagram_size_for(("127.0.0.1", 9), limit=1280) == 1280


def test_narrow_route_falls_back_to_1200(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(path_mtu, "route_mtu", lambda host, port: 1420)
    assert datagram_size_for(("192.0.2.1", 443)) == MIN_DATAGRAM
    monkeypatch.setattr(path_mtu, "route_mtu", lambda host, port: None)
    assert datagram_size_for(("not-an-address", 443)) == MIN_DATAGRAM


def test_route_mtu_of_a_name_is_unknown() -> None:
    assert path_mtu.route_mtu("localhost", 9) is None  # literals only: no resolution here


# -- the batched listener ------------------------------------------------------------
class _FakeProtocol:
    def __init__(self, name: str, calls: list[tuple[str, list[bytes]]]) -> None:
        self.name = name
        self.calls = calls

    def datagrams_received(self, data: list[bytes], addr: Any) -> None:
        self.calls.append((self.name, list(data)))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.calls.append((self.name + ":one", [data]))


def _short(cid: bytes, n: int) -> bytes:
    return bytes([0x40]) + cid + bytes([n]) * 20


async def test_listener_groups_a_burst_by_connection() -> None:
    config = QuicConfiguration(is_client=False)
    server = BatchingQuicServer(configuration=config)
    calls: list[tuple[str, list[bytes]]] = []
    a_cid, b_cid = b"A" * config.connection_id_length, b"B" * config.connection_id_length
    server._protocols = {a_cid: _FakeProtocol("a", calls), b_cid: _FakeProtocol("b", calls)}  # type: ignore[dict-item]
    unknown = _short(b"C" * config.connection_id_length, 9)
    burst = [_short(a_cid, 1), _short(a_cid, 2), _short(b_cid, 3), unknown, _short(a_cid, 4), _short(a_cid, 5)]
    sent = list(burst)
    server.datagrams_received(burst, ("127.0.0.1", 5000))
    # order kept; runs of one connection go together; an unknown id is dropped by QuicServer
    assert calls == [("a", sent[0:2]), ("b", [sent[2]]), ("a", sent[4:6])]
    assert burst == []  # taken out as dispatched: the transport's list holds no datagram any more


def test_a_large_burst_is_handled_in_slices_in_order_and_freed_as_it_goes() -> None:
    small = [bytes([i]) * 1000 for i in range(10)]
    assert [part is small for part in slices(small, 10_000, len)] == [True]  # fits: the list itself, no copy
    burst = [bytes([i]) * 1000 for i in range(25)] + [b"x" * 5000] + [b"y" * 10]
    sent = list(burst)
    seen: list[int] = []
    parts = []
    for part in slices(burst, 4000, len):
        seen.append(len(burst))  # what the burst still holds while this slice is handled
        parts.append(list(part))
    assert [d for part in parts for d in part] == sent  # every datagram, in order
    assert all(sum(map(len, p)) <= 4000 or len(p) == 1 for p in parts)  # a larger datagram goes alone
    assert [len(p) for p in parts] == [4, 4, 4, 4, 4, 4, 1, 1, 1]
    assert seen == sorted(seen, reverse=True) and seen[-1] == 0 and burst == []


async def test_listener_uses_the_batched_transport_and_relays_work() -> None:
    relays = [await start_relay(), await start_relay(), await start_relay(exit_allow="127.0.0.1/32")]
    client = start_client()
    try:
        for r in relays:
            server = r.links._server
            assert isinstance(server, BatchingQuicServer)
            assert isinstance(server._transport, OptimizedDatagramTransport)
        payload = pattern(2 * 1024 * 1024, seed=5)
        async with asyncio.timeout(30), serve(EchoServer()) as port:
            circuit = await open_circuit(client, relays, "127.0.0.1", port)
            reader, writer, pump = await attach_socket(circuit)
            writer.write(payload)
            await writer.drain()
            assert await reader.readexactly(len(payload)) == payload
            writer.close()
            await pump
        # every link a relay accepted sends full-size datagrams on loopback
        accepted = [link for r in relays for link in r.links.all_links if not link.dialler]
        assert accepted and all(link._quic._configuration.max_datagram_size == FULL_DATAGRAM for link in accepted)
    finally:
        for n in (client, *relays):
            n.close()


# -- qh3's fast path: what arrives is what was sent ------------------------------------
def _pair(size: int = 1452) -> tuple[QuicConnection, QuicConnection, float]:
    identity = next_identity()
    cert, key = certificate_pem(identity)
    cc = QuicConfiguration(is_client=True, alpn_protocols=["t"], max_datagram_size=size)
    cc.verify_mode = ssl.CERT_NONE
    cc.signature_algorithms = [SignatureAlgorithm.ED25519]
    sc = QuicConfiguration(is_client=False, alpn_protocols=["t"], max_datagram_size=size)
    sc.load_cert_chain(cert, key)
    client = QuicConnection(configuration=cc)
    client.connect(("127.0.0.1", 4433), now=0.0)
    first = client.datagrams_to_send(now=0.0)
    server = QuicConnection(configuration=sc, original_destination_connection_id=pull_quic_header(first[0][0], 0, 8)[3])
    for data, _ in first:
        server.receive_datagram(data, ("127.0.0.1", 5555), now=0.0)
    return client, server, 0.0


def _coalesce(datagrams: list[bytes]) -> list[tuple[bytes, int]]:
    """Datagrams as UDP GRO hands them over: runs of one size (the last of a run may be
    shorter) joined into one buffer, with that size."""
    buffers: list[tuple[bytearray, int]] = []
    for d in datagrams:
        if buffers and len(d) <= buffers[-1][1] and len(buffers[-1][0]) % buffers[-1][1] == 0:
            buffers[-1][0].extend(d)
        else:
            buffers.append((bytearray(d), len(d)))
    return [(bytes(b), size) for b, size in buffers]


def _transfer(payload: bytes, path_limit: int = 65535, gro: bool = False, forge: bool = False) -> bytes:
    """`payload` from client to server over simulated datagrams; with `gro`, handed over as
    GRO buffers; with `forge`, a forged datagram (random bytes) is slipped into the middle
    of every coalesced buffer, as if GRO had merged it in."""
    client, server, now = _pair()
    got = bytearray()
    sent = False
    forged: list[int] = []
    for _ in range(20000):
        now += 0.001
        for a, b, addr in ((client, server, ("127.0.0.1", 5555)), (server, client, ("127.0.0.1", 4433))):
            batch = [d for d, _ in a.datagrams_to_send(now=now) if len(d) <= path_limit]
            if batch and gro and qh3_fastpath.takes_gro_buffer(b):
                for buffer, size in _coalesce(batch):
                    if forge and len(buffer) >= 3 * size:
                        buffer = buffer[:size] + bytes([0x40]) + os.urandom(size - 1) + buffer[size:]
                        forged.append(size)
                    qh3_fastpath.receive_gro_buffer(b, buffer, size, addr, now)
            elif batch:
                b.receive_many_datagrams(batch, addr, now=now)
            while (ev := a.next_event()) is not None:
                if a is server and isinstance(ev, events.StreamDataReceived):
                    got += ev.data
        if not sent and client._handshake_complete:
            client.send_stream_data(client._open_stream(), payload, True)
            sent = True
        if len(got) == len(payload):
            break
        for conn in (client, server):
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
    assert forged or not forge, "no buffer was large enough to forge into"
    return bytes(got)


def test_fast_path_is_installed_and_delivers_every_byte() -> None:
    assert QuicConnection.datagrams_to_send is qh3_fastpath.datagrams_to_send
    assert QuicConnection.receive_many_datagrams is qh3_fastpath.receive_many_datagrams
    assert QuicConnectionProtocol.transmit is qh3_fastpath.transmit
    payload = pattern(3 * 1024 * 1024, seed=11)
    assert _transfer(payload) == payload


def test_whole_gro_buffers_deliver_every_byte() -> None:
    """What qh3_fastpath.on_readable hands QUIC: coalesced buffers, each in one call."""
    payload = pattern(3 * 1024 * 1024, seed=12)
    assert _transfer(payload, gro=True) == payload


def test_a_forged_datagram_in_a_gro_buffer_is_dropped_and_the_rest_delivered() -> None:
    """GRO merges by address: a datagram that is not this connection's (forged, or another
    connection's) fails packet protection; the connection neither errs nor stalls."""
    payload = pattern(1024 * 1024, seed=13)
    assert _transfer(payload, gro=True, forge=True) == payload


async def test_a_gro_buffer_goes_whole_to_the_connection_it_names() -> None:
    config = QuicConfiguration(is_client=False)
    server = BatchingQuicServer(configuration=config)
    calls: list[tuple[str, Any]] = []

    class _Takes(_FakeProtocol):
        def gro_buffers_received(self, buffers: list[tuple[bytes, int]], addr: Any) -> None:
            self.calls.append((self.name + ":gro", list(buffers)))

    a_cid, b_cid = b"A" * config.connection_id_length, b"B" * config.connection_id_length
    server._protocols = {a_cid: _Takes("a", calls), b_cid: _FakeProtocol("b", calls)}  # type: ignore[dict-item]
    a1, a2 = _short(a_cid, 1) * 3, _short(a_cid, 2) * 2
    b1 = _short(b_cid, 3) * 2
    size = len(_short(a_cid, 1))
    server.gro_buffers_received([(a1, size), (a2, size), (b1, size)], ("127.0.0.1", 5000))
    # a's two buffers together and whole; b (no GRO entry point) gets its datagrams split
    assert calls == [("a:gro", [(a1, size), (a2, size)]), ("b", [_short(b_cid, 3)] * 2)]
    # a forged datagram naming a at the head of c's datagrams (GRO merges by address): the
    # buffer is split and each datagram goes to its own connection, not all of them to a
    c_cid = b"C" * config.connection_id_length
    server._protocols[c_cid] = _Takes("c", calls)  # type: ignore[assignment]
    calls.clear()
    mixed = _short(a_cid, 4) + _short(c_cid, 5) + _short(c_cid, 6)
    server.gro_buffers_received([(mixed, size)], ("127.0.0.1", 5000))
    assert calls == [("a", [_short(a_cid, 4)]), ("c", [_short(c_cid, 5), _short(c_cid, 6)])]


async def _listener_and_dialler() -> tuple[LinkManager, LinkManager, tuple[str, int, bytes], _Recorder]:
    """A listening manager on 127.0.0.1 whose incoming streams go to one recorder, a dialling
    one, and where to dial (host, port, node id)."""
    server_id, client_id = next_identity(), next_identity()
    server = LinkManager(server_id, lambda: server_id.make_record((("127.0.0.1", port),)), LinkSettings(dial_timeout=5))
    _, port = await server.listen("127.0.0.1", 0)
    server.refresh_record()
    received = _Recorder()
    server.on_stream = lambda hs: setattr(hs, "handler", received)
    client = LinkManager(client_id, lambda: client_id.make_record(()))
    return server, client, ("127.0.0.1", port, server_id.node_id), received


async def test_empty_and_stray_datagrams_on_a_dialled_link_cost_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0-byte datagram (anyone who knows the 4-tuple can send one) is no QUIC packet: it
    must neither raise out of the reader nor take the datagrams read with it along."""
    loop = asyncio.get_running_loop()
    errors: list[object] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx.get("exception")))
    server, client, where, received = await _listener_and_dialler()
    try:
        async with asyncio.timeout(30):
            link = await client.get_link(*where)
            seen: list[int] = []
            whole, many = qh3_fastpath.receive_gro_buffer, link.datagrams_received
            monkeypatch.setattr(qh3_fastpath, "receive_gro_buffer", lambda q, b, size, a, n: seen.append(len(b)) or whole(q, b, size, a, n))
            monkeypatch.setattr(link, "datagrams_received", lambda data, a: seen.extend(map(len, data)) or many(data, a))
            server_sock = server._server._transport.get_extra_info("socket")
            stray = (701, 702, 0, 703, 704, 705)  # sizes no packet of this idle link has
            for size in stray:  # back to back: read in one wake-up
                server_sock.sendto(b"\x40" * size, link._transport.get_extra_info("sockname"))
            while len([n for n in seen if n in stray]) < 5:
                await asyncio.sleep(0.01)
            # every stray datagram reached QUIC (which dropped it), none lost with the empty one
            assert sorted(n for n in seen if n in stray) == [701, 702, 703, 704, 705]
            hs = link.open_stream()  # and the link still carries data
            hs.send(b"still here", end=True)
            while not (received.calls and received.calls[-1][1]):
                await asyncio.sleep(0.01)
        assert bytes(received.data) == b"still here"
        assert errors == []
    finally:
        loop.set_exception_handler(None)
        client.close()
        server.close()


async def test_links_take_whole_gro_buffers_from_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real QUIC over 127.0.0.1: the transport reads coalesced buffers (qh3_fastpath.on_readable)
    and the link hands them to QUIC whole; every byte arrives, in order."""
    whole: list[int] = []
    original = qh3_fastpath.receive_gro_buffer

    def counting(quic: Any, buffer: bytes, size: int, addr: Any, now: float) -> None:
        if len(buffer) > size:
            whole.append(len(buffer) // size)
        original(quic, buffer, size, addr, now)

    monkeypatch.setattr(qh3_fastpath, "receive_gro_buffer", counting)
    server, client, where, received = await _listener_and_dialler()
    payload = pattern(4 * 1024 * 1024, seed=14)
    try:
        async with asyncio.timeout(60):
            link = await client.get_link(*where)
            hs = link.open_stream()
            for i in range(0, len(payload), 256 * 1024):
                hs.send(payload[i : i + 256 * 1024])
            hs.send(b"", end=True)
            while not (received.calls and received.calls[-1][1]):
                await asyncio.sleep(0.01)
        assert bytes(received.data) == payload
        assert whole and max(whole) > 1  # buffers of many datagrams went to QUIC in one call
    finally:
        client.close()
        server.close()


def test_fast_path_defers_to_qh3_when_a_qlog_is_attached(monkeypatch: pytest.MonkeyPatch) -> None:
    client, _server, _ = _pair()
    called: list[str] = []
    monkeypatch.setattr(qh3_fastpath, "_original_datagrams_to_send", lambda self, now: called.append("send") or [])
    client._quic_logger = object()
    assert client.datagrams_to_send(now=1.0) == []
    assert called == ["send"]


class _Recorder:
    """A hop stream's handler that keeps what it was given, call by call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []
        self.data = bytearray()

    def stream_data(self, data: bytes, end: bool) -> None:
        self.calls.append((len(data), end))
        self.data += data

    def stream_reset(self, kind: ErrorKind) -> None:
        self.calls.append((-1, True))


async def test_interleaved_streams_arrive_whole_in_fewer_larger_chunks() -> None:
    """Many circuits on one link interleave their frames; the link hands each stream its
    bytes of a burst in one call (link/quic_link.py), in order, the end last."""
    server_id, client_id = next_identity(), next_identity()
    server = LinkManager(server_id, lambda: server_id.make_record((("127.0.0.1", port),)), LinkSettings(dial_timeout=5))
    _, port = await server.listen("127.0.0.1", 0)
    server.refresh_record()
    received: dict[int, _Recorder] = {}

    def accept(hs: HopStream) -> None:
        hs.handler = received.setdefault(hs.stream_id, _Recorder())

    server.on_stream = accept
    client = LinkManager(client_id, lambda: client_id.make_record(()))
    try:
        async with asyncio.timeout(60):
            link = await client.get_link("127.0.0.1", port, server_id.node_id)
            streams = [link.open_stream() for _ in range(32)]
            sent = {hs.stream_id: bytearray() for hs in streams}
            for round_ in range(64):
                for hs in streams:
                    chunk = bytes([(hs.stream_id + round_) % 256]) * 1000
                    sent[hs.stream_id] += chunk
                    hs.send(chunk)
            for hs in streams:
                hs.send(b"", end=True)
            while sum(1 for r in received.values() if r.calls and r.calls[-1][1]) < len(streams):
                await asyncio.sleep(0.01)
        frames = 64 * len(streams)
        calls = sum(len(r.calls) for r in received.values())
        for sid, rec in received.items():
            assert bytes(rec.data) == bytes(sent[sid])
            assert [end for _, end in rec.calls].count(True) == 1 and rec.calls[-1][1]
        assert calls < frames / 2, f"{calls} stream_data calls for {frames} interleaved writes"
    finally:
        client.close()
        server.close()
