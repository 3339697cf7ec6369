"""Mirrors and remote browsing with whole nodes in one event loop (real QUIC on 127.0.0.1).

A publisher and a mirror serve a site as hidden services of their own; a
visitor that never saw the site finds them in the DHT, fetches and verifies;
what the DHT holds names neither the site key nor any mirror.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from globalnet.console.commands import Console
from globalnet.console.view import NodeConsoleView
from globalnet.dht.values import ValueKind
from globalnet.localnet import free_port
from globalnet.site.address import encode_site_address
from globalnet.site.announcements import ANNOUNCEMENTS_PATH
from globalnet.site.cache import site_id
from tests.inproc_nodes import network, pinned, until


def _windows(secret: bytes, size: int = 8) -> list[bytes]:
    return [secret[i : i + size] for i in range(max(1, len(secret) - size + 1))]


async def test_a_mirror_serves_a_site_and_a_visitor_fetches_it_verified(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    files = {"index.html": b"<h1>mirrored</h1>", "big.bin": os.urandom(1_300_000)}
    for path, data in files.items():
        (www / path).write_bytes(data)
    async with asyncio.timeout(400), network(tmp_path) as net:
        seed = await net.start("seed")
        for i in range(9):
            await net.start(f"r{i}", "-connect", pinned(seed))
        pub = await net.start("pub", "-no-listen", "-connect", pinned(seed), "-publish", f"blog={www}")
        site_key = next(iter(pub.site_mirrors))
        address = encode_site_address(site_key)
        assert await until(lambda: pub.site_mirrors[site_key].counts["records"] > 0, 120)
        mirror = await net.start("mirror", "-no-listen", "-connect", pinned(seed))
        out = await Console(NodeConsoleView(mirror)).execute(f"mirror {address}")  # as -mirror ADDRESS does
        assert out is not None and "mirroring site-" in out.text, out
        m = mirror.site_mirrors[site_key]
        assert await until(lambda: m.core.held_seq == 1 and not mirror.site_cache.missing(site_key), 180)
        assert await until(lambda: m.counts["records"] > 0, 120)
        # the copy came through rendezvous circuits: neither the mirror nor the publisher accepts
        # links (-no-listen), and neither holds a link to the other
        assert pub.identity.node_id not in mirror.links.links and mirror.identity.node_id not in pub.links.links
        # a mirror whose disk quota the site does not fit: a clear error, nothing written
        tiny = await net.start("tiny", "-no-listen", "-connect", pinned(seed), "-site-quota", "1", "-mirror", address)
        assert await until(lambda: tiny.site_mirrors[site_key].counts["over_quota"] > 0, 120)
        assert tiny.site_cache.manifest(site_key) is None and not tiny.site_cache.missing(site_key)
        await net.stop(tiny)
        # the mirror's key and identity for this site: its own folder, 0600
        key_file = tmp_path / "mirror" / "sites" / ".mirrors" / site_id(site_key) / "private.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert m.address != pub.site_mirrors[site_key].address

        tunnel = free_port()
        visitor = await net.start("visitor", "-no-listen", "-connect", pinned(seed), "-tunnel", f"{tunnel}>{address}")
        await visitor.site_browser.ensure(site_key, "big.bin")
        assert visitor.site_cache.read_file(site_key, "big.bin") == files["big.bin"]
        await visitor.site_browser.ensure(site_key, "")
        assert visitor.site_cache.read_file(site_key, "index.html") == files["index.html"]

        # what the DHT holds: mirror records (kind 3) name no site key, no mirror node, no address
        values = [value for node in net.nodes if node.dht is not None for _, value in node.dht.storage]
        records = [v for v in values if v[0] == ValueKind.TOPIC_SLOT]
        assert len(records) >= 2
        secrets = [site_key, pub.identity.node_id, mirror.identity.node_id, b"127.0.0.1", bytes([127, 0, 0, 1])]
        for value in records:
            for secret in secrets:
                assert not any(w in value for w in _windows(secret)), f"a mirror record leaks {secret.hex()} ({len(value)} bytes, kind {value[0]})"
        for value in values:
            assert not any(w in value for w in _windows(site_key))

        # an update published from the console reaches the mirror by broadcast, not by its periodic sync
        (www / "index.html").write_bytes(b"<h1>version 2</h1>")
        out = await Console(NodeConsoleView(pub)).execute(f"publish blog {www}")
        assert out is not None and "seq 2 (announced" in out.text, out
        assert await until(lambda: m.core.held_seq == 2 and not mirror.site_cache.missing(site_key), 120)
        assert m.counts["broadcasts_in"] >= 1
        assert mirror.site_cache.read_file(site_key, "index.html") == b"<h1>version 2</h1>"
        listing = await Console(NodeConsoleView(mirror)).execute("list sites")
        assert listing is not None and m.address in listing.text
        bad = await Console(NodeConsoleView(mirror)).execute("mirror nothere.gnet")
        assert bad is not None and "not a site address" in bad.text

        # the owner's signed announcement: from the console, flooded to the mirror, read by a visitor
        # at the reserved path through -tunnel (served by the visitor's own node, verified there)
        out = await Console(NodeConsoleView(pub)).execute("announce blog back <soon> & \"maintenance\" done")
        assert out is not None and "announced" in out.text, out
        text = b'back <soon> & "maintenance" done'
        assert await until(lambda: [a.body for a in mirror.site_browser.announcements.latest(site_key)] == [text], 120)
        refused = await Console(NodeConsoleView(mirror)).execute("announce blog not the owner")
        assert refused is not None and "no site named" in refused.text, refused
        listing = await Console(NodeConsoleView(mirror)).execute("list sites")
        assert listing is not None and "back <soon>" in listing.text, listing.text
        status, body = await _http_get(tunnel, ANNOUNCEMENTS_PATH)
        assert status == 200 and text in body, body


async def _http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /{path} HTTP/1.1\r\nHost: site\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 120)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body
