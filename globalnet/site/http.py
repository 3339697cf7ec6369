"""A tiny HTTP/1.1 responder (sans-IO) for browsing a site from verified content.

Why: `http://ADDRESS.gnet/path` through the SOCKS proxy is answered by the
client's own node, from bytes it verified against the signed manifest. The
browser only ever gets: a verified file (GET/HEAD, with its content type),
`index.html` for a folder, 404 for a path the manifest does not list, 405 for
other methods, 400 for a malformed request, or 502 with a clear page when no
verified copy is reachable. Requests are bounded (MAX_REQUEST); one request
per connection (Connection: close) keeps the state machine trivial.

A signed site is self-contained: every byte a page loads is verified against
that site's manifest. So each response carries a Content-Security-Policy
keeping the page's loads to its own origin (a page cannot pull unverified
bytes from an exit, beacon out, probe the console on 127.0.0.1 with fetch, or
embed another site), and a request another origin's page makes for a
subresource (Fetch Metadata: Sec-Fetch-Site not same-origin, and not a
top-level navigation) gets 403 before the node looks anything up: otherwise
any page (another site's, or a clear-web page through an exit) could time
such loads to learn which sites this node has cached, or make it fetch sites.
Links between sites (navigations) work as usual. Browsers send Fetch Metadata
only to secure contexts: `-tunnel` ports on 127.0.0.1 get it, while Chromium
sends none for http://SITE.gnet through SOCKS; there, the CSP on every site's
pages is what stops one site probing another (a clear-web page is not ours to
restrict).
"""

from __future__ import annotations

import html
import ipaddress
import mimetypes
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

MAX_REQUEST = 16 * 1024

_TYPES = {".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8", ".css": "text/css", ".js": "text/javascript", ".json": "application/json", ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".wasm": "application/wasm"}
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 421: "Misdirected Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Request Too Large", 502: "Bad Gateway"}


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str  # site path, '' for the root, without query or fragment, percent-decoded
    foreign: bool = False  # another origin's page loads it as a subresource (Fetch Metadata): refused
    host: str | None = field(default=None, compare=False)  # the Host header without its port, lowercase


