"""A small GlobalNet on 127.0.0.1, made of real `gclient` processes.

Used by the README's first command (`make demo`: three relays, one of them an
exit that allows loopback, a client with a tunnel to a local web page and a
debug console) and by the integration tests, so the demo and the tests start
nodes the same way.
Every node gets its own data dir and log file; nothing listens beyond
127.0.0.1 and nothing is dialled beyond it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from globalnet.config.defaults import IDENTITY_FILE_NAME
from globalnet.identity import load_or_create_identity

ROOT = Path(__file__).resolve().parent.parent
#: How a node process is started: the installed package's `gclient`, whatever the checkout.
GCLIENT_CMD = (sys.executable, "-m", "globalnet")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: Ports handed out below the kernel's ephemeral range: a port taken from that range can be
#: given to another process's outgoing socket (a node dialling binds port 0) between our check
#: and the listener's bind, which CI saw ("-listen ...: Address already in use").
_FIRST_PORT = 20000  # above the demo's and the README's fixed ports (8000-19100)
#: "FIRST-LAST": hand out ports from this slice of the range only. Processes that pick ports at
#: the same time (pytest-xdist workers; tests/conftest.py gives each its own slice) then never
#: pick the same port between one's check and the other's bind.
PORTS_ENV = "GNET_LOCALNET_PORTS"
#: Ports are handed out in turn from a random start, so one process does not hand out the same
#: port twice before the slice wraps (two nodes given ports before either binds).
_turn = random.randrange(1 << 30)
_turn_lock = threading.Lock()


def _port_slice() -> tuple[int, int]:
    """[first, end) of the ports free_port may hand out here."""
    first, end = _FIRST_PORT, _ephemeral_low()
    spec = os.environ.get(PORTS_ENV, "")
    if spec:
        try:
            low, high = (int(part) for part in spec.split("-"))
        except ValueError:
            raise RuntimeError(f"{PORTS_ENV}={spec!r}: expected FIRST-LAST, e.g. 20000-24999") from None
        first, end = max(first, low), min(end, high + 1)
    return first, end


def port_slice(index: int, count: int) -> str:
    """The PORTS_ENV value for the index-th of count processes that share this machine's range."""
    first, end = _FIRST_PORT, _ephemeral_low()
    size = (end - first) // count
    return f"{first + index * size}-{first + (index + 1) * size - 1}"


