"""Mirrors and remote browsing with whole nodes in one event loop (real QUIC on 127.0.0.1).

A publisher and a mirror serve a site as hidden services of their own; a
visitor that never saw the site finds them in the DHT, fetches and verifies;
what the DHT holds names neither the site key nor any mirror.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from globalnet.console.commands import Console
from globalnet.console.view import NodeConsoleView
from globalnet.dht.values import ValueKind, decode_topic_slot_value
from globalnet.localnet import free_port
from globalnet.node import Node
from globalnet.service.address import encode_address
from globalnet.service.descriptor import PERIOD, current_period
from globalnet.site.address import encode_site_address
from globalnet.site.announcements import ANNOUNCEMENTS_PATH
from globalnet.site.cache import site_id
from globalnet.site.manifest import SiteError
from globalnet.site.mirror_record import open_mirror_record
from tests.inproc_nodes import Net, network, pinned, until

pytestmark = pytest.mark.long(seconds=12)  # wall seconds here alone: run early (tests/conftest.py)


def _windows(secret: bytes, size: int = 8) -> list[bytes]:
    return [secret[i : i + size] for i in range(max(1, len(secret) - size + 1))]


def _assert_records_hide_the_mirrors(
    records: list[tuple[bytes, bytes]], site_key: bytes, nodes: list[Node], addresses: set[str]
) -> None:
    """Each record, field by field: the topic, writer key, sealed body and signature hold no
    window of the site key, a mirror's node id or its IP; seq and expires are times (checked as
    numbers: a byte search across a field boundary matches 7f000001 in ~1 of 256 records, since
    the last byte of a random key meets the 00 00 01 of a millisecond timestamp); and the sealed
    body opens, with the site's address, to a mirror's service key and nothing else."""
    now = time.time()
    secrets = [site_key, b"127.0.0.1", bytes([127, 0, 0, 1])] + [n.identity.node_id for n in nodes]
    for key, value in records:
        slot = decode_topic_slot_value(value)
        for field in (slot.topic, slot.writer_key, slot.body, slot.signature):
            for secret in secrets:
                assert not any(w in field for w in _windows(secret)), f"a mirror record leaks {secret.hex()}"
        assert slot.seq <= now * 1000 + 60_000 and now < slot.expires < now + 3 * PERIOD
        opened = []
        for period in (current_period(now) - 1, current_period(now), current_period(now) + 1):
            try:
                opened.append(open_mirror_record(site_key, period, key, value, now))
            except SiteError:
                continue
        assert len(opened) == 1 and encode_address(opened[0]) in addresses


async def _published(net: Net, www: Path) -> tuple[Node, Node, bytes]:
    """A seed, 9 relays and a publisher (-no-listen) of `www` whose mirror record is in the DHT."""
    seed = await net.start("seed")
    for i in range(9):
        await net.start(f"r{i}", "-connect", pinned(seed))
    pub = await net.start("pub", "-no-listen", "-connect", pinned(seed), "-publish", f"blog={www}")
    site_key = next(iter(pub.site_mirrors))
    assert await until(lambda: pub.site_mirrors[site_key].counts["records"] > 0, 120)
    return seed, pub, site_key


async def test_a_mirror_serves_a_site_and_a_visitor_fetches_it_verified(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    files = {"index.html": b"<h1>mirrored</h1>", "big.bin": os.urandom(1_300_000)}
    for path, data in files.items():
        (www / path).write_bytes(data)
    async with asyncio.timeout(400), network(tmp_path) as net:
        seed, pub, site_key = await _published(net, www)
        address = encode_site_address(site_key)
        mirror = await net.start("mirror", "-no-listen", "-connect", pinned(seed))
        out = await Console(NodeConsoleView(mirror)).execute(f"mirror {address}")  # as -mirror ADDRESS does
        assert out is not None and "mirroring site-" in out.text, out
        m = mirror.site_mirrors[site_key]
        assert await until(lambda: m.core.held_seq == 1 and not mirror.sites.cache.missing(site_key), 180)
        assert await until(lambda: m.counts["records"] > 0, 120)
        # the copy came through rendezvous circuits: neither the mirror nor the publisher accepts
        # links (-no-listen), and neither holds a link to the other
        assert pub.identity.node_id not in mirror.links.links and mirror.identity.node_id not in pub.links.links
        # a mirror whose disk quota the site does not fit: a clear error, nothing written
        tiny = await net.start("tiny", "-no-listen", "-connect", pinned(seed), "-site-quota", "1", "-mirror", address)
        assert await until(lambda: tiny.site_mirrors[site_key].counts["over_quota"] > 0, 120)
        assert tiny.sites.cache.manifest(site_key) is None and not tiny.sites.cache.missing(site_key)
        await net.stop(tiny)
        # the mirror's key and identity for this site: its own folder, 0600
        key_file = tmp_path / "mirror" / "sites" / ".mirrors" / site_id(site_key) / "private.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert m.address != pub.site_mirrors[site_key].address

        tunnel = free_port()
        visitor = await net.start("visitor", "-no-listen", "-connect", pinned(seed), "-tunnel", f"{tunnel}>{address}")
        await visitor.sites.browser.ensure(site_key, "big.bin")
        assert visitor.sites.cache.read_file(site_key, "big.bin") == files["big.bin"]
        await visitor.sites.browser.ensure(site_key, "")
        assert visitor.sites.cache.read_file(site_key, "index.html") == files["index.html"]

        # what the DHT holds: mirror records (kind 3) name no site key, no mirror node, no address
        stored = [(key, value) for node in net.nodes if node.dht is not None for key, value in node.dht.storage]
        records = [(key, value) for key, value in stored if value[0] == ValueKind.TOPIC_SLOT]
        assert len(records) >= 2
        _assert_records_hide_the_mirrors(
            records, site_key, [pub, mirror], {m.address, pub.site_mirrors[site_key].address}
        )
        for _, value in stored:
            assert not any(w in value for w in _windows(site_key))

        # an update published from the console reaches the mirror by broadcast, not by its periodic sync
        (www / "index.html").write_bytes(b"<h1>version 2</h1>")
        out = await Console(NodeConsoleView(pub)).execute(f"publish blog {www}")
        assert out is not None and "seq 2 (announced" in out.text, out
        assert await until(lambda: m.core.held_seq == 2 and not mirror.sites.cache.missing(site_key), 120)
        assert m.counts["broadcasts_in"] >= 1
        assert mirror.sites.cache.read_file(site_key, "index.html") == b"<h1>version 2</h1>"
        listing = await Console(NodeConsoleView(mirror)).execute("list sites")
        assert listing is not None and m.address in listing.text
        bad = await Console(NodeConsoleView(mirror)).execute("mirror nothere.gnet")
        assert bad is not None and "not a site address" in bad.text

        # the owner's signed announcement: from the console, flooded to the mirror, read by a visitor
        # at the reserved path through -tunnel (served by the visitor's own node, verified there)
        out = await Console(NodeConsoleView(pub)).execute('announce blog back <soon> & "maintenance" done')
        assert out is not None and "announced" in out.text, out
        text = b'back <soon> & "maintenance" done'
        assert await until(lambda: [a.body for a in mirror.sites.browser.announcements.latest(site_key)] == [text], 120)
        refused = await Console(NodeConsoleView(mirror)).execute("announce blog not the owner")
        assert refused is not None and "no site named" in refused.text, refused
        listing = await Console(NodeConsoleView(mirror)).execute("list sites")
        assert listing is not None and "back <soon>" in listing.text, listing.text
        status, body = await _http_get(tunnel, ANNOUNCEMENTS_PATH)
        assert status == 200 and text in body, body


async def _http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 120)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def _squatter_values(site_key: bytes, period: int, now: float) -> list[tuple[bytes, bytes]]:
    """Junk records of seq 2^64-1 for every slot under the site's topic: what any DHT node that
    stored one record (it shows the topic) can write; the DHT keeps them over any real record."""
    from globalnet.crypto.blinding import BlindedSigner, blind_public_key
    from globalnet.dht.values import TOPIC_SLOTS, TopicSlotValue, topic_slot_of

    topic = blind_public_key(site_key, period)
    out: dict[int, tuple[bytes, bytes]] = {}
    n = 0
    while len(out) < TOPIC_SLOTS:
        n += 1
        signer = BlindedSigner(n.to_bytes(32, "big"), period)
        slot = topic_slot_of(signer.public_key)
        if slot in out:
            continue
        unsigned = TopicSlotValue(topic, signer.public_key, 2**64 - 1, int(now) + 3 * 3600, os.urandom(64))
        signed = TopicSlotValue(topic, signer.public_key, 2**64 - 1, int(now) + 3 * 3600, unsigned.body, signer.sign(unsigned.signed_message()))
        out[slot] = (signed.key, signed.encode())
    return list(out.values())


async def test_a_site_stays_reachable_when_every_mirror_record_slot_is_squatted(tmp_path: Path) -> None:
    """Whoever saw one mirror record can fill all 16 slots with junk the mirrors cannot outbid; the
    owner's signed list (which only the site key can write) still leads a visitor to the site."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_bytes(b"<h1>still here</h1>")
    async with asyncio.timeout(400), network(tmp_path) as net:
        seed, _pub, site_key = await _published(net, www)
        squatter = await net.start("squatter", "-no-listen", "-connect", pinned(seed))
        now = time.time()
        for period in (current_period(now), current_period(now) - 1):
            for key, value in _squatter_values(site_key, period, now):
                await squatter.dht_publish(key, value)
        visitor = await net.start("visitor", "-no-listen", "-connect", pinned(seed))
        assert not await visitor.sites.browser.lookup_records(site_key, current_period(now))  # every slot is junk
        await visitor.sites.browser.ensure(site_key, "")
        assert visitor.sites.cache.read_file(site_key, "index.html") == b"<h1>still here</h1>"
