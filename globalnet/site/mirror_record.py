"""Mirror records (sans-IO): how a client finds a site's mirrors in the DHT, and what the DHT learns.

Why: a site must stay reachable with its publisher offline, so every mirror
lists itself; mirrors must stay hidden, so what they list is the address of a
hidden service of their own (one per site, so two sites a node mirrors cannot
be linked), and nobody without the site's address may read it.

Design (see README "Sites"). Mirrors do not hold the site key, so they cannot
sign for the site; the content is verified against the signed manifest
anyway, so a forged mirror record can at worst point at a useless mirror.
Each mirror writes its own DHT value, a topic slot value (dht/values.py,
kind 3):

- topic = the site's blinded key for the period (crypto/blinding.py): it
  changes every period and does not reveal the site key;
- writer = the blinded key (same period) of a record key the mirror derives
  from its per-site service seed: unlinkable across periods and to the
  mirror's own service descriptor;
- slot = a hash of the writer key, one of TOPIC_SLOTS keys under the topic; a
  client reads all of them;
- body = the mirror's service key (its `.gnet` address), sealed with
  XChaCha20-Poly1305 to a key from the site's public key and period
  (service/descriptor_crypto.py, as descriptors are): only those who know
  the site address can read it.

A DHT node validates the writer's signature, the slot and the lifetime and
learns only the blinded topic, an unlinkable writer key and ciphertext:
never the site key, a mirror's service address, nor any IP.

Slots can be squatted: a slot keeps the value with the highest seq whoever
wrote it, and every record shows the topic, so anyone who saw one record can
fill all TOPIC_SLOTS slots with junk of seq 2^64-1 and the mirrors cannot win
them back. So the site's owner also publishes an **owner list**: a blinded
value (dht/values.py kind 2, as a service descriptor) under the site's own
blinded key, signed by it (only the site key can write it), its body the
service keys of up to MAX_LISTED mirrors it has seen, sealed to the site
address like the records. Clients read it beside the slots: squatting the
slots then hides only the mirrors the owner has not listed yet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import nacl.signing

from ..crypto.blinding import BlindedSigner, blind_public_key
from ..dht.values import (
    TOPIC_SLOTS,
    BlindedValue,
    TopicSlotValue,
    ValueKind,
    blinded_value_key,
    decode_topic_slot_value,
    topic_slot_key,
    topic_slot_of,
    verify_blinded_value,
    verify_topic_slot_value,
)
from ..errors import GnetError
from ..service.descriptor_crypto import LayerError, open_descriptor_body, seal_descriptor_body
from .manifest import SiteError

_LAYER_KIND = b"gnet site mirrors"
_OWNER_LAYER_KIND = b"gnet site owner mirrors"
MAX_LISTED = 16  # mirrors in the owner list (32 bytes each)
_RECORD_SEED_CONTEXT = b"gnet site mirror record key"
_RECORD_VERSION = 1


@dataclass(frozen=True)
class MirrorRecord:
    dht_key: bytes
    value: bytes


def mirror_record_keys(site_key: bytes, period: int) -> list[bytes]:
    """Every DHT key a client reads to find the site's mirrors for `period`."""
    topic = blind_public_key(site_key, period)
    return [topic_slot_key(topic, slot) for slot in range(TOPIC_SLOTS)]


def record_seed(mirror_service_seed: bytes, variant: int = 0) -> bytes:
    """The mirror's record key for one site, derived from its per-site service seed.

    `variant` picks another key (hence another slot) when the slot of the
    first one is taken by another mirror this period: one slot holds one value."""
    extra = b"" if variant == 0 else variant.to_bytes(2, "big")
    return hashlib.blake2b(_RECORD_SEED_CONTEXT + mirror_service_seed + extra, digest_size=32).digest()


def record_slot(site_key: bytes, mirror_service_seed: bytes, period: int, variant: int = 0) -> bytes:
    """The DHT key a mirror's record would take with `variant` in `period`."""
    writer = BlindedSigner(record_seed(mirror_service_seed, variant), period).public_key
    return topic_slot_key(blind_public_key(site_key, period), topic_slot_of(writer))