def _next_port(first: int, end: int) -> int:
    global _turn
    with _turn_lock:
        _turn += 1
        return first + _turn % (end - first)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (we use it for one of them)."""
    first, end = _port_slice()
    pick = (lambda: _next_port(first, end)) if end - first >= 256 else (lambda: 0)
    other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
    for _ in range(200):
        try:  # plain binds (no SO_REUSEADDR): a test's own sockets may bind the port that way
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", pick()))
                port = int(s.getsockname()[1])
            with socket.socket(socket.AF_INET, other) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


@dataclass
class NodeProcess:
    name: str
    args: list[str]
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    listen_port: int | None = None
    node_id: str = ""
    #: Run the node under this command, e.g. ["ip", "netns", "exec", NAME] (tests/netns.py).
    exec_prefix: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # added to the process environment
    log_level: str = "debug"  # the tests read debug events; the demo logs at info
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "node.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 (handed to the child, closed below)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        cmd = [*self.exec_prefix, *GCLIENT_CMD, "-data-dir", str(self.data_dir), "--log-json", "--log-level", self.log_level, *self.args]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        log.close()

    def events(self) -> list[dict[str, object]]:
        out = []
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def find(self, event: str, **match: object) -> dict[str, object] | None:
        for ev in self.events():
            if ev.get("event") == event and all(ev.get(k) == v for k, v in match.items()):
                return ev
        return None

    def wait_for(self, event: str, timeout: float = 20.0, **match: object) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(event, **match)
            if found is not None:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: no '{event}' within {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listen_port}"

    @property
    def pinned(self) -> str:
        return f"127.0.0.1:{self.listen_port}#{self.node_id}"


class LocalNet:
    """Starts and stops gclient processes under one directory."""

    def __init__(self, base: Path, log_level: str = "debug") -> None:
        self.base = base
        self.log_level = log_level
        self.nodes: list[NodeProcess] = []

    def relay(self, name: str, *extra: str, port: int | None = None, env: dict[str, str] | None = None) -> NodeProcess:
        port = port or free_port(socket.SOCK_DGRAM)
        node = NodeProcess(name, ["-listen", f"127.0.0.1:{port}", *extra], self.base / name, listen_port=port, env=env or {})
        return self._start(node)

    def client(self, name: str, *args: str, env: dict[str, str] | None = None) -> NodeProcess:
        return self._start(NodeProcess(name, ["-no-listen", *args], self.base / name, env=env or {}))

    def _start(self, node: NodeProcess) -> NodeProcess:
        node.log_level = self.log_level
        node.data_dir.mkdir(parents=True, exist_ok=True)
        node.node_id = node_id_of(node.data_dir)
        node.start()
        self.nodes.append(node)
        return node

    def dead(self) -> NodeProcess | None:
        """The first node whose process has exited, if any."""
        return next((n for n in self.nodes if n.proc is not None and n.proc.poll() is not None), None)

    def stop_all(self) -> None:
        """SIGTERM every node first, then wait for each: they shut down side by side (one
        after another, a node's ~0.5 s of shutting down added up to seconds per network)."""
        for node in reversed(self.nodes):
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in reversed(self.nodes):
            node.stop()


def node_id_of(data_dir: Path) -> str:
    """Create (if needed) the node's identity key and return its node id.

    In this process, with the function gclient itself uses (the key file 0600, written
    atomically): a `gclient --print-id` child per node cost a Python start-up each."""
    return load_or_create_identity(data_dir / IDENTITY_FILE_NAME).node_id.hex()


class _QuietServer(http.server.ThreadingHTTPServer):
    """A client that resets its connection (a browser, a cut circuit) is normal here: no traceback."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Page(http.server.BaseHTTPRequestHandler):
    body = b"<html><body><h1>Hello from GlobalNet</h1><p>This page came through a 3-hop circuit.</p></body></html>\n"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def web_server(port: int = 0) -> Iterator[int]:
    server = _QuietServer(("127.0.0.1", port), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def fetch_via_socks(proxy_port: int, host: str, port: int, timeout: float = 20.0) -> bytes:
    """GET / from host:port through a SOCKS5 proxy, the name sent as a name (a
    minimal client, so the demo needs no SOCKS library)."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout) as s:
        name = host.encode()
        s.sendall(b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
        reply = b""
        while len(reply) < 12:
            chunk = s.recv(12 - len(reply))
            if not chunk:
                break
            reply += chunk
        if reply[:2] != b"\x05\x00" or reply[2:4] != b"\x05\x00":
            raise RuntimeError(f"SOCKS request failed (reply {reply[2:4].hex() or 'none'})")
        s.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


def start_demo(
    base: Path,
    relay_ports: tuple[int, ...],
    web_port: int,
    tunnel_port: int,
    console_port: int | None = None,
    metrics_port: int | None = None,
    proxy_port: int | None = None,
    service_port: int | None = None,
    network: Callable[[LocalNet], None] | None = None,
    log_level: str = "debug",
) -> LocalNet:
    """Relays (the third an exit for 127.0.0.1), a client with a tunnel through the first
    three (and its debug console, a SOCKS5 proxy through the same relays, if given), and,
    with service_port, a node hosting the page as a hidden service plus a client tunnel to it.
    `network` is told the LocalNet before any node starts, so a caller can stop them all if
    start-up fails half way."""
    net = LocalNet(base, log_level)
    if network is not None:
        network(net)
    r1 = net.relay("relay1", port=relay_ports[0])
    r2 = net.relay("relay2", "-connect", r1.pinned, port=relay_ports[1])
    r3 = net.relay("relay3", "-connect", r1.pinned, "-exit", "-exit-allow", "127.0.0.1/32", port=relay_ports[2])
    extra = [net.relay(f"relay{i + 1}", "-connect", r1.pinned, port=p) for i, p in enumerate(relay_ports[3:], start=3)]
    hops = f"{r1.pinned}>{r2.pinned}>{r3.pinned}"
    console = ["-console", f"127.0.0.1:{console_port}"] if console_port else []
    console += ["-metrics", f"127.0.0.1:{metrics_port}"] if metrics_port else []
    proxy = ["-proxy", f"{proxy_port}>{hops}>internet"] if proxy_port else []
    if proxy_port:  # a small signed site, served by the client's proxy from its verified cache
        site = base / "site-www"
        site.mkdir(parents=True, exist_ok=True)
        (site / "index.html").write_text("<!doctype html><h1>A signed GlobalNet site</h1><p>Every byte verified.</p>\n")
        proxy += ["-publish", f"demo={site}"]
    service_tunnel: list[str] = []
    if service_port:
        host = net.client("service", "-connect", r1.pinned, "-service", f"demo=127.0.0.1:{web_port}")
        address = hosted_address(host, "demo")
        service_tunnel = ["-tunnel", f"{service_port}>{address}"]
    client = net.client(
        "client", "-connect", r1.pinned, "-tunnel", f"{tunnel_port}>{hops}>127.0.0.1:{web_port}",
        *service_tunnel, *console, *proxy,
    )
    for node in (r1, r2, r3, *extra):
        node.wait_for("node started")
    client.wait_for("tunnel listening")
    if proxy_port:
        client.wait_for("socks proxy listening")
    return net


def published_site_address(node: NodeProcess, name: str, timeout: float = 30.0) -> str:
    """The address of site `name` published by `node` (from its key: the log does not carry it at info)."""
    import nacl.signing

    from .site.address import encode_site_address

    node.wait_for("site published", timeout=timeout, name=name)
    seed = (node.data_dir / "sites" / name / "site.key").read_bytes()
    return encode_site_address(bytes(nacl.signing.SigningKey(seed).verify_key))


def hosted_address(node: NodeProcess, name: str, timeout: float = 20.0) -> str:
    """The .gnet address of service `name` hosted by `node`: from its hostname file
    (the log never carries a service's address)."""
    node.wait_for("hidden service", timeout=timeout, name=name)
    return (node.data_dir / "services" / name / "hostname").read_text().strip()


def service_address(net: LocalNet) -> str | None:
    for node in net.nodes:
        found = node.find("hidden service")
        if found is not None:
            return hosted_address(node, str(found["name"]))
    return None


def _demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run a small GlobalNet on 127.0.0.1 with a tunnel to a local web page.")
    parser.add_argument("--dir", type=Path, default=ROOT / ".demo", help="where the nodes keep their data and logs")
    parser.add_argument("--base-port", type=int, default=9001, help="relays listen on BASE..BASE+5 (UDP; BASE+2 with --service-port 0)")
    parser.add_argument("--web-port", type=int, default=8080)
    parser.add_argument("--tunnel-port", type=int, default=8000)
    parser.add_argument("--console-port", type=int, default=0, help="the client's debug console (default: a free port)")
    parser.add_argument("--metrics-port", type=int, default=0, help="the client's status page and /metrics (default: a free port)")
    parser.add_argument("--proxy-port", type=int, default=9050, help="the client's SOCKS5 proxy (0: none)")
    parser.add_argument("--service-port", type=int, default=8001, help="the client's tunnel to the demo hidden service (0: no service)")
    parser.add_argument("--check", action="store_true", help="fetch the page once through the tunnel and exit")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning"),
                        help="the nodes' log level in their log files (default info)")
    return parser


def _print_tour(net: LocalNet, args: argparse.Namespace, web_port: int, console_port: int, metrics_port: int) -> None:
    """Fetch the page through the tunnel (and the proxy, the service), then say what runs where."""
    url = f"http://127.0.0.1:{args.tunnel_port}/"
    started = time.monotonic()
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=20) as resp:
        body = resp.read().decode()
    took = (time.monotonic() - started) * 1000
    print("\nGlobalNet is running on 127.0.0.1:")
    for node in net.nodes:
        role = " (exit: only 127.0.0.1 / localhost; other names refused before DNS)" if "-exit" in node.args else ""
        where = node.address if node.listen_port else "no listener"
        print(f"  {node.name:7} {node.node_id}  {where}{role}   log: {node.log_path}")
    print(f"\nA web page on 127.0.0.1:{web_port} is reachable through relay1 > relay2 > relay3:")
    print(f"  first fetch through the circuit: {took:.0f} ms, {len(body)} bytes: {body.strip()[:60]}...")
    if args.proxy_port:
        started = time.monotonic()
        proxied = fetch_via_socks(args.proxy_port, "localhost", web_port)
        took = (time.monotonic() - started) * 1000
        print(f"  and through the SOCKS5 proxy (a new circuit, 'localhost' resolved by relay3): {took:.0f} ms, {len(proxied)} bytes")
    address = service_address(net) if args.service_port else None
    if address:
        service_node = next(n for n in net.nodes if n.name == "service")
        service_node.wait_for("service descriptor published", timeout=60)
        started = time.monotonic()
        service_url = f"http://127.0.0.1:{args.service_port}/"
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(service_url, timeout=30) as resp:
            through_service = resp.read()
        took = (time.monotonic() - started) * 1000
        print("\nThe same page as a hidden service, hosted by the node 'service' (no listener, no address):")
        print(f"  {address}")
        print(f"  first fetch through a rendezvous: {took:.0f} ms, {len(through_service)} bytes")
    print(f"\nTry it:\n  curl {url}")
    if address:
        print(f"  curl http://127.0.0.1:{args.service_port}/            (tunnel to {address[:16]}...gnet)")
        if args.proxy_port:
            print(f"  curl --socks5-hostname 127.0.0.1:{args.proxy_port} http://{address}/")
    if args.proxy_port:
        print(f"  curl --socks5-hostname 127.0.0.1:{args.proxy_port} http://localhost:{web_port}/")
        client_node = next(n for n in net.nodes if n.name == "client")
        site_address = published_site_address(client_node, "demo")
        print(f"  curl --socks5-hostname 127.0.0.1:{args.proxy_port} http://{site_address}/   (a signed site)")
        print(f"\nThe SOCKS5 proxy on 127.0.0.1:{args.proxy_port} goes out through relay3, whose exit policy")
        print("allows only 127.0.0.1: names are resolved there, never here.")
    print(f"\nThe client's debug console ('help' lists the commands, 'quit' leaves):\n  nc 127.0.0.1 {console_port}")
    print(f"Its status page (bootstrap, links, circuits, live bandwidth) and Prometheus metrics:\n"
          f"  http://127.0.0.1:{metrics_port}/   http://127.0.0.1:{metrics_port}/metrics\n")


