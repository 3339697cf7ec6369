"""Guards in a network of whole nodes in one process (real QUIC on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
import structlog

from globalnet.circuit.guards import ENTRY
from globalnet.errors import ErrorKind, GnetError
from globalnet.node import Node
from globalnet.wire.commands import Proto, RelayConnect
from globalnet.wire.pathspec import HopId, HopRandom
from tests.inproc_nodes import Net, network, pinned, until
from tests.targets import EchoServer, serve

pytestmark = pytest.mark.long(seconds=12)  # wall seconds here alone: run early (tests/conftest.py)

RAND3 = (HopRandom(), HopRandom(), HopRandom())


async def _relays(net: Net, n: int) -> list[Node]:
    seed = await net.start("r0", "-exit", "-exit-allow", "127.0.0.1/32")
    others = [await net.start(f"r{i}", "-connect", pinned(seed), *(("-exit", "-exit-allow", "127.0.0.1/32") if i % 3 == 0 else ()))
              for i in range(1, n)]
    return [seed, *others]


async def _client(net: Net, relays: list[Node], name: str = "client", data_dir: Path | None = None) -> Node:
    extra = ("-data-dir", str(data_dir)) if data_dir else ()
    client = await net.start(name, "-no-listen", "-connect", pinned(relays[0]), *extra)
    assert await until(lambda: len(client.peers.relays()) >= len(relays), 60)
    return client


async def _circuit(client: Node, port: int, hops: tuple = RAND3):  # type: ignore[no-untyped-def, type-arg]
    circuit = await client.open_circuit(hops, RelayConnect(Proto.TCP, "127.0.0.1", port), "tunnel")
    circuit.reset(ErrorKind.CLOSED)
    client.forget_circuit(circuit)
    return circuit


async def test_every_circuit_starts_at_a_guard_and_a_restart_keeps_them(tmp_path: Path) -> None:
    async with asyncio.timeout(240), network(tmp_path) as net, serve(EchoServer()) as echo:
        relays = await _relays(net, 7)
        client = await _client(net, relays, data_dir=tmp_path / "client")
        firsts = [(await _circuit(client, echo)).path[0] for _ in range(200)]
        guards = {g.node_id for g in client.guards.entry.guards}
        assert len(guards) == ENTRY.size
        assert set(firsts) <= guards  # 200 circuits, every one starts at a guard
        assert len(set(firsts)) >= 2  # and the load is spread over the set
        on_disk = json.loads((tmp_path / "client" / "guards.json").read_text())
        assert {bytes.fromhex(g["node_id"]) for g in on_disk["entry"]} == guards
        assert ((tmp_path / "client" / "guards.json").stat().st_mode & 0o777) == 0o600

        await net.stop(client)
        again = await _client(net, relays, "client2", data_dir=tmp_path / "client")
        assert {g.node_id for g in again.guards.entry.guards} == guards
        assert (await _circuit(again, echo)).path[0] in guards

        # a path to one of our guards never starts at that guard (no loop), but at another guard
        to_guard = min(guards)
        looped = await again.open_circuit((HopRandom(), HopRandom(), HopId(to_guard)), RelayConnect(Proto.DHT), "dht")
        assert len(set(looped.path)) == 3 and looped.path[0] in guards - {to_guard}
        looped.reset(ErrorKind.CLOSED)

        # a path that names its first hop is not forced through a guard
        other = next(r for r in relays if r.identity.node_id not in guards)
        pinned_path = (HopId(other.identity.node_id), HopRandom(), HopRandom())
        assert (await _circuit(again, echo, pinned_path)).path[0] == other.identity.node_id


async def test_a_guard_that_drops_circuits_is_not_replaced_by_that(tmp_path: Path) -> None:
    async with asyncio.timeout(240), network(tmp_path) as net, serve(EchoServer()) as echo:
        relays = await _relays(net, 7)
        client = await _client(net, relays)
        await _circuit(client, echo)
        guards = [g.node_id for g in client.guards.entry.guards]
        hostile = next(r for r in relays if r.identity.node_id == guards[0])
        # the hostile guard keeps its link up but resets every hop stream: every circuit through it dies
        hostile.links.on_stream = lambda stream: stream.reset(ErrorKind.PROTOCOL)  # type: ignore[method-assign]
        with structlog.testing.capture_logs() as logs:
            failed = 0
            for _ in range(60):
                try:
                    await _circuit(client, echo)
                except GnetError:
                    failed += 1
            await client.probe_guards()
            client.guards.refresh(client.peers.relays())
        assert [g.node_id for g in client.guards.entry.guards] == guards  # same guards, same order
        assert not [e for e in logs if e["event"] == "guard replaced"]


async def test_a_dead_guard_is_replaced_and_the_log_says_why(tmp_path: Path) -> None:
    async with asyncio.timeout(240), network(tmp_path) as net, serve(EchoServer()) as echo:
        relays = await _relays(net, 7)
        client = await _client(net, relays)
        await _circuit(client, echo)
        # shorter waits than a real node's hour, so the test sees the whole life of a dead guard
        client.guards.entry.policy = dataclasses.replace(ENTRY, replace_after=2.0, retry_after=0.2)
        dead_id = client.guards.entry.guards[0].node_id
        dead = next(r for r in relays if r.identity.node_id == dead_id)
        await net.stop(dead)
        with structlog.testing.capture_logs() as logs:
            async def replaced() -> bool:
                await client.probe_guards()
                client.guards.refresh(client.peers.relays())
                return dead_id not in client.guards.entry

            deadline = asyncio.get_running_loop().time() + 90
            while not await replaced():
                assert asyncio.get_running_loop().time() < deadline, "the dead guard was never replaced"
                try:
                    await _circuit(client, echo)  # circuits keep working on the other guards meanwhile
                except GnetError:
                    pass
                await asyncio.sleep(0.3)
        events = [e for e in logs if e["event"] == "guard replaced"]
        assert events and events[0]["old"] == dead_id.hex()[:8] and "unreachable for" in events[0]["reason"]
        assert len(client.guards.entry.guards) == ENTRY.size
        assert (await _circuit(client, echo)).path[0] in client.guards.entry


async def test_service_circuits_use_second_layer_guards(tmp_path: Path) -> None:
    async with asyncio.timeout(240), network(tmp_path) as net:
        relays = await _relays(net, 8)
        client = await _client(net, relays)
        seconds = []
        for _ in range(20):
            circuit = await client.open_circuit(RAND3, RelayConnect(Proto.DHT), "dht", vanguards=True)
            seconds.append(circuit.path[1])
            circuit.reset(ErrorKind.CLOSED)
            client.forget_circuit(circuit)
        middle = {g.node_id for g in client.guards.middle.guards}
        assert middle and set(seconds) <= middle
