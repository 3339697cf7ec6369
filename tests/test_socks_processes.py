"""The SOCKS5 proxy in real `gclient` processes, used by real clients.

One network for the module: three relays and an exit that allows 127.0.0.1
and ::1 (r3), an exit with the default policy (r4), and two client nodes:
`client` with several proxies (each path provokes one behaviour) and `authed`
with -proxy-auth and a short -proxy-timeout. Clients are curl, pysocks,
headless Chromium and raw sockets; targets are HTTP servers in this process.

No DNS: every node runs with tests/nodns on PYTHONPATH, so it resolves no
name but `localhost`, and logs each name it was asked to resolve; that log
proves the client never resolved a SOCKS request's name and the exit did.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import http.server
import os
import shutil
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import socks as pysocks

from globalnet.localnet import NodeProcess, free_port
from tests.identities import SeededLocalNet
from tests.targets import pattern

pytestmark = pytest.mark.long(seconds=15)  # wall seconds here alone: run early (tests/conftest.py)

BIG = 20 * 1024 * 1024
BIG_BODY = pattern(BIG, seed=20)
BIG_SHA = hashlib.sha256(BIG_BODY).hexdigest()
PAGE = b"<html><body><h1>Hello through GlobalNet</h1><p id='proof'>socks5 page rendered</p></body></html>\n"
NODNS = Path(__file__).parent / "nodns"
UNKNOWN_NODE = "ab" * 20
ALICE = ("alice", "s3cret")
CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = BIG_BODY if self.path == "/big" else PAGE
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream" if self.path == "/big" else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Web:
    """HTTP targets: one on 127.0.0.1 and one on ::1."""

    def __init__(self) -> None:
        self.servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler), _Server6(("::1", 0), _Handler)]
        for server in self.servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.port = self.servers[0].server_address[1]
        self.port6 = self.servers[1].server_address[1]

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


class Net:
    def __init__(self, base: Path) -> None:
        self.web = Web()
        self.local = SeededLocalNet(base)
        self.swallow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a "relay" that never answers
        self.swallow.bind(("127.0.0.1", 0))
        self.resolved: dict[str, Path] = {}
        relay = self.local.relay
        self.r1 = relay("r1", env=self._env("r1"))
        seed = ("-connect", self.r1.pinned)  # r1 knows every relay before the client asks it
        self.r2 = relay("r2", *seed, env=self._env("r2"))
        self.r3 = relay("r3", *seed, "-exit", "-exit-allow", "127.0.0.1/32", "-exit-allow", "[::1]/128", env=self._env("r3"))
        self.r4 = relay("r4", *seed, "-exit", env=self._env("r4"))  # default policy: loopback refused
        r1, r2, r3, r4 = self.r1, self.r2, self.r3, self.r4
        paths = {
            "main": f"{r1.pinned}>{r2.pinned}>{r3.pinned}>internet",
            "refusing_exit": f"{r1.pinned}>{r2.pinned}>{r4.pinned}>internet",
            "unknown_hop": f"{r1.pinned}>{UNKNOWN_NODE}>{r3.pinned}>internet",
            "dead_hop": f"{r1.pinned}>127.0.0.1:{free_port(socket.SOCK_DGRAM)}>{r3.pinned}>internet",
            "rand": "rand>rand>rand>internet",  # relays learned from r1 by peer exchange
        }
        self.ports = {name: free_port() for name in paths}
        args = ["-connect", r1.pinned]
        for name, path in paths.items():
            args += ["-proxy", f"{self.ports[name]}>{path}"]
        for node in (r1, r2, r3, r4):
            node.wait_for("node started")
        # the "rand" proxy learns relays from r1 by peer exchange when it links: r1 must know
        # them by then (else the client waits for r1's next round, 30 s; seen under load)
        for node in (r2, r3, r4):
            r1.wait_for("link up", peer=node.node_id[:8])
        self.client = self.local.client("client", *args, env=self._env("client"))
        self.ports["authed"] = free_port()
        self.ports["silent_hop"] = free_port()
        silent = f"127.0.0.1:{self.swallow.getsockname()[1]}"
        self.authed = self.local.client(
            "authed",
            "-proxy-auth", f"{ALICE[0]}:{ALICE[1]}",
            "-proxy-timeout", "1.5",
            "-proxy", f"{self.ports['authed']}>{paths['main']}",
            "-proxy", f"{self.ports['silent_hop']}>{r1.pinned}>{silent}>{r3.pinned}>internet",
            env=self._env("authed"),
        )  # fmt: skip
        for name in paths:
            self.client.wait_for("socks proxy listening", listen=f"127.0.0.1:{self.ports[name]}")
        self.authed.wait_for("socks proxy listening", listen=f"127.0.0.1:{self.ports['silent_hop']}")

    def _env(self, name: str) -> dict[str, str]:
        self.resolved[name] = self.local.base / f"{name}.resolved"
        path = os.pathsep.join(p for p in (str(NODNS), os.environ.get("PYTHONPATH", "")) if p)
        return {"PYTHONPATH": path, "GNET_TEST_RESOLVE_LOG": str(self.resolved[name])}

    def names_resolved_by(self, node: NodeProcess) -> list[str]:
        try:
            return self.resolved[node.name].read_text().split()
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        self.local.stop_all()
        self.web.stop()
        self.swallow.close()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    n = Net(tmp_path_factory.mktemp("socks"))
    yield n
    n.stop()


async def curl(*args: str, timeout: float = 60) -> tuple[int, bytes, str]:
    assert CURL is not None
    proc = await asyncio.create_subprocess_exec(
        CURL, "-sS", "--noproxy", "", "-m", str(int(timeout)), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
    )  # fmt: skip
    async with asyncio.timeout(timeout + 10):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err.decode(errors="replace")


# -- raw SOCKS5 -------------------------------------------------------------


async def socks5_request(
    port: int, atyp: int, addr: bytes, dport: int, cmd: int = 1, auth: tuple[str, str] | None = None
) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """Greeting (+ RFC 1929), request; returns the reply code and the open streams."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x02" if auth else b"\x05\x01\x00")
    assert await reader.readexactly(2) == (b"\x05\x02" if auth else b"\x05\x00")
    if auth:
        user, password = auth[0].encode(), auth[1].encode()
        writer.write(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
        assert await reader.readexactly(2) == b"\x01\x00"
    writer.write(bytes([5, cmd, 0, atyp]) + addr + struct.pack("!H", dport))
    reply = await reader.readexactly(10)
    assert reply[0] == 5 and reply[2] == 0 and reply[3] == 1  # BND.ADDR 0.0.0.0:0
    return reply[1], reader, writer


def v4(host: str = "127.0.0.1") -> tuple[int, bytes]:
    return 1, socket.inet_aton(host)


def dn(name: str) -> tuple[int, bytes]:
    return 3, bytes([len(name)]) + name.encode()


async def reply_code(port: int, target: tuple[int, bytes], dport: int, **kw: object) -> int:
    code, reader, writer = await socks5_request(port, *target, dport, **kw)  # type: ignore[arg-type]
    if code != 0:
        assert await reader.read() == b""  # closed after a failure reply
    writer.close()
    return code


async def http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str = "x") -> bytes:
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data


