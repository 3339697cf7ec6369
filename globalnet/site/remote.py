"""Getting a site from its mirrors (asyncio shell): mirror records, manifests, files in chunks.

Why here and not in the SOCKS proxy: browsing (`http://SITE.gnet/` through
SOCKS or `-tunnel PORT>SITE`) and mirroring (a mirror fetching what it
serves) need the same thing: find the site's mirrors in the DHT (records
only those who know the address can open), get the highest-seq manifest
that verifies (never lower than the one held: no rollback), then the files
it lists, chunk by chunk from several mirrors at once (fetch.py decides
which chunk goes where and checks every chunk). Only verified bytes reach
the cache; the HTTP side serves only from the cache. A mirror that serves
bytes that do not verify or an older manifest is avoided for that site
(BAD_FOR); one that merely fails or lacks the file is rested a short while.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from collections.abc import Set as AbstractSet

import structlog

from ..crypto.blinding import BlindingError
from ..errors import GnetError, ProtocolError
from ..service.address import encode_address
from ..service.descriptor import current_period
from .announcements import ANNOUNCEMENTS_PATH, AnnouncementStore, decode_announcements
from .broadcast import BroadcastMessage
from .cache import QuotaError, SiteCache
from .fetch import FetchFailed, FileDone, FileFetch, MirrorBad, Request
from .http import candidates
from .manifest import FileEntry, Manifest, SiteError, decode_manifest
from .mirror_record import mirror_record_keys, open_mirror_record
from .protocol import RequestType, Status, chunk_request, encode_request
from .sessions import MirrorSession, SessionPool, SiteNode

log = structlog.get_logger("globalnet.site")

MIRRORS_TTL = 60.0  # a list of mirrors is looked up again after this
MANIFEST_TTL = 60.0  # a visitor asks for a newer manifest at most this often
MANIFEST_ASKS = 3  # mirrors asked for the manifest at once (the highest verified seq wins)
MANIFEST_GRACE = 3.0  # after the first verified manifest, wait this long for a higher one
BAD_FOR = 600.0  # bad bytes or an old manifest: avoided this long for the site
REST_FOR = 20.0  # unreachable or missing the file: rested this long
FETCH_MIRRORS = 4  # mirrors a file is fetched from in parallel
FETCH_TIMEOUT = 300.0
ANNOUNCEMENTS_TTL = 30.0  # a visitor asks the mirrors for announcements at most this often


class SiteBrowser:
    def __init__(self, node: SiteNode, cache: SiteCache, pool: SessionPool) -> None:
        self.node = node
        self.cache = cache
        self.pool = pool
        self._mirrors: dict[bytes, tuple[float, list[str]]] = {}
        self._avoid: dict[bytes, dict[str, float]] = {}  # site -> mirror -> until (monotonic)
        self._checked: dict[bytes, float] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}
        self.served: set[bytes] = set()  # sites this node publishes or mirrors: their SiteMirror keeps them fresh
        self.announcements = AnnouncementStore()  # verified, in memory: what mirrors serve and visitors read
        self._announcements_at: dict[bytes, float] = {}
        self.counts = {"manifests": 0, "files": 0, "bad_mirrors": 0}

    # -- mirrors -----------------------------------------------------------------
    async def lookup_records(self, site_key: bytes, period: int) -> dict[bytes, bytes]:
        """DHT key -> mirror service key of every genuine record for `period`."""
        try:
            keys = mirror_record_keys(site_key, period)
        except BlindingError:
            return {}  # an address whose key is no Ed25519 point: no site can have it
        found = await asyncio.gather(*(self.node.dht_lookup(k) for k in keys), return_exceptions=True)
        records: dict[bytes, bytes] = {}
        for key, value in zip(keys, found, strict=True):
            if value is None or isinstance(value, BaseException):
                continue
            try:
                records[key] = open_mirror_record(site_key, period, key, value.value, time.time())
            except SiteError as exc:
                log.debug("mirror record ignored", reason=exc.detail)
        return records

    async def find_mirrors(self, site_key: bytes, fresh: bool = False) -> list[str]:
        """The site's mirror addresses (this period's records, else the previous period's)."""
        held = self._mirrors.get(site_key)
        now = time.monotonic()
        if held is not None and not fresh and held[0] > now:
            return held[1]
        period = current_period()
        addresses: list[str] = []
        for p in (period, period - 1):
            addresses = sorted({encode_address(k) for k in (await self.lookup_records(site_key, p)).values()})
            if addresses:
                break
        self._mirrors[site_key] = (now + MIRRORS_TTL, addresses)
        return addresses

    def avoid(self, site_key: bytes, mirror: str, seconds: float, reason: str) -> None:
        self._avoid.setdefault(site_key, {})[mirror] = time.monotonic() + seconds
        if seconds >= BAD_FOR:
            self.counts["bad_mirrors"] += 1
            log.info("mirror avoided for this site", reason=reason)
        self.pool.drop(mirror, reason)

    def _usable(self, site_key: bytes, mirrors: Iterable[str], own: AbstractSet[str]) -> list[str]:
        now = time.monotonic()
        avoided = self._avoid.get(site_key, {})
        return [m for m in mirrors if m not in own and avoided.get(m, 0.0) <= now]

    # -- manifest ----------------------------------------------------------------
    async def refresh_manifest(self, site_key: bytes, own: AbstractSet[str] = frozenset()) -> Manifest | None:
        """Ask a few mirrors for the manifest; keep the highest verified seq above the held one."""
        held = self.cache.manifest(site_key)
        mirrors = self._usable(site_key, await self.find_mirrors(site_key), own)
        if not mirrors:
            mirrors = self._usable(site_key, await self.find_mirrors(site_key, fresh=True), own)
        tasks = {asyncio.ensure_future(self._ask_manifest(site_key, m)): m for m in mirrors[:MANIFEST_ASKS]}
        best: tuple[Manifest, bytes] | None = None
        deadline: float | None = None
        pending = set(tasks)
        try:
            while pending:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break
                for task in done:
                    got = task.result()
                    if got is None:
                        continue
                    manifest = got[0]
                    if held is not None and manifest.seq < held.seq:
                        self.avoid(site_key, tasks[task], BAD_FOR, f"served an old manifest (seq {manifest.seq} < {held.seq})")
                        continue
                    if best is None or manifest.seq > best[0].seq:
                        best = got
                    deadline = deadline or time.monotonic() + MANIFEST_GRACE
        finally:
            for task in pending:
                task.cancel()
        self._checked[site_key] = time.monotonic()
        if best is None or (held is not None and best[0].seq <= held.seq):
            return held
        manifest = self.cache.accept_manifest(site_key, best[1])
        self.counts["manifests"] += 1
        log.info("site manifest accepted", seq=manifest.seq, files=len(manifest.files))
        return manifest

    async def _ask_manifest(self, site_key: bytes, mirror: str) -> tuple[Manifest, bytes] | None:
        try:
            session = await self.pool.get(mirror)
            response = await session.request(encode_request(RequestType.MANIFEST))
        except GnetError as exc:
            self.avoid(site_key, mirror, REST_FOR, f"no manifest: {exc.detail}")
            return None
        if response.status is not Status.OK:
            self.avoid(site_key, mirror, REST_FOR, "has no copy yet")
            return None
        try:
            return decode_manifest(response.body, site_key), response.body
        except SiteError as exc:
            self.avoid(site_key, mirror, BAD_FOR, f"served a manifest that does not verify: {exc.detail}")
            return None

    # -- announcements -------------------------------------------------------------
    async def fetch_announcements(self, site_key: bytes, own: AbstractSet[str] = frozenset()) -> int:
        """The owner's latest announcements from a few mirrors, each verified; returns how many were new."""
        self._announcements_at[site_key] = time.monotonic()
        mirrors = self._usable(site_key, await self.find_mirrors(site_key), own)[:MANIFEST_ASKS]
        lists = await asyncio.gather(*(self._ask_announcements(site_key, m) for m in mirrors))
        return sum(self.announcements.add(message) for messages in lists for message in messages)

    async def _ask_announcements(self, site_key: bytes, mirror: str) -> list[BroadcastMessage]:
        try:
            session = await self.pool.get(mirror)
            response = await session.request(encode_request(RequestType.ANNOUNCEMENTS))
        except GnetError as exc:
            self.avoid(site_key, mirror, REST_FOR, f"no announcements: {exc.detail}")
            return []
        if response.status is not Status.OK:
            return []  # an older mirror that does not know the request: nothing to hold against it
        try:
            return decode_announcements(response.body, site_key)
        except ProtocolError as exc:
            self.avoid(site_key, mirror, BAD_FOR, f"served announcements that do not verify: {exc.detail}")
            return []

    # -- files -------------------------------------------------------------------
    async def ensure(self, site_key: bytes, request_path: str) -> None:
        """Before answering an HTTP request: the manifest and the files the request may need are cached
        (or cannot be had: then the cache says NO_COPY and the browser gets the error page)."""
        async with self._locks.setdefault(site_key, asyncio.Lock()):
            manifest = self.cache.manifest(site_key)
            if manifest is None:
                manifest = await self._refresh_quietly(site_key)
            elif site_key not in self.served and time.monotonic() - self._checked.get(site_key, 0.0) > MANIFEST_TTL:
                # a visitor looks for a newer version in the background; what it holds is served now
                self._checked[site_key] = time.monotonic()
                self.node.spawn(self._refresh_in_background(site_key), "site manifest refresh")
            if request_path == ANNOUNCEMENTS_PATH:
                if time.monotonic() - self._announcements_at.get(site_key, -ANNOUNCEMENTS_TTL) >= ANNOUNCEMENTS_TTL:
                    await self.fetch_announcements(site_key)
                return
            if manifest is None:
                return
            for path in candidates(request_path):
                entry = manifest.file(path)
                if entry is not None and self.cache.read_file(site_key, path) is None:
                    try:
                        await self.fetch_file(site_key, entry)
                    except GnetError as exc:
                        log.info("site file not fetched", reason=exc.detail)
                    return

    async def _refresh_quietly(self, site_key: bytes) -> Manifest | None:
        try:
            return await self.refresh_manifest(site_key)
        except (SiteError, QuotaError) as exc:
            log.info("site manifest refused", reason=exc.detail)
        except GnetError as exc:
            log.info("site manifest not fetched", reason=exc.detail)
        return None

    async def _refresh_in_background(self, site_key: bytes) -> None:
        async with self._locks.setdefault(site_key, asyncio.Lock()):
            await self._refresh_quietly(site_key)

    async def sync(self, site_key: bytes, own: AbstractSet[str]) -> Manifest | None:
        """A mirror's work: the newest manifest from the other mirrors, then every file it lists."""
        manifest = await self.refresh_manifest(site_key, own)
        if manifest is None:
            return None
        for path in self.cache.missing(site_key):
            entry = manifest.file(path)
            if entry is not None:
                await self.fetch_file(site_key, entry, own)
        await self.fetch_announcements(site_key, own)  # those a broadcast did not bring us
        return manifest

    async def fetch_file(self, site_key: bytes, entry: FileEntry, own: AbstractSet[str] = frozenset()) -> None:
        """Every chunk of `entry` from up to FETCH_MIRRORS mirrors in parallel, verified, into the cache."""
        mirrors = self._usable(site_key, await self.find_mirrors(site_key), own)[:FETCH_MIRRORS]
        if not mirrors:
            raise SiteError("no mirror of the site is reachable")
        core = FileFetch(entry, [])
        results: asyncio.Queue[tuple[str, int, bytes | None, str]] = asyncio.Queue()
        sessions: dict[str, MirrorSession] = {}
        opening: dict[asyncio.Future[MirrorSession], str] = {asyncio.ensure_future(self.pool.get(m)): m for m in mirrors}
        events: list[object] = list(core.expect_mirrors(True, time.monotonic()))

        async def one_chunk(session: MirrorSession, request: Request) -> None:
            try:
                response = await session.request(chunk_request(entry.sha256, request.index))
            except GnetError as exc:
                await results.put((request.mirror, request.index, None, exc.detail))
                return
            if response.status is not Status.OK:
                await results.put((request.mirror, request.index, None, "the mirror lacks the chunk"))
                return
            await results.put((request.mirror, request.index, response.body, ""))

        workers: set[asyncio.Task[None]] = set()
        try:
            async with asyncio.timeout(FETCH_TIMEOUT):
                while True:
                    for event in events:
                        if isinstance(event, Request):
                            worker = asyncio.ensure_future(one_chunk(sessions[event.mirror], event))
                            workers.add(worker)
                            worker.add_done_callback(workers.discard)
                        elif isinstance(event, MirrorBad):
                            pass  # judged below, where we know whether bytes or reachability failed
                        elif isinstance(event, FileDone):
                            self.cache.put_file(site_key, entry.path, event.data)
                            self.counts["files"] += 1
                            return
                        elif isinstance(event, FetchFailed):
                            raise SiteError(f"no verified copy of the file: {event.reason}")
                    events = await self._next_events(core, site_key, opening, sessions, results)
        except TimeoutError:
            raise SiteError("fetching the file timed out") from None
        finally:
            for opener in opening:
                opener.cancel()
            for worker in list(workers):
                worker.cancel()

    async def _next_events(
        self,
        core: FileFetch,
        site_key: bytes,
        opening: dict[asyncio.Future[MirrorSession], str],
        sessions: dict[str, MirrorSession],
        results: asyncio.Queue[tuple[str, int, bytes | None, str]],
    ) -> list[object]:
        """Wait for a session to open, a chunk to come back or a chunk to time out; feed the core."""
        timer = core.get_timer()
        getter = asyncio.ensure_future(results.get())
        waits: set[asyncio.Future[object]] = {getter, *opening}  # type: ignore[arg-type]
        timeout = None if timer is None else max(0.0, timer - time.monotonic())
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        now = time.monotonic()
        events: list[object] = []
        if getter not in done:
            getter.cancel()
        for future in done:
            if future is getter:
                continue
            mirror = opening.pop(future)  # type: ignore[arg-type]
            if future.exception() is not None:
                self.avoid(site_key, mirror, REST_FOR, "no session")
            else:
                sessions[mirror] = future.result()  # type: ignore[assignment]
                events += core.add_mirror(mirror, now)
        if getter in done:
            mirror, index, data, reason = getter.result()
            if data is not None:
                before = set(core.bad)
                events += core.on_data(mirror, index, data, now)
                if mirror in core.bad - before:
                    self.avoid(site_key, mirror, BAD_FOR, "served bytes that do not match the signed manifest")
            else:
                events += core.on_error(mirror, index, reason, now)
                self.avoid(site_key, mirror, REST_FOR, reason)
        if not done:
            events += core.handle_timer(now)
        if not opening:
            events += core.expect_mirrors(False, now)
        return events
