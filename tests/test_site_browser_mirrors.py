"""SiteBrowser against real mirror responders over 127.0.0.1 TCP (the service circuit replaced by a plain
connection): a mirror serving an old manifest or announcements that do not verify is avoided."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import nacl.signing

from globalnet.site.announcements import ANNOUNCEMENTS_PATH, AnnouncementStore, announcement_body
from globalnet.site.broadcast import BroadcastKind, make_message
from globalnet.site.cache import SiteCache
from globalnet.site.manifest import file_entry, sign_manifest
from globalnet.site.remote import BAD_FOR, SiteBrowser
from globalnet.site.responder import SiteResponder
from globalnet.site.sessions import MirrorSession, SessionPool

SEED = bytes([9]) * 32
SITE_KEY = bytes(nacl.signing.SigningKey(SEED).verify_key)
OTHER_SEED = bytes([10]) * 32


class LoopbackPool(SessionPool):
    """Sessions to mirrors by address, each a TCP connection to that mirror's responder."""

    def __init__(self, ports: dict[str, int]) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.ports = ports
        self.readers: list[asyncio.Task[None]] = []

    async def _open(self, address: str) -> MirrorSession:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.ports[address])
        session = MirrorSession(address)
        session._writer = writer
        self.readers.append(asyncio.ensure_future(session._read(reader)))
        self._sessions[address] = session
        return session


class Node:
    def spawn(self, coro: Any, name: str) -> None:
        asyncio.ensure_future(coro)

    async def dht_lookup(self, key: bytes) -> None:
        return None  # no other mirror listed in the DHT


class LyingStore(AnnouncementStore):
    """A mirror that serves another key's announcements as the site's."""

    def encode(self, site_key: bytes) -> bytes:
        return super().encode(bytes(nacl.signing.SigningKey(OTHER_SEED).verify_key))


def _mirror_cache(root: Path, seq: int) -> SiteCache:
    cache = SiteCache(root)
    cache.accept_manifest(SITE_KEY, sign_manifest(SEED, [file_entry("index.html", f"v{seq}".encode())], seq, 1_700_000_000 + seq).encode())
    return cache


def _announcement(seed: bytes, text: str) -> Any:
    return make_message(seed, BroadcastKind.ANNOUNCE, announcement_body(text), int(time.time()), text.encode())


async def test_a_mirror_with_an_old_manifest_or_forged_announcements_is_avoided(tmp_path: Path) -> None:
    genuine, foreign = AnnouncementStore(), LyingStore()
    genuine.add(_announcement(SEED, "from the owner"))
    foreign.add(_announcement(OTHER_SEED, "from someone else"))
    # "new" serves seq 3 and the owner's announcement; "old" serves seq 2 and another key's announcement
    mirrors = {
        "new.gnet": SiteResponder(_mirror_cache(tmp_path / "new", 3), SITE_KEY, lambda d, lbl: None, genuine),
        "old.gnet": SiteResponder(_mirror_cache(tmp_path / "old", 2), SITE_KEY, lambda d, lbl: None, foreign),
    }
    ports = {address: await responder.start() for address, responder in mirrors.items()}
    pool = LoopbackPool(ports)
    try:
        # a visitor that holds seq 3 asks both: the one serving seq 2 is avoided for the site, seq 3 kept
        visitor = SiteBrowser(Node(), _mirror_cache(tmp_path / "visitor", 3), pool)  # type: ignore[arg-type]
        visitor._mirrors[SITE_KEY] = (time.monotonic() + 600, sorted(ports))  # as if read from the DHT
        async with asyncio.timeout(60):
            held = await visitor.refresh_manifest(SITE_KEY)
        assert held is not None and held.seq == 3
        assert visitor.counts["bad_mirrors"] == 1
        assert visitor._avoid[SITE_KEY]["old.gnet"] >= time.monotonic() + BAD_FOR - 60
        assert visitor._usable(SITE_KEY, sorted(ports), set()) == ["new.gnet"]

        # a fresh visitor (no manifest held) asks both for announcements: only the owner's are kept,
        # and the mirror that passed another key's off as the site's is avoided
        fresh = SiteBrowser(Node(), SiteCache(tmp_path / "fresh"), pool)  # type: ignore[arg-type]
        fresh._mirrors[SITE_KEY] = (time.monotonic() + 600, sorted(ports))
        async with asyncio.timeout(60):
            await fresh.ensure(SITE_KEY, ANNOUNCEMENTS_PATH)
        assert [m.body for m in fresh.announcements.latest(SITE_KEY)] == [b"from the owner"]
        assert "old.gnet" in fresh._avoid[SITE_KEY] and fresh._avoid[SITE_KEY]["old.gnet"] >= time.monotonic() + BAD_FOR - 60
        manifest = fresh.cache.manifest(SITE_KEY)
        assert manifest is not None and manifest.seq == 3
    finally:
        pool.close()
        for responder in mirrors.values():
            responder.close()
        async with asyncio.timeout(30):  # the responders see the sessions end
            while any(r.active for r in mirrors.values()) or not all(t.done() for t in pool.readers):
                await asyncio.sleep(0.02)


