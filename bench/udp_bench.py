"""UDP through 3 hops for `make bench`: round-trip time and datagram loss, beside plain loopback UDP.

A network of its own (three relays, the third an exit allowing UDP to the
echo target, and a client with a `udp:` tunnel), as gclient processes on
127.0.0.1; the echo target is a thread of this process. Figures:
- udp_rtt: one 64-byte datagram to the echo and back, one at a time (ms);
  the baseline is the same exchange straight to the echo.
- udp_loss: datagrams of 1,200 bytes sent in paced bursts of 32 (the next
  burst after the answers or 0.5 s); the share that never came back (%).
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.measure import metric
from globalnet.localnet import LocalNet, free_port


class _Echo:
    def __init__(self) -> None:
        import threading

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
                self.sock.sendto(data, addr)
            except OSError:
                return


def _client_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    return s


def _rtts(sock: socket.socket, port: int, rounds: int) -> list[float]:
    sock.settimeout(2.0)
    out = []
    for i in range(rounds):
        data = i.to_bytes(4, "big") + bytes(60)
        started = time.perf_counter()
        sock.sendto(data, ("127.0.0.1", port))
        while True:
            try:
                got = sock.recvfrom(65535)[0]
            except TimeoutError:
                break
            if got == data:
                out.append((time.perf_counter() - started) * 1000)
                break
    return out


def _loss(sock: socket.socket, port: int, count: int) -> float:
    sock.settimeout(0.5)
    answered = 0
    for start in range(0, count, 32):
        outstanding = set()
        for i in range(start, min(count, start + 32)):
            sock.sendto(i.to_bytes(4, "big") + bytes(1196), ("127.0.0.1", port))
            outstanding.add(i)
        while outstanding:
            try:
                got = sock.recvfrom(65535)[0]
            except TimeoutError:
                break
            n = int.from_bytes(got[:4], "big")
            if n in outstanding:
                outstanding.discard(n)
                answered += 1
    return 100.0 * (count - answered) / count


def measure(runs: int = 3, rounds: int = 300, count: int = 10_000) -> dict[str, Any]:
    echo = _Echo()
    with tempfile.TemporaryDirectory(prefix="gnet-udp-bench-") as tmp:
        net = LocalNet(Path(tmp))
        try:
            r1 = net.relay("relay1")
            r2 = net.relay("relay2")
            r3 = net.relay("relay3", "-exit", "-exit-allow-udp", f"127.0.0.1/32:{echo.port}")
            for r in (r1, r2, r3):
                r.wait_for("node started")
            port = free_port(socket.SOCK_DGRAM)
            client = net.client("client", "-connect", r1.pinned, "-tunnel", f"udp:{port}>{r1.pinned}>{r2.pinned}>{r3.pinned}>127.0.0.1:{echo.port}")
            client.wait_for("udp tunnel listening")
            sock = _client_socket()
            try:
                if not _rtts(sock, port, 1) and not _rtts(sock, port, 20):  # the first datagram builds the circuit
                    raise RuntimeError("no answer through the UDP tunnel")
                rtt = [statistics.median(_rtts(sock, port, rounds)) for _ in range(runs)]
                loss = [_loss(sock, port, count) for _ in range(runs)]
            finally:
                sock.close()
            direct = _client_socket()
            try:
                base_rtt = [statistics.median(_rtts(direct, echo.port, rounds)) for _ in range(runs)]
                base_loss = [_loss(direct, echo.port, count) for _ in range(runs)]
            finally:
                direct.close()
        finally:
            net.stop_all()
            echo.sock.close()
    rtt_m = metric(rtt, "ms", rounds_per_run=rounds, hops=3, what="64-byte datagram to an echo and back through a udp: tunnel")
    rtt_m["baseline_udp"] = {"median": statistics.median(base_rtt), "runs": base_rtt}
    loss_m = metric(loss, "% lost", datagrams_per_run=count, what="1,200-byte datagrams in paced bursts of 32")
    loss_m["baseline_udp"] = {"median": statistics.median(base_loss), "runs": base_loss}
    return {"udp_rtt": rtt_m, "udp_loss": loss_m}


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
