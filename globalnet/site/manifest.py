"""Signed site manifests (sans-IO): what a site is, byte for byte, so no mirror can alter it.

Theory of operation (the proposal's "every page and every file is signed";
ZeroNet's content.json). A site is a folder of files. Its manifest lists
every file's path, size, SHA-256 and the SHA-256 of each 256 KiB chunk (so a
large file can be fetched from several mirrors and checked piece by piece),
with a sequence number that only grows, a timestamp, and an Ed25519
signature by the site's key over everything before it. The site's address is
its key, so a client that knows the address checks the manifest against it,
then every byte against the manifest: a mirror can refuse to serve, but it
cannot serve something else. A manifest with a lower or equal sequence number
never replaces the one a node holds (no rollback).

Encoding (big-endian; every field bounded):

    magic "gnet-site" | version u8 (1) | site key 32 | seq u64 | timestamp u64 |
    files u32 | per file: path str16 | size u64 | sha256 32 | chunks u32 | chunk sha256 32 * chunks |
    signature 64

Files are sorted by path, so one folder has exactly one manifest per seq.
Paths are relative, '/'-separated, UTF-8, printable, without empty, '.' or
'..' parts, without a leading '/', and unique ignoring case (a site must look
the same on every file system).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from ..errors import ErrorKind, GnetError

MAGIC = b"gnet-site"
FORMAT_VERSION = 1
CHUNK = 256 * 1024
MAX_FILES = 10_000
MAX_PATH = 255
RESERVED_FOLDER = ".gnet"  # the node serves its own pages there (announcements.ANNOUNCEMENTS_PATH)
MAX_FILE_SIZE = 1 << 30  # 1 GiB
MAX_SITE_SIZE = 4 << 30  # 4 GiB
MAX_MANIFEST = 8 << 20  # with 32 bytes per chunk: ~16,000 chunks = 4 GiB of content fits
SIGNATURE = 64
KEY = 32


class SiteError(GnetError):
    """A site that is malformed, too large, unsafe or forged; the message says which."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.PROTOCOL, detail)


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: bytes
    chunks: tuple[bytes, ...]  # SHA-256 of each CHUNK-sized piece, in order


@dataclass(frozen=True)
class Manifest:
    site_key: bytes
    seq: int
    timestamp: int
    files: tuple[FileEntry, ...]
    signature: bytes = b""

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> FileEntry | None:
        return next((f for f in self.files if f.path == path), None)

    def signed_part(self) -> bytes:
        parts = [MAGIC, bytes([FORMAT_VERSION]), self.site_key, struct.pack(">QQI", self.seq, self.timestamp, len(self.files))]
        for f in self.files:
            raw = f.path.encode()
            parts += [struct.pack(">H", len(raw)), raw, struct.pack(">Q", f.size), f.sha256, struct.pack(">I", len(f.chunks))]
            parts += list(f.chunks)
        return b"".join(parts)

    def encode(self) -> bytes:
        return self.signed_part() + self.signature


def check_path(path: str) -> None:
    """SiteError unless `path` is a safe relative path inside the site."""
    raw = path.encode("utf-8", "surrogateescape")
    if not path or len(raw) > MAX_PATH:
        raise SiteError(f"a path has 1 to {MAX_PATH} bytes")
    if path.startswith("/") or "\\" in path:
        raise SiteError(f"path {path[:60]!r} is absolute or has a backslash")
    if not path.isprintable():
        raise SiteError(f"path {path[:60]!r} has control characters")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise SiteError(f"path {path[:60]!r} has an empty, '.' or '..' part")
    if path.split("/", 1)[0].lower() == RESERVED_FOLDER:
        raise SiteError(f"path {path[:60]!r} is in the folder {RESERVED_FOLDER}/, reserved for what the node itself serves")


def file_entry(path: str, data: bytes) -> FileEntry:
    check_path(path)
    if len(data) > MAX_FILE_SIZE:
        raise SiteError(f"{path}: larger than {MAX_FILE_SIZE} bytes")
    chunks = tuple(hashlib.sha256(data[i : i + CHUNK]).digest() for i in range(0, len(data), CHUNK))
    return FileEntry(path, len(data), hashlib.sha256(data).digest(), chunks)


