"""A 25-node network in one process (real QUIC on 127.0.0.1): discovery, DHT, churn, restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kademlia.node import Node as KNode

from globalnet.dht.values import node_record_value, record_from_value
from globalnet.errors import GnetError
from globalnet.node import Node
from globalnet.wire.commands import Proto, RelayConnect
from globalnet.wire.pathspec import HopRandom
from tests.inproc_nodes import network, pinned, until

pytestmark = pytest.mark.long(seconds=30)  # wall seconds here alone: run early (tests/conftest.py)

N = 25


async def _with_live_guards(candidates: list[Node], dead: set[bytes], key: bytes) -> Node:
    """The first candidate none of whose entry guards is in `dead`, once it has chosen them; else
    the one with the fewest dead (reserves included, a node's sample can hold a dead one by chance).

    Candidates that already chose a dead entry guard go last: each lookup through a dead guard
    waits out refused hops (3-6 s a candidate), and their guards rarely change on one failure.
    """

    def dead_guards(node: Node) -> int:
        return len({g.node_id for g in node.guards.entry_guards()} & dead)

    best: tuple[int, Node] | None = None
    for node in sorted(candidates, key=lambda n: dead_guards(n) > 0):  # stable: given order within each group
        try:
            await node.dht_lookup(key)  # a circuit: its guards are chosen
        except GnetError:
            continue  # a dead guard under it, most likely: not this one
        guards = {g.node_id for g in node.guards.entry_guards()}
        if guards and not guards & dead:
            return node
        if guards - dead and (best is None or len(guards & dead) < best[0]):
            best = (len(guards & dead), node)
    if best is None:
        raise AssertionError("no surviving node with a surviving guard")
    return best[1]


async def test_a_25_node_network(tmp_path: Path) -> None:
    async with asyncio.timeout(240), network(tmp_path) as net:
        seed = await net.start("seed")
        others = [await net.start(f"n{i}", "-connect", pinned(seed)) for i in range(N - 1)]
        nodes = [seed, *others]

        # every node learns at least 10 relays from one seed, with no directory
        assert await until(lambda: all(len(n.peers.relays()) >= 10 for n in nodes), 60)
        assert await until(lambda: all(n.dht is not None and n.dht.contacts() >= 5 for n in nodes), 60)

        # a value stored by A through a circuit is found by B through a circuit
        a, b = others[0], others[-1]
        record = a.links.own_record()
        key, value = node_record_value(record)
        assert await a.dht_publish(key, value) >= 3
        found = await b.dht_lookup(key)
        assert found is not None and record_from_value(found.value).node_id == a.identity.node_id
        assert any(c.purpose == "dht" for c in b.circuits.values())  # B asked through its own circuit

        # kill 30% of the nodes (not A or B, and none of C's guards of either layer: a guard is not
        # replaced on a failure or two, by design, so C with every guard dead would be a test
        # of guard rotation, not of DHT routing): the value is still found, the survivors route
        c = others[-2]
        assert await c.dht_lookup(key) is not None  # C has built circuits: its guards are chosen
        guards = {g.node_id for g in c.guards.entry_guards() + c.guards.middle_guards(set())}
        victims = [n for n in others[1:-3] if n.identity.node_id not in guards][:8]
        assert len(victims) == 8
        for v in victims:
            await net.stop(v)
        found = await c.dht_lookup(key)
        assert found is not None and found.seq == record.seq
        dead = {v.identity.node_id for v in victims}
        for n in net.nodes:  # forget the dead in path selection, as link failures would over time
            for d in dead:
                for _ in range(3):
                    n.peers.failed(d)
        circuit = await c.open_circuit((HopRandom(), HopRandom(), HopRandom()), RelayConnect(Proto.DHT), "dht")
        assert len(circuit.path) == 3 and not dead & set(circuit.path)

        # a node restarted with its data dir rejoins with every bootstrap node down. The leaver is
        # one whose entry guards (kept in its data dir) all survive, or as many as any: a node whose
        # every entry guard is dead is a test of guard rotation, not of rejoining (as for C above)
        leaver = await _with_live_guards([n for n in others[1:-2] if n not in victims], dead | {seed.identity.node_id}, key)
        leaver_dir = leaver.config.data_dir
        known_before = len(leaver.peers.relays())
        await net.stop(leaver)
        await net.stop(seed)
        assert leaver_dir.joinpath("peers.dat").exists()
        back = await net.start("restarted", "-data-dir", str(leaver_dir), "-connect", pinned(seed))  # the seed is down
        assert back.identity.node_id == leaver.identity.node_id
        assert len(back.peers.relays()) >= min(10, known_before - len(victims) - 1)
        assert await until(lambda: len(back.links.links) >= 2, 30)
        value2 = await back.dht_lookup(key)
        assert value2 is not None


async def test_a_lying_dht_node_cannot_poison_lookups(tmp_path: Path) -> None:
    """One node answers every DHT RPC with forgeries and junk; lookups still find the real value."""
    async with asyncio.timeout(120), network(tmp_path) as net:
        seed = await net.start("seed")
        honest = [await net.start(f"h{i}", "-connect", pinned(seed)) for i in range(6)]
        liar = await net.start("liar", "-connect", pinned(seed))
        assert liar.dht is not None
        owner = honest[0]
        record = owner.links.own_record()
        key, value = node_record_value(record)
        # a forged record for the same key, with a higher sequence number
        forged = value[:-64] + bytes(64)
        forged_higher = bytearray(forged)

        proto = liar.dht.protocol
        proto.rpc_find_value = lambda sender, nodeid, k: {"value": bytes(forged_higher)}  # type: ignore[method-assign]
        proto.rpc_find_node = lambda sender, nodeid, k: [[b"x", 1, None], "junk"] * 30  # type: ignore[method-assign]
        proto.rpc_store = lambda sender, nodeid, k, v: True  # type: ignore[method-assign]  # claims to store, keeps nothing
        proto.rpc_ping = lambda sender, nodeid: b"not my id"  # type: ignore[method-assign]

        nodes = [seed, *honest, liar]
        assert await until(lambda: all(n.dht is not None and n.dht.contacts() >= 4 for n in nodes), 60)
        assert await owner.dht_publish(key, value) >= 2
        for reader in honest[1:]:
            found = await reader.dht_lookup(key)
            assert found is not None and found.value == value  # never the forgery
        # the liar's garbage is counted and dropped (asked directly: a lookup may have found
        # the value before it asked the liar), and everyone is still up
        asker = honest[1].dht.protocol
        host, port = liar.links.listen_address
        liar_node = KNode(liar.identity.node_id, host, port)
        before = asker.dropped
        assert await asker.call_ping(liar_node) == (False, None)
        assert await asker.call_find_node(liar_node, KNode(key)) == (False, None)
        assert asker.dropped == before + 2
        assert all(not t.done() for t in net.tasks.values())
