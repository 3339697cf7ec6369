"""Guards (circuit/guards.py) on a fake clock: choice, rotation, what replaces a guard and what never does."""

from __future__ import annotations

import json
import random

import pytest

from globalnet.circuit.guards import (
    DAY,
    DROP_RESERVE_AFTER,
    ENTRY,
    MAX_RETRY,
    MIDDLE,
    MIN_FAILURES,
    GuardSet,
    dump_layers,
    load_layers,
)
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
    assert [c for c in guards.update(RELAYS, now, rng) if c.removed is not None] == []  # (a reserve may be sampled)
    assert guards.is_primary(target)


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
    early = guards.update(RELAYS, 10.0 + ENTRY.replace_after - 1, rng)
    assert [c for c in early if c.removed is not None] == [] and guards.is_primary(target)  # not yet long enough
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


# -- the sample behind the primaries (guard-spec: sampled, primary, confirmed) ---------------


def _all_down(guards: GuardSet, ids: list[bytes], now: float) -> None:
    for node_id in ids:
        guards.link_failed(node_id, now)


def test_all_primaries_down_the_next_sampled_guard_is_chosen() -> None:
    guards, rng = fresh()
    primaries = [g.node_id for g in guards.guards]
    _all_down(guards, primaries, 10.0)
    changes = guards.update(RELAYS, 11.0, rng)
    assert [c.removed for c in changes] == [None] * ENTRY.size  # nothing replaced: reserves sampled
    assert all(c.reason == "sampled: too few usable guards" for c in changes)
    reserves = [g.node_id for g in guards.reserves]
    assert len(reserves) == ENTRY.size and not set(reserves) & set(primaries)
    for _ in range(10):
        order = guards.candidates(rng)
        assert order[: ENTRY.size] == reserves  # usable reserves in sample order, before any down primary
        assert set(order[ENTRY.size:]) == set(primaries)
    assert [g.node_id for g in guards.guards] == primaries  # still the primaries


def test_primaries_that_come_back_are_preferred_again() -> None:
    guards, rng = fresh()
    primaries = [g.node_id for g in guards.guards]
    _all_down(guards, primaries, 0.0)
    guards.update(RELAYS, 1.0, rng)
    reserve = guards.candidates(rng)[0]
    guards.link_ok(reserve, 2.0)  # a circuit went through the reserve: it is confirmed
    assert guards.due_for_retry(ENTRY.retry_after - 1) == []
    assert sorted(guards.due_for_retry(ENTRY.retry_after)) == sorted(primaries)  # primaries probed, reserves never
    back = primaries[1]
    guards.link_ok(back, ENTRY.retry_after)  # the probe reached it
    for _ in range(10):
        order = guards.candidates(rng)
        assert order[0] == back and order[1] == reserve
    assert guards.update(RELAYS, ENTRY.retry_after + 1, rng) == []  # enough usable guards: no growth
    for node_id in primaries:
        guards.link_ok(node_id, ENTRY.retry_after + 2)
    assert set(guards.candidates(rng)[: ENTRY.size]) == set(primaries)


def test_retry_of_a_down_primary_is_capped_at_ten_minutes() -> None:
    guards, _ = fresh()
    down = guards.guards[0].node_id
    now = 0.0
    for _ in range(12):
        guards.link_failed(down, now)
        now += 1.0
    assert guards.due_for_retry(now - 1 + MAX_RETRY - 2) == []
    assert guards.due_for_retry(now - 1 + MAX_RETRY) == [down]


def test_sample_growth_is_capped_however_often_guards_look_down() -> None:
    many = [relay(i) for i in range(1, 100)]
    guards = GuardSet(ENTRY)
    rng = random.Random(7)
    guards.update(many, 0.0, rng)
    now = 1.0
    seen: set[bytes] = set()
    for _ in range(50):  # an adversary that makes every guard we sample look down, again and again
        _all_down(guards, [g.node_id for g in guards.sample()], now)
        guards.update(many, now + 1, rng)
        seen |= {g.node_id for g in guards.sample()}
        assert len(guards.sample()) <= ENTRY.sample_cap
        now += 60.0
    assert len(seen) == ENTRY.sample_cap  # never more relays than the cap, not one per attempt
    assert guards.update(many, now, rng) == []
    assert len(guards.candidates(rng)) == ENTRY.sample_cap  # all down: the sample is retried, not widened


