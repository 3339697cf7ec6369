"""Real `gclient` processes on 127.0.0.1: tunnels end to end, and how they fail.

The network (four relays, two exits) is started once for the module; each
tunnel of the client process exercises one behaviour. Target servers run in
a thread of this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from globalnet.localnet import GCLIENT_CMD, free_port
from tests.identities import SeededLocalNet
from tests.targets import EchoServer, SinkServer, SourceServer, pattern

pytestmark = pytest.mark.long(seconds=15)  # wall seconds here alone: run early (tests/conftest.py)

BIG = 50 * 1024 * 1024


class Targets:
    """Target servers on their own event loop thread."""

    def __init__(self) -> None:
        self.sink = SinkServer()
        self.loop = asyncio.new_event_loop()
        self.ports: dict[str, int] = {}
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def start() -> None:
                for name, handler in (("sink", self.sink), ("source", SourceServer()), ("echo", EchoServer())):
                    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0)
                    self.ports[name] = server.sockets[0].getsockname()[1]
                ready.set()

            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


class Net:
    def __init__(self, base: Path, targets: Targets) -> None:
        self.local = SeededLocalNet(base)
        self.targets = targets
        self.r1 = self.local.relay("r1")
        self.r2 = self.local.relay("r2")
        self.r3 = self.local.relay("r3", "-exit", "-exit-allow", "127.0.0.1/32")
        self.r4 = self.local.relay("r4", "-exit")  # an exit that keeps the default: loopback refused
        t = targets.ports
        r1, r2, r3, r4 = self.r1, self.r2, self.r3, self.r4
        self.tunnels = {
            "sink": f"{r1.pinned}>{r2.pinned}>{r3.pinned}>127.0.0.1:{t['sink']}",
            "source": f"{r1.pinned}>{r2.pinned}>{r3.pinned}>127.0.0.1:{t['source']}",
            "echo": f"{r1.address}>{r2.address}>{r3.address}>127.0.0.1:{t['echo']}",
            "pin_first": f"{r1.address}#{r2.node_id}>{r2.pinned}>{r3.pinned}>127.0.0.1:{t['echo']}",
            # a node id no relay has a link to, at r2's address: r1 dials r2 and finds another id
            "pin_middle": f"{r1.pinned}>{r2.address}#{'ab' * 20}>{r3.pinned}>127.0.0.1:{t['echo']}",
            "refused": f"{r1.pinned}>{r2.pinned}>{r4.pinned}>127.0.0.1:{t['echo']}",
            "dead_hop": f"{r1.pinned}>127.0.0.1:{free_port(socket.SOCK_DGRAM)}>{r3.pinned}>127.0.0.1:{t['echo']}",
        }
        self.ports = {name: free_port() for name in self.tunnels}
        args: list[str] = ["-connect", r1.pinned]
        for name, path in self.tunnels.items():
            args += ["-tunnel", f"{self.ports[name]}>{path}"]
        for node in (r1, r2, r3, r4):
            node.wait_for("node started")
        self.client = self.local.client("client", *args)
        for name in self.tunnels:
            self.client.wait_for("tunnel listening", listen=f"127.0.0.1:{self.ports[name]}")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    targets = Targets()
    n = Net(tmp_path_factory.mktemp("net"), targets)
    yield n
    n.local.stop_all()
    targets.stop()


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def test_upload_50_mib_through_three_hops(net: Net) -> None:
    data = pattern(BIG, seed=1)
    async with asyncio.timeout(120):
        reader, writer = await _connect(net.ports["sink"])
        for i in range(0, BIG, 1 << 20):
            writer.write(data[i : i + (1 << 20)])
            await writer.drain()
        writer.write_eof()
        digest = await reader.read()
        writer.close()
    assert digest.decode() == hashlib.sha256(data).hexdigest()


async def test_download_50_mib_through_three_hops(net: Net) -> None:
    async with asyncio.timeout(120):
        reader, writer = await _connect(net.ports["source"])
        writer.write(f"{BIG}\n".encode())
        await writer.drain()
        h = hashlib.sha256()
        n = 0
        while chunk := await reader.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
        writer.close()
    assert n == BIG
    assert h.hexdigest() == hashlib.sha256(pattern(BIG)).hexdigest()


async def test_100_concurrent_connections(net: Net) -> None:
    async def one(i: int) -> bool:
        payload = os.urandom(32 * 1024 + i)
        reader, writer = await _connect(net.ports["echo"])
        writer.write(payload)
        await writer.drain()
        echoed = await reader.readexactly(len(payload))
        writer.close()
        return echoed == payload

    async with asyncio.timeout(90):
        results = await asyncio.gather(*(one(i) for i in range(100)))
    assert all(results)


async def _expect_reset(port: int) -> None:
    """The tunnel accepts, then the connection is reset (never a clean, empty close)."""
    async with asyncio.timeout(30):
        with pytest.raises(ConnectionResetError):
            # on a loaded machine the reset can come before the connect returns
            reader, writer = await _connect(port)
            writer.write(b"hello")
            await writer.drain()
            data = await reader.read()
            if data == b"":
                raise AssertionError("clean close instead of a reset")


async def test_pin_mismatch_on_first_hop(net: Net) -> None:
    await _expect_reset(net.ports["pin_first"])
    line = await asyncio.to_thread(net.client.wait_for, "tunnel connection failed", tunnel=net.ports["pin_first"])
    assert "pinned" in str(line["reason"]) and "hop 1" in str(line["reason"])


async def test_pin_mismatch_on_middle_hop(net: Net) -> None:
    await _expect_reset(net.ports["pin_middle"])
    line = await asyncio.to_thread(net.client.wait_for, "tunnel connection failed", tunnel=net.ports["pin_middle"])
    assert "pinned" in str(line["reason"]) or "node id" in str(line["reason"])


async def test_exit_policy_refusal(net: Net) -> None:
    await _expect_reset(net.ports["refused"])
    line = await asyncio.to_thread(net.client.wait_for, "tunnel connection failed", tunnel=net.ports["refused"])
    assert "exit policy" in str(line["reason"])
    assert net.r4.node_id[:8] in str(line["reason"])  # names the hop


async def test_unreachable_hop_and_listener_survives(net: Net) -> None:
    await _expect_reset(net.ports["dead_hop"])
    line = await asyncio.to_thread(net.client.wait_for, "tunnel connection failed", tunnel=net.ports["dead_hop"])
    assert net.r1.node_id[:8] in str(line["reason"])
    # the listener is still there, and other tunnels still work
    await _expect_reset(net.ports["dead_hop"])
    reader, writer = await _connect(net.ports["echo"])
    writer.write(b"after failures")
    assert await reader.readexactly(14) == b"after failures"
    writer.close()


async def test_garbage_on_the_quic_port(net: Net) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(200):
            junk = bytearray(os.urandom((i * 53) % 1400 + 1))
            if i % 2 and len(junk) > 8:
                junk[0] = 0xC3
                junk[1:5] = b"\x00\x00\x00\x01"
            s.sendto(bytes(junk), ("127.0.0.1", net.r1.listen_port))
    reader, writer = await _connect(net.ports["echo"])
    writer.write(b"still here")
    assert await reader.readexactly(10) == b"still here"
    writer.close()
    assert net.r1.proc is not None and net.r1.proc.poll() is None


def test_no_destination_or_payload_in_info_logs(net: Net) -> None:
    for node in net.local.nodes:
        for ev in node.events():
            if ev.get("level") in ("info", "warning", "error"):
                text = str(ev)
                assert f":{net.targets.ports['echo']}" not in text, ev
                assert f":{net.targets.ports['sink']}" not in text, ev


async def test_killing_the_middle_relay_resets_the_connection(tmp_path: Path) -> None:
    targets = Targets()
    local = SeededLocalNet(tmp_path)
    try:
        r1, r2, r2b = local.relay("r1"), local.relay("r2"), local.relay("r2b")
        r3 = local.relay("r3", "-exit", "-exit-allow", "127.0.0.1/32")
        src = targets.ports["source"]
        port_a, port_b = free_port(), free_port()
        for node in (r1, r2, r2b, r3):
            node.wait_for("node started")
        client = local.client(
            "client",
            "-tunnel", f"{port_a}>{r1.pinned}>{r2.pinned}>{r3.pinned}>127.0.0.1:{src}",
            "-tunnel", f"{port_b}>{r1.pinned}>{r2b.pinned}>{r3.pinned}>127.0.0.1:{src}",
        )
        client.wait_for("tunnel listening", listen=f"127.0.0.1:{port_b}")
        async with asyncio.timeout(60):
            reader, writer = await _connect(port_a)
            writer.write(b"1000000000\n")
            got = 0
            while got < 4 << 20:
                chunk = await reader.read(1 << 16)
                assert chunk
                got += len(chunk)
                await asyncio.sleep(0.001)  # a slowish reader: the transfer is in flight when r2 dies
            r2.kill()
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            with pytest.raises(ConnectionResetError):
                while True:
                    chunk = await reader.read(1 << 16)
                    if not chunk:
                        raise AssertionError("clean close after the middle relay died")
            assert loop.time() - killed_at < 20  # liveness: dead after 10 s of silence
            writer.close()
            # the listener survived, and a path around the dead relay works
            reader, writer = await _connect(port_b)
            writer.write(b"1000000\n")
            total = 0
            while chunk := await reader.read(1 << 16):
                total += len(chunk)
            assert total == 1_000_000
            writer.close()
    finally:
        local.stop_all()
        targets.stop()


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    local = SeededLocalNet(tmp_path)
    node = local.relay("solo")
    node.wait_for("node started")
    assert node.stop(signal.SIGINT) == 0
    text = node.log_path.read_text()
    assert "Traceback" not in text
    assert node.find("node stopping") is not None


def test_print_id_creates_a_private_key_file(tmp_path: Path) -> None:
    key = tmp_path / "id.key"
    out1 = subprocess.run([*GCLIENT_CMD, "--id", str(key), "--print-id"], capture_output=True, text=True, check=True)
    out2 = subprocess.run([*GCLIENT_CMD, "-id", str(key), "-print-id"], capture_output=True, text=True, check=True)
    node_id = out1.stdout.strip()
    assert len(node_id) == 40 and int(node_id, 16) >= 0
    assert out2.stdout.strip() == node_id
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_bad_flags_give_a_clear_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [*GCLIENT_CMD, "-data-dir", str(tmp_path), "-tunnel", "1000>>127.0.0.1:80"],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "gclient:" in out.stderr
