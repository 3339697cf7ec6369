"""A publisher's site on disk: `<data-dir>/sites/NAME/` holds the key (0600) and the signed manifest.

`sign_folder` scans a folder (regular files only: a symlink or a special file
is refused, so a site can never publish something outside its folder), signs
a manifest, and raises the sequence number only when the content changed.
Nothing is written when the folder is refused. Writes are atomic.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from ..storage.atomic import write_atomic
from .address import encode_site_address
from .manifest import (
    MAX_FILES,
    MAX_SITE_SIZE,
    FileEntry,
    Manifest,
    SiteError,
    decode_manifest,
    file_entry,
    sign_manifest,
)

KEY_FILE = "site.key"
MANIFEST_FILE = "manifest"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Signed:
    manifest: Manifest
    address: str
    changed: bool  # False: the folder is as the last manifest says, seq kept


def scan_folder(root: Path) -> list[FileEntry]:
    """Every regular file under `root`, as manifest entries; SiteError for anything unsafe."""
    if not root.is_dir():
        raise SiteError(f"{root} is not a folder")
    entries: list[FileEntry] = []
    total = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs):
            if (Path(folder) / name).is_symlink():
                raise SiteError(f"{Path(folder, name).relative_to(root)}: a symlink (sites hold regular files only)")
        for name in sorted(files):
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise SiteError(f"{rel}: a symlink (sites hold regular files only)")
            if not stat.S_ISREG(mode):
                raise SiteError(f"{rel}: not a regular file")
            if len(entries) >= MAX_FILES:
                raise SiteError(f"more than {MAX_FILES} files")
            data = path.read_bytes()
            total += len(data)
            if total > MAX_SITE_SIZE:
                raise SiteError(f"more than {MAX_SITE_SIZE} bytes")
            entries.append(file_entry(rel, data))
    return entries


def site_dir(data_dir: Path, name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise SiteError(f"{name!r}: a site name is 1-32 of a-z 0-9 _ - (starting with a letter or digit)")
    return data_dir / "sites" / name


def _load_key(folder: Path) -> nacl.signing.SigningKey:
    path = folder / KEY_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = nacl.signing.SigningKey.generate()
        write_atomic(path, bytes(key), 0o600, exclusive=True)
        return key
    if path.stat().st_mode & 0o077:
        raise SiteError(f"{path} is readable by others: chmod 600 it")
    seed = path.read_bytes()
    if len(seed) != 32:
        raise SiteError(f"{path} is not a site key (32 bytes)")
    return nacl.signing.SigningKey(seed)


def load_manifest(data_dir: Path, name: str) -> Manifest | None:
    path = site_dir(data_dir, name) / MANIFEST_FILE
    if not path.exists():
        return None
    return decode_manifest(path.read_bytes())


def sign_folder(data_dir: Path, name: str, folder: Path, now: float | None = None) -> Signed:
    """Sign `folder` as site `name`; the seq grows only when the files changed."""
    home = site_dir(data_dir, name)
    entries = scan_folder(folder)  # refused before anything is written
    key = _load_key(home)
    previous = load_manifest(data_dir, name)
    if previous is not None and previous.site_key != bytes(key.verify_key):
        raise SiteError(f"{home / MANIFEST_FILE} belongs to another key")
    ordered = tuple(sorted(entries, key=lambda f: f.path))
    if previous is not None and previous.files == ordered:
        return Signed(previous, encode_site_address(previous.site_key), False)
    seq = 1 if previous is None else previous.seq + 1
    manifest = sign_manifest(bytes(key), list(ordered), seq, int(time.time() if now is None else now))
    write_atomic(home / MANIFEST_FILE, manifest.encode(), 0o600)
    return Signed(manifest, encode_site_address(manifest.site_key), True)