# -- real clients -----------------------------------------------------------


@needs_curl
async def test_curl_socks5_hostname_20_mib_name_resolved_at_the_exit(net: Net) -> None:
    url = f"http://localhost:{net.web.port}/big"
    code, body, err = await curl("--socks5-hostname", f"127.0.0.1:{net.ports['main']}", url)
    assert code == 0, err
    assert len(body) == BIG and hashlib.sha256(body).hexdigest() == BIG_SHA
    # the request carried the name; the exit resolved it; the client resolved nothing
    request = await asyncio.to_thread(net.client.wait_for, "socks request", target=f"localhost:{net.web.port}")
    assert request["atyp"] == "DOMAIN"
    await asyncio.to_thread(net.r3.wait_for, "exit resolved target name", name="localhost")
    assert "localhost" in net.names_resolved_by(net.r3)
    assert "localhost" not in net.names_resolved_by(net.client)
    for node in (net.r1, net.r2):
        assert net.names_resolved_by(node) == []


@needs_curl
async def test_curl_socks5_ipv4_20_mib(net: Net) -> None:
    url = f"http://127.0.0.1:{net.web.port}/big"
    code, body, err = await curl("--socks5", f"127.0.0.1:{net.ports['main']}", url)
    assert code == 0, err
    assert len(body) == BIG and hashlib.sha256(body).hexdigest() == BIG_SHA