def _check_files(files: tuple[FileEntry, ...]) -> None:
    if len(files) > MAX_FILES:
        raise SiteError(f"a site has at most {MAX_FILES} files ({len(files)} given)")
    seen: set[str] = set()
    total = 0
    for f in files:
        check_path(f.path)
        folded = f.path.casefold()
        if folded in seen:
            raise SiteError(f"two files named {f.path[:60]!r} (ignoring case)")
        seen.add(folded)
        if f.size > MAX_FILE_SIZE:
            raise SiteError(f"{f.path[:60]}: larger than {MAX_FILE_SIZE} bytes")
        if len(f.chunks) != -(-f.size // CHUNK):
            raise SiteError(f"{f.path[:60]}: {len(f.chunks)} chunk hashes for {f.size} bytes")
        total += f.size
    if total > MAX_SITE_SIZE:
        raise SiteError(f"a site holds at most {MAX_SITE_SIZE} bytes ({total} given)")
    if [f.path for f in files] != sorted(f.path for f in files):
        raise SiteError("files are not sorted by path")


def sign_manifest(seed: bytes, files: list[FileEntry], seq: int, timestamp: int) -> Manifest:
    """A manifest of `files` signed by the site key whose Ed25519 seed is `seed`."""
    if not 0 < seq < 1 << 64 or not 0 <= timestamp < 1 << 64:
        raise SiteError("seq must be 1..2^64-1 and the timestamp fit 64 bits")
    ordered = tuple(sorted(files, key=lambda f: f.path))
    _check_files(ordered)
    key = nacl.signing.SigningKey(seed)
    unsigned = Manifest(bytes(key.verify_key), seq, timestamp, ordered)
    signature = key.sign(unsigned.signed_part()).signature
    return Manifest(unsigned.site_key, seq, timestamp, ordered, bytes(signature))


def decode_manifest(data: bytes, site_key: bytes | None = None) -> Manifest:
    """Parse and verify a manifest; with `site_key`, it must be that site's. SiteError says why not."""
    if len(data) > MAX_MANIFEST:
        raise SiteError(f"a manifest has at most {MAX_MANIFEST} bytes")
    view = memoryview(data)
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(view):
            raise SiteError("the manifest is truncated")
        out = bytes(view[pos : pos + n])
        pos += n
        return out

    if take(len(MAGIC)) != MAGIC:
        raise SiteError("not a site manifest")
    if take(1)[0] != FORMAT_VERSION:
        raise SiteError("unknown manifest version")
    key = take(KEY)
    seq, timestamp, count = struct.unpack(">QQI", take(20))
    if count > MAX_FILES:
        raise SiteError(f"a site has at most {MAX_FILES} files")
    files = []
    for _ in range(count):
        (length,) = struct.unpack(">H", take(2))
        try:
            path = take(length).decode("utf-8")
        except UnicodeDecodeError:
            raise SiteError("a path is not UTF-8") from None
        size, digest, chunks = struct.unpack(">Q32sI", take(44))
        if chunks > MAX_MANIFEST // 32:
            raise SiteError("too many chunk hashes")
        files.append(FileEntry(path, size, digest, tuple(take(32) for _ in range(chunks))))
    signature = take(SIGNATURE)
    if pos != len(view):
        raise SiteError("trailing bytes after the signature")
    manifest = Manifest(key, seq, timestamp, tuple(files), signature)
    _check_files(manifest.files)
    if site_key is not None and key != site_key:
        raise SiteError("the manifest is another site's")
    try:
        nacl.signing.VerifyKey(key).verify(manifest.signed_part(), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.RuntimeError):
        raise SiteError("the manifest's signature does not verify") from None
    if seq == 0:
        raise SiteError("seq 0 is not a valid manifest")
    return manifest


def accepts_update(current: Manifest | None, offered: Manifest) -> bool:
    """A node replaces its manifest only with the same site's higher sequence number (no rollback)."""
    if current is None:
        return True
    return offered.site_key == current.site_key and offered.seq > current.seq


def verify_chunk(entry: FileEntry, index: int, data: bytes) -> bool:
    """Is `data` the `index`-th chunk of `entry`? (Checked before a byte is served.)"""
    if not 0 <= index < len(entry.chunks):
        return False
    expected = min(CHUNK, entry.size - index * CHUNK)
    return len(data) == expected and hashlib.sha256(data).digest() == entry.chunks[index]
