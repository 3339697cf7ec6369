"""The site broadcast core on a fake clock: signatures, TTL, dedupe, rate limit, no rollback."""

from __future__ import annotations

import pytest

from globalnet.errors import ProtocolError
from globalnet.site.broadcast import (
    MAX_BODY,
    WINDOW,
    BroadcastKind,
    Deliver,
    Refused,
    Send,
    SiteBroadcast,
    decode_message,
    make_message,
    update_body,
)

SEED = bytes(range(32))
OTHER = bytes(32)
NOW = 1_800_000_000


def _update(seq: int, nonce: bytes = b"n", ttl: int = 3, seed: bytes = SEED, ts: int = NOW):
    return make_message(seed, BroadcastKind.UPDATE, update_body(seq, b"manifest %d" % seq), ts, nonce, ttl)


def _node(peers=("a", "b", "c")) -> SiteBroadcast:
    node = SiteBroadcast(_update(1).site_key)
    node.set_peers(peers)
    return node


def test_round_trip_and_every_flipped_byte_refused() -> None:
    message = _update(2)
    data = message.encode()
    assert decode_message(data) == message
    assert message.update[0] == 2
    for i in range(len(data) - 1):  # the last byte is the unsigned ttl
        bad = bytearray(data)
        bad[i] ^= 1
        with pytest.raises(ProtocolError):
            decode_message(bytes(bad))
    with pytest.raises(ProtocolError):
        decode_message(data + b"x")
    with pytest.raises(ProtocolError):
        decode_message(data[:-2])


def test_flood_forwards_to_others_with_ttl_decremented_once() -> None:
    node = _node()
    events = node.receive(_update(2).encode(), "a", NOW)
    assert isinstance(events[0], Deliver) and events[0].from_peer == "a"
    sends = [e for e in events if isinstance(e, Send)]
    assert sorted(s.peer for s in sends) == ["b", "c"]
    assert all(decode_message(s.data).ttl == 2 for s in sends)
    # the same message from another peer: delivered once only
    assert node.receive(_update(2).encode(), "b", NOW + 1) == [Refused("b", "duplicate")]


def test_ttl_one_is_delivered_not_forwarded() -> None:
    events = _node().receive(_update(2, ttl=1).encode(), "a", NOW)
    assert [type(e) for e in events] == [Deliver]


def test_no_rollback_and_forgeries_refused() -> None:
    node = _node()
    assert isinstance(node.receive(_update(5, b"x").encode(), "a", NOW)[0], Deliver)
    for seq in (5, 4, 1):
        (event,) = node.receive(_update(seq, b"y%d" % seq).encode(), "b", NOW)
        assert isinstance(event, Refused) and "no rollback" in event.reason
    assert node.highest_seq == 5
    # signed by another key: another site's broadcast
    (event,) = node.receive(_update(9, seed=OTHER).encode(), "a", NOW)
    assert isinstance(event, Refused) and "another site" in event.reason
    (event,) = node.receive(b"\x00" * 50, "a", NOW)
    assert isinstance(event, Refused) and node.highest_seq == 5


def test_stale_or_future_messages_and_replays_after_the_window() -> None:
    node = _node()
    announce = make_message(SEED, BroadcastKind.ANNOUNCE, b"hello visitors", NOW, b"z")
    assert isinstance(node.receive(announce.encode(), "a", NOW)[0], Deliver)
    # forgotten from the dedupe table only once the timestamp is out of the window
    later = NOW + WINDOW + 2
    node.handle_timer(later)
    assert node.get_timer() is None
    (event,) = node.receive(announce.encode(), "b", later)
    assert isinstance(event, Refused) and "window" in event.reason
    future = make_message(SEED, BroadcastKind.ANNOUNCE, b"soon", int(NOW + 2 * WINDOW), b"f")
    (event,) = node.receive(future.encode(), "a", NOW)
    assert isinstance(event, Refused) and "window" in event.reason


def test_rate_limit_per_peer() -> None:
    node = _node()
    results = [node.receive(make_message(SEED, BroadcastKind.ANNOUNCE, b"m%d" % i, NOW, b"%d" % i).encode(), "a", NOW) for i in range(30)]
    refused = [r for r in results if isinstance(r[0], Refused) and r[0].reason == "rate limit"]
    assert 15 <= len(refused) <= 20  # a burst of 10, then nothing until tokens refill
    # another peer is not limited by the first one's flood
    assert isinstance(node.receive(_update(2).encode(), "b", NOW)[0], Deliver)
    # tokens refill with time
    assert isinstance(node.receive(_update(3, b"later").encode(), "a", NOW + 5)[0], Deliver)


def test_bounds() -> None:
    with pytest.raises(ValueError):
        make_message(SEED, BroadcastKind.ANNOUNCE, b"x" * (MAX_BODY + 1), NOW, b"n")
    with pytest.raises(ValueError):
        make_message(SEED, BroadcastKind.ANNOUNCE, b"x", NOW, b"n", ttl=0)
    bad_text = make_message(SEED, BroadcastKind.ANNOUNCE, b"\x1b[31mred", NOW, b"n")
    with pytest.raises(ProtocolError):
        decode_message(bad_text.encode())


def test_originate_sends_to_every_peer() -> None:
    node = _node()
    events = node.originate(_update(2, ttl=4), NOW)
    assert sorted(e.peer for e in events if isinstance(e, Send)) == ["a", "b", "c"]
    assert all(decode_message(e.data).ttl == 4 for e in events if isinstance(e, Send))
