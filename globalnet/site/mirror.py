"""One site mirrored by this node (asyncio shell): a hidden service of its own, a DHT record, broadcasts.

Why each site gets its own service identity (`<data-dir>/sites/.mirrors/<site id>/`,
key 0600): the mirror is reached only through rendezvous, never by IP, and two
sites one node mirrors have unrelated addresses, access points and records,
so nobody can tell they share a node. The publisher runs the same code for
its own site (it is just the first mirror), with the site key to sign
broadcasts. The schedule is mirror_core.MirrorCore; this class runs its actions:

- publish the mirror record (mirror_record.py: only the per-site service
  address, sealed to the site address, under the site's blinded key) in a
  slot no other mirror holds this period;
- sync: the newest manifest and every missing file from the other mirrors
  (remote.SiteBrowser: every byte verified);
- broadcast: updates flood among the site's mirrors over service sessions
  (broadcast.SiteBroadcast decides what is new, what to forward, what to refuse).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import nacl.signing
import structlog

from ..errors import GnetError
from ..service.host import HostedService
from ..service.node_api import ServiceHostNode
from ..service.settings import ServiceConfig
from .announcements import announcement_body
from .broadcast import BroadcastKind, BroadcastMessage, Deliver, Refused, Send, SiteBroadcast, make_message, update_body
from .cache import QuotaError, SiteCache, site_id
from .manifest import SiteError
from .mirror_core import PERIOD, RECORD_GRAIN, RECORD_LIFETIME, Announce, MirrorCore, PublishRecord, Sync, VerifyRecord
from .mirror_record import MAX_LISTED, build_mirror_record, build_owner_list, record_slot
from .protocol import RequestType, Status, encode_request
from .remote import SiteBrowser
from .responder import SiteResponder
from .sessions import SiteNode
from .store import KEY_FILE, site_dir

log = structlog.get_logger("globalnet.site")

MAX_VARIANTS = 64


class MirrorNode(SiteNode, ServiceHostNode, Protocol):
    """The node as a mirror needs it: service hosting, sessions, the DHT."""


class SiteMirror:
    def __init__(
        self, node: MirrorNode, cache: SiteCache, browser: SiteBrowser, site_key: bytes, site_seed: bytes | None = None
    ) -> None:
        self.node = node
        self.cache = cache
        self.browser = browser
        self.site_key = site_key
        self.site_seed = site_seed  # the publisher's: it signs update broadcasts
        browser.served.add(site_key)
        self.home = Path(node.config.data_dir) / "sites" / ".mirrors" / site_id(site_key)
        self.label = "site-" + site_id(site_key)[:12]
        held = cache.manifest(site_key)
        self.core = MirrorCore(time.time(), held.seq if held else 0)
        self.broadcast = SiteBroadcast(site_key, held.seq if held else 0)
        self.responder = SiteResponder(cache, site_key, self._on_broadcast, browser.announcements)
        self.service: HostedService | None = None
        self.address = ""
        self._variant: dict[int, int] = {}  # period -> record key variant
        self._wake = asyncio.Event()
        self._announcing: tuple[int, bytes, set[str]] | None = None  # seq, message, peers not reached yet
        self._reached: set[str] = set()
        self._listed: dict[bytes, float] = {}  # the publisher's: mirror service key -> last seen in a record
        self.counts = {"records": 0, "syncs": 0, "broadcasts_in": 0, "broadcasts_sent": 0, "refused": 0, "over_quota": 0}

    def announce(self, seq: int) -> None:
        """The publisher signed `seq`: tell the other mirrors (once the record is out)."""
        self._reached = set()
        self.core.announce(seq)
        self._wake.set()

    @property
    def intros(self) -> set[bytes]:
        return set(self.service.intros) if self.service is not None else set()

    async def run(self) -> None:
        port = await self.responder.start()
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = ServiceConfig(self.label, ("127.0.0.1", port))
        self.service = HostedService(self.node, config, home=self.home)
        self.address = self.service.address
        self.node.spawn(self.service.run(), f"site mirror service {self.label}")
        log.info("site mirror", site=self.label, seq=self.core.held_seq, publisher=self.site_seed is not None)
        try:
            while True:
                for action in self.core.handle_timer(time.time()):
                    self.node.spawn(self._run_action(action), f"site mirror {type(action).__name__}")
                timer = self.core.get_timer()
                self._wake.clear()
                try:
                    async with asyncio.timeout(None if timer is None else max(0.05, timer - time.time())):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            self.responder.close()

    async def _run_action(self, action: object) -> None:
        try:
            if isinstance(action, PublishRecord):
                await self._publish_record(action)
            elif isinstance(action, VerifyRecord):
                await self._verify_record(action.period)
            elif isinstance(action, Sync):
                await self._sync()
            elif isinstance(action, Announce):
                await self._announce(action.seq)
        finally:
            self._wake.set()

    # -- the record ----------------------------------------------------------------
    async def _publish_record(self, action: PublishRecord) -> None:
        service = self.service
        has_copy = self.cache.manifest(self.site_key) is not None and not self.cache.missing(self.site_key)
        if service is None or service.published is None or not has_copy:
            # the service's descriptor and a whole verified copy first: a record must lead to the site
            self.core.record_not_ready(time.time())
            return
        seed = bytes(service.key.signing_key)
        try:
            for period in action.periods:
                variant = await self._free_variant(period, seed)
                record = build_mirror_record(self.site_key, period, seed, service.public, action.seq, action.expires, variant)
                await self.node.dht_publish(record.dht_key, record.value)
        except (GnetError, TimeoutError) as exc:
            log.debug("mirror record not published", site=self.label, reason=str(exc))
            self.core.record_failed(time.time())
            return
        self.counts["records"] += 1
        log.info("site mirror record published", site=self.label, periods=len(action.periods))
        await self._publish_owner_list(action.periods)
        self.core.record_published(time.time(), action.periods[0], action.expires)

    async def _free_variant(self, period: int, seed: bytes) -> int:
        """A record key whose slot no other mirror holds this period (one slot keeps one value)."""
        if period in self._variant:
            return self._variant[period]
        taken = await self.browser.lookup_records(self.site_key, period)
        own = self.service.public if self.service else b""
        for variant in range(MAX_VARIANTS):
            slot = record_slot(self.site_key, seed, period, variant)
            if taken.get(slot, own) == own:
                self._variant[period] = variant
                return variant
        return 0

    async def _verify_record(self, period: int) -> None:
        """Read our slot back: two mirrors that started together may have picked the same one."""
        service = self.service
        if service is None:
            return
        taken = await self.browser.lookup_records(self.site_key, period)
        slot = record_slot(self.site_key, bytes(service.key.signing_key), period, self._variant.get(period, 0))
        if taken.get(slot, service.public) != service.public:
            log.debug("mirror record slot taken by another mirror, moving", site=self.label)
            self._variant.pop(period, None)
            self.core.slot_lost(time.time())
        else:
            self.core.slot_kept()

    async def _publish_owner_list(self, periods: Sequence[int]) -> None:
        """The publisher's signed list of the mirrors it has seen (itself first), under the site's
        blinded key: only the site key can write there (mirror_record.py, owner list)."""
        service = self.service
        if self.site_seed is None or service is None:
            return
        now = time.time()
        try:
            for period in periods:
                for key in (await self.browser.lookup_records(self.site_key, period)).values():
                    self._listed[key] = now
            for key in [k for k, seen in self._listed.items() if now - seen > PERIOD]:
                del self._listed[key]
            others = sorted((k for k in self._listed if k != service.public), key=lambda k: -self._listed[k])
            coarse = int(now) // RECORD_GRAIN * RECORD_GRAIN
            for period in periods:
                listed = build_owner_list(self.site_seed, period, [service.public, *others][:MAX_LISTED], coarse * 1000, coarse + RECORD_LIFETIME)
                await self.node.dht_publish(listed.dht_key, listed.value)
        except (GnetError, TimeoutError) as exc:
            log.debug("owner list not published", site=self.label, reason=str(exc))

    # -- syncing ---------------------------------------------------------------------
    async def _sync(self) -> None:
        complete = True
        if self.site_seed is None:  # the publisher's copy is the source: nothing to fetch
            over_quota = False
            try:
                await self.browser.sync(self.site_key, {self.address})
            except QuotaError as exc:
                over_quota = True  # not retried soon: only the operator can change that
                self.counts["over_quota"] += 1
                log.warning("site mirror over its disk quota: raise -site-quota", site=self.label, reason=exc.detail)
            except (GnetError, TimeoutError) as exc:
                log.debug("site sync incomplete", site=self.label, reason=str(exc))
            have = not self.cache.missing(self.site_key) and self.cache.manifest(self.site_key) is not None
            complete = have or over_quota
        else:  # the publisher's announcements live in memory: after a restart, the mirrors still hold them
            try:
                await self.browser.fetch_announcements(self.site_key, {self.address})
            except GnetError as exc:
                log.debug("site announcements not fetched", site=self.label, reason=exc.detail)
            if self.core.record_expires:  # the mirrors it saw since: listed where no squatter can hide them
                await self._publish_owner_list((int(time.time() // PERIOD),))
        held = self.cache.manifest(self.site_key)
        seq = held.seq if held else 0
        if seq > self.core.held_seq:
            log.info("site mirror updated", site=self.label, seq=seq)
        log.debug("site mirror synced", site=self.label, seq=seq, complete=complete)
        self.broadcast.highest_seq = max(self.broadcast.highest_seq, seq)
        try:
            await self._peers()  # kept fresh so a broadcast is forwarded at once
        except GnetError:
            pass
        self.counts["syncs"] += 1
        self.core.sync_done(time.time(), seq, complete)

    # -- broadcast ---------------------------------------------------------------------
    async def _peers(self) -> list[str]:
        mirrors = await self.browser.find_mirrors(self.site_key, fresh=True)
        peers = [m for m in mirrors if m != self.address]
        self.broadcast.set_peers(peers)
        return peers

    async def _announce(self, seq: int) -> None:
        """Send our signed update to every peer mirror; a retry goes to those not reached yet."""
        if self.site_seed is None:
            return
        peers = await self._peers()
        manifest = self.cache.manifest_bytes(self.site_key)
        if manifest is None:
            return
        if self._announcing is None or self._announcing[0] != seq:
            message = make_message(self.site_seed, BroadcastKind.UPDATE, update_body(seq, manifest), int(time.time()), os.urandom(16))
            self.broadcast.highest_seq = min(self.broadcast.highest_seq, seq - 1)
            self.broadcast.originate(message, time.time())  # remembered: it comes back from the others as a duplicate
            self._announcing = (seq, message.encode(), set(peers))
        _, data, unreached = self._announcing
        unreached |= {p for p in peers if p not in self._reached}
        targets = sorted(unreached)
        results = await asyncio.gather(*(self._send(Send(peer, data)) for peer in targets))
        for peer, ok in zip(targets, results, strict=True):
            if ok:
                unreached.discard(peer)
                self._reached.add(peer)
        log.info("site update announced", site=self.label, seq=seq, mirrors_reached=len(self._reached), mirrors=len(peers))
        self.core.announced(time.time(), everyone=bool(peers) and not unreached)

    def announce_text(self, text: str) -> None:
        """The publisher's signed announcement for visitors: kept here at once, flooded to the mirrors.
        ValueError if `text` cannot be one (announcements.announcement_body); SiteError if we lack the key."""
        if self.site_seed is None:
            raise SiteError("only the site's publisher (who holds its key) can announce")
        message = make_message(self.site_seed, BroadcastKind.ANNOUNCE, announcement_body(text), int(time.time()), os.urandom(16))
        self.browser.announcements.add(message)
        self.node.spawn(self._flood_announcement(message), "site announcement")

    async def _flood_announcement(self, message: BroadcastMessage) -> None:
        try:
            await self._peers()  # fresh: a mirror that appeared since the last sync hears it too
        except GnetError as exc:
            log.debug("site mirrors not looked up", site=self.label, reason=exc.detail)
        sent = await self._send_all(self.broadcast.originate(message, time.time()))
        log.info("site announcement sent", site=self.label, mirrors_reached=sent)

    def _on_broadcast(self, data: bytes, label: str) -> str | None:
        """A broadcast from a session (responder.py): None if taken, else why it was refused."""
        events = self.broadcast.receive(data, label, time.time())
        reason = None
        sends: list[Send] = []
        for event in events:
            if isinstance(event, Deliver):
                self.counts["broadcasts_in"] += 1
                if event.message.kind is BroadcastKind.UPDATE:
                    seq, _ = event.message.update
                    log.info("site update heard", site=self.label, seq=seq)
                    if self.core.update_heard(seq, time.time()):
                        self._wake.set()
                elif self.browser.announcements.add(event.message):
                    log.info("site announcement heard", site=self.label)
                    log.debug("site announcement", site=self.label, text=event.message.body.decode()[:200])
            elif isinstance(event, Send):
                sends.append(event)
            elif isinstance(event, Refused):
                self.counts["refused"] += 1
                reason = event.reason
                log.debug("site broadcast refused", site=self.label, reason=event.reason)  # duplicates are normal flooding
        if sends:
            self.node.spawn(self._forward(sends), "site broadcast forward")
        return reason

    async def _forward(self, sends: list[Send]) -> None:
        await self._send_all(sends)

    async def _send_all(self, events: Sequence[object]) -> int:
        sends = [e for e in events if isinstance(e, Send)]
        results = await asyncio.gather(*(self._send(s) for s in sends))
        return sum(results)

    async def _send(self, send: Send) -> bool:
        try:
            session = await self.browser.pool.get(send.peer)
            response = await session.request(encode_request(RequestType.BROADCAST, send.data))
        except GnetError as exc:
            log.debug("broadcast not delivered", site=self.label, reason=exc.detail)
            return False
        self.counts["broadcasts_sent"] += 1
        if response.status is not Status.OK:
            log.debug("broadcast refused by a peer", site=self.label, reason=response.body.decode(errors="replace")[:200])
        return True

    def statistics(self) -> dict[str, object]:
        latest = self.browser.announcements.latest(self.site_key)
        announcement = latest[0].body.decode() if latest else ""
        return {"site": self.label, "seq": self.core.held_seq, "address": self.address, "announcement": announcement, **self.counts}


def site_seed_of(key_file: Path) -> bytes:
    """The publisher's site seed (sites/NAME/site.key), to sign broadcasts."""
    seed = key_file.read_bytes()
    if len(seed) != 32:
        raise SiteError(f"{key_file} is not a site key")
    nacl.signing.SigningKey(seed)
    return seed


def published_mirror(mirrors: Iterable[SiteMirror], data_dir: Path, name: str) -> SiteMirror:
    """The running SiteMirror of site `name` whose key this node holds (sites/NAME/); SiteError if none."""
    try:
        seed = site_seed_of(site_dir(data_dir, name) / KEY_FILE)
    except OSError:
        raise SiteError(f"this node has no site named {name!r} (publish it first)") from None
    mirror = next((m for m in mirrors if m.site_seed == seed), None)
    if mirror is None:
        raise SiteError(f"site {name!r} is not being served by this node (publish it first)")
    return mirror