@needs_curl
async def test_curl_socks5_through_rand_hops_20_mib(net: Net) -> None:
    """rand>rand>rand>internet: the relays come from peer exchange, the exit from its announced policy."""
    url = f"http://127.0.0.1:{net.web.port}/big"
    code, body, err = await curl("--socks5", f"127.0.0.1:{net.ports['rand']}", url)
    assert code == 0, err
    assert len(body) == BIG and hashlib.sha256(body).hexdigest() == BIG_SHA
    built = await asyncio.to_thread(net.client.wait_for, "circuit built", purpose="socks")
    assert built is not None


@needs_curl
async def test_curl_ipv6_target(net: Net) -> None:
    code, body, err = await curl("--socks5", f"127.0.0.1:{net.ports['main']}", f"http://[::1]:{net.web.port6}/")
    assert code == 0, err
    assert body == PAGE
    await asyncio.to_thread(net.client.wait_for, "socks request", target=f"[::1]:{net.web.port6}", atyp="IPV6")


@needs_curl
async def test_curl_http_connect(net: Net) -> None:
    proxy = f"http://127.0.0.1:{net.ports['main']}"
    code, body, err = await curl("-p", "-x", proxy, f"http://127.0.0.1:{net.web.port}/big")
    assert code == 0, err
    assert hashlib.sha256(body).hexdigest() == BIG_SHA
    code, body, err = await curl("-p", "-x", proxy, f"http://[::1]:{net.web.port6}/")
    assert (code, body) == (0, PAGE), err
    code, body, err = await curl("-p", "-x", proxy, f"http://localhost:{net.web.port}/")
    assert (code, body) == (0, PAGE), err


@needs_curl
async def test_plain_http_get_gets_an_explanatory_501(net: Net) -> None:
    code, body, err = await curl("-x", f"http://127.0.0.1:{net.ports['main']}", "-w", "%{http_code}", f"http://127.0.0.1:{net.web.port}/")
    assert code == 0, err
    assert body.endswith(b"501")
    assert b"SOCKS5" in body and b"not an HTTP proxy" in body


@needs_curl
async def test_http_connect_failure_is_an_http_status(net: Net) -> None:
    proxy = f"http://127.0.0.1:{net.ports['refusing_exit']}"
    code, _, err = await curl("-p", "-x", proxy, f"http://127.0.0.1:{net.web.port}/")
    assert code != 0 and "403" in err


def test_pysocks_50_concurrent_connections(net: Net) -> None:
    def fetch(i: int) -> bytes:
        s = pysocks.socksocket()
        s.set_proxy(pysocks.SOCKS5, "127.0.0.1", net.ports["main"], rdns=i % 2 == 0)
        s.settimeout(60)
        try:
            s.connect(("localhost" if i % 2 == 0 else "127.0.0.1", net.web.port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data
        finally:
            s.close()

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(fetch, range(50), timeout=90))
    assert all(r.startswith(b"HTTP/1.") and r.endswith(PAGE) for r in results)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make test-deps installs it where apt-get and root are available)")
async def test_headless_chromium_renders_a_page_through_the_proxy(net: Net) -> None:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--proxy-server=socks5://127.0.0.1:{net.ports['main']}",
            "--proxy-bypass-list=<-loopback>",  # Chromium sends loopback targets direct unless told
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            f"--user-data-dir={profile}", "--dump-dom", f"http://localhost:{net.web.port}/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            async with asyncio.timeout(60):
                dom, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert "<p id=\"proof\">socks5 page rendered</p>" in dom.decode()
    await asyncio.to_thread(net.client.wait_for, "socks request", target=f"localhost:{net.web.port}")


# -- every reply code ---------------------------------------------------------


async def test_reply_0x02_exit_policy(net: Net) -> None:
    async with asyncio.timeout(90):
        assert await reply_code(net.ports["refusing_exit"], v4(), net.web.port) == 0x02


@pytest.mark.parametrize("path", ["unknown_hop", "dead_hop"])
async def test_reply_0x03_no_route(net: Net, path: str) -> None:
    """A hop nobody knows (a node id without an address), or a relay address
    where no node listens (refused): no route."""
    async with asyncio.timeout(90):
        assert await reply_code(net.ports[path], v4(), net.web.port) == 0x03


async def test_reply_0x04_bad_name_refused_by_the_exit_without_dns(net: Net) -> None:
    # the exit refuses a syntactically invalid name before its resolver sees it
    async with asyncio.timeout(90):
        assert await reply_code(net.ports["main"], dn("bad..name"), 80) == 0x04
    assert "bad..name" not in net.names_resolved_by(net.r3)


