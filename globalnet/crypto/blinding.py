"""Ed25519 key blinding: one unlinkable public key per period for a long-term key.

Why: a hidden service (or a site) must be findable in the DHT by anyone who
knows its address, yet a DHT node that stores or relays its descriptor must
learn neither the address nor be able to link this period's descriptor to the
next one. Tor's rend-spec-v3 (appendix A.2, "Key blinding") solves this with
a blinded key per time period; this module is that construction with our own
domain separation:

    h   = BLAKE2b-512("gnet blind" | A | period u64) reduced mod L
    A'  = h * A                      (from the public key alone: what a client does)
    a'  = h * a mod L                (from the secret scalar: what the owner does)
    A' == a' * B

where A is the Ed25519 public key, a its (clamped) secret scalar and B the
base point. Signatures by a' are ordinary Ed25519 signatures (R | S) and
verify under A' with any Ed25519 verifier. The nonce prefix is derived from
the key's own prefix and h, so it is secret and differs per period.

Without A, h is a random-looking scalar, so A' reveals nothing about A, and
two periods' blinded keys cannot be linked (the discrete log of their ratio
is unknown). Everything here is a pure function of its inputs.
"""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium
import nacl.exceptions
import nacl.signing

_BLIND_CONTEXT = b"gnet blind"
_PREFIX_CONTEXT = b"gnet blind prefix"
KEY_SIZE = 32
SIGNATURE_SIZE = 64


class BlindingError(ValueError):
    """The key given cannot be blinded (not a valid Ed25519 public key)."""


def _reduce(digest64: bytes) -> bytes:
    return bytes(sodium.crypto_core_ed25519_scalar_reduce(digest64))


def blinding_factor(public_key: bytes, period: int) -> bytes:
    """The 32-byte scalar h (reduced mod L) that blinds `public_key` for `period`."""
    if len(public_key) != KEY_SIZE:
        raise BlindingError("an Ed25519 public key has 32 bytes")
    if not 0 <= period < 1 << 64:
        raise BlindingError("the period must fit in 64 bits")
    digest = hashlib.blake2b(_BLIND_CONTEXT + public_key + period.to_bytes(8, "big"), digest_size=64).digest()
    return _reduce(digest)


def blind_public_key(public_key: bytes, period: int) -> bytes:
    """A' = h*A: the blinded key a client computes from the address alone."""
    factor = blinding_factor(public_key, period)
    try:
        return bytes(sodium.crypto_scalarmult_ed25519_noclamp(factor, public_key))
    except nacl.exceptions.RuntimeError:
        raise BlindingError("not a valid Ed25519 public key (or one of small order)") from None


class BlindedSigner:
    """Signs for the blinded key of one period, from the owner's 32-byte Ed25519 seed."""

    def __init__(self, seed: bytes, period: int) -> None:
        if len(seed) != KEY_SIZE:
            raise BlindingError("an Ed25519 seed has 32 bytes")
        public_key = bytes(nacl.signing.SigningKey(seed).verify_key)
        expanded = hashlib.sha512(seed).digest()
        scalar = bytearray(expanded[:32])  # the clamped secret scalar a, as Ed25519 derives it
        scalar[0] &= 248
        scalar[31] &= 127
        scalar[31] |= 64
        factor = blinding_factor(public_key, period)
        self._scalar = bytes(sodium.crypto_core_ed25519_scalar_mul(factor, bytes(scalar)))
        self._prefix = hashlib.blake2b(_PREFIX_CONTEXT + expanded[32:] + factor, digest_size=32).digest()
        self.public_key = bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(self._scalar))
        self.period = period

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of `message` under `self.public_key` (RFC 8032 steps with a', prefix')."""
        r = _reduce(hashlib.sha512(self._prefix + message).digest())
        big_r = bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(r))
        k = _reduce(hashlib.sha512(big_r + self.public_key + message).digest())
        s = sodium.crypto_core_ed25519_scalar_add(r, sodium.crypto_core_ed25519_scalar_mul(k, self._scalar))
        return big_r + bytes(s)


def verify_blinded(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Standard Ed25519 verification (what a DHT node runs: it needs the blinded key only)."""
    if len(public_key) != KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.RuntimeError):
        return False
    return True
