"""The signed sites a node serves and visits: its verified cache, its sessions to mirrors,
the browser that fetches and verifies, and one SiteMirror per site it publishes or mirrors.

Why here and not in site/: this is wiring (which node, which data dir, which quota); the
protocol and its rules live in site/.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from ..site.cache import SiteCache
from ..site.manifest import SiteError
from ..site.mirror import MirrorNode, SiteMirror, published_mirror, site_seed_of
from ..site.remote import SiteBrowser
from ..site.sessions import SessionPool
from ..site.store import KEY_FILE, sign_folder, site_dir

log = structlog.get_logger("globalnet.node")


class NodeSites:
    def __init__(self, node: MirrorNode, data_dir: Path, quota_bytes: int) -> None:
        self.node = node
        self.data_dir = data_dir
        # verified copies of signed sites (the SOCKS proxy answers http://SITE.gnet/ from it)
        self.cache = SiteCache(data_dir / "site-cache", quota_bytes)
        self.pool = SessionPool(node)  # service sessions to sites' mirrors
        self.browser = SiteBrowser(node, self.cache, self.pool)
        self.mirrors: dict[bytes, SiteMirror] = {}  # the sites this node serves (published or mirrored)

    def publish(self, name: str, folder: Path) -> tuple[int, bool]:
        """Sign `folder` as site `name`, seed the cache from it and serve it (the publisher is the
        first mirror); its seq is announced to the site's other mirrors by broadcast.
        Returns (seq, whether the files changed); GnetError (SiteError) says why not."""
        try:
            signed = sign_folder(self.data_dir, name, folder)
            self.cache.seed_from_folder(signed.manifest.site_key, signed.manifest.encode(), folder)
            seed = site_seed_of(site_dir(self.data_dir, name) / KEY_FILE)
        except SiteError:
            raise
        except OSError as exc:
            raise SiteError(str(exc)) from None
        m = signed.manifest
        log.info("site published", name=name, seq=m.seq, files=len(m.files), bytes=m.total_size)
        log.debug("site address", name=name, address=signed.address)
        mirror = self.mirrors.get(m.site_key)
        if mirror is None:
            mirror = self.mirrors[m.site_key] = SiteMirror(self.node, self.cache, self.browser, m.site_key, seed)
            self.node.spawn(mirror.run(), f"site {name}")
        mirror.announce(m.seq)  # every start: a mirror that missed it catches up, one above it refuses it
        return m.seq, signed.changed

    def announce(self, name: str, text: str) -> None:
        """A signed announcement for the visitors of site `name`, which this node publishes (console
        `announce`). SiteError if it does not; ValueError if the text cannot be one."""
        published_mirror(self.mirrors.values(), self.data_dir, name).announce_text(text)

    def mirror(self, site_key: bytes) -> SiteMirror:
        """Mirror the site `site_key` (-mirror, console `mirror`): fetch, verify, serve as a hidden service."""
        mirror = self.mirrors.get(site_key)
        if mirror is None:
            mirror = self.mirrors[site_key] = SiteMirror(self.node, self.cache, self.browser, site_key)
            self.node.spawn(mirror.run(), "site mirror")
        return mirror