def main() -> int:
    args = _demo_parser().parse_args()
    base: Path = args.dir
    if base.exists():
        for sub in base.iterdir():
            if (sub / "node.log").exists():
                (sub / "node.log").unlink()
    # six relays: a hidden service needs access points besides the relays its circuits cross
    ports = tuple(args.base_port + i for i in range(6 if args.service_port else 3))
    console_port = args.console_port or free_port()
    metrics_port = args.metrics_port or free_port()
    busy = [p for p in (args.web_port, args.tunnel_port, args.proxy_port, args.service_port, console_port, metrics_port) if p and not port_is_free(p)]
    busy += [p for p in ports if not port_is_free(p, socket.SOCK_DGRAM)]
    if busy:
        print(f"localnet: port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use; pick others, see --help", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    net: LocalNet | None = None
    with web_server(args.web_port) as web_port:
        try:
            net = start_demo(
                base, ports, web_port, args.tunnel_port, console_port, metrics_port, args.proxy_port or None,
                args.service_port or None,
                network=lambda n: _remember(n), log_level=args.log_level,
            )
            _print_tour(net, args, web_port, console_port, metrics_port)
            if args.check:
                return 0
            print("Ctrl-C stops the network.")
            while (dead := net.dead()) is None:
                time.sleep(1.0)
            code = dead.proc.returncode if dead.proc is not None else None
            print(f"localnet: {dead.name} exited (status {code}); stopping the network. Its log: {dead.log_path}",
                  file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
        except (RuntimeError, TimeoutError, OSError) as exc:
            print(f"localnet: the network did not start: {exc}", file=sys.stderr)
            return 1
        finally:
            # every node started so far, even when start-up failed half way
            for started_net in _started:
                started_net.stop_all()
    return 0


_started: list[LocalNet] = []


def _remember(net: LocalNet) -> None:
    _started.append(net)


def port_is_free(port: int, kind: int = socket.SOCK_STREAM) -> bool:
    """Whether a node could bind `port` on 127.0.0.1 now. TCP as asyncio's servers bind
    (SO_REUSEADDR): the connections of a demo just stopped, in TIME_WAIT, do not hold it."""
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


if __name__ == "__main__":
    sys.exit(main())