def test_guards_unknown_after_a_restart_give_way_to_the_sample() -> None:
    guards, rng = fresh()
    primaries = {g.node_id for g in guards.guards}
    restarted = load_layers(dump_layers(guards, GuardSet(MIDDLE)))[0]
    living = [r for r in RELAYS if r.node_id not in primaries]  # they died while we were down
    changes = restarted.update(living, 100.0, rng)
    assert len(changes) == ENTRY.size and all(c.added is not None and c.removed is None for c in changes)
    order = restarted.candidates(rng)
    assert order == [g.node_id for g in restarted.reserves]
    # one comes back into the relays we know: usable, so first again
    back = next(r for r in RELAYS if r.node_id in primaries)
    assert restarted.update([*living, back], 200.0, rng) == []
    assert restarted.candidates(rng)[0] == back.node_id
    # one never seen again is given up after DROP_RESERVE_AFTER, for a reserve: no new relay
    reserves_before = {g.node_id for g in restarted.reserves}
    later = restarted.update([*living, back], 100.0 + DROP_RESERVE_AFTER, rng)
    gone = [c for c in later if c.removed is not None]
    assert {c.removed for c in gone} == primaries - {back.node_id}
    assert all(c.added in reserves_before and "unknown for" in c.reason for c in gone)


def test_a_given_up_primary_is_replaced_by_a_confirmed_reserve() -> None:
    guards, rng = fresh()
    primaries = [g.node_id for g in guards.guards]
    _all_down(guards, primaries, 0.0)
    guards.update(RELAYS, 1.0, rng)
    confirmed = guards.reserves[2].node_id
    guards.link_ok(confirmed, 2.0)
    assert guards.candidates(rng)[0] == confirmed  # confirmed reserves first
    dead = primaries[0]
    for t in range(1, MIN_FAILURES):
        guards.link_failed(dead, float(t))
    for node_id in primaries[1:]:
        guards.link_ok(node_id, 3.0)
    changes = guards.update(RELAYS, ENTRY.replace_after, rng)
    assert [(c.added, c.removed) for c in changes] == [(confirmed, dead)]
    assert guards.is_primary(confirmed) and dead not in guards


def test_an_unreachable_reserve_leaves_the_sample_a_day_later() -> None:
    guards, rng = fresh()
    _all_down(guards, [g.node_id for g in guards.guards], 0.0)
    guards.update(RELAYS, 1.0, rng)
    bad = guards.reserves[0].node_id
    for t in range(MIN_FAILURES):
        guards.link_failed(bad, 2.0 + t)
    assert bad in guards and not [c for c in guards.update(RELAYS, DROP_RESERVE_AFTER, rng) if c.removed]
    dropped = [c for c in guards.update(RELAYS, 2.0 + DROP_RESERVE_AFTER, rng) if c.removed]
    assert [c.removed for c in dropped] == [bad] and "reserve unreachable" in dropped[0].reason


def test_reserves_round_trip_and_are_bounded_on_load() -> None:
    guards, rng = fresh()
    _all_down(guards, [g.node_id for g in guards.guards], 0.0)
    guards.update(RELAYS, 1.0, rng)
    guards.link_ok(guards.reserves[1].node_id, 2.0)
    again, _ = load_layers(dump_layers(guards, GuardSet(MIDDLE)))
    assert again.guards == guards.guards and again.reserves == guards.reserves
    doc = json.loads(dump_layers(guards, GuardSet(MIDDLE)))
    doc["entry_reserves"] = [dict(doc["entry_reserves"][0], node_id=r.node_id[:20].hex()) for r in RELAYS[:16]]
    assert len(load_layers(json.dumps(doc).encode())[0].sample()) <= ENTRY.sample_cap
    doc["entry_reserves"] = doc["entry_reserves"] + doc["entry_reserves"][:1]
    with pytest.raises(ValueError, match="guards"):
        load_layers(json.dumps(doc).encode())  # 17 rows, or a repeated guard
    assert load_layers(b'{"version": 1, "entry": [], "middle": []}')[0].reserves == []  # a file from before reserves
