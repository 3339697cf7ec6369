"""Fetching from several mirrors on a fake clock: parallel chunks, bad bytes cost one chunk, never served."""

from __future__ import annotations

import os

from globalnet.site.fetch import PER_MIRROR, REQUEST_TIMEOUT, FetchFailed, FileDone, FileFetch, MirrorBad, Request
from globalnet.site.manifest import CHUNK, file_entry

DATA = os.urandom(20 * CHUNK + 1234)
ENTRY = file_entry("big.bin", DATA)


def _serve(fetch: FileFetch, events: list, flip: str | None = None, silent: str | None = None, now: float = 0.0):
    """Answer requests like mirrors would until the fetch ends; `flip` serves a flipped byte, `silent` never answers."""
    queue, seen, finished = list(events), [], []
    while queue:
        event = queue.pop(0)
        seen.append(event)
        if isinstance(event, Request):
            if event.mirror == silent:
                continue
            chunk = DATA[event.offset : event.offset + event.length]
            if event.mirror == flip:
                chunk = bytes([chunk[0] ^ 1]) + chunk[1:]
            queue += fetch.on_data(event.mirror, event.index, chunk, now)
        elif isinstance(event, (FileDone, FetchFailed)):
            finished.append(event)
        if not queue and silent and fetch.get_timer() is not None:
            now = fetch.get_timer()
            queue += fetch.handle_timer(now)
    return seen, finished


def test_chunks_come_from_every_mirror_in_parallel() -> None:
    fetch = FileFetch(ENTRY, ["m1", "m2"])
    first = fetch.start(0.0)
    assert len(first) == 2 * PER_MIRROR and {r.mirror for r in first} == {"m1", "m2"}
    seen, finished = _serve(fetch, first)
    assert finished == [FileDone(DATA)]
    counts = {m: sum(1 for e in seen if isinstance(e, Request) and e.mirror == m) for m in ("m1", "m2")}
    assert min(counts.values()) >= 8  # both did a fair share


def test_a_byte_flipping_mirror_is_avoided_and_the_file_is_exact() -> None:
    fetch = FileFetch(ENTRY, ["evil", "good"])
    seen, finished = _serve(fetch, fetch.start(0.0), flip="evil")
    assert finished == [FileDone(DATA)]
    assert [e for e in seen if isinstance(e, MirrorBad)] == [MirrorBad("evil", "chunk 0 does not match the manifest")]
    assert "evil" in fetch.bad


def test_only_bad_mirrors_fail_without_a_byte() -> None:
    fetch = FileFetch(ENTRY, ["evil"])
    _, finished = _serve(fetch, fetch.start(0.0), flip="evil")
    assert finished == [FetchFailed("no mirror served verified bytes")]
    # a mirror already known bad for the site is not asked at all
    assert FileFetch(ENTRY, ["evil"], bad={"evil"}).start(0.0) == [FetchFailed("no mirror served verified bytes")]


def test_a_silent_mirror_times_out_and_another_finishes() -> None:
    fetch = FileFetch(ENTRY, ["slow", "good"])
    seen, finished = _serve(fetch, fetch.start(0.0), silent="slow")
    assert finished == [FileDone(DATA)]
    assert MirrorBad("slow", "timed out") in seen
    assert fetch.get_timer() is None or fetch.get_timer() <= REQUEST_TIMEOUT


def test_unasked_or_late_replies_are_ignored() -> None:
    fetch = FileFetch(ENTRY, ["m1"])
    fetch.start(0.0)
    assert fetch.on_data("m9", 0, DATA[:CHUNK], 0.0) == []
    assert fetch.on_data("m1", 19, DATA[19 * CHUNK : 20 * CHUNK], 0.0) == []  # not requested yet
