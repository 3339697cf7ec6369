"""Relays on real QUIC links in one process: what a bridge sees, tampering, garbage.

What a relay sees and a byte flipped on the wire are observed by wrapping the
middle relay's links in the test (`record_relay`, `flip_byte_toward`): the
relay's own per-chunk path carries no test hooks."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from globalnet.errors import ErrorKind
from globalnet.link.quic_link import CONTROL_STREAM_ID
from tests.inproc import InprocNode, attach_socket, open_circuit, start_client, start_relay
from tests.targets import EchoServer, SinkServer, pattern, serve

PAYLOAD = pattern(256 * 1024, seed=99)


class _RecordingHandler:
    """Wraps a hop stream's handler: records what arrives, then passes it on."""

    def __init__(self, inner: object, seen: list[bytes]) -> None:
        self.inner = inner
        self.seen = seen

    def stream_data(self, data: bytes, end: bool) -> None:
        self.seen.append(bytes(data))
        self.inner.stream_data(data, end)  # type: ignore[attr-defined]

    def stream_reset(self, kind: ErrorKind) -> None:
        self.inner.stream_reset(kind)  # type: ignore[attr-defined]


def _is_hop_stream(sid: int) -> bool:
    return sid != CONTROL_STREAM_ID and not sid & 2


def record_relay(node: InprocNode, seen: list[bytes]) -> None:
    """A wrapping transport around every link of `node`: every hop-stream byte it
    receives and sends lands in `seen` (no hook in the relay itself)."""
    for link in node.links.all_links:
        for hs in link.streams.values():
            if not isinstance(hs.handler, _RecordingHandler):
                hs.handler = _RecordingHandler(hs.handler, seen)
        send = link.send_stream

        def recording_send(sid: int, data: bytes | bytearray | memoryview, end: bool, send=send) -> None:
            if _is_hop_stream(sid):
                seen.append(bytes(data))
            send(sid, data, end)

        link.send_stream = recording_send  # type: ignore[method-assign]


def flip_byte_toward(node: InprocNode, toward: InprocNode, offset: int) -> None:
    """Flip one bit of the `offset`-th hop-stream byte `node` sends to `toward` from now on."""
    link = node.links.links[toward.identity.node_id]
    send = link.send_stream
    sent = 0

    def flipping_send(sid: int, data: bytes | bytearray | memoryview, end: bool) -> None:
        nonlocal sent
        if _is_hop_stream(sid):
            target = offset - sent
            if 0 <= target < len(data):
                data = bytearray(data)
                data[target] ^= 0x01
            sent += len(data)
        send(sid, data, end)

    link.send_stream = flipping_send  # type: ignore[method-assign]


async def _network():
    r1 = await start_relay()
    r2 = await start_relay()
    r3 = await start_relay(exit_allow="127.0.0.1/32")
    return [r1, r2, r3], start_client()


def _close(*nodes: object) -> None:
    for n in nodes:
        n.close()  # type: ignore[attr-defined]


async def test_middle_relay_never_sees_the_payload() -> None:
    seen: list[bytes] = []
    relays, client = await _network()
    try:
        async with asyncio.timeout(30), serve(EchoServer()) as port:
            circuit = await open_circuit(client, relays, "127.0.0.1", port)
            record_relay(relays[1], seen)  # the middle relay, from the first data byte on
            reader, writer, pump = await attach_socket(circuit)
            writer.write(PAYLOAD)
            await writer.drain()
            echoed = await reader.readexactly(len(PAYLOAD))
            assert echoed == PAYLOAD
            writer.close()
            await pump
        seen = b"".join(seen)
        assert len(seen) > 4 * len(PAYLOAD)  # in and out, both ways  # it did carry the traffic, both ways
        # no 16-byte window of the payload appears in anything the middle relay saw or sent
        windows = {PAYLOAD[i : i + 16] for i in range(0, len(PAYLOAD) - 16, 997)}
        assert not any(w in seen for w in windows)
        assert b"127.0.0.1" not in seen  # nor the destination
    finally:
        _close(client, *relays)


