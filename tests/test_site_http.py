"""The site HTTP responder core: exact parsing, bounded heads, content types, error pages."""

from __future__ import annotations

import pytest

from globalnet.site.http import HttpRequest, RequestError, candidates, content_type, error_page, parse_request, response


def test_parse() -> None:
    assert parse_request(b"GET / HTTP/1.1\r\nHost: x.gnet\r\n") is None
    assert parse_request(b"GET /a/b%20c.html?q=1#f HTTP/1.1\r\nHost: x\r\n\r\n") == HttpRequest("GET", "a/b c.html")
    assert parse_request(b"HEAD http://x.gnet/img/a.png HTTP/1.1\r\n\r\n") == HttpRequest("HEAD", "img/a.png")
    assert parse_request(b"GET http://x.gnet HTTP/1.1\r\n\r\n") == HttpRequest("GET", "")


@pytest.mark.parametrize(
    ("head", "status"),
    [(b"POST / HTTP/1.1\r\n\r\n", 405), (b"GET / FTP/1\r\n\r\n", 400), (b"GET\r\n\r\n", 400), (b"GET x HTTP/1.1\r\n\r\n", 400), (b"G" * 20000, 413), (b"GET /%ff HTTP/1.1\r\n\r\n", 400)],
)
def test_bad_requests(head: bytes, status: int) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(head)
    assert info.value.status == status


def test_types_and_index() -> None:
    assert content_type("index.html") == "text/html; charset=utf-8"
    assert content_type("a/b.css") == "text/css"
    assert content_type("dir.v2/README") == "application/octet-stream"
    assert candidates("") == ["index.html"]
    assert candidates("docs/") == ["docs/index.html"]
    assert candidates("docs") == ["docs", "docs/index.html"]


def test_responses() -> None:
    assert response(200, b"hi", "text/plain") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n"
        b"Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
        b"Content-Security-Policy: default-src 'self' data: blob: 'unsafe-inline' 'unsafe-eval'; form-action 'self'; "
        b"frame-ancestors 'self'; base-uri 'self'\r\n"
        b"Cross-Origin-Resource-Policy: same-origin\r\nCross-Origin-Opener-Policy: same-origin\r\n\r\nhi"
    )
    assert response(200, b"hi", "text/plain", head_only=True).endswith(b"\r\n\r\n")
    page = error_page(502, "No verified copy", "<script>")
    assert page.startswith(b"HTTP/1.1 502 Bad Gateway") and b"&lt;script&gt;" in page


def test_answer_serves_only_what_lookup_verified() -> None:
    from globalnet.site.http import NO_COPY, answer

    files = {"index.html": b"<h1>home</h1>", "docs/index.html": b"docs", "a.css": b"p{}"}
    lookup = files.get
    assert answer(HttpRequest("GET", ""), lookup).endswith(b"\r\n\r\n<h1>home</h1>")
    assert b"Content-Type: text/css" in answer(HttpRequest("GET", "a.css"), lookup)
    assert answer(HttpRequest("GET", "docs"), lookup).endswith(b"docs")
    head = answer(HttpRequest("HEAD", "index.html"), lookup)
    assert head.endswith(b"\r\n\r\n") and b"Content-Length: 13" in head
    assert answer(HttpRequest("GET", "nope"), lookup).startswith(b"HTTP/1.1 404")
    gone = answer(HttpRequest("GET", "index.html"), lambda path: NO_COPY)
    assert gone.startswith(b"HTTP/1.1 502") and b"verif" in gone and b"<h1>home" not in gone


def _head(fetch_metadata: str) -> bytes:
    return b"GET /img/a.png HTTP/1.1\r\nHost: x.gnet\r\n" + fetch_metadata.encode() + b"\r\n"


@pytest.mark.parametrize(
    ("metadata", "foreign"),
    [
        ("", False),  # curl, or a browser without Fetch Metadata
        ("Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: image\r\n", False),
        ("Sec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n", False),  # typed in
        ("Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n", False),  # a link
        ("Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: image\r\n", True),
        ("sec-fetch-site: Same-Site\r\nsec-fetch-mode: cors\r\nsec-fetch-dest: empty\r\n", True),  # two tunnels on 127.0.0.1
        ("Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: iframe\r\n", True),
    ],
)
def test_another_origins_page_cannot_load_or_probe_a_site(metadata: str, foreign: bool) -> None:
    from globalnet.site.http import answer

    request = parse_request(_head(metadata))
    assert request is not None and request.foreign is foreign
    looked_up: list[str] = []
    reply = answer(request, lambda path: looked_up.append(path) or b"png")
    if foreign:
        assert reply.startswith(b"HTTP/1.1 403") and looked_up == [] and b"png" not in reply.split(b"\r\n\r\n", 1)[1]
    else:
        assert reply.startswith(b"HTTP/1.1 200") and looked_up == ["img/a.png"]


async def test_a_foreign_request_makes_the_node_fetch_nothing() -> None:
    import asyncio

    from globalnet.site.serve import serve_http

    prepared: list[str] = []

    async def prepare(path: str) -> None:
        prepared.append(path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_http(reader, writer, lambda path: b"png", prepare=prepare)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        replies = []
        for metadata in ("Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: image\r\n", ""):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_head(metadata))
            async with asyncio.timeout(30):
                replies.append(await reader.read())
            writer.close()
    finally:
        server.close()
    assert replies[0].startswith(b"HTTP/1.1 403") and replies[1].startswith(b"HTTP/1.1 200")
    assert prepared == ["img/a.png"]  # only the same-origin request made the node look for the file


async def test_a_tunnel_port_answers_only_its_site_address_or_loopback_names() -> None:
    """DNS rebinding: a clear-web page whose name now resolves to 127.0.0.1 must not read a `-tunnel` port
    (its owner sees the browser's IP and would learn that this machine reads this site)."""
    import asyncio

    from globalnet.site.http import host_allowed
    from globalnet.site.serve import serve_http

    site = "abc.gnet"
    for host in ("abc.gnet", "ABC.gnet.", "127.0.0.1", "localhost", "::1", "192.168.1.20", None):
        assert host_allowed(host, site)
    for host in ("evil.example", "abc.gnet.evil.example", "127.0.0.1.nip.io", "other.gnet"):
        assert not host_allowed(host, site)

    prepared: list[str] = []

    async def prepare(path: str) -> None:
        prepared.append(path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_http(reader, writer, lambda path: b"secret page", prepare=prepare, address=site)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    replies = []
    try:
        for host in (f"rebound.example:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "abc.gnet"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET /index.html HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            async with asyncio.timeout(30):
                replies.append(await reader.read())
            writer.close()
    finally:
        server.close()
    assert replies[0].startswith(b"HTTP/1.1 421") and b"secret page" not in replies[0]
    assert all(reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"secret page") for reply in replies[1:])
    assert prepared == ["index.html"] * 3  # the rebound request made the node look for nothing
