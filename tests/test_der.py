"""wire/der.py: the hand-written PKCS#8 key and TLS certificate, checked byte for byte by `cryptography`.

The node writes them without `cryptography` (memory, see tools/node_memory.py);
here `cryptography` is the independent reader: it must parse them, find the
same key, and verify the certificate's signature.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import nacl.signing
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from bench.node_memory import imported_by_a_node
from globalnet.identity import Identity
from globalnet.link.certs import certificate_pem, identity_key_from_spki
from globalnet.wire.der import (
    ed25519_certificate,
    ed25519_certificate_tbs,
    ed25519_pkcs8,
    ed25519_seed_from_pkcs8,
    pem,
    pem_body,
)

ROOT = Path(__file__).resolve().parent.parent
UTC = datetime.UTC


def test_pkcs8_is_what_cryptography_writes_and_reads() -> None:
    seed = bytes(range(32))
    reference = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert ed25519_pkcs8(seed) == reference
    assert ed25519_seed_from_pkcs8(reference) == seed
    text = pem("PRIVATE KEY", reference)
    assert text == Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert pem_body("PRIVATE KEY", b"\n  " + text + b"\n\n") == reference


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----",  # empty body: b"" is not a key
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_pem_body_refuses_other_text(text: bytes) -> None:
    body = pem_body("PRIVATE KEY", text)
    assert body is None or ed25519_seed_from_pkcs8(body) is None


def test_only_the_one_pkcs8_shape_is_read_directly() -> None:
    der = ed25519_pkcs8(bytes(32))
    assert ed25519_seed_from_pkcs8(der[:-1]) is None
    assert ed25519_seed_from_pkcs8(der + b"\x00") is None
    assert ed25519_seed_from_pkcs8(b"\x31" + der[1:]) is None
    with pytest.raises(ValueError):
        ed25519_pkcs8(bytes(31))


def test_certificate_parses_and_verifies_with_cryptography() -> None:
    identity = Identity.from_label(b"der cert")
    cert_pem, key_pem = certificate_pem(identity)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.version == x509.Version.v3
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gnet"
    assert 0 < cert.serial_number < 1 << 159
    assert len(cert.extensions) == 0
    now = datetime.datetime.now(UTC)
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=366)
    public = cert.public_key()
    assert isinstance(public, Ed25519PublicKey)
    assert public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == identity.public_key
    public.verify(cert.signature, cert.tbs_certificate_bytes)  # raises if the signature is wrong
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert identity_key_from_spki(spki) == identity.public_key
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    assert key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == identity.public_key


@pytest.mark.parametrize(
    ("when", "tag"),
    [
        (datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), 0x17),  # UTCTime through 2049
        (datetime.datetime(2050, 1, 1, tzinfo=UTC), 0x18),  # GeneralizedTime from 2050 (RFC 5280 4.1.2.5)
    ],
)
def test_validity_dates_use_the_time_type_rfc5280_asks_for(when: datetime.datetime, tag: int) -> None:
    signing = nacl.signing.SigningKey(bytes(32))
    public = bytes(signing.verify_key)
    tbs = ed25519_certificate_tbs(public, 12345, when - datetime.timedelta(days=1), when, "gnet")
    assert bytes((tag,)) in tbs
    cert = x509.load_der_x509_certificate(ed25519_certificate(tbs, signing.sign(tbs).signature))
    assert cert.not_valid_after_utc == when
    assert cert.serial_number == 12345


def test_long_elements_use_the_long_length_form() -> None:
    signing = nacl.signing.SigningKey(bytes(32))
    now = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    tbs = ed25519_certificate_tbs(bytes(signing.verify_key), 1 << 150, now, now, "n" * 64)
    assert tbs[1] == 0x82  # two length bytes follow: 256..65535 bytes
    cert = x509.load_der_x509_certificate(ed25519_certificate(tbs, signing.sign(tbs).signature))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "n" * 64
    assert cert.serial_number == 1 << 150
    with pytest.raises(ValueError):
        ed25519_certificate_tbs(bytes(signing.verify_key), 1 << 159, now, now, "gnet")


def test_a_node_process_loads_no_face_it_was_not_asked_for() -> None:
    """What an idle relay imports (bench/node_memory.py measures what it costs): no face, and on
    the C backend not `cryptography` either."""
    assert [line for line in imported_by_a_node() if line.startswith("unexpected=")] == []


def test_node_counters_scrape_as_prometheus_families() -> None:
    """The node counts in plain numbers; the registry (only with -metrics) exposes them as before."""
    from prometheus_client.parser import text_string_to_metric_families

    from globalnet.metrics import NodeCounters
    from globalnet.metrics.registry import NodeMetrics

    counters = NodeCounters()
    for seconds in (0.04, 0.3, 0.3, 45.0):
        counters.circuit_built(seconds)
    counters.dht_lookup(ok=True)
    counters.dht_lookup(ok=False)
    text = NodeMetrics(counters).exposition().decode()
    samples = {(s.name, s.labels.get("le")): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("gnet_circuit_build_seconds_bucket", "0.05")] == 1
    assert samples[("gnet_circuit_build_seconds_bucket", "0.25")] == 1
    assert samples[("gnet_circuit_build_seconds_bucket", "0.5")] == 3
    assert samples[("gnet_circuit_build_seconds_bucket", "30.0")] == 3
    assert samples[("gnet_circuit_build_seconds_bucket", "+Inf")] == 4
    assert samples[("gnet_circuit_build_seconds_count", None)] == 4
    assert samples[("gnet_circuit_build_seconds_sum", None)] == pytest.approx(45.64)
    assert samples[("gnet_dht_lookups_total", None)] == 2
    assert samples[("gnet_dht_lookup_failures_total", None)] == 1
