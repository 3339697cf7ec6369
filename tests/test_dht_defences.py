"""Issue 11's DHT defences: network diversity, costly ids, disjoint-path lookups.

Diversity and lookup-core tests place many records and ids; the records are
real (signed, verified) and their ids carry the real puzzle (ID_WORK_BITS),
solved once per module. The real-node tests run whole nodes on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
from pathlib import Path

import nacl.signing
import pytest
from kademlia.node import Node as KNode

from globalnet.dht.lookup import Contact, DisjointLookup, Query
from globalnet.dht.routing import ClosestRoutingTable
from globalnet.dht.values import node_record_value, validate_value
from globalnet.errors import GnetError, ProtocolError
from globalnet.identity import Identity, IdentityFileError, load_or_create_identity, verify_node_record
from globalnet.netdiversity import DiversityPolicy
from globalnet.peertable import PeerTable, bucket_of
from globalnet.wire.records import ID_WORK_BITS, has_id_work, id_work, required_id_work
from tests.identities import fixed_identity, next_identity
from tests.inproc_nodes import network, pinned, until


@functools.cache
def _identities(count: int) -> tuple[Identity, ...]:
    """Deterministic identities with the real id work (solved beforehand: tests/identities.py)."""
    return tuple(fixed_identity(i) for i in range(count))


def _unworked_identity() -> Identity:
    """An identity whose id fails the puzzle (most keys do: 1 in 4096 passes)."""
    seed = 0
    while True:
        identity = Identity(nacl.signing.SigningKey(seed.to_bytes(32, "big")))
        if not has_id_work(identity.node_id):
            return identity
        seed += 1


# -- diversity -----------------------------------------------------------------
def test_fifty_records_from_one_slash24_leave_at_most_two_per_bucket() -> None:
    owner = _identities(51)[0]
    table = PeerTable(owner.node_id)
    records = [ident.make_record(((f"10.9.8.{i + 1}", 7000),)) for i, ident in enumerate(_identities(51)[1:])]
    for record in records:
        table.add(record)
    per_bucket: dict[int, int] = {}
    for entry in table.entries():
        b = bucket_of(owner.node_id, entry.record.node_id)
        per_bucket[b] = per_bucket.get(b, 0) + 1
    assert per_bucket and max(per_bucket.values()) <= 2
    assert len(table) + len(table.replacements()) == 50  # the excess is kept, as replacements only
    assert len(table) <= 10  # and one /16 holds at most 10 slots of the table
    assert not {r.node_id for r in table.replacements()} & {r.node_id for r in table.relays()}


def test_dht_buckets_take_at_most_two_per_slash24() -> None:
    owner = _identities(51)[0]
    table = ClosestRoutingTable(None, 20, KNode(owner.node_id))
    for i, ident in enumerate(_identities(51)[1:]):
        table.add_contact(KNode(ident.node_id, f"10.9.8.{i + 1}", 7000))
    assert all(len(b.nodes) <= 2 for b in table.buckets)
    held = sum(len(b.replacement_nodes) for b in table.buckets)
    assert held >= 40 and table.held_back >= 40
    # the same records on distinct /16s all take slots (k=20 buckets are not full)
    spread = ClosestRoutingTable(None, 20, KNode(owner.node_id))
    for i, ident in enumerate(_identities(51)[1:]):
        spread.add_contact(KNode(ident.node_id, f"10.{i + 1}.8.1", 7000))
    assert sum(len(b.nodes) for b in spread.buckets) == 50


def test_a_freed_slot_goes_to_a_replacement_the_limits_admit() -> None:
    owner = _identities(51)[0]
    table = ClosestRoutingTable(None, 20, KNode(owner.node_id))
    nodes = [KNode(ident.node_id, f"10.9.8.{i + 1}", 7000) for i, ident in enumerate(_identities(51)[1:])]
    for node in nodes:
        table.add_contact(node)
    before = sum(len(b.nodes) for b in table.buckets)
    victim = next(n for b in table.buckets for n in b.nodes.values())
    table.remove_contact(victim)
    assert sum(len(b.nodes) for b in table.buckets) == before  # promoted from the same /24's replacements
    assert all(len(b.nodes) <= 2 for b in table.buckets)


def test_loopback_is_exempt_unless_the_policy_says_otherwise() -> None:
    owner = _identities(31)[0]
    loose, strict = PeerTable(owner.node_id), PeerTable(owner.node_id, policy=DiversityPolicy(exempt_loopback=False))
    for ident in _identities(31)[1:]:
        record = ident.make_record((("127.0.0.1", 7000),))
        loose.add(record)
        strict.add(record)
    assert len(loose) == 30
    assert len(strict) <= 10


def test_ipv6_limits_are_per_48_and_per_32() -> None:
    policy = DiversityPolicy()
    assert not policy.admits("2001:db8:1:2::9", ["2001:db8:1:7::1", "2001:db8:1:ffff::2"], [])
    assert policy.admits("2001:db8:2::9", ["2001:db8:1:7::1", "2001:db8:1:ffff::2"], [])
    assert not policy.admits("2001:db8:99::1", [], [f"2001:db8:{i}::1" for i in range(10)])
    assert policy.admits("2001:db9::1", [], [f"2001:db8:{i}::1" for i in range(10)])


# -- costly ids ------------------------------------------------------------------
def test_ids_carry_the_work_and_one_without_is_refused_with_the_reason() -> None:
    assert required_id_work() == ID_WORK_BITS == 12
    good = next_identity()
    assert id_work(good.node_id) >= ID_WORK_BITS
    bad = _unworked_identity()
    data = bad.make_record((("10.1.2.3", 7000),)).encode()
    with pytest.raises(ProtocolError, match="carries no proof of work.*requires 12"):
        verify_node_record(data)
    table = PeerTable(good.node_id)
    assert table.add_bytes(data) is None and "no proof of work" in table.last_refusal
    assert table.update_many([data]) == [] and len(table) == 0
    key, value = node_record_value(bad.make_record((("10.1.2.3", 7000),)))
    with pytest.raises(ProtocolError, match="no proof of work"):
        validate_value(key, value)
    router = ClosestRoutingTable(None, 20, KNode(good.node_id))
    router.add_contact(KNode(bad.node_id, "10.1.2.3", 7000))
    assert router.refused_work == 1 and sum(len(b.nodes) for b in router.buckets) == 0


def test_the_key_file_is_the_proof_and_a_restart_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "node" / "identity.pem"
    first = load_or_create_identity(path)
    assert has_id_work(first.node_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob("*.tmp"))
    again = load_or_create_identity(path)  # no re-solving: the key file holds the solved key
    assert again.node_id == first.node_id


def test_a_key_file_from_before_the_puzzle_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(_unworked_identity().private_key_pem())
    with pytest.raises(IdentityFileError, match="before proof-of-work ids"):
        load_or_create_identity(path)


async def test_real_nodes_refuse_an_id_without_work_on_links_and_in_the_dht(tmp_path: Path) -> None:
    async with asyncio.timeout(120), network(tmp_path) as net:
        seed = await net.start("seed")
        other = await net.start("other", "-connect", pinned(seed))
        assert seed.dht is not None and other.dht is not None
        assert await until(lambda: other.dht is not None and other.dht.contacts() >= 1, 30)

        # peers: a dialler whose id lacks the work is refused at the link, with the reason
        from globalnet.link.manager import LinkManager, LinkSettings

        bad = _unworked_identity()
        dialler = LinkManager(bad, lambda: bad.make_record(()), LinkSettings(dial_timeout=5))
        host, port = seed.links.listen_address  # type: ignore[misc]
        try:
            with pytest.raises(GnetError, match="no proof of work"):
                await dialler.get_link(host, port, seed.identity.node_id)
        finally:
            dialler.close()
        assert bad.node_id not in seed.peers

        # the DHT: a node record of that id is refused for storage, with the reason
        key, value = node_record_value(bad.make_record((("10.1.2.3", 7000),)))
        with pytest.raises(ProtocolError, match="no proof of work"):
            await seed.dht.publish(key, value)
        assert seed.dht.storage.get_valid(key) is None

        # the DHT: contacts without work in a peer's answer never reach a crawl or the table
        ghost = _unworked_identity().node_id
        real_find_node = seed.dht.protocol.rpc_find_node

        def padded(sender, nodeid, key):  # type: ignore[no-untyped-def]
            return [*real_find_node(sender, nodeid, key), (ghost, "10.1.2.3", 7000)]

        seed.dht.protocol.rpc_find_node = padded  # type: ignore[method-assign]
        await other.dht.closest(os.urandom(20))
        assert other.dht.protocol.refused_contacts >= 1
        assert all(ghost not in b.nodes and ghost not in b.replacement_nodes for b in other.dht.protocol.router.buckets)


# -- disjoint paths ----------------------------------------------------------------
def _contact(ident: Identity, i: int) -> Contact:
    return Contact(ident.node_id, f"10.{i}.0.1", 7000)


def _drive(core: DisjointLookup, answer) -> None:  # type: ignore[no-untyped-def]
    """Run the sans-IO core to the end, answering each query synchronously."""
    for _ in range(10_000):
        queries = core.next_queries()
        if not queries:
            assert core.done
            return
        for q in queries:
            answer(core, q)
    raise AssertionError("lookup did not end")


def test_paths_never_share_a_node() -> None:
    idents = _identities(60)
    contacts = [_contact(x, i) for i, x in enumerate(idents)]
    key = os.urandom(20)
    asked: dict[bytes, set[int]] = {}

    def answer(core: DisjointLookup, q: Query) -> None:
        asked.setdefault(q.contact.node_id, set()).add(q.path)
        core.answer_nodes(q, contacts)  # everyone knows everyone

    core = DisjointLookup(key, contacts[:9], want_value=False)
    _drive(core, answer)
    assert all(len(paths) == 1 for paths in asked.values())
    assert {p for paths in asked.values() for p in paths} == {0, 1, 2}


def test_one_poisoned_path_cannot_hide_the_newest_value() -> None:
    """A liar answers with an old (validly signed) value; the newest still wins over 3 paths, not over 1."""
    idents = _identities(60)
    owner = idents[0]
    key, old_value = node_record_value(owner.make_record((("10.0.0.1", 7000),), seq=1))
    same_key, new_value = node_record_value(owner.make_record((("10.0.0.1", 7000),), seq=2))
    assert key == same_key

    def distance(c: Contact) -> int:
        return int.from_bytes(c.node_id, "big") ^ int.from_bytes(key, "big")

    everyone = sorted((_contact(x, i) for i, x in enumerate(idents[1:])), key=distance)
    liar, honest = everyone[0], everyone[1:]  # the liar is the closest node to the key
    holders = {c.node_id for c in honest[:3]}

    def answer(core: DisjointLookup, q: Query) -> None:
        if q.contact.node_id == liar.node_id:
            core.answer_value(q, validate_value(key, old_value))
        elif q.contact.node_id in holders:
            core.answer_value(q, validate_value(key, new_value))
        else:
            core.answer_nodes(q, honest)

    seeds = [liar, *honest[-6:]]  # we know the liar and a few far honest nodes
    single = DisjointLookup(key, seeds, paths=1)
    _drive(single, answer)
    hidden = single.result()
    assert hidden is not None and hidden.seq == 1  # one path: the liar's old value ends the lookup
    core = DisjointLookup(key, seeds, paths=3)
    _drive(core, answer)
    found = core.result()
    assert found is not None and found.seq == 2 and found.value == new_value


async def test_a_lying_node_with_an_old_value_cannot_hide_the_new_one(tmp_path: Path) -> None:
    """In-process network: a liar answers every FIND_VALUE with an older valid record; lookups get the newest."""
    async with asyncio.timeout(150), network(tmp_path) as net:
        seed = await net.start("seed")
        honest = [await net.start(f"h{i}", "-connect", pinned(seed)) for i in range(6)]
        liar = await net.start("liar", "-connect", pinned(seed))
        nodes = [seed, *honest, liar]
        assert await until(lambda: all(n.dht is not None and n.dht.contacts() >= 4 for n in nodes), 60)
        owner = honest[0]
        old = owner.identity.make_record((("127.0.0.1", 1),), seq=1)
        key, old_value = node_record_value(old)
        assert liar.dht is not None
        liar_ids = {liar.identity.node_id}
        liar.dht.protocol.rpc_find_value = lambda sender, nodeid, k: {"value": old_value}  # type: ignore[method-assign]
        liar.dht.protocol.rpc_find_node = lambda sender, nodeid, k: [  # type: ignore[method-assign]
            (liar.identity.node_id, "127.0.0.1", liar.links.listen_address[1])  # type: ignore[index]
        ]
        liar.dht.protocol.rpc_store = lambda sender, nodeid, k, v: True  # type: ignore[method-assign,assignment]
        new = owner.links.own_record()
        _, new_value = node_record_value(new)
        assert new.seq > 1
        assert await owner.dht_publish(key, new_value) >= 2
        for reader in honest[1:]:
            assert reader.dht is not None and reader.identity.node_id not in liar_ids
            found = await reader.dht.lookup(key)
            assert found is not None and found.seq == new.seq and found.value == new_value
