"""Guards (circuit/guards.py) on a fake clock: choice, rotation, what replaces a guard and what never does."""

from __future__ import annotations

import random

import pytest

from globalnet.circuit.guards import DAY, ENTRY, MIDDLE, MIN_FAILURES, GuardSet, dump_layers, load_layers
from globalnet.wire.records import FLAG_EXIT, FLAG_RELAY, NodeRecord


def relay(i: int, net: str = "", exit_: bool = False) -> NodeRecord:
    host = net or f"10.{i}.0.1"  # data only: never dialled
    return NodeRecord(bytes([i]) * 32, bytes(32), FLAG_RELAY | (FLAG_EXIT if exit_ else 0), ((host, 9000),), "reject *", 0, 2**40, 1)


RELAYS = [relay(i) for i in range(1, 21)]


def fresh(policy=ENTRY, seed: int = 1) -> tuple[GuardSet, random.Random]:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    guards = GuardSet(policy)
    guards.update(RELAYS, 0.0, rng)
    return guards, rng


def test_a_full_set_from_distinct_networks() -> None:
    guards, _ = fresh()
    assert len(guards.guards) == ENTRY.size
    nets = {r.addresses[0][0].rsplit(".", 2)[0] for r in RELAYS if r.node_id in guards}
    assert len(nets) == ENTRY.size


def test_one_slash24_gives_at_most_one_guard_when_there_is_a_choice() -> None:
    crowded = [relay(i, f"10.9.8.{i}") for i in range(1, 30)] + [relay(100), relay(101)]
    guards = GuardSet(ENTRY)
    guards.update(crowded, 0.0, random.Random(3))
    from_crowd = [g for g in guards.guards if g.node_id in {r.node_id for r in crowded[:29]}]
    assert len(from_crowd) == 1  # the /16 rule: the rest come from other networks


def test_non_exits_are_preferred_for_entry_guards() -> None:
    mixed = [relay(i, exit_=i % 2 == 0) for i in range(1, 11)]
    guards = GuardSet(ENTRY)
    guards.update(mixed, 0.0, random.Random(5))
    assert all(not r.is_exit for r in mixed if r.node_id in guards)


def test_lifetimes_are_weeks_with_jitter_and_expiry_rotates() -> None:
    guards, rng = fresh()
    lifetimes = [g.expires - g.added for g in guards.guards]
    assert all(30 * DAY <= t <= 60 * DAY for t in lifetimes)
    assert len(set(lifetimes)) == len(lifetimes)
    first = min(guards.guards, key=lambda g: g.expires)
    assert guards.update(RELAYS, first.expires - 1, rng) == []
    changes = guards.update(RELAYS, first.expires, rng)
    assert len(changes) == 1 and changes[0].removed == first.node_id and changes[0].added is not None
    assert "rotated after" in changes[0].reason
    assert len(guards.guards) == ENTRY.size


def test_middle_guards_rotate_within_days() -> None:
    guards, _ = fresh(MIDDLE)
    assert len(guards.guards) == MIDDLE.size
    assert all(1 * DAY <= g.expires - g.added <= 12 * DAY for g in guards.guards)


def test_failures_below_the_bar_never_replace_a_guard() -> None:
    guards, rng = fresh()
    target = guards.guards[0].node_id
    now = 100.0
    for _ in range(MIN_FAILURES - 1):  # a few failed links, even over a long time
        guards.link_failed(target, now)
        now += ENTRY.replace_after
    assert guards.update(RELAYS, now, rng) == []
    assert target in guards


def test_a_success_clears_the_record() -> None:
    guards, rng = fresh()
    target = guards.guards[0].node_id
    for t in range(10):
        guards.link_failed(target, float(t))
    guards.link_ok(target, 20.0)
    assert guards.update(RELAYS, 20.0 + 10 * ENTRY.replace_after, rng) == []
    assert target in guards


def test_a_guard_unreachable_long_enough_is_replaced_and_says_why() -> None:
    guards, rng = fresh()
    target = guards.guards[0].node_id
    for t in range(MIN_FAILURES):
        guards.link_failed(target, 10.0 + t)
    assert guards.update(RELAYS, 10.0 + ENTRY.replace_after - 1, rng) == []  # not yet long enough
    changes = guards.update(RELAYS, 10.0 + ENTRY.replace_after, rng)
    assert [c.removed for c in changes] == [target]
    assert "unreachable for" in changes[0].reason and f"{MIN_FAILURES} attempts" in changes[0].reason
    assert target not in guards and len(guards.guards) == ENTRY.size


def test_down_guards_are_tried_last_and_retried_with_back_off() -> None:
    guards, rng = fresh()
    down = guards.guards[0].node_id
    guards.link_failed(down, 0.0)
    for _ in range(20):
        assert guards.candidates(rng)[-1] == down
    assert guards.due_for_retry(ENTRY.retry_after - 1) == []
    assert guards.due_for_retry(ENTRY.retry_after) == [down]
    guards.link_failed(down, ENTRY.retry_after)  # second failure: the wait doubles
    assert guards.due_for_retry(ENTRY.retry_after * 2.5) == []
    assert guards.due_for_retry(ENTRY.retry_after * 3) == [down]


def test_the_file_round_trips_and_junk_is_refused() -> None:
    entry, _ = fresh()
    middle, _ = fresh(MIDDLE, seed=2)
    entry.link_failed(entry.guards[1].node_id, 5.0)
    again_entry, again_middle = load_layers(dump_layers(entry, middle))
    assert again_entry.guards == entry.guards and again_middle.guards == middle.guards
    for junk in (b"", b"[]", b'{"version": 2}', b'{"version": 1, "entry": [{"node_id": "zz"}]}',
                 b'{"version": 1, "entry": ' + b"[" + b",".join([b"{}"] * 20) + b"]}"):
        with pytest.raises(ValueError, match="guards"):
            load_layers(junk)
