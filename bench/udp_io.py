"""Which batched UDP I/O for the links: CPU per MiB over loopback, two ways.

    python -m bench.udp_io [--mib 64]

- plain:    one sendto() / recvfrom() per datagram (asyncio's datagram endpoint,
            what qh3's serve() listens with);
- quinn-udp: qh3's UdpSocketState (OptimizedDatagramTransport): sendmsg with
            UDP GSO (one buffer per batch of equal-size datagrams) and recvmmsg
            with UDP GRO.

One process sends batches of 44 datagrams of 1423 bytes (qh3's full packet at
max_datagram_size 1452) and receives them back on another socket; CPU is user +
system time of the process (on loopback the sender's syscall also does the
receiver's kernel work). Loopback only. (The C extension's sendmmsg/recvmmsg
were measured here once and lost to GSO/GRO; they were removed from the crypto
extension, which now holds crypto only.)
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable

from qh3._hazmat import UdpSocketState
from qh3.asyncio._transport import enable_gro

SIZE = 1423
BATCH = 44


def _pair() -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx.setblocking(False)
    return tx, rx


def run_plain(tx: socket.socket, rx: socket.socket, batches: int) -> int:
    dest = rx.getsockname()
    payload = os.urandom(SIZE)
    got = 0
    for _ in range(batches):
        for _ in range(BATCH):
            tx.sendto(payload, dest)
        while True:
            try:
                got += len(rx.recvfrom(65536)[0])
            except BlockingIOError:
                break
    return got



def run_quinn(tx: socket.socket, rx: socket.socket, batches: int) -> int:
    enable_gro(rx)
    stx, srx = UdpSocketState(tx.fileno()), UdpSocketState(rx.fileno())
    dest = rx.getsockname()
    batch = [os.urandom(SIZE) for _ in range(BATCH)]
    got = 0
    for _ in range(batches):
        sent = 0
        while sent < BATCH:
            sent += stx.send(batch[sent:], dest)
        while True:
            try:
                received = srx.recv()
            except BlockingIOError:
                break
            if not received:
                break
            got += sum(len(d) for d, _ in received)
    return got


def measure(fn: Callable[[socket.socket, socket.socket, int], int], mib: int) -> tuple[float, float]:
    tx, rx = _pair()
    batches = mib * 1024 * 1024 // (SIZE * BATCH)
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        got = fn(tx, rx, batches)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        tx.close()
        rx.close()
    moved = got / (1024 * 1024)
    return cpu * 1000 / moved, moved / wall


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--mib", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    print(f"load avg {os.getloadavg()}; {SIZE}-byte datagrams in batches of {BATCH}, {args.mib} MiB per run")
    for name, fn in (("plain sendto/recvfrom", run_plain), ("quinn-udp GSO/GRO", run_quinn)):
        results = [measure(fn, args.mib) for _ in range(args.runs)]
        cpu = statistics.median(r[0] for r in results)
        rate = statistics.median(r[1] for r in results)
        print(f"  {name:24} {cpu:6.2f} ms CPU per MiB   {rate:8.1f} MiB/s  (runs: {[round(r[0], 2) for r in results]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
