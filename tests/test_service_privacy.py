"""What the DHT learns of hidden services (nothing linkable), and client authorization, on a real network."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from globalnet.config import load_config
from globalnet.dht.values import ValueKind, decode_blinded_value
from globalnet.errors import ErrorKind, GnetError
from globalnet.node import Node
from globalnet.service.client_auth import format_key, generate_client_key
from globalnet.service.descriptor import PERIOD, current_period
from tests.inproc_nodes import Net, network, pinned, until

pytestmark = pytest.mark.long(seconds=25)  # wall seconds here alone: run early (tests/conftest.py)


def _windows(secret: bytes, size: int = 8) -> list[bytes]:
    return [secret[i : i + size] for i in range(max(1, len(secret) - size + 1))]


def _shares_a_window(a: bytes, b: bytes, size: int = 8) -> bool:
    return any(w in b for w in _windows(a, size))


async def _connect(node: Node, address: str) -> None:
    circuit = await node.open_service(address, None, "tunnel")
    node.forget_circuit(circuit)


def _stored_values(net: Net) -> list[bytes]:
    return [value for node in net.nodes if node.dht is not None for _, value in node.dht.storage]


async def test_dht_values_reveal_nothing_and_only_authorized_clients_connect(tmp_path: Path) -> None:
    alice_public = generate_client_key(tmp_path / "alice" / "client_auth")
    generate_client_key(tmp_path / "bob" / "client_auth")  # a key the service does not list
    clients_dir = tmp_path / "svc2" / "services" / "private" / "authorized_clients"
    clients_dir.mkdir(parents=True)
    (clients_dir / "alice.auth").write_text(format_key(alice_public) + "\n")

    target, port = await _closing_target()
    async with target, asyncio.timeout(300), network(tmp_path) as net:
        seed = await _seed_and_relays(net, 9)
        svc1 = await net.start("svc1", "-no-listen", "-connect", pinned(seed), "-service", f"web=127.0.0.1:{port}")
        svc2 = await net.start("svc2", "-no-listen", "-connect", pinned(seed), "-service", f"private=127.0.0.1:{port},auth")
        public, private = svc1.services[0], svc2.services[0]
        assert private.clients == [alice_public]
        assert await until(lambda: public.published is not None and private.published is not None, 90)

        # the same services publish for the next period too (a fake clock one period ahead)
        await public._publish(now=time.time() + PERIOD)
        await private._publish(now=time.time() + PERIOD)

        secrets: list[bytes] = []
        for service in (public, private):
            secrets += [service.public, service.address.encode(), service.address[:56].encode(), service.id, service.pow_seed]
            for intro in service.intros.values():
                secrets += [intro.ap, intro.entry.registration_id, intro.entry.proof]
        secrets.append(alice_public)

        descriptors: dict[int, list[bytes]] = {}
        for value in _stored_values(net):
            for secret in secrets:
                assert not _shares_a_window(secret, value), "a DHT value carries a service secret"
            if value[0] == ValueKind.SERVICE_DESCRIPTOR:
                envelope = decode_blinded_value(value)
                descriptors.setdefault(envelope.period, []).append(envelope.blinded_key + envelope.body + envelope.signature)
        period = current_period()
        assert {period, period + 1} <= set(descriptors)
        # nothing in one period's descriptors links to any descriptor of the other period
        for this in set(descriptors[period]):
            for that in set(descriptors[period + 1]):
                assert not _shares_a_window(this, that, 8)

        # client authorization: alice connects; bob (unlisted key) and a node without a key do not
        alice = await net.start("alice", "-no-listen", "-connect", pinned(seed))
        bob = await net.start("bob", "-no-listen", "-connect", pinned(seed))
        nokey = await net.start("nokey", "-no-listen", "-connect", pinned(seed))
        assert await until(lambda: all(len(n.peers.relays()) >= 6 for n in (alice, bob, nokey)), 60)
        await _connect(alice, private.address)
        await _connect(nokey, public.address)  # a service without authorization: anyone
        for stranger in (bob, nokey):
            with pytest.raises(GnetError) as info:
                await _connect(stranger, private.address)
            assert info.value.kind is ErrorKind.SERVICE_NOT_AUTHORIZED
            assert info.value.kind.socks_reply == 0xF4

        # revoke alice: the service republishes, renews its access point proofs, and alice is out
        published = private.publish_count
        (clients_dir / "alice.auth").unlink()
        private.changed.set()
        assert await until(lambda: private.publish_count > published and private.clients == [], 90)
        with pytest.raises(GnetError) as info:
            await _connect(alice, private.address)
        assert info.value.kind is ErrorKind.SERVICE_NOT_AUTHORIZED


def test_a_wrong_authorized_client_file_is_a_clear_error_at_start(tmp_path: Path) -> None:
    clients_dir = tmp_path / "svc" / "services" / "private" / "authorized_clients"
    clients_dir.mkdir(parents=True)
    (clients_dir / "carol.auth").write_text("not a key\n")
    config = load_config(["-data-dir", str(tmp_path / "svc"), "-no-listen", "-service", "private=127.0.0.1:9,auth"])
    with pytest.raises(GnetError, match="carol.auth.*descriptor:x25519"):
        Node(config)


# -- a small network: the README's three relays --------------------------------------------
async def _socks_to(port: int, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name.encode() + (80).to_bytes(2, "big"))
    reply = await reader.readexactly(4)
    if reply[3] == 1:
        await reader.readexactly(6)
    return reader, writer, reply[1]


async def test_the_readme_three_relay_network_hosts_a_service(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from globalnet.localnet import free_port
    from tests.targets import EchoServer, serve

    async with serve(EchoServer()) as echo, asyncio.timeout(240), network(tmp_path) as net:
        r1 = await net.start("r1")
        await net.start("r2", "-connect", pinned(r1))
        await net.start("r3", "-connect", pinned(r1), "-exit", "-exit-allow", "127.0.0.1/32")
        svc = await net.start("svc", "-no-listen", "-connect", pinned(r1), "-service", f"web=127.0.0.1:{echo}")
        service = svc.services[0]
        assert await until(lambda: service.published is not None, 90)
        assert len(service.published.access_points) == 1  # type: ignore[union-attr]
        assert service._said.startswith("small network: 1 access point(s) instead of 3; 3 more relays")

        tunnel, socks = free_port(), free_port()
        client = await net.start(
            "client", "-no-listen", "-connect", pinned(r1), "-tunnel", f"{tunnel}>{service.address}",
            "-proxy", f"{socks}>rand>rand>rand>internet",
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel)
        writer.write(b"through the tunnel")
        assert await reader.readexactly(18) == b"through the tunnel"
        writer.close()
        reader, writer, code = await _socks_to(socks, service.address)
        assert code == 0
        writer.write(b"through socks")
        assert await reader.readexactly(13) == b"through socks"
        writer.close()
        # an unknown service: the SOCKS reply says "descriptor not found" (Tor's 0xF0);
        # an address whose key is no valid point: a bad address (0x04)
        import nacl.signing

        from globalnet.service.address import encode_address

        unknown = encode_address(bytes(nacl.signing.SigningKey.generate().verify_key))
        _, writer, code = await _socks_to(socks, unknown)
        assert code == 0xF0
        writer.close()
        _, writer, code = await _socks_to(socks, encode_address(bytes(32 * [1])))
        assert code == 0x04
        writer.close()
        # the service goes away: its descriptor stays, its access point no longer knows it
        await net.stop(svc)
        with pytest.raises(GnetError) as info:
            await _connect(client, service.address)
        assert info.value.kind is ErrorKind.SERVICE_ACCESS_POINTS_UNREACHABLE
        _, writer, code = await _socks_to(socks, service.address)
        assert code == 0xF2
        writer.close()


# -- DoS defence: a flood of rendezvous requests without work -------------------------------
# Closed-loop flooders: each sends its next request as soon as the last is refused or served.
# 150 per access point reach about 1,500 requests/s at the access points on a quiet 2-core machine.
FLOODERS_PER_ACCESS_POINT = 150


async def test_a_flood_without_work_does_not_stop_a_client_with_work(tmp_path: Path) -> None:
    from globalnet.service.access_point import RendezvousAsk
    from globalnet.service.client import find_descriptor
    from globalnet.service.pow import EffortController
    from globalnet.wire.commands import Proto, RelayConnect
    from globalnet.wire.pathspec import HopId

    target, port = await _closing_target()
    async with target, asyncio.timeout(300), network(tmp_path) as net:
        seed = await _seed_and_relays(net, 6)
        svc = await net.start("svc", "-no-listen", "-connect", pinned(seed), "-service", f"web=127.0.0.1:{port}")
        service = svc.services[0]
        service.effort = EffortController(1.0, service.effort.limit, time.monotonic())  # react within a second
        assert await until(lambda: service.published is not None, 90)
        flooder = await net.start("flooder", "-no-listen", "-connect", pinned(seed))
        honest = await net.start("honest", "-no-listen", "-connect", pinned(seed))
        assert await until(lambda: all(len(n.peers.relays()) >= 6 for n in (flooder, honest)), 60)
        descriptor = await find_descriptor(flooder, service.public)
        entry = descriptor.access_points[0]

        async def ask(host: str) -> ErrorKind | None:
            command = RelayConnect(Proto.SERVICE, host, node_id=entry.registration_id)
            try:
                circuit = await flooder.open_circuit((HopId(entry.node_id),), command, "probe")
            except GnetError as exc:
                return exc.kind
            circuit.reset(ErrorKind.CLOSED)
            flooder.forget_circuit(circuit)
            return None

        # the access point refuses a rendezvous without the descriptor's proof, with a wrong
        # one, with wrong work, and replayed work
        from globalnet.service.pow import solve_work

        assert await ask("renzv") is ErrorKind.SERVICE_NOT_AUTHORIZED
        assert await ask(RendezvousAsk(bytes(32), bytes(16), 0).encode()) is ErrorKind.SERVICE_NOT_AUTHORIZED
        assert await ask(RendezvousAsk(entry.proof, bytes(16), 1 << 16).encode()) is ErrorKind.RESOURCE_LIMIT
        work = RendezvousAsk(entry.proof, solve_work(descriptor.pow_seed, entry.registration_id, 16), 16).encode()
        assert await ask(work) is None
        assert await ask(work) is ErrorKind.RESOURCE_LIMIT  # replayed
        async def flood(entry: object) -> None:  # requests with the right proof but no work
            while True:
                ask = RendezvousAsk(entry.proof, bytes(16), 0)  # type: ignore[attr-defined]
                command = RelayConnect(Proto.SERVICE, ask.encode(), node_id=entry.registration_id)  # type: ignore[attr-defined]
                try:
                    circuit = await flooder.open_circuit((HopId(entry.node_id),), command, "flood")  # type: ignore[attr-defined]
                except GnetError:
                    continue
                circuit.reset(ErrorKind.CLOSED)
                flooder.forget_circuit(circuit)

        access_points = [n.relay.access_point for n in net.nodes if n.identity.node_id in {e.node_id for e in descriptor.access_points}]
        asks_before = sum(ap.rendezvous_asks for ap in access_points)
        floods = [asyncio.create_task(flood(e)) for e in descriptor.access_points for _ in range(FLOODERS_PER_ACCESS_POINT)]
        try:
            started = time.monotonic()
            # under the flood the service raises its suggested effort and republishes
            assert await until(lambda: service.published is not None and service.published.pow_effort > 0, 60)
            await _connect(honest, service.address)  # works for its rendezvous, and gets in
            rate = (sum(ap.rendezvous_asks for ap in access_points) - asks_before) / (time.monotonic() - started)
        finally:
            for task in floods:
                task.cancel()
            await asyncio.gather(*floods, return_exceptions=True)
        print(f"flood: {rate:.0f} rendezvous requests/s without work at the access points; suggested effort {service.published.pow_effort}")
        assert rate > 20  # a real flood reached the access points


async def _closing_target() -> tuple[asyncio.Server, int]:
    """A service target on 127.0.0.1 that closes every connection (what it serves is not the point)."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    target = await asyncio.start_server(accept, "127.0.0.1", 0)
    return target, target.sockets[0].getsockname()[1]


async def _seed_and_relays(net: Any, count: int) -> Any:
    """A seed and `count` relays bootstrapped from it; returns the seed."""
    seed = await net.start("seed")
    for i in range(count):
        await net.start(f"r{i}", "-connect", pinned(seed))
    return seed
