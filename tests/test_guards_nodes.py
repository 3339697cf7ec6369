"""Guards on whole nodes over real QUIC (tests/inproc_nodes.py): every circuit starts at a
guard, the set survives a restart, dropped circuits do not rotate a guard, a dead one is
replaced (and the log says why), service circuits take their middle hop from the vanguards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from globalnet.circuit import guards as guards_module
from globalnet.errors import ErrorKind, GnetError
from globalnet.node import Node
from globalnet.wire.commands import Proto, RelayConnect
from globalnet.wire.pathspec import HopRandom
from tests.inproc_nodes import Net, network, pinned, until
from tests.targets import EchoServer, serve

RAND3 = (HopRandom(), HopRandom(), HopRandom())


async def _relays(net: Net, count: int = 6) -> tuple[Node, list[Node]]:
    seed = await net.start("seed", "-exit", "-exit-allow", "127.0.0.1/32")
    others = [await net.start(f"r{i}", "-connect", pinned(seed)) for i in range(count - 1)]
    return seed, others


async def _client(net: Net, seed: Node, name: str = "client", known: int = 6) -> Node:
    client = await net.start(name, "-no-listen", "-connect", pinned(seed))
    assert await until(lambda: len(client.peers.relays()) >= known, 60)
    return client


async def _first_hop(client: Node, final: RelayConnect) -> bytes:
    circuit = await client.open_circuit(RAND3, final, "test")
    first = circuit.path[0]
    circuit.reset(ErrorKind.CLOSED)
    client.forget_circuit(circuit)
    return first


def _guard_ids(node: Node) -> set[bytes]:
    return {g.node_id for g in node.guards.guards.guards}


async def test_200_circuits_all_start_at_a_guard_and_a_restart_keeps_them(tmp_path: Path) -> None:
    async with network(tmp_path) as net, serve(EchoServer()) as port:
        seed, _ = await _relays(net)
        client = await _client(net, seed)
        final = RelayConnect(Proto.TCP, "127.0.0.1", port)
        async with asyncio.timeout(300):
            firsts = [await _first_hop(client, final) for _ in range(200)]
        guards = _guard_ids(client)
        assert len(guards) == 3
        assert set(firsts) <= guards
        assert seed.identity.node_id not in set(firsts)  # the only exit is never the guard of its own circuit
        assert (tmp_path / "client" / "guards.json").exists()
        await net.stop(client)
        again = await _client(net, seed)
        assert _guard_ids(again) == guards  # loaded from the data dir, before any circuit
        async with asyncio.timeout(120):
            assert {await _first_hop(again, final) for _ in range(20)} <= guards
        assert _guard_ids(again) == guards


async def test_a_guard_that_drops_circuits_is_not_replaced(tmp_path: Path) -> None:
    async with network(tmp_path) as net, serve(EchoServer()) as port:
        seed, others = await _relays(net)
        client = await _client(net, seed)
        final = RelayConnect(Proto.TCP, "127.0.0.1", port)
        await _first_hop(client, final)
        guards = _guard_ids(client)
        by_id = {n.identity.node_id: n for n in others}
        dropper = by_id[next(g for g in guards if g in by_id)]
        # the guard accepts the link but resets every circuit stream it is given
        resets: list[int] = []

        def drop(stream) -> None:  # type: ignore[no-untyped-def]
            resets.append(1)
            stream.reset(ErrorKind.CLOSED)

        dropper.links.on_stream = drop  # type: ignore[method-assign]
        async with asyncio.timeout(300):
            for _ in range(40):
                try:
                    await _first_hop(client, final)
                except GnetError:
                    pass
        assert len(resets) >= 5  # it was chosen, and it dropped the circuits
        entry = client.guards.guards.get(dropper.identity.node_id)
        assert entry is not None and entry.failures == 0
        assert _guard_ids(client) == guards


async def test_a_dead_guard_is_replaced_and_the_log_says_why(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(guards_module, "RETRY_AFTER", 0.0)  # try the dead guard on every circuit
    async with network(tmp_path) as net, serve(EchoServer()) as port:
        seed, others = await _relays(net)
        client = await _client(net, seed)
        final = RelayConnect(Proto.TCP, "127.0.0.1", port)
        await _first_hop(client, final)
        # a sustained period of a few seconds instead of an hour
        client.guards.guards.min_failures = 3
        client.guards.guards.unreachable_for = 1.0
        by_id = {n.identity.node_id: n for n in others}
        victim = by_id[next(g for g in _guard_ids(client) if g in by_id)]
        victim_id = victim.identity.node_id
        await net.stop(victim)
        with structlog.testing.capture_logs() as logs:
            async with asyncio.timeout(300):
                for _ in range(60):
                    try:
                        await _first_hop(client, final)
                    except GnetError:
                        pass
                    if victim_id not in _guard_ids(client):
                        break
                    await asyncio.sleep(0.2)
        assert victim_id not in _guard_ids(client)
        assert len(_guard_ids(client)) == 3
        removed = [e for e in logs if e["event"] == "guard removed"]
        assert removed and removed[0]["reason"].startswith("unreachable: ")
        assert any(e["event"] == "guard added" and e["reason"] == "replaces a removed one" for e in logs)
        assert not any("127.0.0.1" in str(e) for e in logs if e.get("log_level") == "info")


async def test_service_circuits_take_their_middle_hop_from_the_vanguards(tmp_path: Path) -> None:
    async with network(tmp_path) as net, serve(EchoServer()) as web:
        seed, others = await _relays(net, 8)
        svc = await net.start("svc", "-no-listen", "-connect", pinned(seed), "-service", f"web=127.0.0.1:{web}")
        service = svc.services[0]
        assert await until(lambda: service.published is not None, 120)
        circuits = [c for c in svc.circuits.values() if c.purpose == "service"]
        assert circuits
        guards = _guard_ids(svc)
        vanguards = {v.node_id for v in svc.guards.vanguards.guards}
        assert len(vanguards) == 4
        for circuit in circuits:
            assert circuit.path[0] in guards and circuit.path[1] in vanguards
        # and the DHT circuits (the descriptor was published through them) too
        session = await svc._open_dht_circuit()
        dht_circuit = session[0]
        assert dht_circuit.path[0] in guards and dht_circuit.path[1] in vanguards
