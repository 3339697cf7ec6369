"""The two DER documents a node writes: its Ed25519 key as PKCS#8 and its self-signed certificate.

Why by hand: both are fixed shapes of a few dozen bytes (RFC 8410 for the
key, RFC 5280 for a certificate with no extensions). Building them with the
`cryptography` package's x509 and serialization modules cost every node
about 2.5 MiB of memory, and with the C crypto backend nothing else in a
node needs `cryptography` at all (~8 MiB more of mapped code). The tests
check every byte with `cryptography` itself (tests/test_der.py).

Reading is as narrow: :func:`ed25519_seed_from_pkcs8` takes the one
unencrypted PKCS#8 v1 shape this module (and OpenSSL, and `cryptography`)
writes, and returns None for anything else, so the caller can fall back to
a full parser.
"""

from __future__ import annotations

import base64
import binascii
import datetime

__all__ = [
    "ED25519_SPKI_PREFIX",
    "ed25519_certificate",
    "ed25519_certificate_tbs",
    "ed25519_pkcs8",
    "ed25519_seed_from_pkcs8",
    "pem",
    "pem_body",
]

#: AlgorithmIdentifier { id-Ed25519 (1.3.101.112) }, no parameters (RFC 8410 section 3).
_ED25519_ALGORITHM = bytes.fromhex("300506032b6570")
#: SubjectPublicKeyInfo up to the 32 key bytes (RFC 8410 section 4).
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
#: OneAsymmetricKey v1 up to the 32 seed bytes: version 0, the algorithm, OCTET STRING { OCTET STRING seed }.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_COMMON_NAME = bytes.fromhex("0603550403")  # 2.5.4.3
#: Certificates carry 64-character base64 lines (RFC 7468 section 2).
_PEM_LINE = 64
#: A UTCTime covers 1950-2049; later dates are GeneralizedTime (RFC 5280 section 4.1.2.5).
_UTCTIME_END = 2050


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length (short or long form), content."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _integer(value: int) -> bytes:
    """A non-negative INTEGER, minimal two's complement (a leading 0 when the top bit is set)."""
    if value < 0:
        raise ValueError("only non-negative integers are written here")
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _time(when: datetime.datetime) -> bytes:
    when = when.astimezone(datetime.UTC)
    if 1950 <= when.year < _UTCTIME_END:
        return _tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, when.strftime("%Y%m%d%H%M%SZ").encode())


def _name(common_name: str) -> bytes:
    """Name: one RDN with one commonName, a UTF8String."""
    attribute = _tlv(0x30, _COMMON_NAME + _tlv(0x0C, common_name.encode("utf-8")))
    return _tlv(0x30, _tlv(0x31, attribute))


def ed25519_pkcs8(seed: bytes) -> bytes:
    """The DER PKCS#8 of an Ed25519 private key (its 32-byte seed)."""
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return _ED25519_PKCS8_PREFIX + seed


def ed25519_seed_from_pkcs8(der: bytes) -> bytes | None:
    """The seed of the PKCS#8 shape ed25519_pkcs8 writes; None for any other DER."""
    if len(der) == len(_ED25519_PKCS8_PREFIX) + 32 and der.startswith(_ED25519_PKCS8_PREFIX):
        return der[len(_ED25519_PKCS8_PREFIX) :]
    return None


def ed25519_certificate_tbs(
    public_key: bytes, serial: int, not_before: datetime.datetime, not_after: datetime.datetime, common_name: str
) -> bytes:
    """The TBSCertificate of a v3 certificate with subject = issuer and no extensions."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    if not 0 < serial < 1 << 159:
        raise ValueError("a serial number is positive and at most 20 bytes (RFC 5280 section 4.1.2.2)")
    name = _name(common_name)
    return _tlv(
        0x30,
        _tlv(0xA0, _integer(2))  # [0] EXPLICIT version v3
        + _integer(serial)
        + _ED25519_ALGORITHM
        + name
        + _tlv(0x30, _time(not_before) + _time(not_after))
        + name
        + ED25519_SPKI_PREFIX
        + public_key,
    )


def ed25519_certificate(tbs: bytes, signature: bytes) -> bytes:
    """The Certificate: the TBSCertificate, the algorithm, the Ed25519 signature over the TBS as a BIT STRING."""
    if len(signature) != 64:
        raise ValueError("an Ed25519 signature is 64 bytes")
    return _tlv(0x30, tbs + _ED25519_ALGORITHM + _tlv(0x03, b"\x00" + signature))


def pem(label: str, der: bytes) -> bytes:
    """RFC 7468 text: BEGIN line, base64 in 64-character lines, END line."""
    text = base64.b64encode(der).decode("ascii")
    lines = [text[i : i + _PEM_LINE] for i in range(0, len(text), _PEM_LINE)]
    return ("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n").encode("ascii")


def pem_body(label: str, text: bytes) -> bytes | None:
    """The DER inside the one `label` block that makes up `text` (whitespace around allowed); None if not that."""
    begin, end = f"-----BEGIN {label}-----".encode(), f"-----END {label}-----".encode()
    stripped = text.strip()
    if not stripped.startswith(begin) or not stripped.endswith(end):
        return None
    inner = stripped[len(begin) : len(stripped) - len(end)]
    if b"-----" in inner:
        return None
    try:
        return base64.b64decode(b"".join(inner.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
