"""UDP through circuits with real `gclient` processes on 127.0.0.1: tunnels, exit rules, limits."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from globalnet.localnet import LocalNet, free_port
from globalnet.wire.datagram import MAX_DATAGRAM
from tests.targets import UdpEchoServer

SIZES = [1, 64, 512, 1200, 1400, 4096, 8192, MAX_DATAGRAM]


class Net:
    def __init__(self, base: Path) -> None:
        self.echo = UdpEchoServer()
        self.local = LocalNet(base)
        e = self.echo.port
        self.r1 = self.local.relay("r1")
        self.r2 = self.local.relay("r2", "-connect", self.r1.pinned)
        self.r3 = self.local.relay(
            "r3", "-connect", self.r1.pinned, "-exit", "-exit-allow", "127.0.0.1/32", "-exit-allow-udp", f"127.0.0.1/32:{e}"
        )
        self.r4 = self.local.relay("r4", "-connect", self.r1.pinned, "-exit", "-exit-allow", "127.0.0.1/32")  # no UDP rules
        r1, r2, r3, r4 = self.r1, self.r2, self.r3, self.r4
        self.specs = {
            "pinned": f"{r1.pinned}>{r2.pinned}>{r3.pinned}>127.0.0.1:{e}",
            "rand": f"rand>rand>rand>127.0.0.1:{e}",
            "no_udp_exit": f"{r1.pinned}>{r2.pinned}>{r4.pinned}>127.0.0.1:{e}",
        }
        self.ports = {name: free_port(socket.SOCK_DGRAM) for name in self.specs}
        args = ["-connect", r1.pinned, "-udp-idle-timeout", "3"]
        for name, spec in self.specs.items():
            args += ["-tunnel", f"udp:{self.ports[name]}>{spec}"]
        for node in (r1, r2, r3, r4):
            node.wait_for("node started")
        self.client = self.local.client("client", *args)
        for name in self.specs:
            self.client.wait_for("udp tunnel listening", listen=f"127.0.0.1:{self.ports[name]}")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    n = Net(tmp_path_factory.mktemp("udpnet"))
    yield n
    n.local.stop_all()
    n.echo.stop()


def _socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    return s


def _payload(seq: int, size: int) -> bytes:
    head = seq.to_bytes(4, "big")
    body = hashlib.shake_128(head).digest(max(0, size - 4))
    return (head + body)[:size] if size >= 4 else head[:size]


def _exchange(port: int, count: int, batch: int, sizes: list[int], deadline: float) -> tuple[int, int, int]:
    """Send `count` datagrams in paced batches; returns (sent, answered intact, corrupted)."""
    sock = _socket()
    _warm_up(sock, port)  # this source address's circuit is built before the count starts
    sock.settimeout(0.5)
    sent: dict[int, bytes] = {}
    intact = corrupted = 0
    seq = 0
    try:
        while seq < count and time.monotonic() < deadline:
            outstanding = set()
            for _ in range(min(batch, count - seq)):
                size = max(4, sizes[seq % len(sizes)])
                data = _payload(seq, size)
                sent[seq] = data
                sock.sendto(data, ("127.0.0.1", port))
                outstanding.add(seq)
                seq += 1
            while outstanding and time.monotonic() < deadline:
                try:
                    data, _ = sock.recvfrom(65535)
                except TimeoutError:
                    break
                n = int.from_bytes(data[:4], "big")
                if sent.get(n) == data:
                    if n in outstanding:
                        intact += 1
                        outstanding.discard(n)
                else:
                    corrupted += 1
    finally:
        sock.close()
    return len(sent), intact, corrupted


def _warm_up(sock: socket.socket | None, port: int, timeout: float = 60.0) -> None:
    """The first datagram from a source address builds its circuit; wait until one comes back."""
    own = sock is None
    s = _socket() if sock is None else sock
    s.settimeout(1.0)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            s.sendto(b"ping", ("127.0.0.1", port))
            try:
                if s.recvfrom(100)[0] == b"ping":
                    break
            except TimeoutError:
                continue
        else:
            raise AssertionError("no answer through the UDP tunnel")
        s.settimeout(0.3)
        try:
            while True:  # late answers to earlier pings
                s.recvfrom(100)
        except TimeoutError:
            pass
    finally:
        if own:
            s.close()


def test_ten_thousand_datagrams_of_mixed_sizes_arrive_intact(net: Net) -> None:
    sent, intact, corrupted = _exchange(net.ports["pinned"], 10_000, 40, SIZES, time.monotonic() + 240)
    assert sent == 10_000
    assert corrupted == 0
    assert intact >= 0.995 * sent, f"only {intact} of {sent} datagrams came back"


def test_rand_path_chooses_an_exit_that_allows_udp(net: Net) -> None:
    sent, intact, corrupted = _exchange(net.ports["rand"], 200, 20, [100, 1000], time.monotonic() + 60)
    assert corrupted == 0 and intact >= 0.99 * sent
    built = [e for e in net.client.events() if e.get("event") == "circuit built" and e.get("purpose") == "udp tunnel"]
    assert built and all(len(e["hops"]) == 3 for e in built)  # type: ignore[arg-type]
    assert any(e["hops"][-1] == net.r3.node_id[:8] for e in built)  # type: ignore[index]


def test_oversize_datagrams_are_dropped_whole_never_split(net: Net) -> None:
    sock = _socket()
    _warm_up(sock, net.ports["pinned"])
    before = net.echo.received
    sock.settimeout(1.0)
    try:
        sock.sendto(b"x" * (MAX_DATAGRAM + 1), ("127.0.0.1", net.ports["pinned"]))
        sock.sendto(b"y" * 60_000, ("127.0.0.1", net.ports["pinned"]))
        sock.sendto(b"small", ("127.0.0.1", net.ports["pinned"]))
        answers = []
        while True:
            try:
                answers.append(sock.recvfrom(65535)[0])
            except TimeoutError:
                break
    finally:
        sock.close()
    assert answers == [b"small"]
    assert net.echo.received - before == 1  # the big ones never reached the target, in part or whole


def test_an_exit_without_udp_rules_refuses(net: Net) -> None:
    sock = _socket()
    sock.settimeout(0.5)
    try:
        sock.sendto(b"hello", ("127.0.0.1", net.ports["no_udp_exit"]))
        with pytest.raises(TimeoutError):
            sock.recvfrom(100)
    finally:
        sock.close()
    event = net.client.wait_for("udp flow failed", timeout=30)
    assert "does not exit UDP" in str(event["reason"])


def test_an_idle_flow_closes_and_a_new_one_opens(net: Net) -> None:
    sock = _socket()
    try:
        _warm_up(sock, net.ports["pinned"])
        built = len([e for e in net.client.events() if e.get("event") == "circuit built"])
        time.sleep(5)  # longer than -udp-idle-timeout 3: the flow and its circuit close
        _warm_up(sock, net.ports["pinned"])  # the same source address gets a new circuit
        assert len([e for e in net.client.events() if e.get("event") == "circuit built"]) == built + 1
    finally:
        sock.close()
