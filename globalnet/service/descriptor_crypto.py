"""Encryption layers of descriptors (hidden services, and any other record stored blinded).

Why: a DHT node stores the record under the blinded key (crypto/blinding.py) and
must learn nothing else. Everything a client needs is sealed to a key only
someone who knows the owner's public key (the address) can derive, as in
rend-spec-v3 section 2.5 ("superencrypted" outer layer):

    key = BLAKE2b-256("gnet layer" | kind | A | A' | period u64 | secret | nonce)

with A the public key, A' its blinded key for `period`, `secret` empty for
the outer layer and the descriptor cookie for an inner layer that only
authorized clients can open. The cipher is XChaCha20-Poly1305 with a random
24-byte nonce and (kind | A' | period) as associated data, so a layer cannot
be moved to another record, period or kind. Plaintexts are padded to a
multiple of PAD bytes so the size says little about the content.

The functions are generic: `kind` names the record type (b"hs-outer",
b"hs-inner", a site's mirror record...), nothing here knows services.
"""

from __future__ import annotations

import hashlib
import os

import nacl.bindings as sodium
import nacl.exceptions

from ..crypto.blinding import blind_public_key
from ..errors import ErrorKind, GnetError

NONCE_SIZE = 24
TAG_SIZE = 16
PAD = 256
MAX_PLAINTEXT = 60_000
_LAYER_CONTEXT = b"gnet layer"


class LayerError(GnetError):
    """A layer does not open: wrong key (address, period, cookie) or tampered bytes."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.PROTOCOL, detail)


def _layer_key(kind: bytes, public_key: bytes, blinded: bytes, period: int, secret: bytes, nonce: bytes) -> bytes:
    material = b"".join(
        (_LAYER_CONTEXT, bytes([len(kind)]), kind, public_key, blinded, period.to_bytes(8, "big"), bytes([len(secret)]), secret, nonce)
    )
    return hashlib.blake2b(material, digest_size=32).digest()


def _aad(kind: bytes, blinded: bytes, period: int) -> bytes:
    return bytes([len(kind)]) + kind + blinded + period.to_bytes(8, "big")


def seal_descriptor_body(kind: bytes, public_key: bytes, period: int, plaintext: bytes, secret: bytes = b"") -> bytes:
    """nonce | ciphertext of (len u16 | plaintext | zero padding), to the key of (public_key, period, secret)."""
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError("descriptor body too large")
    blinded = blind_public_key(public_key, period)
    nonce = os.urandom(NONCE_SIZE)
    padded = len(plaintext).to_bytes(2, "big") + plaintext
    padded += bytes(-len(padded) % PAD)
    key = _layer_key(kind, public_key, blinded, period, secret, nonce)
    return nonce + bytes(sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(padded, _aad(kind, blinded, period), nonce, key))


def open_descriptor_body(kind: bytes, public_key: bytes, period: int, sealed: bytes, secret: bytes = b"") -> bytes:
    """The plaintext sealed by seal_descriptor_body; LayerError if the key or bytes are wrong."""
    if len(sealed) < NONCE_SIZE + TAG_SIZE + 2:
        raise LayerError("sealed layer too short")
    blinded = blind_public_key(public_key, period)
    nonce, ciphertext = sealed[:NONCE_SIZE], sealed[NONCE_SIZE:]
    key = _layer_key(kind, public_key, blinded, period, secret, nonce)
    try:
        padded = bytes(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, _aad(kind, blinded, period), nonce, key))
    except nacl.exceptions.CryptoError:
        raise LayerError("the layer does not open with this key") from None
    length = int.from_bytes(padded[:2], "big")
    if length > len(padded) - 2:
        raise LayerError("bad padding in a sealed layer")
    return padded[2 : 2 + length]
