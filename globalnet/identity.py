"""Node identity: the Ed25519 identity key, onion keys, and signed node records.

Why two keys: the identity key is long-lived and only signs; the X25519 onion
key answers circuit handshakes and rotates, so a stolen onion key exposes at
most the circuits of one period. The node record (see wire/records.py) binds
them, signed by the identity key.
"""

from __future__ import annotations

import functools
import hashlib
import stat
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import nacl.exceptions
import nacl.public
import nacl.signing

from .errors import ProtocolError
from .storage.atomic import write_atomic
from .wire.der import ed25519_pkcs8, ed25519_seed_from_pkcs8, pem, pem_body
from .wire.records import (
    FLAG_RELAY,
    NodeRecord,
    decode_node_record,
    has_id_work,
    id_work_refusal,
    node_id_of,
    required_id_work,
)

RECORD_LIFETIME = 24 * 3600
ONION_KEY_LIFETIME = 24 * 3600
ONION_KEY_GRACE = 3600
#: How far in the future a record's `published` time may be (clock skew).
MAX_CLOCK_SKEW = 600


class IdentityFileError(Exception):
    """The key file cannot be used; the message says what to do."""


@dataclass
class OnionKeys:
    """The current onion key and, for a grace period, the one before it."""

    current: nacl.public.PrivateKey
    created: float
    previous: nacl.public.PrivateKey | None = None
    previous_until: float = 0.0

    @classmethod
    def fresh(cls, now: float) -> OnionKeys:
        return cls(nacl.public.PrivateKey.generate(), now)

    def rotate_if_due(self, now: float) -> bool:
        if now - self.created < ONION_KEY_LIFETIME:
            return False
        self.previous, self.previous_until = self.current, now + ONION_KEY_GRACE
        self.current, self.created = nacl.public.PrivateKey.generate(), now
        return True

    def candidates(self, now: float) -> list[bytes]:
        """Private keys a handshake may have used, newest first."""
        keys = [bytes(self.current)]
        if self.previous is not None and now < self.previous_until:
            keys.append(bytes(self.previous))
        return keys


@dataclass
class Identity:
    signing_key: nacl.signing.SigningKey
    onion: OnionKeys = field(default_factory=lambda: OnionKeys.fresh(time.time()))

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def node_id(self) -> bytes:
        return node_id_of(self.public_key)

    @classmethod
    def generate(cls) -> Identity:
        """A fresh key whose node id carries the proof of work (see wire/records.py)."""
        while True:
            key = nacl.signing.SigningKey.generate()
            if has_id_work(node_id_of(bytes(key.verify_key))):
                return cls(key)

    @classmethod
    def from_label(cls, label: bytes) -> Identity:
        """A deterministic identity with proof of work: the first seed BLAKE2b(label|i) that passes.

        For test vectors and simulations that must repeat run to run.
        """
        return cls(nacl.signing.SigningKey(solved_seed(label)))

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature

    def private_key_pem(self) -> bytes:
        """PKCS#8 PEM of the identity key (what the TLS certificate is made from)."""
        return pem("PRIVATE KEY", ed25519_pkcs8(bytes(self.signing_key)))

    def make_record(
        self,
        addresses: tuple[tuple[str, int], ...],
        flags: int = FLAG_RELAY,
        exit_policy: str = "reject *",
        now: float | None = None,
        seq: int | None = None,
    ) -> NodeRecord:
        now = time.time() if now is None else now
        record = NodeRecord(
            identity_key=self.public_key,
            onion_key=bytes(self.onion.current.public_key),
            flags=flags,
            addresses=addresses,
            exit_policy=exit_policy,
            published=int(now),
            expires=int(now) + RECORD_LIFETIME,
            seq=int(now * 1000) if seq is None else seq,
        )
        return replace(record, signature=self.sign(record.signed_part()))


@functools.lru_cache(maxsize=1024)
def solved_seed(label: bytes) -> bytes:
    """The first Ed25519 seed BLAKE2b(label | counter) whose node id carries the work."""
    counter = 0
    while True:
        seed = hashlib.blake2b(label + counter.to_bytes(8, "big"), digest_size=32).digest()
        key = nacl.signing.SigningKey(seed)
        if has_id_work(node_id_of(bytes(key.verify_key))):
            return seed
        counter += 1


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        return False


def verify_node_record(data: bytes, now: float | None = None) -> NodeRecord:
    """Decode and check a record: signature, expiry, clock skew. ProtocolError if bad."""
    record = decode_node_record(data)
    refusal = id_work_refusal(record.node_id)
    if refusal is not None:
        raise ProtocolError(refusal)
    if not verify_signature(record.identity_key, record.signed_part(), record.signature):
        raise ProtocolError("node record signature is invalid")
    now = time.time() if now is None else now
    if record.expires <= now:
        raise ProtocolError("node record has expired")
    if record.published > now + MAX_CLOCK_SKEW:
        raise ProtocolError("node record is published in the future")
    if record.expires - record.published > 7 * 24 * 3600:
        raise ProtocolError("node record lifetime is too long")
    return record


def _seed_from_pem(path: Path, data: bytes) -> bytes:
    """The Ed25519 seed of a PEM key file: the shape we write, read directly; any other, by `cryptography`.

    The full parser (an OpenSSL key with its public key attached, another
    label, a key that is not Ed25519) is imported only for such a file.
    """
    der = pem_body("PRIVATE KEY", data)
    seed = ed25519_seed_from_pkcs8(der) if der is not None else None
    if seed is not None:
        return seed
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityFileError(f"{path} is not an Ed25519 PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityFileError(f"{path} holds a key that is not Ed25519")
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def load_or_create_identity(path: Path) -> Identity:
    """Load the Ed25519 key at `path`, creating it (mode 0600) if it does not exist."""
    if path.exists():
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityFileError(
                f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
            )
        identity = Identity(nacl.signing.SigningKey(_seed_from_pem(path, path.read_bytes())))
        if not has_id_work(identity.node_id):
            raise IdentityFileError(
                f"{path} holds a key from before proof-of-work ids (its id needs {required_id_work()} leading zero"
                f" bits of work); move the file away and start again to create a new identity"
            )
        return identity
    identity = Identity.generate()  # solves the id puzzle once; the key file keeps the proof
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        write_atomic(path, identity.private_key_pem(), 0o600, exclusive=True)
    except FileExistsError:  # another process created it meanwhile: use that one
        return load_or_create_identity(path)
    return identity