class ForgingCache(SiteCache):
    """A mirror that serves a manifest it made up, with a path of its choosing (and no valid signature)."""

    def manifest_bytes(self, site_key: bytes) -> bytes | None:
        entries = [file_entry("secret/diary.html", b"a"), file_entry("secret/diary2.html", b"b")]
        forged = sign_manifest(OTHER_SEED, entries, 7, 1_700_000_000)
        raw = forged.encode().replace(b"secret/diary2.html", b"SECRET/diary.html\x00"[:18])
        return raw


async def test_nothing_a_mirror_sent_and_no_site_path_reaches_an_info_log(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    from globalnet.site.serve import serve_http, site_lookup, site_prepare

    mirror = SiteResponder(ForgingCache(tmp_path / "m"), SITE_KEY, lambda d, lbl: None, AnnouncementStore())
    pool = LoopbackPool({"forger.gnet": await mirror.start()})
    visitor = SiteBrowser(Node(), SiteCache(tmp_path / "visitor"), pool)  # type: ignore[arg-type]
    visitor._mirrors[SITE_KEY] = (time.monotonic() + 600, ["forger.gnet"])
    try:
        with capture_logs() as logs:
            async with asyncio.timeout(60):
                assert await visitor.refresh_manifest(SITE_KEY) is None
                # a browser asks for a path: the answer is the error page, the log names no path
                server = await asyncio.start_server(
                    lambda r, w: serve_http(r, w, site_lookup(visitor, visitor.cache.lookup(SITE_KEY), SITE_KEY),
                                            prepare=site_prepare(visitor, SITE_KEY)),
                    "127.0.0.1", 0)
                port = server.sockets[0].getsockname()[1]
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /private/notes.html HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = await reader.read()
                writer.close()
                server.close()
        assert answer.startswith(b"HTTP/1.1 502")
        assert visitor.counts["bad_mirrors"] == 1
        shown = [repr(entry) for entry in logs if entry["log_level"] != "debug"]
        assert shown and not any(word in line for line in shown for word in ("diary", "SECRET", "notes", "forger"))
    finally:
        pool.close()
        mirror.close()


async def test_a_page_asking_for_many_made_up_sites_does_not_grow_the_browser(tmp_path: Path) -> None:
    """Site addresses are cheap to make up; each one asked for must not leave state behind for ever."""
    from globalnet.site import remote

    MAX_SITES_TRACKED = getattr(remote, "MAX_SITES_TRACKED", 1024)
    browser = SiteBrowser(Node(), SiteCache(tmp_path / "visitor"), LoopbackPool({}))  # type: ignore[arg-type]
    keys = [bytes(nacl.signing.SigningKey(i.to_bytes(32, "big")).verify_key) for i in range(1, MAX_SITES_TRACKED + 60)]
    async with asyncio.timeout(120):
        for key in keys:
            await browser.ensure(key, "index.html")
    for table in (browser._mirrors, browser._locks, browser._checked):
        assert len(table) <= MAX_SITES_TRACKED
    assert keys[-1] in browser._mirrors and keys[0] not in browser._mirrors


async def test_a_client_that_pipelines_requests_and_never_reads_cannot_fill_the_mirrors_memory(tmp_path: Path) -> None:
    from globalnet.site.manifest import CHUNK
    from globalnet.site.protocol import chunk_request

    data = os.urandom(8 * CHUNK)
    cache = SiteCache(tmp_path / "m")
    manifest = sign_manifest(SEED, [file_entry("big.bin", data)], 1, 1_700_000_000)
    cache.accept_manifest(SITE_KEY, manifest.encode())
    cache.put_file(SITE_KEY, "big.bin", data)
    mirror = SiteResponder(cache, SITE_KEY, lambda d, lbl: None, AnnouncementStore())
    port = await mirror.start()
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # 1,600 requests (400 MiB of answers) in one 64 KiB write; this client reads nothing
        writer.write(b"".join(chunk_request(manifest.files[0].sha256, i % 8) for i in range(1600)))
        await writer.drain()
        await asyncio.sleep(1.5)
        assert mirror.served_chunks < 200  # what the kernel's socket buffers hold, not 1,600
    finally:
        writer.close()
        mirror.close()


async def test_a_large_file_is_fetched_without_holding_it_in_memory(tmp_path: Path) -> None:
    import tracemalloc

    data = os.urandom(16 << 20)
    manifest = sign_manifest(SEED, [file_entry("index.html", b"hi"), file_entry("big.bin", data)], 1, 1_700_000_000)
    cache = SiteCache(tmp_path / "m")
    cache.accept_manifest(SITE_KEY, manifest.encode())
    cache.put_file(SITE_KEY, "big.bin", data)
    mirror = SiteResponder(cache, SITE_KEY, lambda d, lbl: None, AnnouncementStore())
    pool = LoopbackPool({"m.gnet": await mirror.start()})
    visitor = SiteBrowser(Node(), SiteCache(tmp_path / "v"), pool)  # type: ignore[arg-type]
    visitor._mirrors[SITE_KEY] = (time.monotonic() + 600, ["m.gnet"])
    try:
        async with asyncio.timeout(120):
            await visitor.refresh_manifest(SITE_KEY)
            entry = manifest.file("big.bin")
            assert entry is not None
            tracemalloc.start()
            try:
                await visitor.fetch_file(SITE_KEY, entry)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert visitor.cache.read_file(SITE_KEY, "big.bin") == data
        assert peak < 8 << 20
        assert not list((tmp_path / "v").rglob("*.partial"))
    finally:
        pool.close()
        mirror.close()


async def test_sessions_to_many_mirrors_are_bounded_and_idle_ones_close() -> None:
    """Each site may list 16 mirrors a hostile publisher runs and never closes: the pool stays bounded."""
    from globalnet.site import sessions

    limit = getattr(sessions, "MAX_SESSIONS", 128)

    class CountingPool(SessionPool):
        async def _open(self, address: str) -> MirrorSession:
            session = MirrorSession(address)
            self._sessions[address] = session
            return session

    pool = CountingPool(None)  # type: ignore[arg-type]
    opened = [await pool.get(f"m{i}.gnet") for i in range(limit + 100)]
    live = [s for s in opened if not s.closed]
    assert len(live) <= limit and len(pool._sessions) <= limit
    assert opened[-1] in live and opened[0].closed  # the least recently used went first
    live[0].last_used -= 10_000  # long idle: closed at the next look
    await pool.get("another.gnet")
    assert live[0].closed
    pool.close()
