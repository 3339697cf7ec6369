"""Two faults of the kademlia package found by bench/dht_sim.py, and our fixes.

- `RoutingTable.find_neighbors` could answer nothing although the table held
  contacts (its bucket walk stops at an empty bucket): ClosestRoutingTable.
- `welcome_if_new` handed every value over again on each message from a node
  waiting in a full bucket's replacement list: GnetKademliaProtocol hands
  values to a node once, when it is first seen, at the raw key.

These tests place contacts at chosen ids (1, 2, 3...), which carry no proof
of work: the module lowers the id puzzle for its duration (the explicit
simulation/test-only switch in wire/records.py). Contacts sit in distinct
/16s so the diversity limits do not thin them out.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from kademlia.node import Node as KNode
from kademlia.routing import RoutingTable

from globalnet.dht.protocol import GnetKademliaProtocol, LinkTransport
from globalnet.dht.routing import ClosestRoutingTable
from globalnet.dht.storage import SignedStorage
from globalnet.dht.values import node_record_value
from globalnet.wire.records import set_required_id_work_for_simulation
from tests.identities import next_identity

TOP = 2**160


@pytest.fixture(autouse=True)
def _chosen_ids() -> Iterator[None]:
    saved = set_required_id_work_for_simulation(0)
    yield
    set_required_id_work_for_simulation(saved)


def _id(n: int) -> bytes:
    return n.to_bytes(20, "big")


def _node(n: int, port: int = 9000) -> KNode:
    return KNode(_id(n), f"10.{n % 250}.{n // 250 % 250}.1", port + n % 50000)


def _crowded_low(table: RoutingTable) -> None:
    """Contacts all near the bottom of the id space: the upper buckets stay empty."""
    for n in range(2, 12):
        table.add_contact(_node(n))


def test_neighbours_are_found_across_empty_buckets() -> None:
    owner = KNode(_id(1))
    target = KNode(_id(TOP - 1))
    package = RoutingTable(None, 2, owner)
    ours = ClosestRoutingTable(None, 2, owner)
    _crowded_low(package)
    _crowded_low(ours)
    assert len(ours.buckets) > 2 and not ours.buckets[-1].nodes and not ours.buckets[-2].nodes
    assert package.find_neighbors(target) == []  # the package's walk gives up at the empty buckets
    found = ours.find_neighbors(target)
    assert len(found) == 2


def test_neighbours_are_the_k_closest_by_xor() -> None:
    rng = random.Random(5)
    owner = KNode(rng.randbytes(20))
    table = ClosestRoutingTable(None, 20, owner)
    for i in range(400):
        table.add_contact(KNode(rng.randbytes(20), f"10.{i % 250}.{i // 250}.1", 1000 + i))
    contacts = [n for b in table.buckets for n in b.nodes.values()]
    for _ in range(20):
        target = KNode(rng.randbytes(20))
        want = sorted(contacts, key=lambda n: n.long_id ^ target.long_id)[:20]
        assert [n.id for n in table.find_neighbors(target)] == [n.id for n in want]
    excluded = contacts[0]
    assert excluded not in table.find_neighbors(KNode(excluded.id), exclude=excluded)


class _NoLinks:
    def __init__(self) -> None:
        self.links: dict[bytes, Any] = {}


async def test_values_are_handed_over_once_not_on_every_message() -> None:
    key, value = node_record_value(next_identity().make_record((("10.9.9.9", 9000),)))
    k = int.from_bytes(key, "big")
    spawned: list[str] = []

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
        spawned.append(name)
        coro.close()

    proto = GnetKademliaProtocol(KNode(_id(k ^ 1)), SignedStorage(), 1, 0.01, spawn)  # we are closest to the key
    proto.transport = LinkTransport(_NoLinks(), spawn)  # type: ignore[arg-type]
    assert proto.storage.put(key, value)
    far = KNode(_id(k ^ (1 << 159) ^ (1 << 158)), "10.0.0.2", 9000)
    nearer = KNode(_id(k ^ (1 << 159)), "10.0.0.3", 9000)  # closer to the key than `far`, same bucket
    proto.welcome_if_new(far)
    assert spawned.count("dht hand-over") == 1  # the first contact gets the value (no neighbours yet)
    proto.welcome_if_new(nearer)
    assert spawned.count("dht hand-over") == 2  # nearer than every neighbour: it should hold the value
    bucket = proto.router.buckets[proto.router.get_bucket_for(nearer)]
    assert nearer.id in bucket.replacement_nodes  # the bucket (k=1) is full: `nearer` waits
    for _ in range(5):
        proto.welcome_if_new(nearer)  # every answer from it used to hand the value over again
    assert spawned.count("dht hand-over") == 2
    await asyncio.sleep(0.05)  # let the package's ping of the bucket head time out
