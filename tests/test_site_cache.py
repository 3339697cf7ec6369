"""The site cache on real files: verified-only writes, no rollback, quota, nothing changed on refusal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from globalnet.errors import ErrorKind, GnetError
from globalnet.site.cache import SiteCache, site_id
from globalnet.site.manifest import CHUNK, SiteError, file_entry, sign_manifest

SEED = bytes([3]) * 32
FILES = {"index.html": b"<h1>hi</h1>", "img/a.bin": os.urandom(300_000)}


def _manifest(seq: int, files: dict[str, bytes] = FILES, seed: bytes = SEED):
    return sign_manifest(seed, [file_entry(p, d) for p, d in files.items()], seq, 1_800_000_000)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_store_verified_files_and_read_them_back(tmp_path: Path) -> None:
    cache = SiteCache(tmp_path / "c")
    m = _manifest(1)
    cache.accept_manifest(m.site_key, m.encode())
    assert sorted(cache.missing(m.site_key)) == sorted(FILES)
    for path, data in FILES.items():
        cache.put_file(m.site_key, path, data)
    assert cache.missing(m.site_key) == []
    assert cache.read_file(m.site_key, "img/a.bin") == FILES["img/a.bin"]
    assert cache.read_file(m.site_key, "nope") is None
    # no file name on disk is a site path or the site key
    names = [p.name for p in (tmp_path / "c").rglob("*")]
    assert site_id(m.site_key) in names and "index.html" not in names and m.site_key.hex() not in names
    assert all((p.stat().st_mode & 0o077) == 0 for p in (tmp_path / "c").rglob("*") if p.is_file())


def test_bad_bytes_rollback_and_forgeries_change_nothing(tmp_path: Path) -> None:
    cache = SiteCache(tmp_path / "c")
    m2 = _manifest(2)
    cache.accept_manifest(m2.site_key, m2.encode())
    cache.put_file(m2.site_key, "index.html", FILES["index.html"])
    before = _snapshot(tmp_path)
    with pytest.raises(SiteError, match="do not match"):
        cache.put_file(m2.site_key, "img/a.bin", b"x" + FILES["img/a.bin"][1:])
    for seq in (1, 2):
        with pytest.raises(SiteError, match="no rollback"):
            cache.accept_manifest(m2.site_key, _manifest(seq).encode())
    junk = bytearray(m2.encode())
    junk[-1] ^= 1
    with pytest.raises(SiteError, match="signature"):
        cache.accept_manifest(m2.site_key, bytes(junk))
    other = _manifest(9, seed=bytes([4]) * 32)
    with pytest.raises(SiteError, match="another site"):
        cache.accept_manifest(m2.site_key, other.encode())
    assert _snapshot(tmp_path) == before


def test_a_damaged_file_on_disk_is_not_served(tmp_path: Path) -> None:
    cache = SiteCache(tmp_path / "c")
    m = _manifest(1)
    cache.accept_manifest(m.site_key, m.encode())
    cache.put_file(m.site_key, "index.html", FILES["index.html"])
    (blob,) = [p for p in (tmp_path / "c").rglob("files/*")]
    blob.write_bytes(b"<h1>evil</h1>")
    assert cache.read_file(m.site_key, "index.html") is None
    assert set(cache.missing(m.site_key)) == set(FILES)


def test_an_update_drops_stale_files_and_the_quota_holds(tmp_path: Path) -> None:
    cache = SiteCache(tmp_path / "c", quota=400_000)
    m1 = _manifest(1)
    cache.accept_manifest(m1.site_key, m1.encode())
    for path, data in FILES.items():
        cache.put_file(m1.site_key, path, data)
    m2 = _manifest(2, {"index.html": b"<h1>v2</h1>", "img/a.bin": FILES["img/a.bin"]})
    cache.accept_manifest(m2.site_key, m2.encode())
    assert cache.missing(m2.site_key) == ["index.html"]
    assert cache.read_file(m2.site_key, "img/a.bin") == FILES["img/a.bin"]
    big = _manifest(1, {"big.bin": bytes(200_000)}, seed=bytes([5]) * 32)
    cache.pinned |= {m1.site_key, big.site_key}  # mirrored: the whole declared size must fit at once
    before = _snapshot(tmp_path)
    with pytest.raises(GnetError) as info:
        cache.accept_manifest(big.site_key, big.encode())
    assert info.value.kind is ErrorKind.RESOURCE_LIMIT and "quota" in str(info.value)
    assert _snapshot(tmp_path) == before


def test_a_publisher_seeds_its_cache_and_answers_http_from_it(tmp_path: Path) -> None:
    from globalnet.site.http import HttpRequest, answer
    from globalnet.site.store import sign_folder

    www = tmp_path / "www"
    (www / "img").mkdir(parents=True)
    for path, data in FILES.items():
        (www / path).write_bytes(data)
    signed = sign_folder(tmp_path / "data", "blog", www)
    cache = SiteCache(tmp_path / "data" / "site-cache")
    key = signed.manifest.site_key
    assert answer(HttpRequest("GET", ""), cache.lookup(key)).startswith(b"HTTP/1.1 502")  # nothing cached yet
    cache.seed_from_folder(key, signed.manifest.encode(), www)
    assert answer(HttpRequest("GET", ""), cache.lookup(key)).endswith(FILES["index.html"])
    assert answer(HttpRequest("GET", "img/a.bin"), cache.lookup(key)).endswith(FILES["img/a.bin"])
    assert answer(HttpRequest("GET", "../data/sites/blog/site.key"), cache.lookup(key)).startswith(b"HTTP/1.1 404")
    # a file changed after signing is not taken (and not served)
    (www / "index.html").write_bytes(b"changed")
    cache2 = SiteCache(tmp_path / "other")
    with pytest.raises(SiteError, match="do not match"):
        cache2.seed_from_folder(key, signed.manifest.encode(), www)
    assert answer(HttpRequest("GET", ""), cache2.lookup(key)).startswith(b"HTTP/1.1 502")


def test_the_quota_bounds_bytes_on_disk_not_only_declared_sizes(tmp_path: Path) -> None:
    """Two mirrored sites that each fit alone: the second is refused at once (before, the first's
    files were not on disk yet, so both were taken and the disk ended at twice the quota)."""
    empty = SiteCache(tmp_path / "never-written", quota=100_000)  # a first site too big for a fresh cache
    big = _manifest(1, {"a.bin": bytes(300_000)}, seed=bytes([6]) * 32)
    empty.pinned.add(big.site_key)
    with pytest.raises(GnetError) as info:
        empty.accept_manifest(big.site_key, big.encode())
    assert info.value.kind is ErrorKind.RESOURCE_LIMIT and not (tmp_path / "never-written").exists()
    cache = SiteCache(tmp_path / "c", quota=500_000)
    a = _manifest(1, {"a.bin": bytes(300_000)}, seed=bytes([6]) * 32)
    b = _manifest(1, {"b.bin": bytes(300_000)}, seed=bytes([7]) * 32)
    cache.pinned |= {a.site_key, b.site_key}
    cache.accept_manifest(a.site_key, a.encode())
    with pytest.raises(GnetError) as info:
        cache.accept_manifest(b.site_key, b.encode())
    assert info.value.kind is ErrorKind.RESOURCE_LIMIT
    cache.put_file(a.site_key, "a.bin", bytes(300_000))
    assert sum(p.stat().st_size for p in (tmp_path / "c").rglob("*") if p.is_file()) <= cache.quota


def test_visited_sites_are_evicted_oldest_first_and_served_ones_never(tmp_path: Path) -> None:
    cache = SiteCache(tmp_path / "c", quota=500_000)
    sites = [_manifest(1, {"f.bin": bytes([i]) * 200_000}, seed=bytes([10 + i]) * 32) for i in range(3)]
    for i, m in enumerate(sites):
        cache.accept_manifest(m.site_key, m.encode())
        os.utime(tmp_path / "c" / site_id(m.site_key) / "manifest", ns=(i * 10**9, i * 10**9))
        cache.put_file(m.site_key, "f.bin", bytes([i]) * 200_000)
        assert cache.usage() <= cache.quota
    assert cache.manifest(sites[0].site_key) is None  # the oldest visit made room
    assert cache.read_file(sites[2].site_key, "f.bin") == bytes([2]) * 200_000
    # a served (pinned) site is never evicted: a visit that does not fit is refused instead
    cache.pinned |= {sites[1].site_key, sites[2].site_key}
    big = _manifest(1, {"g.bin": bytes(200_000)}, seed=bytes([20]) * 32)
    cache.accept_manifest(big.site_key, big.encode())
    with pytest.raises(GnetError) as info:
        cache.put_file(big.site_key, "g.bin", bytes(200_000))
    assert info.value.kind is ErrorKind.RESOURCE_LIMIT
    assert cache.read_file(sites[1].site_key, "f.bin") == bytes([1]) * 200_000
    assert cache.usage() <= cache.quota


def test_many_visited_manifests_stay_within_the_quota(tmp_path: Path) -> None:
    """A page that makes the visitor take the manifests of many sites cannot fill the disk with them."""
    cache = SiteCache(tmp_path / "c", quota=50_000)
    for i in range(40):
        files = {f"p{j:04d}.html": b"x" for j in range(60)}
        m = _manifest(1, files, seed=bytes([30 + i]) * 32)
        cache.accept_manifest(m.site_key, m.encode())
    assert sum(p.stat().st_size for p in (tmp_path / "c").rglob("*") if p.is_file()) <= cache.quota


def test_a_mirror_parses_its_manifest_once_for_many_chunk_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import globalnet.site.cache as cache_module

    cache = SiteCache(tmp_path / "c")
    m = _manifest(1)
    cache.accept_manifest(m.site_key, m.encode())
    cache.put_file(m.site_key, "img/a.bin", FILES["img/a.bin"])
    calls = []
    real = cache_module.decode_manifest
    monkeypatch.setattr(cache_module, "decode_manifest", lambda *a: calls.append(1) or real(*a))
    entry = m.file("img/a.bin")
    assert entry is not None
    for _ in range(50):
        assert cache.read_chunk(m.site_key, entry.sha256, 1) == FILES["img/a.bin"][CHUNK : 2 * CHUNK]
    assert len(calls) <= 1
    # a manifest changed on disk is parsed (and verified) again
    m2 = _manifest(2)
    cache.accept_manifest(m.site_key, m2.encode())
    assert cache.manifest(m.site_key) == m2


async def _serve_once(cache: SiteCache, site_key: bytes, path: str, keep: bool = True) -> bytes:
    """The whole response, or (keep=False) its head and then its body's length (the body is not kept)."""
    import asyncio

    from globalnet.site.serve import serve_http

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_http(reader, writer, cache.lookup(site_key))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(f"GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received, length = bytearray(), 0
        async with asyncio.timeout(60):
            while data := await reader.read(1 << 16):
                if keep or b"\r\n\r\n" not in received:
                    received += data
                else:
                    length += len(data)
        writer.close()
        if keep:
            return bytes(received)
        head, first = bytes(received).split(b"\r\n\r\n", 1)
        return head + b"\r\n\r\n" + str(length + len(first)).encode()
    finally:
        server.close()


async def test_a_large_file_is_served_without_holding_it_in_memory(tmp_path: Path) -> None:
    """A page that asks for a large file many times at once must not make the node read it whole each time."""
    import tracemalloc

    big = os.urandom(16 << 20)
    cache = SiteCache(tmp_path / "c")
    m = _manifest(1, {"index.html": b"hi", "big.bin": big})
    cache.accept_manifest(m.site_key, m.encode())
    cache.put_file(m.site_key, "big.bin", big)
    tracemalloc.start()
    try:
        reply = await _serve_once(cache, m.site_key, "big.bin", keep=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    head, length = reply.split(b"\r\n\r\n", 1)
    assert b"Content-Length: 16777216" in head and length == b"16777216"
    assert peak < 8 << 20
    # and the bytes are exact
    assert (await _serve_once(cache, m.site_key, "big.bin")).split(b"\r\n\r\n", 1)[1] == big


async def test_a_large_file_damaged_on_disk_is_cut_short_never_served_wrong(tmp_path: Path) -> None:
    big = os.urandom(3 << 20)
    cache = SiteCache(tmp_path / "c")
    m = _manifest(1, {"big.bin": big})
    cache.accept_manifest(m.site_key, m.encode())
    cache.put_file(m.site_key, "big.bin", big)
    blob = next((tmp_path / "c").rglob("files/*"))
    damaged = bytearray(big)
    damaged[2 * CHUNK + 5] ^= 0xFF
    blob.write_bytes(bytes(damaged))
    reply = await _serve_once(cache, m.site_key, "big.bin")
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and len(body) < len(big)
    assert big.startswith(body) and body[: 2 * CHUNK + 6] != bytes(damaged[: 2 * CHUNK + 6])
    assert cache.missing(m.site_key) == ["big.bin"]  # dropped: fetched again next time


def test_a_fetch_reserves_the_whole_file_in_the_quota_before_a_byte_arrives(tmp_path: Path) -> None:
    cache = SiteCache(tmp_path / "c", quota=1 << 20)
    big = os.urandom(3 << 20)
    m = _manifest(1, {"big.bin": big})
    cache.accept_manifest(m.site_key, m.encode())
    entry = m.file("big.bin")
    assert entry is not None
    with pytest.raises(GnetError) as info:
        cache.partial(m.site_key, entry)
    assert info.value.kind is ErrorKind.RESOURCE_LIMIT
    roomy = SiteCache(tmp_path / "d", quota=8 << 20)
    roomy.accept_manifest(m.site_key, m.encode())
    partial = roomy.partial(m.site_key, entry)
    assert roomy.usage() >= len(big)  # reserved at once (a sparse file of the full length)
    for index in range(len(entry.chunks)):
        partial.write(index, big[index * CHUNK : (index + 1) * CHUNK] if index != 1 else bytes(CHUNK))
    with pytest.raises(SiteError, match="do not match"):
        roomy.put_partial(m.site_key, "big.bin", partial)  # checked whole before it is kept
    assert roomy.missing(m.site_key) == ["big.bin"] and not list((tmp_path / "d").rglob("*.partial"))