@pytest.mark.parametrize(
    ("name", "port", "code"),
    [
        ("no-such-host.invalid", 80, 0x04),  # a reserved name
        ("printer.local", 80, 0x04),
        ("db.internal", 80, 0x04),
        ("a.localhost", 80, 0x04),
        ("example.org", 80, 0x02),  # r3 allows loopback only: no public answer could pass
    ],
)
async def test_the_exit_refuses_before_its_resolver_sees_the_name(net: Net, name: str, port: int, code: int) -> None:
    async with asyncio.timeout(90):
        assert await reply_code(net.ports["main"], dn(name), port) == code
    for node in net.local.nodes:
        assert name not in net.names_resolved_by(node)


@pytest.mark.parametrize("name", ["no-such-host.invalid", "printer.local", "a.b.test", "www.example", "foo.localhost"])
async def test_an_exit_for_every_public_address_refuses_reserved_names_unresolved(net: Net, name: str) -> None:
    # r4 (default policy: every public address) could allow a public answer, yet a reserved name has none
    async with asyncio.timeout(90):
        assert await reply_code(net.ports["refusing_exit"], dn(name), 80) in (0x02, 0x04)
    assert name not in net.names_resolved_by(net.r4)


async def test_a_name_on_a_port_no_rule_allows_is_refused_unresolved(tmp_path: Path) -> None:
    """An exit for port 443 only: a name on port 80 never reaches its resolver."""
    local = SeededLocalNet(tmp_path)
    resolved = tmp_path / "exit.resolved"
    path = os.pathsep.join(p for p in (str(NODNS), os.environ.get("PYTHONPATH", "")) if p)
    try:
        entry = local.relay("p1")
        exit_node = local.relay(
            "p2", "-exit", "-exit-allow", "0.0.0.0/0:443", env={"PYTHONPATH": path, "GNET_TEST_RESOLVE_LOG": str(resolved)}
        )
        for node in (entry, exit_node):
            node.wait_for("node started")
        port = free_port()
        client = local.client("pc", "-connect", entry.pinned, "-proxy", f"{port}>{entry.pinned}>{exit_node.pinned}>internet")
        client.wait_for("socks proxy listening", listen=f"127.0.0.1:{port}")
        async with asyncio.timeout(60):
            assert await reply_code(port, dn("web-name.example.org"), 80) == 0x02
        assert not resolved.exists() or "web-name.example.org" not in resolved.read_text().split()
    finally:
        local.stop_all()


async def test_localhost_at_an_exit_without_loopback_rules_is_refused_unresolved(net: Net) -> None:
    # r4 keeps the default policy (public addresses only): localhost could only be loopback
    async with asyncio.timeout(90):
        assert await reply_code(net.ports["refusing_exit"], dn("localhost"), net.web.port) == 0x02
    assert "localhost" not in net.names_resolved_by(net.r4)


async def test_reply_0x04_bad_service_address(net: Net) -> None:
    """A .gnet name goes to the hidden-service code, never to an exit or a
    resolver; one whose checksum is wrong is host unreachable."""
    async with asyncio.timeout(90):
        assert await reply_code(net.ports["main"], dn("abcdef.gnet"), 80) == 0x04
    for node in net.local.nodes:
        assert not any("gnet" in n for n in net.names_resolved_by(node))


async def test_reply_0x05_closed_port(net: Net) -> None:
    closed = free_port()
    async with asyncio.timeout(90):
        assert await reply_code(net.ports["main"], v4(), closed) == 0x05


async def test_reply_0x06_hop_that_never_answers(net: Net) -> None:
    async with asyncio.timeout(90):
        assert await reply_code(net.ports["silent_hop"], v4(), net.web.port, auth=ALICE) == 0x06


async def test_reply_0x07_bind(net: Net) -> None:
    async with asyncio.timeout(90):
        assert await reply_code(net.ports["main"], v4(), net.web.port, cmd=2) == 0x07


async def test_reply_0x08_unknown_address_type(net: Net) -> None:
    async with asyncio.timeout(90):
        reader, writer = await asyncio.open_connection("127.0.0.1", net.ports["main"])
        writer.write(b"\x05\x01\x00")
        assert await reader.readexactly(2) == b"\x05\x00"
        writer.write(b"\x05\x01\x00\x05" + bytes(6))
        assert await reader.read() == b"\x05\x08\x00\x01" + bytes(6)
        writer.close()


# -- auth and isolation ---------------------------------------------------------


