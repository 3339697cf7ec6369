"""The owner's announcements (announcements.py): bounds, verification, the store, the mirror's answer, the reserved path."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from globalnet.errors import ProtocolError
from globalnet.site.announcements import (
    ANNOUNCEMENTS_PATH,
    MAX_KEPT,
    MAX_SITES,
    AnnouncementStore,
    announcement_body,
    decode_announcements,
    render,
)
from globalnet.site.broadcast import MAX_BODY, BroadcastKind, make_message, update_body
from globalnet.site.cache import SiteCache
from globalnet.site.http import HttpRequest, answer
from globalnet.site.manifest import SiteError, check_path
from globalnet.site.protocol import RequestDecoder, RequestType, ResponseDecoder, SiteRequest, Status, encode_request
from globalnet.site.responder import SiteResponder
from globalnet.site.serve import site_lookup

SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))


def _key(seed: bytes) -> bytes:
    return make_message(seed, BroadcastKind.ANNOUNCE, b"x", 0, b"n").site_key


SITE_KEY = _key(SEED)


def _announce(text: str, timestamp: int, seed: bytes = SEED, nonce: bytes = b"") -> object:
    return make_message(seed, BroadcastKind.ANNOUNCE, announcement_body(text), timestamp, nonce or text.encode())


def test_announcement_text_is_bounded_and_printable() -> None:
    assert announcement_body("hello\nvisitors") == b"hello\nvisitors"
    assert len(announcement_body("é" * (MAX_BODY // 2))) == MAX_BODY
    for bad in ("", "x" * (MAX_BODY + 1), "é" * (MAX_BODY // 2 + 1), "bell\x07", "esc\x1b[31m"):
        with pytest.raises(ValueError):
            announcement_body(bad)


def test_the_store_keeps_the_newest_few_per_site_newest_first() -> None:
    store = AnnouncementStore()
    messages = [_announce(f"note {i}", 1000 + i) for i in range(MAX_KEPT + 3)]
    for message in reversed(messages):
        store.add(message)  # type: ignore[arg-type]
    kept = store.latest(SITE_KEY)
    assert [m.body for m in kept] == [f"note {i}".encode() for i in range(MAX_KEPT + 2, 2, -1)]
    assert store.add(messages[-1]) is False  # type: ignore[arg-type]  # already kept
    assert store.add(messages[0]) is False  # type: ignore[arg-type]  # older than all it keeps
    assert store.latest(_key(OTHER_SEED)) == []
    with pytest.raises(ValueError):
        store.add(make_message(SEED, BroadcastKind.UPDATE, update_body(2, b"m"), 1, b"n"))
    for i in range(MAX_SITES + 5):  # the number of sites is bounded too (oldest forgotten first)
        store.add(_announce("x", 1, seed=struct.pack(">I", i) * 8))  # type: ignore[arg-type]
    assert store.latest(SITE_KEY) == []
    assert len(store._sites) == MAX_SITES


def test_a_list_round_trips_and_every_message_is_verified_against_the_site_key() -> None:
    store = AnnouncementStore()
    for i in range(3):
        store.add(_announce(f"note {i}", 1000 + i))  # type: ignore[arg-type]
    data = store.encode(SITE_KEY)
    assert [m.body for m in decode_announcements(data, SITE_KEY)] == [b"note 2", b"note 1", b"note 0"]
    assert decode_announcements(AnnouncementStore().encode(SITE_KEY), SITE_KEY) == []
    # a mirror that passes off another key's announcement as this site's: refused
    foreign = AnnouncementStore()
    foreign.add(_announce("not the owner", 5, seed=OTHER_SEED))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="another key"):
        decode_announcements(foreign.encode(_key(OTHER_SEED)), SITE_KEY)
    # a forged signature, an update passed off as an announcement, a count over the bound, junk, a tail
    forged = bytearray(data)
    forged[-70] ^= 1
    update = make_message(SEED, BroadcastKind.UPDATE, update_body(2, b"m"), 1, b"n").encode()
    for bad in (bytes(forged), b"\x01" + struct.pack(">H", len(update)) + update, bytes([MAX_KEPT + 1]), b"", b"\x05junk", data + b"x"):
        with pytest.raises(ProtocolError):
            decode_announcements(bad, SITE_KEY)


def test_a_mirror_answers_the_announcements_request(tmp_path: Path) -> None:
    store = AnnouncementStore()
    store.add(_announce("hello", 1000))  # type: ignore[arg-type]
    responder = SiteResponder(SiteCache(tmp_path), SITE_KEY, lambda d, lbl: None, store)
    request = RequestDecoder().requests(encode_request(RequestType.ANNOUNCEMENTS))[0]
    response = ResponseDecoder().responses(responder.answer(request, "s1"))[0]
    assert response.status is Status.OK
    assert [m.body for m in decode_announcements(response.body, SITE_KEY)] == [b"hello"]
    bad = ResponseDecoder().responses(responder.answer(SiteRequest(RequestType.ANNOUNCEMENTS, b"x"), "s1"))[0]
    assert bad.status is Status.BAD_REQUEST


def test_the_reserved_path_is_served_escaped_and_no_manifest_can_hold_it() -> None:
    for path in (ANNOUNCEMENTS_PATH, ".gnet/index.html", ".GNET/x"):
        with pytest.raises(SiteError, match="reserved"):
            check_path(path)
    check_path("gnet/x")
    check_path("a/.gnet/x")

    class Browser:
        announcements = AnnouncementStore()

    Browser.announcements.add(_announce("<script>alert(1)</script>", 1_700_000_000))  # type: ignore[arg-type]
    lookup = site_lookup(Browser(), lambda path: b"site file" if path == "a.txt" else None, SITE_KEY)  # type: ignore[arg-type]
    page = answer(HttpRequest("GET", ANNOUNCEMENTS_PATH), lookup)
    head, body = page.split(b"\r\n\r\n", 1)
    assert b"200 OK" in head and b"Content-Type: text/plain; charset=utf-8" in head and b"nosniff" in head
    assert b"<script>alert(1)</script>" in body and b"2023-11-14 22:13 UTC" in body  # text/plain: shown, never run
    assert answer(HttpRequest("GET", "a.txt"), lookup).endswith(b"site file")
    assert b"(none yet)" in render([])
