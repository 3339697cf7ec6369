"""Mirror records in the DHT: valid for DHT nodes, readable only with the site address, leak nothing."""

from __future__ import annotations

import nacl.signing
import pytest

from globalnet.crypto.blinding import blind_public_key
from globalnet.dht.values import TOPIC_SLOTS, validate_value
from globalnet.errors import ProtocolError
from globalnet.site.manifest import SiteError
from globalnet.site.mirror_record import build_mirror_record, mirror_record_keys, open_mirror_record, record_seed

NOW = 1_800_000_000
PERIOD = NOW // 86400
SITE = nacl.signing.SigningKey(bytes([7]) * 32)
SITE_KEY = bytes(SITE.verify_key)
OTHER_SITE_KEY = bytes(nacl.signing.SigningKey(bytes([8]) * 32).verify_key)


def _mirror(n: int) -> tuple[bytes, bytes]:
    seed = bytes([n]) * 32
    return seed, bytes(nacl.signing.SigningKey(seed).verify_key)


def test_a_record_is_a_valid_dht_value_that_opens_to_the_mirror_service() -> None:
    seed, service = _mirror(1)
    record = build_mirror_record(SITE_KEY, PERIOD, seed, service, seq=1, expires=NOW + 3600)
    assert record.dht_key in mirror_record_keys(SITE_KEY, PERIOD)
    assert len(mirror_record_keys(SITE_KEY, PERIOD)) == TOPIC_SLOTS
    valid = validate_value(record.dht_key, record.value, NOW)  # what any DHT node runs
    assert valid.seq == 1
    assert open_mirror_record(SITE_KEY, PERIOD, record.dht_key, record.value, NOW) == service


def test_what_the_dht_sees_holds_no_site_key_no_mirror_address_no_ip() -> None:
    seed, service = _mirror(2)
    record = build_mirror_record(SITE_KEY, PERIOD, seed, service, seq=3, expires=NOW + 3600)
    for secret in (SITE_KEY, service, seed, record_seed(seed), b"127.0.0.1", bytes([127, 0, 0, 1])):
        assert secret not in record.value and secret not in record.dht_key
    # the next period's record shares no key material with this one (unlinkable)
    later = build_mirror_record(SITE_KEY, PERIOD + 1, seed, service, seq=3, expires=NOW + 3600)
    assert later.value[1:65] != record.value[1:65]
    assert blind_public_key(SITE_KEY, PERIOD) in record.value  # the topic is the blinded key only


def test_two_sites_mirrored_by_one_node_are_unlinkable() -> None:
    a = build_mirror_record(SITE_KEY, PERIOD, *_mirror(3), seq=1, expires=NOW + 60)
    b = build_mirror_record(OTHER_SITE_KEY, PERIOD, *_mirror(4), seq=1, expires=NOW + 60)  # per-site identity
    assert a.value[33:65] != b.value[33:65]


def test_forgeries_and_misplaced_records_are_refused() -> None:
    seed, service = _mirror(5)
    record = build_mirror_record(SITE_KEY, PERIOD, seed, service, seq=1, expires=NOW + 3600)
    for i in range(len(record.value)):
        bad = bytearray(record.value)
        bad[i] ^= 0x40
        with pytest.raises((ProtocolError, SiteError)):
            validate_value(record.dht_key, bytes(bad), NOW)
    other_slot = next(k for k in mirror_record_keys(SITE_KEY, PERIOD) if k != record.dht_key)
    with pytest.raises(ProtocolError, match="another key or slot"):
        validate_value(other_slot, record.value, NOW)
    with pytest.raises(ProtocolError, match="expired"):
        validate_value(record.dht_key, record.value, NOW + 3600)
    with pytest.raises(ProtocolError, match="too long"):
        too_long = build_mirror_record(SITE_KEY, PERIOD, seed, service, seq=1, expires=NOW + 10 * 86400)
        validate_value(too_long.dht_key, too_long.value, NOW)
    with pytest.raises(SiteError, match="another site"):
        open_mirror_record(OTHER_SITE_KEY, PERIOD, record.dht_key, record.value, NOW)


def test_a_writer_without_the_site_address_cannot_make_a_record_that_opens() -> None:
    # Someone who knows only the blinded topic (a DHT node) writes a well-signed value: DHT-valid, but it does not open.
    from globalnet.crypto.blinding import BlindedSigner
    from globalnet.dht.values import TopicSlotValue

    topic = blind_public_key(SITE_KEY, PERIOD)
    signer = BlindedSigner(bytes([9]) * 32, PERIOD)
    unsigned = TopicSlotValue(topic, signer.public_key, 1, NOW + 60, bytes(80))
    forged = TopicSlotValue(topic, signer.public_key, 1, NOW + 60, bytes(80), signer.sign(unsigned.signed_message()))
    validate_value(forged.key, forged.encode(), NOW)
    with pytest.raises(SiteError, match="does not open"):
        open_mirror_record(SITE_KEY, PERIOD, forged.key, forged.encode(), NOW)


def test_the_owner_list_is_a_dht_value_only_the_site_key_can_write_and_only_its_address_opens() -> None:
    from globalnet.site.mirror_record import MAX_LISTED, build_owner_list, open_owner_list, owner_list_key

    services = [_mirror(n)[1] for n in range(1, MAX_LISTED + 4)]
    listed = build_owner_list(bytes([7]) * 32, PERIOD, services, seq=5, expires=NOW + 3600)
    assert listed.dht_key == owner_list_key(SITE_KEY, PERIOD)
    assert validate_value(listed.dht_key, listed.value, NOW).seq == 5  # what any DHT node runs
    assert open_owner_list(SITE_KEY, PERIOD, listed.value, NOW) == services[:MAX_LISTED]
    for secret in (SITE_KEY, *services):
        assert secret not in listed.value and secret not in listed.dht_key
    with pytest.raises(SiteError):
        open_owner_list(OTHER_SITE_KEY, PERIOD, listed.value, NOW)
    # another key's list cannot be stored where this site's owner list lives
    forged = build_owner_list(bytes([8]) * 32, PERIOD, services, seq=2**64 - 1, expires=NOW + 3600)
    with pytest.raises(ProtocolError):
        validate_value(owner_list_key(SITE_KEY, PERIOD), forged.value, NOW)
