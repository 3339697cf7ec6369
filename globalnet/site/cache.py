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

The quota bounds the bytes on disk (manifests and files), checked before
every write, not only the sizes manifests declare: a visitor's pages can make
it take manifests of many sites before any file arrives. Sites this node
serves (`pinned`: published or mirrored) are never evicted, and a pinned
site's whole declared size must fit when its manifest is taken (a mirror
fetches all of it). Sites only visited are evicted, least recently taken
first, to make room; their manifests are parsed once per change and kept in
memory (a mirror answers many chunk requests; re-verifying an 8 MiB manifest
for each would let a client burn the mirror's CPU with 40-byte requests).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from ..errors import ErrorKind, GnetError
from ..storage.atomic import fsync_dir, write_atomic
from .http import NO_COPY, FileBody, Lookup
from .manifest import CHUNK, FileEntry, Manifest, SiteError, accepts_update, decode_manifest, verify_chunk

DEFAULT_QUOTA = 2 << 30  # 2 GiB for every cached site together
MANIFEST_FILE = "manifest"
STREAM_OVER = 4 * CHUNK  # a larger file is served piece by piece (http.FileBody), never read whole
MAX_PARSED = 64  # parsed manifests kept in memory (each at most manifest.MAX_MANIFEST on disk)


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
        self.pinned: set[bytes] = set()  # sites this node serves: never evicted, whole size reserved
        self._parsed: OrderedDict[bytes, tuple[tuple[int, int, int], Manifest]] = OrderedDict()

    def _dir(self, site_key: bytes) -> Path:
        return self.root / site_id(site_key)

    def manifest(self, site_key: bytes) -> Manifest | None:
        """The held manifest, verified when it was parsed (again whenever the file changed)."""
        path = self._dir(site_key) / MANIFEST_FILE
        try:
            st = path.stat()
        except FileNotFoundError:
            self._parsed.pop(site_key, None)
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        held = self._parsed.get(site_key)
        if held is not None and held[0] == stamp:
            self._parsed.move_to_end(site_key)
            return held[1]
        manifest = decode_manifest(path.read_bytes(), site_key)
        self._parsed[site_key] = (stamp, manifest)
        while len(self._parsed) > MAX_PARSED:
            self._parsed.popitem(last=False)
        return manifest

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
        """Bytes the cache holds or has promised, optionally without one site: on disk (manifests
        and files), and for a pinned site at least its whole declared size (it will fetch it all)."""
        if not self.root.is_dir():
            return 0
        skip = site_id(exclude) if exclude is not None else None
        return sum(self._folder_usage(folder) for folder in self.root.iterdir() if folder.name != skip)

    def _folder_usage(self, folder: Path) -> int:
        on_disk = _folder_bytes(folder)
        key = next((k for k in self.pinned if site_id(k) == folder.name), None)
        manifest = self.manifest(key) if key is not None else None
        return max(on_disk, manifest.total_size + _size(folder / MANIFEST_FILE)) if manifest else on_disk

    def _make_room(self, site_key: bytes, needed: int, replacing: bool) -> None:
        """Evict visited (not pinned) sites, least recently taken first, until `needed` more bytes
        fit; QuotaError (nothing evicted) if even that is not enough. `replacing`: the bytes
        replace everything the site holds now (a new manifest), else they come on top (a file
        of a visited site; a pinned site's files are already counted in its declared size)."""
        if not replacing and site_key in self.pinned:
            return  # its files were reserved with its manifest (and a mirror's sync stays linear)
        used = self.usage(exclude=site_key if replacing else None)
        if used + needed <= self.quota:
            return
        keep = {site_id(k) for k in self.pinned} | {site_id(site_key)}
        evictable = sorted(
            (f for f in (self.root.iterdir() if self.root.is_dir() else ()) if f.name not in keep and f.is_dir()),
            key=lambda f: _mtime(f / MANIFEST_FILE),
        )
        sizes = [_folder_bytes(f) for f in evictable]
        if used - sum(sizes) + needed > self.quota:
            raise QuotaError(f"{needed} more bytes do not fit the site cache quota of {self.quota} bytes")
        for folder, size in zip(evictable, sizes, strict=True):
            if used + needed <= self.quota:
                break
            shutil.rmtree(folder, ignore_errors=True)
            used -= size
        self._parsed.clear()  # evicted sites' manifests are gone

    def accept_manifest(self, site_key: bytes, data: bytes) -> Manifest:
        """Verify and store a newer manifest; SiteError / QuotaError say why not (nothing written then)."""
        offered = decode_manifest(data, site_key)
        current = self.manifest(site_key)
        if not accepts_update(current, offered):
            assert current is not None
            raise SiteError(f"seq {offered.seq} is not above the held seq {current.seq} (no rollback)")
        reserve = offered.total_size if site_key in self.pinned else 0  # a visitor fetches file by file
        try:
            self._make_room(site_key, len(data) + reserve, replacing=True)
        except QuotaError:
            raise QuotaError(f"the site needs {len(data) + reserve} bytes; the site cache quota is {self.quota}") from None
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
        blob = self._dir(site_key) / "files" / entry.sha256.hex()
        self._make_room(site_key, len(data) - _size(blob), replacing=False)
        write_atomic(blob, data, 0o600)

    def partial(self, site_key: bytes, entry: FileEntry) -> PartialFile:
        """A file of the held manifest to be written piece by piece (a fetch's sink), its whole
        size reserved on disk at once (a sparse file of that length counts in the quota)."""
        manifest = self.manifest(site_key)
        if manifest is None or entry not in manifest.files:
            raise SiteError("no such file in the held manifest")
        self._make_room(site_key, entry.size, replacing=False)
        return PartialFile(self._dir(site_key) / "files", entry)

    def put_partial(self, site_key: bytes, path: str, partial: PartialFile) -> None:
        """Keep a completely written partial file if its bytes are the signed ones (SiteError if not;
        the partial file is removed either way)."""
        try:
            manifest = self.manifest(site_key)
            if manifest is None or manifest.file(path) != partial.entry:
                raise SiteError("the held manifest changed during the fetch")
            partial.finish()
        finally:
            partial.discard()

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

    @staticmethod
    def _chunks(blob: Path, entry: FileEntry) -> Iterator[bytes]:
        """The file's pieces, each checked against its signed SHA-256 as read; SiteError (and the
        damaged copy removed, to be fetched again) at the first piece that does not match."""
        with open(blob, "rb") as source:
            for index in range(len(entry.chunks)):
                data = source.read(CHUNK)
                if not verify_chunk(entry, index, data):
                    blob.unlink(missing_ok=True)
                    raise SiteError("a cached file no longer matches its manifest")
                yield data

    def missing(self, site_key: bytes) -> list[str]:
        """Paths of the held manifest not (or not correctly) on disk: what a mirror still has to fetch."""
        manifest = self.manifest(site_key)
        if manifest is None:
            return []
        folder = self._dir(site_key) / "files"
        return [f.path for f in manifest.files if not (folder / f.sha256.hex()).is_file() or (folder / f.sha256.hex()).stat().st_size != f.size]

    def seed_from_folder(self, site_key: bytes, manifest_bytes: bytes, folder: Path) -> Manifest:
        """The publisher, as the first mirror: take its own signed manifest and the folder's files (each verified)."""
        self.pinned.add(site_key)  # the publisher serves it: its copy is never evicted
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
            entry = manifest.file(path)
            if entry is None:
                return None
            if entry.size > STREAM_OVER:
                blob = self._dir(site_key) / "files" / entry.sha256.hex()
                return FileBody(entry.size, lambda: self._chunks(blob, entry)) if _size(blob) == entry.size else NO_COPY
            data = self.read_file(site_key, path)
            return NO_COPY if data is None else data

        return find  # type: ignore[return-value]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _folder_bytes(folder: Path) -> int:
    """Bytes of every regular file under a cached site's folder (temporary files of a write too)."""
    total = 0
    for parent, _, names in os.walk(folder):
        total += sum(_size(Path(parent) / name) for name in names)
    return total


class PartialFile:
    """`files/.<sha256>.partial`: verified chunks written at their offsets as they arrive, then
    checked whole, fsynced and renamed to `files/<sha256>` (a crash leaves only a partial file,
    which the next manifest taken for the site removes)."""

    def __init__(self, folder: Path, entry: FileEntry) -> None:
        self.entry = entry
        self.final = folder / entry.sha256.hex()
        self.path = folder / f".{entry.sha256.hex()}.{os.urandom(4).hex()}.partial"  # two fetches never share one
        self._fd = -1
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.ftruncate(self._fd, entry.size)
        except OSError as exc:
            self.discard()
            raise QuotaError(f"cannot write to the site cache ({exc.strerror})") from None

    def write(self, index: int, data: bytes) -> None:
        try:
            os.pwrite(self._fd, data, index * CHUNK)
        except OSError as exc:
            raise QuotaError(f"cannot write to the site cache ({exc.strerror})") from None

    def finish(self) -> None:
        digest = hashlib.sha256()
        offset = 0
        while offset < self.entry.size:
            piece = os.pread(self._fd, CHUNK, offset)
            if not piece:
                break
            digest.update(piece)
            offset += len(piece)
        if offset != self.entry.size or digest.digest() != self.entry.sha256:
            raise SiteError("the file's bytes do not match the manifest")
        try:
            os.fsync(self._fd)
            os.replace(self.path, self.final)
            fsync_dir(self.final.parent)
        except OSError as exc:  # e.g. a new manifest removed the partial file meanwhile
            raise SiteError(f"the fetched file could not be kept ({exc.strerror})") from None

    def discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path.unlink(missing_ok=True)
