"""Client authorization: who may open a service's inner descriptor layer, and the key files.

As in rend-spec-v3 section 2.5.1.2 ("client authorization"): the service
draws a random descriptor cookie and an ephemeral X25519 key per descriptor.
For each authorized client (an X25519 public key) it computes
SECRET = X25519(ephemeral, client); BLAKE2b(SECRET | subcredential) gives an
8-byte client id and a 32-byte key that encrypts the cookie. The entries are
padded with random ones to a multiple of 16, so the outer layer does not say
how many clients there are. A client finds its entry by id, recovers the
cookie, and only the cookie opens the inner layer (the access points and the
proofs an access point asks for). An unauthorized client learns only that
the service wants authorization.

Files (Tor's format): the service keeps one `descriptor:x25519:<base32 public
key>` line per file in `services/NAME/authorized_clients/`; a client keeps
`descriptor:x25519:<base32 private key>` in `<data-dir>/client_auth/private.key`
(0600), made by `gclient --gen-client-key`, which prints the public line.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings as sodium
import nacl.exceptions

from ..errors import ErrorKind, GnetError
from ..wire.buffer import Reader

CLIENT_ID_SIZE = 8
COOKIE_SIZE = 32
ENTRY_SIZE = CLIENT_ID_SIZE + COOKIE_SIZE
ENTRY_MULTIPLE = 16
MAX_CLIENTS = 64  # their entries must fit a DHT value (4 KiB) beside 8 access points
KEY_PREFIX = "descriptor:x25519:"
CLIENT_KEY_FILE = "private.key"
_CONTEXT = b"gnet client auth"


class ClientAuthError(GnetError):
    """A key file that cannot be used (said clearly at start), or a client not authorized."""

    def __init__(self, detail: str, kind: ErrorKind = ErrorKind.SERVICE_NOT_AUTHORIZED) -> None:
        super().__init__(kind, detail)


@dataclass(frozen=True)
class AuthEntry:
    client_id: bytes
    encrypted_cookie: bytes


def _derive(ephemeral_private: bytes, peer_public: bytes, subcredential: bytes) -> tuple[bytes, bytes]:
    try:
        secret = bytes(sodium.crypto_scalarmult(ephemeral_private, peer_public))
    except nacl.exceptions.RuntimeError:
        raise ClientAuthError("an X25519 key of small order", ErrorKind.PROTOCOL) from None
    out = hashlib.blake2b(_CONTEXT + secret + subcredential, digest_size=CLIENT_ID_SIZE + COOKIE_SIZE).digest()
    return out[:CLIENT_ID_SIZE], out[CLIENT_ID_SIZE:]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def auth_entries(cookie: bytes, ephemeral_private: bytes, clients: list[bytes], subcredential: bytes) -> list[AuthEntry]:
    """One entry per authorized client, then random ones up to a multiple of 16, shuffled."""
    entries = []
    for client in clients:
        client_id, key = _derive(ephemeral_private, client, subcredential)
        entries.append(AuthEntry(client_id, _xor(cookie, key)))
    while len(entries) % ENTRY_MULTIPLE or not entries:
        entries.append(AuthEntry(os.urandom(CLIENT_ID_SIZE), os.urandom(COOKIE_SIZE)))
    entries.sort(key=lambda e: e.client_id)  # order says nothing about which file a client is in
    return entries


def find_cookie(entries: list[AuthEntry], ephemeral_public: bytes, client_private: bytes, subcredential: bytes) -> bytes | None:
    """The descriptor cookie if one entry is ours, else None."""
    client_id, key = _derive(client_private, ephemeral_public, subcredential)
    for entry in entries:
        if entry.client_id == client_id:
            return _xor(entry.encrypted_cookie, key)
    return None


def encode_entries(entries: list[AuthEntry]) -> bytes:
    return len(entries).to_bytes(2, "big") + b"".join(e.client_id + e.encrypted_cookie for e in entries)


def decode_entries(r: Reader) -> list[AuthEntry]:
    n = r.pull_u16()
    if n > MAX_CLIENTS + ENTRY_MULTIPLE:
        raise GnetError(ErrorKind.PROTOCOL, f"descriptor lists {n} client entries")
    return [AuthEntry(r.pull_bytes(CLIENT_ID_SIZE), r.pull_bytes(COOKIE_SIZE)) for _ in range(n)]


# -- key files -----------------------------------------------------------------------------
def _parse_key_line(text: str, what: str, path: Path) -> bytes:
    line = text.strip()
    if not line.startswith(KEY_PREFIX):
        raise ClientAuthError(f"{path}: a {what} file holds one line 'descriptor:x25519:<base32 key>'", ErrorKind.PROTOCOL)
    b32 = line[len(KEY_PREFIX):].strip().upper()
    try:
        key = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    except ValueError:
        raise ClientAuthError(f"{path}: the key is not base32", ErrorKind.PROTOCOL) from None
    if len(key) != 32:
        raise ClientAuthError(f"{path}: an x25519 key has 32 bytes, this one {len(key)}", ErrorKind.PROTOCOL)
    return key


def format_key(key: bytes) -> str:
    return KEY_PREFIX + base64.b32encode(key).decode().rstrip("=").lower()


def load_authorized_clients(directory: Path) -> list[bytes]:
    """Every `*.auth` (or any regular) file in `directory`: one client public key each; clear errors."""
    if not directory.is_dir():
        raise ClientAuthError(f"{directory}: missing (put one client public key per file in it)", ErrorKind.PROTOCOL)
    keys: list[bytes] = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.stat().st_size > 1024:
            raise ClientAuthError(f"{path}: too large for a key file", ErrorKind.PROTOCOL)
        key = _parse_key_line(path.read_text(errors="replace"), "authorized client", path)
        if key not in keys:
            keys.append(key)
    if len(keys) > MAX_CLIENTS:
        raise ClientAuthError(f"{directory}: more than {MAX_CLIENTS} authorized clients", ErrorKind.PROTOCOL)
    return keys


def load_client_key(directory: Path) -> bytes | None:
    """This node's client-authorization private key, if it has one (ClientAuthError if unusable)."""
    path = directory / CLIENT_KEY_FILE
    if not path.exists():
        return None
    if path.stat().st_mode & 0o077:
        raise ClientAuthError(f"{path}: readable by others; chmod 600 it", ErrorKind.PROTOCOL)
    return _parse_key_line(path.read_text(errors="replace"), "client key", path)


def public_of(private: bytes) -> bytes:
    return bytes(sodium.crypto_scalarmult_base(private))


def generate_client_key(directory: Path) -> bytes:
    """Create (or keep) `directory/private.key` atomically with mode 0600; return the public key."""
    existing = load_client_key(directory)
    if existing is not None:
        return public_of(existing)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = os.urandom(32)
    path = directory / CLIENT_KEY_FILE
    temp = directory / f".{CLIENT_KEY_FILE}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (format_key(private) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    return public_of(private)
