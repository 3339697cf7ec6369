"""A node's verified copies of other people's sites (mirrors and visitors), under a disk quota.

Why: a mirror must serve only what the site's key signed, and a visitor must
never hand a browser a byte it did not verify. So the cache takes a manifest
only if it verifies, belongs to the site and has a higher seq than the one
held (no rollback), and takes a file only if its size and SHA-256 match the
manifest; a file is checked again when read (the disk is not trusted
either). Files are stored by content hash (`files/<sha256 hex>`), never by
their site path, so no path in a manifest can reach outside the cache.
Layout: `<data-dir>/site-cache/<site id>/manifest` and `.../files/`.
Writes are atomic; a refused manifest or file changes nothing on disk.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ErrorKind, GnetError
from ..storage.atomic import write_atomic
from .http import NO_COPY, Lookup
from .manifest import CHUNK, Manifest, SiteError, accepts_update, decode_manifest

DEFAULT_QUOTA = 2 << 30  # 2 GiB for every cached site together
MANIFEST_FILE = "manifest"


class QuotaError(GnetError):
    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.RESOURCE_LIMIT, detail)


def site_id(site_key: bytes) -> str:
    """The folder name of a cached site (not the key itself: a directory listing shows no address)."""
    return hashlib.blake2b(b"gnet site cache" + site_key, digest_size=16).hexdigest()


class SiteCache:
    def __init__(self, root: Path, quota: int = DEFAULT_QUOTA) -> None:
        self.root = root
        self.quota = quota

    def _dir(self, site_key: bytes) -> Path:
        return self.root / site_id(site_key)

    def manifest(self, site_key: bytes) -> Manifest | None:
        path = self._dir(site_key) / MANIFEST_FILE
        if not path.exists():
            return None
        return decode_manifest(path.read_bytes(), site_key)

    def manifest_bytes(self, site_key: bytes) -> bytes | None:
        """The held signed manifest as stored (verified when it was accepted), for mirrors to serve."""
        try:
            return (self._dir(site_key) / MANIFEST_FILE).read_bytes()
        except FileNotFoundError:
            return None

    def read_chunk(self, site_key: bytes, file_sha256: bytes, index: int) -> bytes | None:
        """Chunk `index` of the held file whose SHA-256 is `file_sha256`, as on disk.

        Served to other nodes without hashing it again: every client checks each
        chunk against the signed manifest anyway, so a damaged disk costs the
        client one chunk from another mirror, never a bad byte."""
        manifest = self.manifest(site_key)
        entry = next((f for f in manifest.files if f.sha256 == file_sha256), None) if manifest else None
        if entry is None or not 0 <= index < len(entry.chunks):
            return None
        try:
            with open(self._dir(site_key) / "files" / file_sha256.hex(), "rb") as blob:
                blob.seek(index * CHUNK)
                return blob.read(min(CHUNK, entry.size - index * CHUNK))
        except FileNotFoundError:
            return None

    def usage(self, exclude: bytes | None = None) -> int:
        """Bytes the cache holds (the manifests' declared sizes), optionally without one site."""
        total = 0
        if not self.root.is_dir():
            return 0
        skip = site_id(exclude) if exclude is not None else None
        for folder in self.root.iterdir():
            if folder.name == skip or not (folder / MANIFEST_FILE).is_file():
                continue
            total += sum(p.stat().st_size for p in (folder / "files").glob("*")) if (folder / "files").is_dir() else 0
        return total

    def accept_manifest(self, site_key: bytes, data: bytes) -> Manifest:
        """Verify and store a newer manifest; SiteError / QuotaError say why not (nothing written then)."""
        offered = decode_manifest(data, site_key)
        current = self.manifest(site_key)
        if not accepts_update(current, offered):
            assert current is not None
            raise SiteError(f"seq {offered.seq} is not above the held seq {current.seq} (no rollback)")
        if offered.total_size + self.usage(exclude=site_key) > self.quota:
            raise QuotaError(f"the site needs {offered.total_size} bytes; the site cache quota is {self.quota}")
        folder = self._dir(site_key)
        (folder / "files").mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(folder / MANIFEST_FILE, data, 0o600)
        wanted = {f.sha256.hex() for f in offered.files}
        for blob in (folder / "files").iterdir():
            if blob.name not in wanted:
                blob.unlink(missing_ok=True)
        return offered

    def put_file(self, site_key: bytes, path: str, data: bytes) -> None:
        """Store a file of the held manifest, after checking every byte; SiteError if it is not the signed one."""
        manifest = self.manifest(site_key)
        entry = manifest.file(path) if manifest else None
        if entry is None:
            raise SiteError("no such file in the held manifest")
        if len(data) != entry.size or hashlib.sha256(data).digest() != entry.sha256:
            raise SiteError(f"{path[:60]}: the bytes do not match the manifest")
        write_atomic(self._dir(site_key) / "files" / entry.sha256.hex(), data, 0o600)

    def read_file(self, site_key: bytes, path: str) -> bytes | None:
        """A verified file of the held manifest, or None if it is not here (or no longer matches)."""
        manifest = self.manifest(site_key)
        entry = manifest.file(path) if manifest else None
        if entry is None:
            return None
        blob = self._dir(site_key) / "files" / entry.sha256.hex()
        try:
            data = blob.read_bytes()
        except FileNotFoundError:
            return None
        if len(data) != entry.size or hashlib.sha256(data).digest() != entry.sha256:
            blob.unlink(missing_ok=True)  # damaged on disk: fetch it again
            return None
        return data

    def missing(self, site_key: bytes) -> list[str]:
        """Paths of the held manifest not (or not correctly) on disk: what a mirror still has to fetch."""
        manifest = self.manifest(site_key)
        if manifest is None:
            return []
        folder = self._dir(site_key) / "files"
        return [f.path for f in manifest.files if not (folder / f.sha256.hex()).is_file() or (folder / f.sha256.hex()).stat().st_size != f.size]

    def seed_from_folder(self, site_key: bytes, manifest_bytes: bytes, folder: Path) -> Manifest:
        """The publisher, as the first mirror: take its own signed manifest and the folder's files (each verified)."""
        current = self.manifest(site_key)
        manifest = decode_manifest(manifest_bytes, site_key)
        if current is None or current.seq < manifest.seq:
            self.accept_manifest(site_key, manifest_bytes)
        elif current.seq > manifest.seq:
            raise SiteError(f"seq {manifest.seq} is not above the held seq {current.seq} (no rollback)")
        for path in self.missing(site_key):
            self.put_file(site_key, path, (folder / path).read_bytes())
        return manifest

    def lookup(self, site_key: bytes) -> Lookup:
        """For http.answer: a verified file, None if the manifest lists no such path, NO_COPY if not here."""

        def find(path: str) -> bytes | None | object:
            manifest = self.manifest(site_key)
            if manifest is None:
                return NO_COPY
            if manifest.file(path) is None:
                return None
            data = self.read_file(site_key, path)
            return NO_COPY if data is None else data

        return find  # type: ignore[return-value]
