"""The signed sites a node serves and visits: its verified cache, its sessions to mirrors,
the browser that fetches and verifies, and one SiteMirror per site it publishes or mirrors.

Why here and not in site/: this is wiring (which node, which data dir, which quota); the
protocol and its rules live in site/.

Why lazily: most relays never publish, mirror or visit a site, and site/ with what it
imports (html, mimetypes, the mirror and broadcast machinery) is about 1 MiB of every
node process. The cache, the sessions and the browser are made on first use (a
-publish/-mirror at start, a SOCKS or tunnel visit to a .gnet site, the console);
`make memory` and tests/test_idle_imports.py check that an idle relay never loads site/.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from ..site.cache import SiteCache
    from ..site.mirror import MirrorNode, SiteMirror
    from ..site.remote import SiteBrowser
    from ..site.sessions import SessionPool

log = structlog.get_logger("globalnet.node")


class NodeSites:
    def __init__(self, node: MirrorNode, data_dir: Path, quota_bytes: int) -> None:
        self.node = node
        self.data_dir = data_dir
        self.quota_bytes = quota_bytes
        self._cache: SiteCache | None = None
        self._pool: SessionPool | None = None
        self._browser: SiteBrowser | None = None
        self.mirrors: dict[bytes, SiteMirror] = {}  # the sites this node serves (published or mirrored)

    @property
    def cache(self) -> SiteCache:
        """Verified copies of signed sites (the SOCKS proxy answers http://SITE.gnet/ from it)."""
        if self._cache is None:
            from ..site.cache import SiteCache

            self._cache = SiteCache(self.data_dir / "site-cache", self.quota_bytes)
        return self._cache

    @property
    def pool(self) -> SessionPool:
        """Service sessions to sites' mirrors."""
        if self._pool is None:
            from ..site.sessions import SessionPool

            self._pool = SessionPool(self.node)
        return self._pool

    @property
    def browser(self) -> SiteBrowser:
        if self._browser is None:
            from ..site.remote import SiteBrowser

            self._browser = SiteBrowser(self.node, self.cache, self.pool)
        return self._browser

    def close(self) -> None:
        """Close the sessions to mirrors, if any was ever opened."""
        if self._pool is not None:
            self._pool.close()

    def publish(self, name: str, folder: Path) -> tuple[int, bool]:
        """Sign `folder` as site `name`, seed the cache from it and serve it (the publisher is the
        first mirror); its seq is announced to the site's other mirrors by broadcast.
        Returns (seq, whether the files changed); GnetError (SiteError) says why not."""
        from ..site.manifest import SiteError
        from ..site.mirror import SiteMirror, site_seed_of
        from ..site.store import KEY_FILE, sign_folder, site_dir

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
        from ..site.mirror import published_mirror

        published_mirror(self.mirrors.values(), self.data_dir, name).announce_text(text)

    def mirror(self, site_key: bytes) -> SiteMirror:
        """Mirror the site `site_key` (-mirror, console `mirror`): fetch, verify, serve as a hidden service."""
        from ..site.mirror import SiteMirror

        mirror = self.mirrors.get(site_key)
        if mirror is None:
            mirror = self.mirrors[site_key] = SiteMirror(self.node, self.cache, self.browser, site_key)
            self.node.spawn(mirror.run(), "site mirror")
        return mirror