async def test_flipped_byte_is_caught_and_nothing_corrupt_is_delivered() -> None:
    relays, client = await _network()
    sink = SinkServer()
    try:
        async with asyncio.timeout(30), serve(sink) as port:
            circuit = await open_circuit(client, relays, "127.0.0.1", port)
            flip_byte_toward(relays[1], relays[2], 100_000)  # the middle relay's link to the exit
            reader, writer, pump = await attach_socket(circuit)
            data = pattern(1 << 20)
            with pytest.raises(ConnectionError):
                writer.write(data)
                await writer.drain()
                writer.write_eof()
                # the exit detects the forgery and resets: the client sees a reset, not a clean end
                got = await reader.read()
                if got == b"":
                    raise AssertionError("circuit closed cleanly after tampering")
            await asyncio.wait_for(pump, 10)
            while not sink.received:
                await asyncio.sleep(0.05)
        delivered = sink.received[0]
        assert len(delivered) < 100_000  # the frame with the flipped byte never reached the target
        assert delivered == data[: len(delivered)]  # and everything before it is intact
        assert circuit.error is not None or circuit.closed
    finally:
        _close(client, *relays)


async def test_garbage_on_a_hop_stream_resets_only_that_stream() -> None:
    relays, client = await _network()
    try:
        async with asyncio.timeout(30), serve(EchoServer()) as port:
            link = await client.links.get_link("127.0.0.1", relays[0].port)
            resets: list[ErrorKind] = []

            class Watcher:
                def stream_data(self, data: bytes, end: bool) -> None:
                    pass

                def stream_reset(self, kind: ErrorKind) -> None:
                    resets.append(kind)

            # a truncated message that never completes, a short one, an oversized one
            for junk in (b"\x10\x00" + os.urandom(3000), b"\x00\x05hello", b"\xff\xff" + os.urandom(70000)):
                hs = link.open_stream()
                hs.handler = Watcher()
                hs.send(junk)
            for _ in range(100):
                if len(resets) == 3:
                    break
                await asyncio.sleep(0.05)
            assert len(resets) == 3
            assert set(resets) <= {ErrorKind.HANDSHAKE_FAILED, ErrorKind.TIMEOUT}
            # the relay and the link are fine: a real circuit works on the same link
            circuit = await open_circuit(client, relays, "127.0.0.1", port)
            reader, writer, pump = await attach_socket(circuit)
            writer.write(b"still alive")
            assert await reader.readexactly(11) == b"still alive"
            writer.close()
            await pump
    finally:
        _close(client, *relays)


async def test_garbage_datagrams_do_not_hurt_a_relay() -> None:
    relays, client = await _network()
    try:
        async with asyncio.timeout(30), serve(EchoServer()) as port:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(300):
                    size = (i * 37) % 1500 + 1
                    junk = bytearray(os.urandom(size))
                    if i % 3 == 0 and size > 20:
                        junk[0] = 0xC0  # looks like a QUIC long header (Initial)
                        junk[1:5] = b"\x00\x00\x00\x01"
                    s.sendto(bytes(junk), ("127.0.0.1", relays[0].port))
            await asyncio.sleep(0.2)
            circuit = await open_circuit(client, relays, "127.0.0.1", port)
            reader, writer, pump = await attach_socket(circuit)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.close()
            await pump
    finally:
        _close(client, *relays)


async def test_more_than_100_circuits_share_one_link() -> None:
    """qh3 allows 100 concurrent streams per connection unless link/qh3_tuning raises it."""
    relays, client = await _network()
    try:
        async with asyncio.timeout(60), serve(EchoServer()) as port:
            opened = [await open_circuit(client, relays, "127.0.0.1", port) for _ in range(250)]
            link = client.links.links[relays[0].identity.node_id]
            assert len(link.streams) == 250  # all open at once on one link
            pairs = [await attach_socket(c) for c in opened]
            for i, (reader, writer, _) in enumerate(pairs):
                writer.write(b"%06d" % i)
            for i, (reader, writer, _) in enumerate(pairs):
                assert await reader.readexactly(6) == b"%06d" % i
                writer.close()
            await asyncio.gather(*(p for _, _, p in pairs))
    finally:
        _close(client, *relays)


async def test_a_target_that_speaks_first_fills_a_window_before_the_client_attaches() -> None:
    """The far end may send a whole window before the application side is attached."""
    relays, client = await _network()

    async def speak_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(PAYLOAD)  # 256 KiB: a full window, at once
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(speak_first, "127.0.0.1", 0)
    try:
        async with asyncio.timeout(30):
            circuit = await open_circuit(client, relays, "127.0.0.1", server.sockets[0].getsockname()[1])
            await asyncio.sleep(0.5)  # the whole window arrives before anyone reads
            reader, writer, pump = await attach_socket(circuit)
            got = await reader.readexactly(len(PAYLOAD))
            assert got == PAYLOAD
            writer.close()
            await pump
    finally:
        server.close()
        _close(client, *relays)