async def test_proxy_auth_required(net: Net) -> None:
    port = net.ports["authed"]
    async with asyncio.timeout(90):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x01\x00")  # no-auth only
        assert await reader.read() == b"\x05\xff"
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x01\x02\x01\x05alice\x05guess")
        assert await reader.read() == b"\x05\x02\x01\x01"
        writer.close()
        code, reader, writer = await socks5_request(port, *v4(), net.web.port, auth=ALICE)
        assert code == 0
        assert (await http_get(reader, writer)).endswith(PAGE)


@needs_curl
async def test_proxy_auth_with_curl_socks_and_http(net: Net) -> None:
    port = net.ports["authed"]
    url = f"http://127.0.0.1:{net.web.port}/"
    code, body, err = await curl("--socks5-hostname", f"127.0.0.1:{port}", "--proxy-user", "alice:s3cret", url)
    assert (code, body) == (0, PAGE), err
    code, body, err = await curl("-p", "-x", f"http://alice:s3cret@127.0.0.1:{port}", url)
    assert (code, body) == (0, PAGE), err
    code, _, err = await curl("-p", "-x", f"http://127.0.0.1:{port}", url)
    assert code != 0 and "407" in err


def test_different_credentials_through_pysocks(net: Net) -> None:
    """Each set of credentials works (isolation itself is checked in-process,
    where the circuits' isolation keys can be seen)."""
    def fetch(user: str) -> bytes:
        s = pysocks.socksocket()
        s.set_proxy(pysocks.SOCKS5, "127.0.0.1", net.ports["main"], username=user, password="pw-" + user)
        s.settimeout(30)
        try:
            s.connect(("127.0.0.1", net.web.port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data
        finally:
            s.close()

    assert all(fetch(u).endswith(PAGE) for u in ("alice", "bob"))


# -- malformed clients do no harm -----------------------------------------------------


BAD_OPENINGS = [
    b"\x06\x01\x00",  # wrong version
    b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00",  # SOCKS4
    b"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50",  # zero-length domain name
    b"\x05\x01\x00\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50",  # wrong version in the request
    b"\x05\x01\x00\x05\x01\x01\x01\x7f\x00\x00\x01\x00\x50",  # reserved byte set
    b"\x05\x01\x00\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50",  # extra byte in the greeting
    b"\x16\x03\x01\x00\xa5\x01\x00\x00",  # a TLS ClientHello
    b"CONNECT nonsense HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 9000 + b"\r\n\r\n",
]


async def test_malformed_and_slow_clients_do_not_affect_others(net: Net) -> None:
    port = net.ports["main"]
    async with asyncio.timeout(60):
        # slowloris: a byte of a greeting, then silence (held open during the rest)
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        slow_writer.write(b"\x05")
        # truncated: half a request, then EOF
        trunc_reader, trunc_writer = await asyncio.open_connection("127.0.0.1", port)
        trunc_writer.write(b"\x05\x01\x00\x05\x01\x00\x03\x09loc")
        trunc_writer.write_eof()

        async def bad(opening: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(opening)
            try:
                data = await reader.read()  # the proxy closes the connection
            except ConnectionResetError:
                data = b"<reset>"
            writer.close()
            return data

        async def good() -> bytes:
            code, reader, writer = await socks5_request(port, *v4(), net.web.port)
            assert code == 0
            return await http_get(reader, writer)

        results = await asyncio.gather(*(bad(o) for o in BAD_OPENINGS), good(), good())
        assert all(r.endswith(PAGE) for r in results[-2:])
        assert results[1] == b"\x00\x5b" + bytes(6)  # SOCKS4 rejection
        assert results[2] == b"\x05\x00\x05\x01\x00\x01" + bytes(6)  # general failure for the zero-length name
        assert results[7].startswith(b"HTTP/1.1 400 ")
        assert results[8].startswith(b"HTTP/1.1 431 ")
        assert await trunc_reader.read() == b"\x05\x00"  # method chosen, then closed at EOF
        trunc_writer.close()
        # the slow client is still waiting (dropped only at the handshake timeout), the node is up
        assert not slow_reader.at_eof()
        slow_writer.close()
    for node in (net.client, net.r3):
        assert node.proc is not None and node.proc.poll() is None


def test_no_target_in_info_logs(net: Net) -> None:
    for node in net.local.nodes:
        for ev in node.events():
            if ev.get("level") in ("info", "warning", "error"):
                text = str(ev)
                assert f":{net.web.port}" not in text and "localhost" not in text, ev
                assert "bad..name" not in text and "abcdef.gnet" not in text, ev
