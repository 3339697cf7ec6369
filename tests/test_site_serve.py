"""The site HTTP shell on a real 127.0.0.1 socket, with curl when it is installed."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import pytest

from globalnet.site.serve import serve_http

FILES = {"index.html": b"<h1>site</h1>", "big.bin": os.urandom(3 * 1024 * 1024 + 7)}


async def _server():
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_http(reader, writer, FILES.get, timeout=5)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _get(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = await asyncio.wait_for(reader.read(-1), 30)
    writer.close()
    return data


def test_get_head_404_bad_and_split_heads() -> None:
    async def main() -> None:
        server, port = await _server()
        async with server:
            got = await _get(port, b"GET /big.bin HTTP/1.1\r\nHost: x.gnet\r\n\r\n")
            assert got.split(b"\r\n\r\n", 1)[1] == FILES["big.bin"]
            assert (await _get(port, b"HEAD / HTTP/1.1\r\n\r\n")).endswith(b"\r\n\r\n")
            assert (await _get(port, b"GET /none HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
            assert (await _get(port, b"DELETE / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
            # a head in two pieces
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HT")
            await asyncio.sleep(0.05)
            writer.write(b"TP/1.1\r\n\r\n")
            assert (await asyncio.wait_for(reader.read(-1), 30)).endswith(FILES["index.html"])
            writer.close()

    asyncio.run(main())


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_gets_exact_bytes() -> None:
    async def main() -> None:
        server, port = await _server()
        async with server:
            proc = await asyncio.create_subprocess_exec(
                "curl", "-sS", "--max-time", "60", "-o", "-", f"http://127.0.0.1:{port}/big.bin", stdout=subprocess.PIPE
            )
            out, _ = await proc.communicate()
            assert proc.returncode == 0 and out == FILES["big.bin"]

    asyncio.run(main())


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_socks_proxy_answers_a_site_address_from_verified_content_only(tmp_path) -> None:
    """curl --socks5-hostname http://SITE.gnet/ through the real SOCKS proxy: the cached, verified site;
    a site with no verified copy gets the 502 page, never bytes from anywhere else."""
    from globalnet.site.address import encode_site_address
    from globalnet.site.cache import SiteCache
    from globalnet.site.store import sign_folder
    from globalnet.socks import SocksProxy
    from globalnet.wire.pathspec import parse_path_spec

    www = tmp_path / "www"
    www.mkdir()
    for path, data in FILES.items():
        (www / path).write_bytes(data)
    signed = sign_folder(tmp_path / "pub", "s", www)
    cache = SiteCache(tmp_path / "cache")
    cache.seed_from_folder(signed.manifest.site_key, signed.manifest.encode(), www)
    unknown = encode_site_address(bytes(signed.manifest.site_key[:31]) + bytes([signed.manifest.site_key[31] ^ 1]))

    class _Sites:  # the cache only, no browser: what this node holds is all it serves
        browser = None

    _Sites.cache = cache  # type: ignore[attr-defined]

    class _Node:  # what the proxy needs for a site request: spawn and its sites
        sites = _Sites()
        tasks: set[asyncio.Task[None]] = set()  # noqa: RUF012

        def spawn(self, coro, name):
            task = asyncio.ensure_future(coro)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def curl(port: int, url: str) -> tuple[int, bytes]:
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--max-time", "60", "--socks5-hostname", f"127.0.0.1:{port}", "-o", "-", "-w", "%{http_code}", url,
            stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        return int(out[-3:]), out[:-3]

    async def main() -> None:
        proxy = SocksProxy(_Node(), parse_path_spec("127.0.0.1:0>rand>internet"))  # type: ignore[arg-type]
        await proxy.start()
        try:
            assert await curl(proxy.port, f"http://{signed.address}/big.bin") == (200, FILES["big.bin"])
            assert await curl(proxy.port, f"http://{signed.address}/") == (200, FILES["index.html"])
            assert (await curl(proxy.port, f"http://{signed.address}/nope"))[0] == 404
            status, body = await curl(proxy.port, f"http://{unknown}/")
            assert status == 502 and b"verif" in body
        finally:
            proxy.close()

    asyncio.run(main())
