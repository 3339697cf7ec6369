"""The mirror's sans-IO parts on a fake clock with exact bytes: the site protocol, the responder's
answers, a mirror's schedule, late mirrors joining a fetch, record slots that avoid each other."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import nacl.signing
import pytest

from globalnet.errors import ProtocolError
from globalnet.site.announcements import AnnouncementStore
from globalnet.site.broadcast import BroadcastKind, make_message, update_body
from globalnet.site.cache import SiteCache
from globalnet.site.fetch import FetchFailed, FileDone, FileFetch, Request
from globalnet.site.manifest import CHUNK, file_entry, sign_manifest
from globalnet.site.mirror_core import (
    ANNOUNCE_TRIES,
    NOT_READY_RECHECK,
    PERIOD,
    RECORD_GRAIN,
    RECORD_LIFETIME,
    REPUBLISH_BEFORE,
    RETRY,
    SYNC_INTERVAL,
    Announce,
    MirrorCore,
    PublishRecord,
    Sync,
    VerifyRecord,
)
from globalnet.site.mirror_record import build_mirror_record, record_slot
from globalnet.site.protocol import (
    HEADER,
    MAX_RESPONSE_BODY,
    RequestDecoder,
    RequestType,
    ResponseDecoder,
    SiteRequest,
    Status,
    chunk_request,
    encode_request,
    encode_response,
)
from globalnet.site.responder import SiteResponder

SEED = bytes([5]) * 32
SITE_KEY = bytes(nacl.signing.SigningKey(SEED).verify_key)
BIG = os.urandom(3 * CHUNK + 10)
FILES = {"index.html": b"<h1>hi</h1>", "big.bin": BIG}
NOW = 1_800_000_000.0


# -- the protocol ----------------------------------------------------------------------
def test_requests_and_responses_round_trip_in_any_split() -> None:
    stream = encode_request(RequestType.MANIFEST) + chunk_request(b"\xaa" * 32, 7) + encode_request(RequestType.BROADCAST, b"x" * 5)
    decoder = RequestDecoder()
    got = [r for i in range(len(stream)) for r in decoder.requests(stream[i : i + 1])]
    assert got == [SiteRequest(RequestType.MANIFEST, b""), SiteRequest(RequestType.CHUNK, b"\xaa" * 32 + struct.pack(">I", 7)),
                   SiteRequest(RequestType.BROADCAST, b"xxxxx")]  # fmt: skip
    assert got[1].chunk == (b"\xaa" * 32, 7)
    responses = ResponseDecoder().responses(encode_response(Status.OK, b"abc") + encode_response(Status.NOT_FOUND))
    assert [(r.status, r.body) for r in responses] == [(Status.OK, b"abc"), (Status.NOT_FOUND, b"")]


def test_oversize_or_unknown_messages_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        RequestDecoder().requests(HEADER.pack(RequestType.CHUNK, 1 << 20))
    with pytest.raises(ProtocolError, match="exceeds"):
        ResponseDecoder().responses(HEADER.pack(Status.OK, MAX_RESPONSE_BODY + 1))
    with pytest.raises(ProtocolError, match="unknown site request"):
        RequestDecoder().requests(HEADER.pack(99, 0))
    with pytest.raises(ProtocolError, match="unknown site response"):
        ResponseDecoder().responses(HEADER.pack(99, 0))
    with pytest.raises(ProtocolError, match="36 bytes"):
        SiteRequest(RequestType.CHUNK, b"short").chunk  # noqa: B018


# -- the responder's answers (no sockets: answer() is what a connection gets) -----------
def _cache(tmp_path: Path) -> tuple[SiteCache, bytes]:
    cache = SiteCache(tmp_path / "cache")
    manifest = sign_manifest(SEED, [file_entry(p, d) for p, d in FILES.items()], 1, int(NOW))
    cache.accept_manifest(SITE_KEY, manifest.encode())
    for path, data in FILES.items():
        cache.put_file(SITE_KEY, path, data)
    return cache, manifest.encode()


def test_the_responder_serves_the_manifest_and_chunks_and_hands_broadcasts_on(tmp_path: Path) -> None:
    cache, manifest = _cache(tmp_path)
    heard: list[tuple[bytes, str]] = []
    responder = SiteResponder(cache, SITE_KEY, lambda data, label: heard.append((data, label)) or "refused for the test", AnnouncementStore())
    assert responder.answer(SiteRequest(RequestType.MANIFEST, b""), "s1") == encode_response(Status.OK, manifest)
    entry = file_entry("big.bin", BIG)
    for index in range(4):
        request = RequestDecoder().requests(chunk_request(entry.sha256, index))[0]
        assert responder.answer(request, "s1") == encode_response(Status.OK, BIG[index * CHUNK : (index + 1) * CHUNK])
    missing = RequestDecoder().requests(chunk_request(entry.sha256, 4))[0]
    assert ResponseDecoder().responses(responder.answer(missing, "s1"))[0].status is Status.NOT_FOUND
    bad = SiteRequest(RequestType.CHUNK, b"junk")
    assert ResponseDecoder().responses(responder.answer(bad, "s1"))[0].status is Status.BAD_REQUEST
    refused = ResponseDecoder().responses(responder.answer(SiteRequest(RequestType.BROADCAST, b"msg"), "s2"))[0]
    assert (refused.status, refused.body, heard) == (Status.REFUSED, b"refused for the test", [(b"msg", "s2")])
    other = SiteResponder(SiteCache(tmp_path / "empty"), SITE_KEY, lambda d, lbl: None, AnnouncementStore())
    assert ResponseDecoder().responses(other.answer(SiteRequest(RequestType.MANIFEST, b""), "s"))[0].status is Status.NOT_FOUND


# -- a mirror's schedule ------------------------------------------------------------------
def test_a_mirror_publishes_syncs_and_republishes_before_its_record_expires() -> None:
    core = MirrorCore(NOW)
    actions = core.handle_timer(NOW)
    assert actions == [PublishRecord((int(NOW // PERIOD),), int(NOW) + RECORD_LIFETIME, int(NOW) * 1000), Sync()]
    core.record_published(NOW, int(NOW // PERIOD), int(NOW) + RECORD_LIFETIME)
    core.sync_done(NOW + 1, held_seq=1, complete=True)
    assert core.handle_timer(NOW + 2) == []
    # our slot is read back once, then the next sync and the republish come on time
    assert core.handle_timer(NOW + 10) == [VerifyRecord(int(NOW // PERIOD))]
    core.slot_kept()
    assert core.get_timer() == min(NOW + RECORD_LIFETIME - REPUBLISH_BEFORE, NOW + 1 + SYNC_INTERVAL)
    assert Sync() in core.handle_timer(NOW + 1 + SYNC_INTERVAL)


def test_an_update_heard_syncs_at_once_and_again_while_behind() -> None:
    core = MirrorCore(NOW, held_seq=1)
    core.handle_timer(NOW)
    core.sync_done(NOW, 1, True)
    assert core.update_heard(2, NOW + 5) is True
    assert core.update_heard(2, NOW + 5) is False  # not news twice
    assert core.update_heard(1, NOW + 5) is False  # nor a lower seq
    assert Sync() in core.handle_timer(NOW + 5)
    assert core.handle_timer(NOW + 5) == []  # one sync at a time
    core.sync_done(NOW + 6, held_seq=1, complete=True)  # the new manifest was not found yet
    assert core.get_timer() == NOW + 6 + RETRY
    assert Sync() in core.handle_timer(NOW + 6 + RETRY)
    core.sync_done(NOW + 12, held_seq=2, complete=True)
    assert core.get_timer() is not None and core.get_timer() >= NOW + 12 + RETRY


def test_a_publisher_announces_after_its_record_and_gives_up_after_a_while_without_peers() -> None:
    core = MirrorCore(NOW, held_seq=3)
    core.announce(3)
    assert Announce(3) not in core.handle_timer(NOW)  # no record yet: nobody could answer
    core.record_published(NOW + 1, int(NOW // PERIOD), int(NOW) + RECORD_LIFETIME)
    assert Announce(3) in core.handle_timer(NOW + 1)
    now = NOW + 1
    for _ in range(ANNOUNCE_TRIES - 1):
        core.announced(now, everyone=False)
        now += RETRY
        assert Announce(3) in core.handle_timer(now)
    core.announced(now, everyone=False)
    assert all(not isinstance(a, Announce) for a in core.handle_timer(now + 3600))
    core.announce(4)
    assert Announce(4) in core.handle_timer(now + 3601)
    core.announced(now + 3601, everyone=True)  # every peer took it: no retry
    assert core.get_timer() is None or all(not isinstance(a, Announce) for a in core.handle_timer(now + 7200))


def test_near_a_period_boundary_the_record_is_published_for_both_periods() -> None:
    period = int(NOW // PERIOD)
    late = (period + 1) * PERIOD - 100.0
    core = MirrorCore(late)
    coarse = int(late) // RECORD_GRAIN * RECORD_GRAIN
    assert core.handle_timer(late)[0] == PublishRecord((period, period + 1), coarse + RECORD_LIFETIME, coarse * 1000)


def test_records_of_two_sites_published_moments_apart_carry_the_same_times() -> None:
    """A DHT node holding the records of two sites one node mirrors must not link them by their exact times."""
    first, second = MirrorCore(NOW + 1.234), MirrorCore(NOW + 377.9)
    a, b = first.handle_timer(NOW + 1.234)[0], second.handle_timer(NOW + 377.9)[0]
    assert isinstance(a, PublishRecord) and a == b
    later = MirrorCore(NOW + 3 * 3600)
    c = later.handle_timer(NOW + 3 * 3600)[0]
    assert isinstance(c, PublishRecord) and c.seq > a.seq  # a republish still replaces the older record


def test_a_failed_publish_is_retried_and_a_lost_slot_republished_at_once() -> None:
    core = MirrorCore(NOW)
    core.handle_timer(NOW)
    core.record_failed(NOW)
    assert core.get_timer() == NOW + RETRY
    core.record_published(NOW + RETRY, int(NOW // PERIOD), int(NOW) + RECORD_LIFETIME)
    core.slot_lost(NOW + 20)
    assert isinstance(core.handle_timer(NOW + 20)[0], PublishRecord)


def test_a_record_the_node_was_not_ready_to_publish_is_tried_again_within_a_second() -> None:
    """No descriptor or no whole copy yet: nothing went out, so the next look is prompt (it was
    RETRY, 5 s, which every new mirror and publisher paid once at start)."""
    core = MirrorCore(NOW)
    assert isinstance(core.handle_timer(NOW)[0], PublishRecord)
    core.record_not_ready(NOW)
    assert core.get_timer() == NOW + NOT_READY_RECHECK < NOW + RETRY
    assert not any(isinstance(a, PublishRecord) for a in core.handle_timer(NOW + NOT_READY_RECHECK - 0.01))
    assert isinstance(core.handle_timer(NOW + NOT_READY_RECHECK)[0], PublishRecord)


# -- record slots ------------------------------------------------------------------------
def test_variants_give_other_slots_and_record_slot_is_where_the_record_goes() -> None:
    service_seed = bytes([9]) * 32
    service_key = bytes(nacl.signing.SigningKey(service_seed).verify_key)
    period = int(NOW // PERIOD)
    slots = {record_slot(SITE_KEY, service_seed, period, v) for v in range(32)}
    assert len(slots) > 8  # a mirror whose slot is taken finds another
    for variant in (0, 3):
        record = build_mirror_record(SITE_KEY, period, service_seed, service_key, 1, int(NOW) + 3600, variant)
        assert record.dht_key == record_slot(SITE_KEY, service_seed, period, variant)


# -- mirrors joining a fetch late ----------------------------------------------------------
def test_a_mirror_whose_session_opens_later_shares_the_rest_of_the_file() -> None:
    entry = file_entry("big.bin", BIG)
    fetch = FileFetch(entry, [])
    assert fetch.expect_mirrors(True, 0.0) == []  # no mirror yet, but more may come: not a failure
    first = fetch.add_mirror("m1", 0.0)
    assert {e.mirror for e in first if isinstance(e, Request)} == {"m1"}
    later = fetch.add_mirror("m2", 0.0)
    assert later == []  # m1 took every chunk already (4 in flight); m2 gets what frees up or fails
    events = fetch.on_error("m1", first[0].index, "session lost", 0.0)
    assert any(isinstance(e, Request) and e.mirror == "m2" for e in events)


def test_with_no_mirror_left_and_none_coming_the_fetch_fails() -> None:
    fetch = FileFetch(file_entry("a", b"x"), [])
    fetch.expect_mirrors(True, 0.0)
    assert fetch.expect_mirrors(False, 0.0) == [FetchFailed("no mirror served verified bytes")]
    done = FileFetch(file_entry("a", b"x"), [])
    done.expect_mirrors(True, 0.0)
    (request,) = done.add_mirror("m", 0.0)
    assert done.on_data("m", request.index, b"x", 0.0) == [FileDone(b"x")]


def test_broadcast_update_bodies_carry_the_manifest_hash(tmp_path: Path) -> None:
    _, manifest = _cache(tmp_path)
    message = make_message(SEED, BroadcastKind.UPDATE, update_body(2, manifest), int(NOW), os.urandom(16))
    seq, digest = message.update
    assert seq == 2 and len(digest) == 32
