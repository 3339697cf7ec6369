"""UDP through circuits with real `gclient` processes on 127.0.0.1: tunnels, exit rules, limits."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RR, A, DNSRecord
from dnslib.server import DNSServer

from globalnet.localnet import free_port, hosted_address
from globalnet.wire.datagram import MAX_DATAGRAM
from globalnet.wire.socks_udp import decode_udp_request, encode_udp_datagram
from tests.identities import SeededLocalNet
from tests.targets import UdpEchoServer

pytestmark = pytest.mark.long(seconds=25)  # wall seconds here alone: run early (tests/conftest.py)

SIZES = [1, 64, 512, 1200, 1400, 4096, 8192, MAX_DATAGRAM]


class DnsServer:
    """A real DNS server (dnslib) on 127.0.0.1: answers NAME A with an address derived from NAME."""

    def __init__(self) -> None:
        self.port = free_port(socket.SOCK_DGRAM)
        self.queries = 0
        self.server = DNSServer(self, port=self.port, address="127.0.0.1")
        self.server.start_thread()

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        self.queries += 1
        reply = request.reply()
        reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(answer_for(str(request.q.qname))), ttl=60))
        return reply

    def stop(self) -> None:
        self.server.stop()


def answer_for(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return f"10.{digest[0]}.{digest[1]}.{digest[2]}"  # data in the answer only: never dialled


class Net:
    def __init__(self, base: Path) -> None:
        self.echo = UdpEchoServer()
        self.dns = DnsServer()
        self.local = SeededLocalNet(base)
        e = self.echo.port
        self.r1 = self.local.relay("r1")
        self.r2 = self.local.relay("r2", "-connect", self.r1.pinned)
        self.r3 = self.local.relay(
            "r3", "-connect", self.r1.pinned, "-exit", "-exit-allow", "127.0.0.1/32", "-exit-allow-udp", "127.0.0.1/32"
        )
        self.r4 = self.local.relay("r4", "-connect", self.r1.pinned, "-exit", "-exit-allow", "127.0.0.1/32")  # no UDP rules
        r1, r2, r3, r4 = self.r1, self.r2, self.r3, self.r4
        self.specs = {
            "pinned": f"{r1.pinned}>{r2.pinned}>{r3.pinned}>127.0.0.1:{e}",
            "rand": f"rand>rand>rand>127.0.0.1:{e}",
            "no_udp_exit": f"{r1.pinned}>{r2.pinned}>{r4.pinned}>127.0.0.1:{e}",
        }
        self.ports = {name: free_port(socket.SOCK_DGRAM) for name in self.specs}
        # a hidden service whose target is the UDP DNS server
        # (a hidden service keeps its access points off its own circuits: it needs a few more relays)
        self.extra = [self.local.relay(f"r{i}", "-connect", r1.pinned) for i in range(5, 10)]
        self.service = self.local.client("svc", "-connect", r1.pinned, "-service", f"dns=udp:127.0.0.1:{self.dns.port}")
        self.address = hosted_address(self.service, "dns")
        self.specs["service"] = self.address
        self.ports["service"] = free_port(socket.SOCK_DGRAM)
        self.proxy = free_port()
        self.proxy_no_udp = free_port()
        self.console = free_port()
        args = ["-connect", r1.pinned, "-udp-idle-timeout", "3", "-console", str(self.console)]
        args += ["-proxy", f"{self.proxy}>rand>rand>rand>internet"]
        args += ["-proxy", f"{self.proxy_no_udp}>{r1.pinned}>{r2.pinned}>{r4.pinned}>internet"]
        for name, spec in self.specs.items():
            args += ["-tunnel", f"udp:{self.ports[name]}>{spec}"]
        for node in (r1, r2, r3, r4, *self.extra):
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
    n.dns.stop()


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
    udp = [c for c in _console_json(net, "json list circuits") if c.get("purpose") == "udp tunnel" and c["dropped_oversize"]]
    assert udp and udp[0]["dropped_oversize"] == 2 and udp[0]["datagrams_out"] >= 2
    stats = _console_json(net, "json stats")
    assert stats["udp_dropped_oversize"] >= 2 and stats["udp_datagrams_out"] >= 2  # type: ignore[call-overload]


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


# -- SOCKS5 UDP ASSOCIATE ---------------------------------------------------------


def _associate(proxy_port: int) -> tuple[socket.socket, int, int]:
    """A raw RFC 1928 client: (control connection, reply code, relay port)."""
    control = socket.create_connection(("127.0.0.1", proxy_port), timeout=30)
    control.sendall(b"\x05\x01\x00")
    assert control.recv(2) == b"\x05\x00"
    control.sendall(b"\x05\x03\x00\x01" + bytes(4) + bytes(2))  # UDP ASSOCIATE, source not known yet
    reply = b""
    while len(reply) < 10:
        chunk = control.recv(10 - len(reply))
        if not chunk:
            break
        reply += chunk
    code = reply[1] if len(reply) > 1 else -1
    port = int.from_bytes(reply[8:10], "big") if code == 0 else 0
    return control, code, port


def _wait_for_proxy(net: Net) -> None:
    net.client.wait_for("socks proxy listening", listen=f"127.0.0.1:{net.proxy}")
    net.client.wait_for("socks proxy listening", listen=f"127.0.0.1:{net.proxy_no_udp}")


def test_one_thousand_dns_queries_through_socks_udp_associate(net: Net) -> None:
    _wait_for_proxy(net)
    control, code, relay = _associate(net.proxy)
    assert code == 0 and relay
    sock = _socket()
    sock.settimeout(2.0)
    answered = 0
    pending: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 180
        for i in range(1000):
            if time.monotonic() > deadline:
                break
            name = f"host{i}.example."
            query = DNSRecord.question(name)
            query.header.id = i
            target = "localhost" if i % 10 == 0 else "127.0.0.1"  # a name goes to the exit as a name
            sock.sendto(encode_udp_datagram(target, net.dns.port, query.pack()), ("127.0.0.1", relay))
            pending[i] = name
            if len(pending) < 20 and i < 999:
                continue
            while pending:
                try:
                    data, _ = sock.recvfrom(65535)
                except TimeoutError:
                    break
                header = decode_udp_request(data)
                assert header.port == net.dns.port and header.host in ("127.0.0.1", "localhost")
                answer = DNSRecord.parse(header.data)
                asked = pending.pop(answer.header.id, None)
                if asked is None:
                    continue
                assert str(answer.q.qname) == asked
                assert str(answer.rr[0].rdata) == answer_for(asked)
                answered += 1
    finally:
        sock.close()
        control.close()
    assert answered == 1000


def test_datagrams_from_another_address_are_ignored(net: Net) -> None:
    _wait_for_proxy(net)
    control, code, relay = _associate(net.proxy)
    assert code == 0
    before = net.echo.received
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    try:
        stranger.sendto(encode_udp_datagram("127.0.0.1", net.echo.port, b"not yours"), ("127.0.0.1", relay))
        mine = _socket()
        mine.settimeout(10)
        try:
            mine.sendto(encode_udp_datagram("127.0.0.1", net.echo.port, b"mine"), ("127.0.0.1", relay))
            assert decode_udp_request(mine.recvfrom(65535)[0]).data == b"mine"
            # a second local port of the right IP is a stranger too, once the first one spoke
            other = _socket()
            other.sendto(encode_udp_datagram("127.0.0.1", net.echo.port, b"other port"), ("127.0.0.1", relay))
            other.close()
            # a fragment is dropped, never reassembled
            fragment = bytearray(encode_udp_datagram("127.0.0.1", net.echo.port, b"fragment"))
            fragment[2] = 1
            mine.sendto(bytes(fragment), ("127.0.0.1", relay))
            mine.sendto(encode_udp_datagram("127.0.0.1", net.echo.port, b"mine again"), ("127.0.0.1", relay))
            assert decode_udp_request(mine.recvfrom(65535)[0]).data == b"mine again"
        finally:
            mine.close()
    finally:
        stranger.close()
        control.close()
    assert net.echo.received - before == 2


def test_the_association_dies_with_its_tcp_connection(net: Net) -> None:
    _wait_for_proxy(net)
    control, code, relay = _associate(net.proxy)
    assert code == 0
    sock = _socket()
    sock.settimeout(10)
    try:
        sock.sendto(encode_udp_datagram("127.0.0.1", net.echo.port, b"alive"), ("127.0.0.1", relay))
        assert decode_udp_request(sock.recvfrom(65535)[0]).data == b"alive"
        control.close()
        deadline = time.monotonic() + 10
        closed = False
        while time.monotonic() < deadline and not closed:
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.bind(("127.0.0.1", relay))  # the port is free again once the association is gone
                closed = True
            except OSError:
                time.sleep(0.2)
            finally:
                probe.close()
        assert closed
    finally:
        sock.close()


def test_no_exit_with_udp_rules_is_refused_with_0x02(net: Net) -> None:
    _wait_for_proxy(net)
    deadline = time.monotonic() + 60
    code = -1
    while time.monotonic() < deadline:  # 0x00 until the client has learnt the pinned exit's record
        control, code, _ = _associate(net.proxy_no_udp)
        control.close()
        if code != 0:
            break
        time.sleep(0.5)
    assert code == 0x02


def test_a_udp_hidden_service(net: Net) -> None:
    net.service.wait_for("service descriptor published", timeout=90)
    sock = _socket()
    sock.settimeout(2.0)
    try:
        deadline = time.monotonic() + 90
        answer = None
        i = 0
        while answer is None and time.monotonic() < deadline:
            query = DNSRecord.question("svc.example.")
            query.header.id = i
            i += 1
            sock.sendto(query.pack(), ("127.0.0.1", net.ports["service"]))
            try:
                answer = DNSRecord.parse(sock.recvfrom(65535)[0])
            except TimeoutError:
                continue
        assert answer is not None, "no answer from the UDP service"
        assert str(answer.rr[0].rdata) == answer_for("svc.example.")
        for j in range(50):  # then a steady exchange on the same circuit
            query = DNSRecord.question(f"n{j}.svc.example.")
            query.header.id = 1000 + j
            sock.sendto(query.pack(), ("127.0.0.1", net.ports["service"]))
            reply = DNSRecord.parse(sock.recvfrom(65535)[0])
            assert str(reply.rr[0].rdata) == answer_for(f"n{j}.svc.example.")
    finally:
        sock.close()


def _console_json(net: Net, command: str) -> Any:
    import json

    with socket.create_connection(("127.0.0.1", net.console), timeout=10) as conn:
        conn.sendall(command.encode() + b"\nquit\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        line = line.lstrip("> ")
        if line.startswith("{"):
            return json.loads(line)["result"]  # type: ignore[no-any-return]
    raise AssertionError(f"no JSON answer: {data!r}")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_datagram_flood_is_dropped_at_the_window_not_queued(net: Net) -> None:
    sock = _socket()
    _warm_up(sock, net.ports["pinned"])
    relays = [net.r1, net.r2, net.r3]
    before = [_rss_kib(r.proc.pid) for r in relays]  # type: ignore[union-attr]
    payload = b"f" * 8000
    try:
        for _ in range(30_000):  # ~240 MB offered as fast as one core can send
            sock.sendto(payload, ("127.0.0.1", net.ports["pinned"]))
        after = [_rss_kib(r.proc.pid) for r in relays]  # type: ignore[union-attr]
    finally:
        sock.close()
    for name, b, a in zip(("r1", "r2", "r3"), before, after, strict=True):
        assert a - b < 32 * 1024, f"{name} grew by {(a - b) // 1024} MiB under a UDP flood"
    udp = [c for c in _console_json(net, "json list circuits") if c.get("purpose") == "udp tunnel"]
    assert sum(int(c["dropped_window"]) for c in udp) > 0  # the sender dropped instead of queueing
    for relay in relays:
        assert relay.proc is not None and relay.proc.poll() is None
    _warm_up(None, net.ports["pinned"])  # and the path still works
