"""Signed site manifests (globalnet/site): exact bytes, forgery, rollback, unsafe folders, the CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from globalnet.service.address import decode_address
from globalnet.site.address import decode_site_address, encode_site_address, is_site_address
from globalnet.site.manifest import (
    CHUNK,
    MAX_FILES,
    FileEntry,
    SiteError,
    accepts_update,
    check_path,
    decode_manifest,
    file_entry,
    sign_manifest,
    verify_chunk,
)
from globalnet.site.store import load_manifest, sign_folder

SEED = bytes(range(32))
ROOT = Path(__file__).resolve().parent.parent


def test_exact_bytes_of_a_small_manifest() -> None:
    m = sign_manifest(SEED, [file_entry("index.html", b"hello")], seq=7, timestamp=1_700_000_000)
    wire = m.encode()
    assert wire.startswith(b"gnet-site\x01" + m.site_key + (7).to_bytes(8, "big") + (1_700_000_000).to_bytes(8, "big"))
    assert wire[-64 - 32 - 4 - 32 - 8 - 10 - 2 : -64].startswith(b"\x00\x0aindex.html")
    assert decode_manifest(wire, m.site_key) == m
    assert hashlib.sha256(wire).hexdigest() == hashlib.sha256(sign_manifest(SEED, [file_entry("index.html", b"hello")], 7, 1_700_000_000).encode()).hexdigest()  # deterministic


def test_a_flipped_byte_anywhere_is_refused() -> None:
    wire = sign_manifest(SEED, [file_entry("a.txt", b"x" * 1000), file_entry("b/c.txt", b"y")], 1, 1).encode()
    for i in range(0, len(wire), 7):
        forged = bytearray(wire)
        forged[i] ^= 0x01
        with pytest.raises(SiteError):
            decode_manifest(bytes(forged))


def test_another_sites_manifest_is_refused() -> None:
    wire = sign_manifest(SEED, [file_entry("a", b"1")], 1, 1).encode()
    with pytest.raises(SiteError, match="another site"):
        decode_manifest(wire, bytes(32))


def test_no_rollback() -> None:
    one = sign_manifest(SEED, [file_entry("a", b"1")], 1, 1)
    two = sign_manifest(SEED, [file_entry("a", b"2")], 2, 2)
    other = sign_manifest(bytes(32), [file_entry("a", b"3")], 9, 3)
    assert accepts_update(None, one) and accepts_update(one, two)
    assert not accepts_update(two, one) and not accepts_update(two, two) and not accepts_update(two, other)


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../up", "a/../../b", "a//b", "./a", "a\\b", "a/\x00b", "a\nb", "x" * 256])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(SiteError):
        check_path(path)


def test_limits() -> None:
    with pytest.raises(SiteError, match="at most"):
        sign_manifest(SEED, [FileEntry(f"f{i}", 0, bytes(32), ()) for i in range(MAX_FILES + 1)], 1, 1)
    with pytest.raises(SiteError, match="ignoring case"):
        sign_manifest(SEED, [file_entry("A.txt", b""), file_entry("a.txt", b"")], 1, 1)
    with pytest.raises(SiteError, match="chunk hashes"):
        sign_manifest(SEED, [FileEntry("a", CHUNK + 1, bytes(32), (bytes(32),))], 1, 1)
    with pytest.raises(SiteError, match="at most"):
        decode_manifest(b"\x00" * (9 << 20))


def test_chunks_verify_every_byte() -> None:
    data = os.urandom(CHUNK * 2 + 10)
    entry = file_entry("big.bin", data)
    assert len(entry.chunks) == 3
    assert verify_chunk(entry, 2, data[2 * CHUNK :])
    assert not verify_chunk(entry, 2, data[2 * CHUNK :] + b"x")
    assert not verify_chunk(entry, 0, b"\x00" + data[1:CHUNK])
    assert not verify_chunk(entry, 3, b"")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_decoder_only_raises_site_errors(data: bytes) -> None:
    try:
        decode_manifest(b"gnet-site\x01" + data)
    except SiteError:
        pass


def test_site_addresses_are_distinct_from_service_addresses() -> None:
    key = sign_manifest(SEED, [], 1, 1).site_key
    address = encode_site_address(key)
    assert decode_site_address(address) == key and is_site_address(address)
    with pytest.raises(Exception, match="version"):
        decode_address(address)  # a service client will not connect to a site
    typo = address[:55] + ("a" if address[55] != "a" else "b") + ".gnet"
    with pytest.raises(Exception, match="typo"):
        decode_site_address(typo)


def test_signing_a_folder_raises_seq_only_on_change_and_refuses_symlinks(tmp_path: Path) -> None:
    www = tmp_path / "www"
    (www / "sub").mkdir(parents=True)
    (www / "index.html").write_text("<p>one</p>")
    (www / "sub" / "a.txt").write_bytes(b"a" * (CHUNK + 5))
    data = tmp_path / "data"
    first = sign_folder(data, "www", www, now=100)
    assert first.changed and first.manifest.seq == 1
    assert [f.path for f in first.manifest.files] == ["index.html", "sub/a.txt"]
    key_file = data / "sites" / "www" / "site.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not sign_folder(data, "www", www, now=200).changed
    (www / "index.html").write_text("<p>two</p>")
    second = sign_folder(data, "www", www, now=300)
    assert second.changed and second.manifest.seq == 2 and second.address == first.address
    before = (data / "sites" / "www" / "manifest").read_bytes()
    (www / "evil").symlink_to("/etc/passwd")
    with pytest.raises(SiteError, match="symlink"):
        sign_folder(data, "www", www, now=400)
    assert (data / "sites" / "www" / "manifest").read_bytes() == before  # nothing changed on disk
    assert load_manifest(data, "www") == second.manifest


def test_gclient_site_sign(tmp_path: Path) -> None:
    www = tmp_path / "site"
    www.mkdir()
    (www / "index.html").write_text("hi")
    run = [sys.executable, "-m", "globalnet", "site", "sign", str(www), "--data-dir", str(tmp_path / "d")]
    out = subprocess.run(run, check=False, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    address, summary = out.stdout.splitlines()
    assert is_site_address(address) and "seq 1, 1 files" in summary
    (www / "link").symlink_to(www / "index.html")
    bad = subprocess.run(run, check=False, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip() == "gclient site: link: a symlink (sites hold regular files only)"