def build_mirror_record(
    site_key: bytes, period: int, mirror_service_seed: bytes, mirror_service_key: bytes, seq: int, expires: int, variant: int = 0
) -> MirrorRecord:
    """The DHT (key, value) by which a mirror lists its service for the site in `period`."""
    topic = blind_public_key(site_key, period)
    signer = BlindedSigner(record_seed(mirror_service_seed, variant), period)
    body = seal_descriptor_body(_LAYER_KIND, site_key, period, bytes([_RECORD_VERSION]) + mirror_service_key)
    unsigned = TopicSlotValue(topic, signer.public_key, seq, expires, body)
    signed = TopicSlotValue(topic, signer.public_key, seq, expires, body, signer.sign(unsigned.signed_message()))
    return MirrorRecord(signed.key, signed.encode())


def open_mirror_record(site_key: bytes, period: int, dht_key: bytes, value: bytes, now: float) -> bytes:
    """The mirror's service key from a record found under `dht_key`; SiteError if it is not a genuine one for this site."""
    try:
        slot = verify_topic_slot_value(dht_key, value, now)
    except GnetError as exc:
        raise SiteError(f"mirror record refused: {exc.detail}") from None
    if slot.topic != blind_public_key(site_key, period):
        raise SiteError("mirror record for another site or period")
    try:
        plaintext = open_descriptor_body(_LAYER_KIND, site_key, period, slot.body)
    except LayerError:
        raise SiteError("mirror record does not open with this site's address") from None
    if len(plaintext) != 33 or plaintext[0] != _RECORD_VERSION:
        raise SiteError("mirror record of an unknown version")
    return plaintext[1:]


def writer_of(value: bytes) -> bytes:
    """The (blinded, per-period) writer key of a record, to tell records apart."""
    return decode_topic_slot_value(value).writer_key


def owner_list_key(site_key: bytes, period: int) -> bytes:
    """The DHT key of the site owner's list of mirrors for `period`."""
    return blinded_value_key(ValueKind.SERVICE_DESCRIPTOR, blind_public_key(site_key, period))


def build_owner_list(site_seed: bytes, period: int, mirror_keys: list[bytes], seq: int, expires: int) -> MirrorRecord:
    """The owner's signed list of (at most MAX_LISTED) mirror service keys for `period`."""
    signer = BlindedSigner(site_seed, period)
    site_key = bytes(nacl.signing.SigningKey(site_seed).verify_key)
    listed = list(dict.fromkeys(mirror_keys))[:MAX_LISTED]
    body = seal_descriptor_body(_OWNER_LAYER_KIND, site_key, period, bytes([_RECORD_VERSION]) + b"".join(listed))
    unsigned = BlindedValue(ValueKind.SERVICE_DESCRIPTOR, signer.public_key, period, seq, expires, body)
    signed = BlindedValue(unsigned.kind, unsigned.blinded_key, period, seq, expires, body, signer.sign(unsigned.signed_message()))
    return MirrorRecord(signed.key, signed.encode())


def open_owner_list(site_key: bytes, period: int, value: bytes, now: float) -> list[bytes]:
    """The mirror service keys in the owner's list; SiteError if it is not the site owner's for `period`."""
    try:
        listed = verify_blinded_value(owner_list_key(site_key, period), value, now)
    except GnetError as exc:
        raise SiteError(f"owner list refused: {exc.detail}") from None
    try:
        plaintext = open_descriptor_body(_OWNER_LAYER_KIND, site_key, period, listed.body)
    except LayerError:
        raise SiteError("owner list does not open with this site's address") from None
    keys = plaintext[1:]
    if not plaintext or plaintext[0] != _RECORD_VERSION or len(keys) % 32 or len(keys) > 32 * MAX_LISTED:
        raise SiteError("owner list of an unknown version or length")
    return [keys[i : i + 32] for i in range(0, len(keys), 32)]