class RequestError(ValueError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def parse_request(head: bytes) -> HttpRequest | None:
    """The request in `head` (bytes read so far), None if the head is not complete yet; RequestError if bad."""
    end = head.find(b"\r\n\r\n")
    if end < 0:
        if len(head) > MAX_REQUEST:
            raise RequestError(413, "request head too large")
        return None
    if end > MAX_REQUEST:
        raise RequestError(413, "request head too large")
    line = head[: head.find(b"\r\n")].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise RequestError(400, "malformed request line")
    method, target = parts[0], parts[1]
    if method not in ("GET", "HEAD"):
        raise RequestError(405, "only GET and HEAD")
    if target.startswith(("http://", "https://")):
        target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
    if not target.startswith("/"):
        raise RequestError(400, "malformed request target")
    try:
        path = urllib.parse.unquote(target.split("?", 1)[0].split("#", 1)[0], errors="strict")
    except UnicodeDecodeError:
        raise RequestError(400, "the path is not UTF-8") from None
    fields: dict[str, str] = {}
    for header in head[:end].split(b"\r\n")[1:]:
        name, _, value = header.partition(b":")
        fields[name.strip().lower().decode("latin-1")] = value.strip().lower().decode("latin-1")
    return HttpRequest(method, path.lstrip("/"), _foreign(fields), _host(fields.get("host")))


def _host(value: str | None) -> str | None:
    if value is None:
        return None
    if value.startswith("["):  # [::1]:8088
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(host: str | None, site_address: str) -> bool:
    """May a request naming `host` be answered with this site? Its own address (SOCKS), an IP
    literal or `localhost` (`-tunnel PORT>SITE`, on 127.0.0.1 or the address it was told to
    listen on), or no Host at all (HTTP/1.0). Any other name is DNS rebinding: a clear-web
    page whose name now resolves to 127.0.0.1 reading the tunnel, which tells that page's
    owner, who sees the browser's IP, that this machine reads this site."""
    if host is None:
        return True
    name = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name in (site_address.lower(), "localhost")
    return True


MISDIRECTED = "This port serves one signed site, under its own address or 127.0.0.1 only."


def _foreign(fields: dict[str, str]) -> bool:
    """Is this another origin's page loading us as a subresource (or in a frame)? Browsers say so
    in Fetch Metadata headers; a client that sends none (curl, an old browser) is not refused."""
    site = fields.get("sec-fetch-site")
    if site is None or site in ("same-origin", "none"):
        return False
    return not (fields.get("sec-fetch-mode") == "navigate" and fields.get("sec-fetch-dest", "document") == "document")


def content_type(path: str) -> str:
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _TYPES.get(suffix) or mimetypes.types_map.get(suffix) or "application/octet-stream"


def candidates(path: str) -> list[str]:
    """Site paths to look up for a request path, in order (a folder serves its index.html)."""
    if path == "" or path.endswith("/"):
        return [path + "index.html"]
    return [path, path + "/index.html"]


#: a page loads only its own site's (verified) bytes; inline code is allowed (it is signed too)
CONTENT_SECURITY_POLICY = (
    "default-src 'self' data: blob: 'unsafe-inline' 'unsafe-eval'; form-action 'self'; frame-ancestors 'self'; base-uri 'self'"
)
FOREIGN = "Another site's page (or a clear-web page) cannot load this signed site's files; open the site itself."


def response(status: int, body: bytes, ctype: str, head_only: bool = False) -> bytes:
    return response_head(status, len(body), ctype) + (b"" if head_only else body)


def response_head(status: int, length: int, ctype: str) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {ctype}",
        f"Content-Length: {length}",
        "Connection: close",
        "Cache-Control: no-cache",
        "X-Content-Type-Options: nosniff",
        "Referrer-Policy: no-referrer",
        f"Content-Security-Policy: {CONTENT_SECURITY_POLICY}",
        "Cross-Origin-Resource-Policy: same-origin",
        "Cross-Origin-Opener-Policy: same-origin",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def error_page(status: int, title: str, detail: str, head_only: bool = False) -> bytes:
    body = f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1><p>{html.escape(detail)}</p>\n".encode()
    return response(status, body, "text/html; charset=utf-8", head_only)


NO_VERIFIED_COPY = "No mirror of this site served a copy that verifies against its signed manifest. Nothing unverified is shown. Try again later."


@dataclass(frozen=True)
class FileBody:
    """A large verified file, never held in memory whole: its size, and `chunks()` reading it piece
    by piece, each piece checked against the signed manifest as it is read (a GnetError mid-way
    means the copy on disk went bad: the shell cuts the connection, the browser sees a truncated
    response and never a wrong byte)."""

    size: int
    chunks: Callable[[], Iterator[bytes]]


def answer_parts(request: HttpRequest, lookup: Lookup) -> tuple[bytes, FileBody | None]:
    """The response to `request`: bytes to send, then a FileBody to stream after them (or None).

    `lookup` returns the verified file (bytes, or a FileBody when large), None
    when the manifest lists no such path, or NO_COPY when the site has no
    verified copy reachable."""
    head_only = request.method == "HEAD"
    if request.foreign:
        return error_page(403, "Not from another site", FOREIGN, head_only), None
    for path in candidates(request.path):
        found = lookup(path)
        if found is NO_COPY:
            return error_page(502, "No verified copy of this site", NO_VERIFIED_COPY, head_only), None
        if isinstance(found, bytes):
            return response(200, found, content_type(path), head_only), None
        if isinstance(found, FileBody):
            return response_head(200, found.size, content_type(path)), None if head_only else found
    return error_page(404, "Not found", "This site's signed manifest lists no such file.", head_only), None


def answer(request: HttpRequest, lookup: Lookup) -> bytes:
    """The whole response to `request` in one piece (small answers, tests); serve.py streams instead."""
    head, body = answer_parts(request, lookup)
    return head + b"".join(body.chunks()) if body is not None else head


class _NoCopy:
    """Marker: no verified copy of the site is reachable (not the same as a missing path)."""


NO_COPY = _NoCopy()
Lookup = Callable[[str], "bytes | FileBody | None | _NoCopy"]
