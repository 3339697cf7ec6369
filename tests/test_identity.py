"""Identity key files and onion key rotation.

Key files live under pytest's tmp_path; rotation is driven with explicit
`now` values, never the clock.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nacl.public
import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from globalnet.identity import (
    ONION_KEY_GRACE,
    ONION_KEY_LIFETIME,
    Identity,
    IdentityFileError,
    OnionKeys,
    load_or_create_identity,
    solved_seed,
    verify_signature,
)
from globalnet.wire.records import node_id_of

T0 = 1_700_000_000.0


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def _pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# -- key files ----------------------------------------------------------------


def test_creates_a_key_file_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "id.pem"
    identity = load_or_create_identity(path)
    st_mode = path.stat().st_mode
    assert stat.S_ISREG(st_mode)
    assert stat.S_IMODE(st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert len(identity.node_id) == 20
    assert identity.node_id == node_id_of(identity.public_key)


def test_mode_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "id.pem"
        load_or_create_identity(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reload_gives_the_same_identity(tmp_path: Path) -> None:
    path = tmp_path / "id.pem"
    first = load_or_create_identity(path)
    content = path.read_bytes()
    second = load_or_create_identity(path)
    assert second.node_id == first.node_id
    assert second.public_key == first.public_key
    assert bytes(second.signing_key) == bytes(first.signing_key)
    assert path.read_bytes() == content  # loading never rewrites the file


def test_loads_a_key_written_by_another_tool(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.from_private_bytes(solved_seed(bytes(range(32))))  # a key whose id carries the work
    path = tmp_path / "id.pem"
    _write(path, _pem(key))
    identity = load_or_create_identity(path)
    raw_pub = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert identity.public_key == raw_pub
    assert identity.private_key_pem() == _pem(key)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o602, 0o660, 0o700 | 0o070])
def test_refuses_a_file_other_users_can_reach(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "id.pem"
    load_or_create_identity(path)
    path.chmod(mode)
    with pytest.raises(IdentityFileError) as info:
        load_or_create_identity(path)
    assert f"chmod 600 {path}" in str(info.value)
    assert f"{mode:o}" in str(info.value)


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "id.pem"
    node_id = load_or_create_identity(path).node_id
    for mode in (0o400, 0o600, 0o700):
        path.chmod(mode)
        assert load_or_create_identity(path).node_id == node_id


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        bytes(32),
    ],
    ids=["empty", "text", "bad-base64-body", "raw-32-bytes"],
)
def test_refuses_a_file_that_is_not_pem(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "id.pem"
    _write(path, content)
    with pytest.raises(IdentityFileError, match="not an Ed25519 PEM private key"):
        load_or_create_identity(path)


@pytest.mark.parametrize(
    "make_key",
    [
        x25519.X25519PrivateKey.generate,
        lambda: ec.generate_private_key(ec.SECP256R1()),
        ed448.Ed448PrivateKey.generate,
    ],
    ids=["x25519", "ec-p256", "ed448"],
)
def test_refuses_a_pem_key_that_is_not_ed25519(tmp_path: Path, make_key) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "id.pem"
    _write(path, _pem(make_key()))
    with pytest.raises(IdentityFileError, match="not Ed25519"):
        load_or_create_identity(path)


def test_refuses_a_password_protected_key(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    path = tmp_path / "id.pem"
    _write(path, pem)
    with pytest.raises(IdentityFileError):
        load_or_create_identity(path)


# -- signing ------------------------------------------------------------------


def test_sign_and_verify() -> None:
    identity = Identity(nacl.signing.SigningKey(bytes(32)))
    sig = identity.sign(b"message")
    assert len(sig) == 64
    assert verify_signature(identity.public_key, b"message", sig)
    assert not verify_signature(identity.public_key, b"messagE", sig)
    assert not verify_signature(Identity.generate().public_key, b"message", sig)
    assert not verify_signature(identity.public_key[:31], b"message", sig)
    assert not verify_signature(identity.public_key, b"message", sig[:63])
    # the PEM form is the same key, as cryptography sees it
    loaded = serialization.load_pem_private_key(identity.private_key_pem(), password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    pub = loaded.public_key()
    assert isinstance(pub, Ed25519PublicKey)
    pub.verify(sig, b"message")


# -- onion keys ---------------------------------------------------------------


def _onion(created: float = T0) -> OnionKeys:
    return OnionKeys(nacl.public.PrivateKey(bytes([7]) * 32), created)


def test_fresh_onion_keys() -> None:
    keys = OnionKeys.fresh(T0)
    assert keys.created == T0
    assert keys.previous is None
    assert keys.candidates(T0) == [bytes(keys.current)]


def test_no_rotation_before_the_lifetime() -> None:
    keys = _onion()
    first = bytes(keys.current)
    assert not keys.rotate_if_due(T0)
    assert not keys.rotate_if_due(T0 + ONION_KEY_LIFETIME - 1)
    assert bytes(keys.current) == first
    assert keys.previous is None
    assert keys.candidates(T0 + ONION_KEY_LIFETIME - 1) == [first]


def test_rotation_keeps_the_old_key_for_the_grace_period() -> None:
    keys = _onion()
    old = bytes(keys.current)
    now = T0 + ONION_KEY_LIFETIME
    assert keys.rotate_if_due(now)
    new = bytes(keys.current)
    assert new != old
    assert keys.created == now
    assert keys.previous_until == now + ONION_KEY_GRACE
    assert keys.candidates(now) == [new, old]  # newest first
    assert keys.candidates(now + ONION_KEY_GRACE - 1) == [new, old]
    assert keys.candidates(now + ONION_KEY_GRACE) == [new]
    assert keys.candidates(now + ONION_KEY_GRACE + 3600) == [new]
    assert not keys.rotate_if_due(now + ONION_KEY_GRACE)


def test_second_rotation_drops_the_oldest_key() -> None:
    keys = _onion()
    k0 = bytes(keys.current)
    keys.rotate_if_due(T0 + ONION_KEY_LIFETIME)
    k1 = bytes(keys.current)
    t2 = T0 + 2 * ONION_KEY_LIFETIME
    assert keys.rotate_if_due(t2)
    k2 = bytes(keys.current)
    assert keys.candidates(t2) == [k2, k1]
    assert k0 not in keys.candidates(t2)


def test_record_follows_the_onion_key() -> None:
    identity = Identity(nacl.signing.SigningKey(bytes(32)), _onion())
    before = identity.make_record((), now=T0)
    identity.onion.rotate_if_due(T0 + ONION_KEY_LIFETIME)
    after = identity.make_record((), now=T0 + ONION_KEY_LIFETIME)
    assert before.onion_key == bytes(identity.onion.previous.public_key)  # type: ignore[union-attr]
    assert after.onion_key == bytes(identity.onion.current.public_key)
    assert after.onion_key != before.onion_key
    assert after.identity_key == before.identity_key
