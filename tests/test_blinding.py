"""Ed25519 key blinding (globalnet.crypto.blinding), checked against independent verifiers."""

from __future__ import annotations

import hashlib

import nacl.signing
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from globalnet.crypto.blinding import BlindedSigner, BlindingError, blind_public_key, blinding_factor, verify_blinded

SEED = bytes(range(32))
PERIOD = 20426


def _public(seed: bytes) -> bytes:
    return bytes(nacl.signing.SigningKey(seed).verify_key)


def _cryptography_verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def test_owner_and_client_derive_the_same_blinded_key() -> None:
    signer = BlindedSigner(SEED, PERIOD)
    assert signer.public_key == blind_public_key(_public(SEED), PERIOD)


def test_a_blinded_signature_verifies_under_the_key_a_client_computes_from_the_address_alone() -> None:
    signer = BlindedSigner(SEED, PERIOD)
    client_key = blind_public_key(_public(SEED), PERIOD)
    signature = signer.sign(b"descriptor body")
    assert len(signature) == 64
    assert verify_blinded(client_key, b"descriptor body", signature)
    assert _cryptography_verifies(client_key, b"descriptor body", signature)  # an independent Ed25519 verifier


def test_a_signature_does_not_verify_for_another_message_period_or_key() -> None:
    signer = BlindedSigner(SEED, PERIOD)
    signature = signer.sign(b"m")
    assert not verify_blinded(signer.public_key, b"m2", signature)
    assert not verify_blinded(blind_public_key(_public(SEED), PERIOD + 1), b"m", signature)
    assert not verify_blinded(_public(SEED), b"m", signature)  # the unblinded key does not verify it
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify_blinded(signer.public_key, b"m", flipped)
    assert not verify_blinded(signer.public_key, b"m", signature[:63])


def test_another_period_gives_an_unrelated_key() -> None:
    public = _public(SEED)
    keys = {blind_public_key(public, p) for p in range(PERIOD, PERIOD + 50)}
    assert len(keys) == 50
    assert public not in keys
    assert blinding_factor(public, PERIOD) != blinding_factor(public, PERIOD + 1)


def test_regression_vector() -> None:
    # Fixed by this implementation (domain "gnet blind"); a change here changes every descriptor key.
    signer = BlindedSigner(SEED, PERIOD)
    assert signer.public_key.hex() == blind_public_key(_public(SEED), PERIOD).hex()
    assert hashlib.sha256(signer.public_key + signer.sign(b"vector")).hexdigest() == VECTOR


VECTOR = "0766912fc1b6005623220ce491785cc6da58cc6aadf33954c77e7ff0f5c30482"


def test_bad_inputs_are_refused_clearly() -> None:
    with pytest.raises(BlindingError):
        blind_public_key(b"\x00" * 31, PERIOD)
    with pytest.raises(BlindingError):
        blind_public_key(bytes(32), PERIOD)  # not a usable point
    with pytest.raises(BlindingError):
        blind_public_key(_public(SEED), -1)
    with pytest.raises(BlindingError):
        BlindedSigner(b"short", PERIOD)


@settings(max_examples=60, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), period=st.integers(0, 2**40), message=st.binary(max_size=300))
def test_blinding_round_trips_for_any_key_and_period(seed: bytes, period: int, message: bytes) -> None:
    signer = BlindedSigner(seed, period)
    client_key = blind_public_key(_public(seed), period)
    assert signer.public_key == client_key
    signature = signer.sign(message)
    assert verify_blinded(client_key, message, signature)
    assert _cryptography_verifies(client_key, message, signature)
