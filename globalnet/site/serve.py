"""The asyncio shell of the site HTTP responder: read one bounded request, write the answer.

The SOCKS proxy (for `http://SITE.gnet/`) and `-tunnel PORT>SITE` hand it the
browser's stream and a lookup into verified content; it only moves bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import structlog

from ..errors import GnetError
from .announcements import ANNOUNCEMENTS_PATH, render
from .http import MAX_REQUEST, Lookup, RequestError, answer, error_page, parse_request

if TYPE_CHECKING:
    from .cache import SiteCache
    from .remote import SiteBrowser

READ_TIMEOUT = 30.0


log = structlog.get_logger("globalnet.site")

#: awaited with the request's path before it is answered: fetch (and verify) what it needs into the cache
Prepare = Callable[[str], Awaitable[None]]
PREPARE_TIMEOUT = 300.0


class SiteFront(Protocol):
    """What the SOCKS proxy and `-tunnel PORT>SITE` use of a node's sites (node.sites):
    the verified cache, and the browser that fills it from mirrors (None: the cache only)."""

    @property
    def cache(self) -> SiteCache: ...
    @property
    def browser(self) -> SiteBrowser | None: ...


async def serve_site(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, front: SiteFront, site_key: bytes, initial: bytes = b""
) -> None:
    """Answer one browser request for site `site_key` from verified content only."""
    lookup = site_lookup(front.browser, front.cache.lookup(site_key), site_key)
    await serve_http(reader, writer, lookup, initial=initial, prepare=site_prepare(front.browser, site_key))


def site_prepare(browser: SiteBrowser | None, site_key: bytes) -> Prepare | None:
    """What fetches a site's files from its mirrors before the cache answers (None: the local cache only)."""
    if browser is None:
        return None

    async def prepare(path: str) -> None:
        await browser.ensure(site_key, path)

    return prepare


def site_lookup(browser: SiteBrowser | None, lookup: Lookup, site_key: bytes) -> Lookup:
    """`lookup` (the verified cache) plus the reserved ANNOUNCEMENTS_PATH: the owner's verified
    announcements the node holds (no manifest can list that path: manifest.check_path)."""
    if browser is None:
        return lookup
    announcements = browser.announcements

    def find(path: str) -> bytes | None | object:
        if path == ANNOUNCEMENTS_PATH:
            return render(announcements.latest(site_key))
        return lookup(path)

    return find  # type: ignore[return-value]


async def serve_http(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    lookup: Lookup,
    timeout: float = READ_TIMEOUT,
    initial: bytes = b"",
    prepare: Prepare | None = None,
) -> None:
    head = initial
    request = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    request = parse_request(head)
                except RequestError as exc:
                    writer.write(error_page(exc.status, "Bad request", str(exc)))
                    break
                if request is not None:
                    break
                data = await reader.read(MAX_REQUEST)
                if not data:
                    break
                head += data
        if request is not None:
            if prepare is not None:
                try:
                    async with asyncio.timeout(PREPARE_TIMEOUT):
                        await prepare(request.path)
                except (TimeoutError, GnetError) as exc:
                    # whatever is not cached by now is answered as "no verified copy"
                    log.info("site not fetched", reason=str(exc) or "timed out")
            writer.write(answer(request, lookup))
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 5)
        except (TimeoutError, ConnectionError):
            pass
