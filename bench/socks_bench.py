"""SOCKS proxy latency and throughput through 3 local relays (real gclient processes).

Measures, against plain loopback TCP to the same target:
- time to first byte of a NEW SOCKS connection (connect, SOCKS5 greeting and
  request with a name, circuit build through 3 hops, the target's first byte):
  median and p90 of --samples sequential connections;
- throughput of --streams concurrent SOCKS connections, each downloading
  --mib MiB.

Writes JSON to bench/results/socks.json (and prints it). Everything stays on
127.0.0.1. Usage: python bench/socks_bench.py [--samples 20] [--streams 8] [--mib 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from globalnet.localnet import LocalNet, free_port

CHUNK = bytes(1 << 16)


async def source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads 'N\\n', sends N bytes, closes."""
    try:
        n = int(await reader.readline())
        while n > 0:
            writer.write(CHUNK[: min(n, len(CHUNK))])
            n -= len(CHUNK)
            await writer.drain()
    except (ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def open_via_socks(proxy: int, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    name = host.encode()
    writer.write(b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
    reply = await reader.readexactly(12)
    if reply[:4] != b"\x05\x00\x05\x00":
        raise RuntimeError(f"SOCKS failure {reply.hex()}")
    return reader, writer


async def ttfb(proxy: int | None, port: int) -> float:
    started = time.perf_counter()
    if proxy is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    else:
        reader, writer = await open_via_socks(proxy, "localhost", port)
    writer.write(b"1\n")
    await reader.readexactly(1)
    took = time.perf_counter() - started
    writer.close()
    return took


async def download(proxy: int | None, port: int, size: int) -> int:
    if proxy is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    else:
        reader, writer = await open_via_socks(proxy, "127.0.0.1", port)
    writer.write(f"{size}\n".encode())
    got = 0
    while chunk := await reader.read(1 << 18):
        got += len(chunk)
    writer.close()
    return got


async def measure(proxy: int | None, port: int, samples: int, streams: int, mib: int) -> dict[str, float]:
    await ttfb(proxy, port)  # warm-up: the links to hop 1 and between relays are up
    times = [await ttfb(proxy, port) for _ in range(samples)]
    size = mib << 20
    started = time.perf_counter()
    got = await asyncio.gather(*(download(proxy, port, size) for _ in range(streams)))
    took = time.perf_counter() - started
    assert all(g == size for g in got), got
    return {
        "ttfb_median_ms": round(statistics.median(times) * 1000, 2),
        "ttfb_p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))] * 1000, 2),
        "throughput_MiB_s": round(streams * mib / took, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    server = await asyncio.start_server(source, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory() as base:
        net = LocalNet(Path(base))
        try:
            r1, r2 = net.relay("r1"), net.relay("r2")
            r3 = net.relay("r3", "-exit", "-exit-allow", "127.0.0.1/32")
            for node in (r1, r2, r3):
                await asyncio.to_thread(node.wait_for, "node started")
            proxy = free_port()
            client = net.client("client", "-log-level", "info", "-proxy", f"{proxy}>{r1.pinned}>{r2.pinned}>{r3.pinned}>internet")
            await asyncio.to_thread(client.wait_for, "socks proxy listening")
            via = await measure(proxy, port, args.samples, args.streams, args.mib)
            direct = await measure(None, port, args.samples, args.streams, args.mib)
        finally:
            net.stop_all()
            server.close()
    return {
        "what": f"SOCKS5 through 3 relays vs loopback TCP; {args.samples} new connections, {args.streams} x {args.mib} MiB",
        "socks_3_hops": via,
        "loopback_tcp": direct,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--mib", type=int, default=32)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "socks.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
