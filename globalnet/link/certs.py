"""TLS certificates made from, and read back to, node identity keys.

The listener's QUIC certificate is self-signed with its Ed25519 identity key,
so the dialler learns the listener's node id from the TLS handshake itself
(qh3 checks the CertificateVerify signature even with verification of the
chain turned off, which is what we want: there is no CA, the key is the name).
"""

from __future__ import annotations

import datetime
import secrets

from ..errors import ErrorKind, GnetError
from ..identity import Identity
from ..wire.der import ED25519_SPKI_PREFIX, ed25519_certificate, ed25519_certificate_tbs, pem


def certificate_pem(identity: Identity) -> tuple[bytes, bytes]:
    """A self-signed certificate (valid from a day ago for a year) and its PKCS#8 key, both PEM."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    tbs = ed25519_certificate_tbs(
        identity.public_key,
        serial=secrets.randbits(159) | 1,  # positive, at most 20 bytes, like x509.random_serial_number()
        not_before=now - datetime.timedelta(days=1),
        not_after=now + datetime.timedelta(days=365),
        common_name="gnet",
    )
    return pem("CERTIFICATE", ed25519_certificate(tbs, identity.sign(tbs))), identity.private_key_pem()


def identity_key_from_spki(spki: bytes) -> bytes:
    """The raw Ed25519 key of a peer certificate's SubjectPublicKeyInfo."""
    if len(spki) != 44 or not spki.startswith(ED25519_SPKI_PREFIX):
        raise GnetError(ErrorKind.HANDSHAKE_FAILED, "peer certificate key is not Ed25519")
    return spki[len(ED25519_SPKI_PREFIX) :]
