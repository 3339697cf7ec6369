"""Site addresses: `<56 base32>.gnet` like a service's, with version 2.

A client tells a site (fetch, then verify every byte against the signed
manifest) from a hidden service (connect) by the version byte alone; the
checksum covers the version, so one cannot be mistaken for the other.
"""

from __future__ import annotations

import base64

from ..service.address import SUFFIX, AddressError, _checksum

SITE_VERSION = 2


def encode_site_address(site_key: bytes) -> str:
    raw = site_key + _checksum(site_key, SITE_VERSION) + bytes([SITE_VERSION])
    return base64.b32encode(raw).decode().lower() + SUFFIX


def is_site_address(text: str) -> bool:
    try:
        decode_site_address(text)
    except AddressError:
        return False
    return True


def decode_site_address(text: str) -> bytes:
    """The site key of a site address; AddressError says what is wrong (without the address)."""
    name = text.strip().lower().removesuffix(SUFFIX)
    if len(name) != 56:
        raise AddressError("not a site address", "not a site address: it has the wrong length")
    try:
        raw = base64.b32decode(name.upper())
    except ValueError:
        raise AddressError("not a site address", "not a site address: not base32") from None
    key, checksum, version = raw[:32], raw[32:34], raw[34]
    if checksum != _checksum(key, version):
        raise AddressError("checksum does not match: a typo?", "checksum does not match: a typo?")
    if version != SITE_VERSION:
        raise AddressError("not a site address", f"address version {version} is not a site")
    return key
