"""Hidden services: addresses and descriptors (unit), and a service reached through the network."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import http.server
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nacl.signing
import pytest

from globalnet.dht.storage import SignedStorage
from globalnet.dht.values import BlindedValue, validate_value
from globalnet.errors import ErrorKind, GnetError, ProtocolError
from globalnet.service.address import (
    decode_address,
    encode_address,
    service_id,
    service_onion_key,
    service_onion_public,
)
from globalnet.service.descriptor import (
    PERIOD,
    AccessPointEntry,
    Descriptor,
    build_descriptor,
    current_period,
    descriptor_key,
    open_descriptor,
)
from tests.inproc_nodes import Net, network, pinned, until
from tests.targets import pattern

pytestmark = pytest.mark.long(seconds=12)  # wall seconds here alone: run early (tests/conftest.py)


# -- addresses and descriptors ------------------------------------------------------
def test_address_round_trip_and_checksum() -> None:
    key = nacl.signing.SigningKey.generate()
    public = bytes(key.verify_key)
    address = encode_address(public)
    assert address.endswith(".gnet") and len(address) == 61
    assert decode_address(address) == public
    assert decode_address(address.upper()) == public
    assert decode_address(f"[{address[:-5]}]") == public
    for i in (0, 10, 55):
        typo = address[:i] + ("a" if address[i] != "a" else "b") + address[i + 1 :]
        with pytest.raises(GnetError, match="checksum|version"):
            decode_address(typo)
    with pytest.raises(GnetError, match="56"):
        decode_address("abc.gnet")
    with pytest.raises(GnetError, match="base32"):
        decode_address("1" * 56 + ".gnet")


def test_the_end_to_end_key_is_derived_from_the_address() -> None:
    key = nacl.signing.SigningKey.generate()
    private = service_onion_key(bytes(key))
    assert bytes(nacl.public.PrivateKey(private).public_key) == service_onion_public(bytes(key.verify_key))


def _descriptor(key: nacl.signing.SigningKey, seq: int = 1, period: int | None = None, aps: int = 3, clients: list[bytes] | None = None) -> BlindedValue:
    period = current_period() if period is None else period
    entries = tuple(AccessPointEntry(bytes([i]) * 20, bytes([i + 100]) * 20, bytes([i + 200]) * 32) for i in range(aps))
    desc = Descriptor(period, seq, int(time.time()) + 3600, entries, bytes(32), 0, clients is not None)
    return build_descriptor(bytes(key), bytes(key.verify_key), desc, clients)


def test_descriptor_signing_and_validation() -> None:
    key = nacl.signing.SigningKey.generate()
    public = bytes(key.verify_key)
    value = _descriptor(key)
    assert value.key == descriptor_key(public, value.period)  # a client finds it from the address alone
    desc = open_descriptor(public, value.key, value.encode(), None)
    assert [a.node_id for a in desc.access_points] == [bytes([i]) * 20 for i in range(3)]
    assert validate_value(value.key, value.encode()).seq == 1  # what DHT nodes run on a store
    forged = value.encode()[:-1] + bytes([value.encode()[-1] ^ 1])
    with pytest.raises(ProtocolError):
        validate_value(value.key, forged)
    other = _descriptor(nacl.signing.SigningKey.generate())  # a genuine descriptor of another service
    with pytest.raises(ProtocolError, match="another key"):
        validate_value(value.key, other.encode())
    with pytest.raises(ProtocolError, match="another key"):
        validate_value(descriptor_key(public, value.period + 1), value.encode())
    tampered = bytearray(value.encode())
    tampered[60] ^= 1  # inside the ciphertext: the signature no longer holds
    with pytest.raises(ProtocolError):
        validate_value(value.key, bytes(tampered))


def test_descriptor_keys_change_with_the_period_and_a_lower_seq_does_not_replace() -> None:
    key = nacl.signing.SigningKey.generate()
    public = bytes(key.verify_key)
    assert descriptor_key(public, 10) != descriptor_key(public, 11)
    assert current_period(PERIOD * 5 + 1) == 5
    store = SignedStorage()
    newer, older = _descriptor(key, seq=5), _descriptor(key, seq=4)
    assert store.put(newer.key, newer.encode())
    assert not store.put(older.key, older.encode())


def test_a_descriptor_carries_no_address_key_or_access_point() -> None:
    key = nacl.signing.SigningKey.generate()
    public = bytes(key.verify_key)
    value = _descriptor(key).encode()
    secrets = [public, encode_address(public).encode(), service_id(public)]
    secrets += [bytes([i]) * 20 for i in range(3)] + [bytes([i + 100]) * 20 for i in range(3)]
    for secret in secrets:
        assert secret[:8] not in value


# -- through the network ------------------------------------------------------------
# -- through the network ------------------------------------------------------------
async def _service_network(net: Net, web: int, relays: int = 10):  # type: ignore[no-untyped-def]
    seed = await net.start("seed")
    others = [await net.start(f"r{i}", "-connect", pinned(seed)) for i in range(relays - 1)]
    svc = await net.start("svc", "-no-listen", "-connect", pinned(seed), "-service", f"web=127.0.0.1:{web}")
    service = svc.services[0]
    assert await until(lambda: service.published is not None, 60)
    return seed, others, svc, service


BIG = 20 * 1024 * 1024
BIG_BODY = pattern(BIG)


class _Page(http.server.BaseHTTPRequestHandler):
    """GET /<n>: n pattern bytes (the service's local web server)."""

    def do_GET(self) -> None:
        n = int(self.path.strip("/") or "0")
        body = BIG_BODY[:n] if n <= BIG else b""
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def web_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


async def _fetch(port: int, size: int) -> tuple[int, str]:
    """HTTP GET through the tunnel to the service (urllib, in a thread)."""

    def get() -> bytes:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/{size}", timeout=60) as resp:
            return resp.read()

    body = await asyncio.get_running_loop().run_in_executor(_FETCHERS, get)
    return len(body), hashlib.sha256(body).hexdigest()


# the test's blocking HTTP clients get threads of their own: in the default executor they
# would queue up the nodes' resolver calls behind them
_FETCHERS = concurrent.futures.ThreadPoolExecutor(max_workers=24)


async def test_a_service_end_to_end(tmp_path: Path) -> None:
    with web_server() as web:
        await _service_session(tmp_path, web)


async def _service_session(tmp_path: Path, web: int) -> None:
    async with asyncio.timeout(240), network(tmp_path) as net:
        seed, _relays, svc, service = await _service_network(net, web)
        hostname = (tmp_path / "svc" / "services" / "web" / "hostname").read_text().strip()
        assert hostname == service.address
        key_file = tmp_path / "svc" / "services" / "web" / "private.key"
        assert key_file.stat().st_mode & 0o077 == 0

        from globalnet.localnet import free_port

        port = free_port()
        client = await net.start("client", "-no-listen", "-connect", pinned(seed), "-tunnel", f"{port}>{service.address}")

        # 20 MiB through the service, checked
        size = 20 * 1024 * 1024
        n, digest = await _fetch(port, size)
        assert n == size and digest == hashlib.sha256(pattern(size)).hexdigest()

        # 20 concurrent sessions
        results = await asyncio.gather(*(_fetch(port, 100_000) for _ in range(20)))
        assert all(r == (100_000, hashlib.sha256(pattern(100_000)).hexdigest()) for r in results)

        # the console's `send <address>.gnet text` reaches the service's node, confirmed end to end
        delivery = await client.messenger.send(service.address, "hello service")
        assert delivery.hops >= 4 and svc.messages.received == 1

        # what nobody learns: no DHT value anywhere carries the service's target, and the access
        # points never had the service's node as a link peer
        for node in net.nodes:
            if node.dht is not None:
                for _, value in node.dht.storage:
                    assert f":{web}".encode() not in value
        for ap in service.intros:
            ap_node = next(n for n in net.nodes if n.identity.node_id == ap)
            assert svc.identity.node_id not in ap_node.links.links

        # kill one access point: the service replaces it, republishes, new sessions work
        published = service.publish_count
        victim_id = next(iter(service.intros))
        victim = next(n for n in net.nodes if n.identity.node_id == victim_id)
        await net.stop(victim)
        assert await until(lambda: service.publish_count > published and victim_id not in service.intros, 60)
        assert victim_id not in service.published.access_point_ids  # type: ignore[union-attr]
        n, _ = await _fetch(port, 50_000)
        assert n == 50_000

        # kill the service: the client gets a clear error (a reset and a log line), not a hang
        await net.stop(svc)
        started = asyncio.get_running_loop().time()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /10 HTTP/1.0\r\n\r\n")
        with pytest.raises(ConnectionError):
            data = await reader.read()
            if not data:
                raise AssertionError("clean close instead of a reset")
        assert asyncio.get_running_loop().time() - started < 45
        writer.close()


async def test_unknown_service_and_bad_address_fail_clearly(tmp_path: Path) -> None:
    async with asyncio.timeout(120), network(tmp_path) as net:
        seed = await net.start("seed")
        for i in range(4):
            await net.start(f"r{i}", "-connect", pinned(seed))
        client = await net.start("client", "-no-listen", "-connect", pinned(seed))
        assert await until(lambda: len(client.peers.relays()) >= 4, 30)
        unknown = encode_address(bytes(nacl.signing.SigningKey.generate().verify_key))
        with pytest.raises(GnetError, match="unknown service") as info:
            await client.open_service(unknown, None, "tunnel")
        assert info.value.kind is ErrorKind.SERVICE_UNKNOWN and info.value.kind.socks_reply == 0xF0
        with pytest.raises(GnetError, match="checksum"):
            await client.open_service(unknown[:3] + ("a" if unknown[3] != "a" else "b") + unknown[4:], None, "tunnel")
