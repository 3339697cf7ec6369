"""Bounded memory under load: a slow reader keeps every relay's buffered bytes
for its circuit under the initial window (+ slack), by the end-to-end credit
and the congestion window alone (its RTT samples show the queue, so the
window never grows), and every relay's total within its budget.

The target sends as fast as TCP lets it; the application at the client reads
slowly from a small socket buffer. Each relay hop's queued bytes (QUIC's send
buffer of the hop stream, both directions) and each relay link's whole QUIC
send buffer are sampled throughout; none may pass WINDOW + RELAY_SLACK. No
wall-clock assertion: the reader's pace only makes the sender wait.
"""

from __future__ import annotations

import asyncio
import socket

from globalnet.endpoint.pump import StreamPump
from globalnet.endpoint.session import RELAY_SLACK, WINDOW
from globalnet.relay.budget import RelayBudget
from globalnet.relay.server import RelayService
from tests.inproc import InprocNode, open_circuit, start_client, start_relay

TOTAL = 3 * 1024 * 1024
STALL = 10.0  # seconds without a byte: the transfer stalled
SMALL_BUFFER = 16 * 1024
BUDGET = 16 * 1024 * 1024


async def _source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = bytes(range(256)) * 256  # 64 KiB
    try:
        for _ in range(TOTAL // len(chunk)):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _sample(relays: list[InprocNode], peaks: dict[str, int]) -> None:
    for i, node in enumerate(relays):
        relay = node.relay
        assert isinstance(relay, RelayService)
        for hop in list(relay.hops):
            up = hop.upstream.buffered()
            peaks[f"relay{i + 1} toward client"] = max(peaks.get(f"relay{i + 1} toward client", 0), up)
            if hop.downstream is not None:
                down = hop.downstream.buffered()
                peaks[f"relay{i + 1} toward exit"] = max(peaks.get(f"relay{i + 1} toward exit", 0), down)
        for link in list(node.links.all_links):
            total = int(link._quic.get_send_buffer_size())  # every stream of the link
            peaks[f"relay{i + 1} links"] = max(peaks.get(f"relay{i + 1} links", 0), total)


async def test_slow_reader_keeps_relay_buffers_under_one_window() -> None:
    relays = [await start_relay(), await start_relay(), await start_relay(exit_allow="127.0.0.1/32")]
    for node in relays:
        assert isinstance(node.relay, RelayService)
        node.relay.budget = RelayBudget(BUDGET, asyncio.get_running_loop().time())
    client = start_client()
    server = await asyncio.start_server(_source, "127.0.0.1", 0)
    target_port = server.sockets[0].getsockname()[1]
    peaks: dict[str, int] = {}
    stalled = False
    try:
        async with asyncio.timeout(60):
            circuit = await open_circuit(client, relays, "127.0.0.1", target_port)
            # the application's socket: small buffers on both ends, so the pump
            # sees back-pressure instead of the kernel absorbing megabytes
            accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
                asyncio.get_running_loop().create_future()
            )
            listener = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
            app = socket.socket()
            app.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
            app.setblocking(False)
            await asyncio.get_running_loop().sock_connect(app, listener.sockets[0].getsockname())
            reader, writer = await accepted
            listener.close()
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
            assert circuit.core.session is not None
            pump = StreamPump(circuit.core.session, circuit, reader, writer)
            circuit.attach(pump)
            pump_task = asyncio.ensure_future(pump.run())

            loop = asyncio.get_running_loop()
            received = 0
            samples = 0
            while received < TOTAL:
                try:
                    data = await asyncio.wait_for(loop.sock_recv(app, 8192), STALL)
                except TimeoutError:
                    stalled = True
                    break
                if not data:
                    break
                received += len(data)
                _sample(relays, peaks)
                samples += 1
                await asyncio.sleep(0.002)  # the slow reader: the far sender must wait for credit
            app.close()
            if not stalled:
                await pump_task
            else:
                pump_task.cancel()
    finally:
        server.close()
        for n in (client, *relays):
            n.close()
    limit = WINDOW + RELAY_SLACK
    over = {k: v for k, v in peaks.items() if v > limit}
    assert not over, f"buffered more than one window + slack ({limit}): {over}"
    assert not stalled, f"the transfer stalled after {received} bytes"
    assert received == TOTAL
    assert samples > 100
    # the sampler saw the bridges carry the circuit (keys exist for each relay)
    assert {"relay1 toward exit", "relay2 toward exit", "relay1 links", "relay3 links"} <= set(peaks)
    limit = WINDOW + RELAY_SLACK
    over = {k: v for k, v in peaks.items() if v > limit}
    assert not over, f"buffered more than one window + slack ({limit}): {over}"
    for node in relays:
        assert isinstance(node.relay, RelayService)
        assert node.relay.budget.peak <= BUDGET and node.relay.budget.shed == 0  # well within: nobody was reset
    print("peak buffered bytes:", peaks)
