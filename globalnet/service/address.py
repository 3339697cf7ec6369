"""`.gnet` addresses: base32(service key | checksum | version), like Tor's v3 onions.

The address *is* the service's Ed25519 public key, so a client that reaches
the address reaches the key's holder and no one else. The two checksum bytes
catch a typo before any network work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

import nacl.bindings
import nacl.exceptions

from ..crypto.blinding import BlindingError, blind_public_key
from ..errors import ErrorKind, GnetError

VERSION = 1
SUFFIX = ".gnet"
_CHECKSUM_CONTEXT = b".gnet checksum"
ADDRESS_LENGTH = 56  # base32 of 35 bytes


class AddressError(GnetError):
    """`problem` says what is wrong without the address (safe to log at info)."""

    def __init__(self, detail: str, problem: str | None = None) -> None:
        super().__init__(ErrorKind.SERVICE_UNREACHABLE, detail)
        self.problem = problem or detail


def _bad(text: str, problem: str) -> AddressError:
    return AddressError(f"'{text}' is not a .gnet address: {problem}", problem)


def _checksum(key: bytes, version: int = VERSION) -> bytes:
    return hashlib.blake2b(_CHECKSUM_CONTEXT + key + bytes([version]), digest_size=2).digest()


def encode_address(service_key: bytes) -> str:
    """`<56 base32 chars>.gnet` for an Ed25519 public key."""
    raw = service_key + _checksum(service_key) + bytes([VERSION])
    return base64.b32encode(raw).decode().lower() + SUFFIX


def decode_address(text: str) -> bytes:
    """The service key of an address; AddressError says what is wrong."""
    name = text.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.removesuffix(SUFFIX)
    if len(name) != ADDRESS_LENGTH:
        raise _bad(text, f"{len(name)} characters, an address has {ADDRESS_LENGTH}")
    try:
        raw = base64.b32decode(name.upper())
    except (ValueError, binascii.Error):
        raise _bad(text, "not base32 (a-z, 2-7)") from None
    key, checksum, version = raw[:32], raw[32:34], raw[34]
    # The checksum covers the version byte: check it first, so a typo in the
    # last character (which holds the version bits) reads as a typo.
    if checksum != _checksum(key, version):
        raise _bad(text, "checksum does not match: a typo?")
    if version != VERSION:
        raise _bad(text, f"address version {version}; this client knows version {VERSION}")
    return key


def address_problem(text: str) -> str | None:
    """What is wrong with a `.gnet` address, without the address (for logs at info); None if valid."""
    try:
        decode_address(text)
    except AddressError as exc:
        return exc.problem
    return None


def check_service_key(address: str, service_key: bytes) -> None:
    """AddressError unless the key is a valid Ed25519 point (its descriptors are found by its
    blinded key). Apart from decode_address, which checks only the form, because it costs a
    point multiplication."""
    try:
        blind_public_key(service_key, 0)
    except BlindingError:
        raise _bad(address, "it does not hold a valid Ed25519 key") from None


def service_id(service_key: bytes) -> bytes:
    """20-byte id of a service (what an access point indexes registrations by)."""
    return hashlib.blake2b(b"gnet service id" + service_key, digest_size=20).digest()


def service_onion_key(service_private_seed: bytes) -> bytes:
    """X25519 private key the service answers end-to-end handshakes with (from its Ed25519 key)."""
    signing = nacl.bindings.crypto_sign_seed_keypair(service_private_seed)[1]
    return bytes(nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(signing))


def service_onion_public(service_key: bytes) -> bytes:
    """The X25519 public key a client handshakes with, derived from the address alone."""
    try:
        return bytes(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(service_key))
    except nacl.exceptions.RuntimeError:
        raise AddressError("the address does not hold a valid Ed25519 key") from None
