"""TLS certificates made from, and read back to, node identity keys.

The listener's QUIC certificate is self-signed with its Ed25519 identity key,
so the dialler learns the listener's node id from the TLS handshake itself
(qh3 checks the CertificateVerify signature even with verification of the
chain turned off, which is what we want: there is no CA, the key is the name).
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from ..errors import ErrorKind, GnetError
from ..identity import Identity

#: DER SubjectPublicKeyInfo prefix of an Ed25519 key (RFC 8410).
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def certificate_pem(identity: Identity) -> tuple[bytes, bytes]:
    """A self-signed certificate and its PKCS#8 key, both PEM."""
    key = Ed25519PrivateKey.from_private_bytes(bytes(identity.signing_key))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gnet")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, None)
    )
    return cert.public_bytes(serialization.Encoding.PEM), identity.private_key_pem()


def identity_key_from_spki(spki: bytes) -> bytes:
    """The raw Ed25519 key of a peer certificate's SubjectPublicKeyInfo."""
    if len(spki) != 44 or not spki.startswith(_ED25519_SPKI_PREFIX):
        raise GnetError(ErrorKind.HANDSHAKE_FAILED, "peer certificate key is not Ed25519")
    return spki[len(_ED25519_SPKI_PREFIX) :]
