"""What an idle node does must not grow with the size of the network (issue 17, make testnet).

Measured at N=30 and N=60 (bench/testnet.py --idle-only): every relay was linked
to every other one (links made on demand for DHT RPCs stayed up forever), each
link woke it every second, the relay memory budget's 20 ms check summed every
link's queue, and peer exchange sent 16 records to every link, each verified
again by its receiver. The rules that bound it, on a fake clock where they live
in a core, and with real QUIC links for the shell's side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from unittest import mock

import pytest

from globalnet.dht.membership import DHT_REFRESH, JITTER, JOINED_PAUSE, next_delay
from globalnet.errors import ErrorKind
from globalnet.identity import verify_node_record
from globalnet.link.liveness import CHECK_EVERY, IDLE_CLOSE, LinkDead, LinkIdle, LivenessCore, LivenessEvent, SendPing
from globalnet.peertable import PeerTable
from globalnet.wire.records import FLAG_RELAY
from tests.fakenet import FakeClock
from tests.identities import next_identity
from tests.inproc import start_relay


def _ready(clock: FakeClock, **kw: float) -> LivenessCore:
    core = LivenessCore(clock.now, auth_timeout=10.0, **kw)
    core.link_ready(clock.now)
    return core


def _run(core: LivenessCore, clock: FakeClock, until: float, carrying: bool, may_close: bool) -> list[tuple[float, list[LivenessEvent]]]:
    """Fire the core's timer whenever it is due until `until` (seconds from now); (when, event)."""
    start = clock.now
    fired: list[tuple[float, list[LivenessEvent]]] = []
    while True:
        timer = core.get_timer()
        if timer is None or timer > start + until:
            return fired
        clock.advance(max(0.0, timer - clock.now))
        fired.append((round(clock.now - start, 2), core.handle_timer(clock.now, carrying, may_close)))


def test_an_idle_link_wakes_rarely_and_one_that_may_close_closes_after_idle_close() -> None:
    clock = FakeClock()
    core = _ready(clock, idle_close=120.0)
    # nothing keeps it: one wake-up at CHECK_EVERY, then none until it has idled IDLE_CLOSE, then closed
    fired = _run(core, clock, 200.0, carrying=False, may_close=True)
    assert [t for t, _ in fired] == [CHECK_EVERY, 120.0]
    assert fired[-1][1] == [LinkIdle(120.0)]
    assert core.get_timer() is None


def test_a_kept_idle_link_is_never_closed_and_checked_once_per_idle_close() -> None:
    clock = FakeClock()
    core = _ready(clock, idle_close=120.0)
    fired = _run(core, clock, 1000.0, carrying=False, may_close=False)
    assert all(events == [] for _, events in fired)
    assert len(fired) <= 1 + 1000 / 120  # was: one a second
    assert core.get_timer() is not None


def test_use_postpones_the_idle_close_and_a_first_stream_brings_the_checks_back() -> None:
    clock = FakeClock()
    core = _ready(clock, idle_close=IDLE_CLOSE)
    _run(core, clock, 2.0, carrying=False, may_close=True)
    clock.advance(IDLE_CLOSE - 10)
    core.used(clock.now)  # a DHT message
    assert all(ev == [] for _, ev in _run(core, clock, 15.0, carrying=False, may_close=True))  # the deadline moved on
    # a stream opens: the timer comes back to CHECK_EVERY, and silence matters again
    assert core.carrying_started(clock.now)
    assert core.get_timer() == pytest.approx(clock.now + CHECK_EVERY)
    assert not core.carrying_started(clock.now)  # already soon: nothing to re-arm
    core.heard(clock.now)
    fired = _run(core, clock, 12.0, carrying=True, may_close=True)
    kinds = [type(ev) for _, events in fired for ev in events]
    assert SendPing in kinds and kinds[-1] is LinkDead  # the liveness rule is unchanged
    assert LinkIdle not in kinds  # a link that carries streams is never idle


def test_a_carrying_link_still_pings_after_quiet_ping_and_dies_after_dead_after() -> None:
    clock = FakeClock()
    core = _ready(clock)
    core.carrying_started(clock.now)
    core.heard(clock.now)
    fired = _run(core, clock, 30.0, carrying=True, may_close=True)
    pings = [t for t, events in fired for ev in events if isinstance(ev, SendPing)]
    dead = [(t, ev) for t, events in fired for ev in events if isinstance(ev, LinkDead)]
    assert pings and min(pings) > 2.0
    assert len(dead) == 1 and 10.0 < dead[0][0] <= 11.5 and dead[0][1].kind is ErrorKind.LINK_LOST


def _record_bytes() -> bytes:
    identity = next_identity()
    return identity.make_record((("10.1.2.2", 9000),), FLAG_RELAY).encode()


def test_a_record_seen_before_is_not_verified_again_but_still_expires() -> None:
    peers = PeerTable(b"\x01" * 20)
    data = _record_bytes()
    with mock.patch("globalnet.peertable.verify_node_record", wraps=verify_node_record) as verify:
        first = peers.add_bytes(data)
        assert first is not None and verify.call_count == 1
        for _ in range(5):
            assert peers.add_bytes(data) is first
        assert verify.call_count == 1
        # other bytes (a forged signature) are verified, and refused
        forged = data[:-1] + bytes([data[-1] ^ 1])
        assert peers.add_bytes(forged) is None and verify.call_count == 2
        # past its expiry the cached record is not taken: verified again, refused as expired
        assert peers.add_bytes(data, now=first.expires + 1) is None
        assert verify.call_count == 3 and "expired" in peers.last_refusal


async def test_an_idle_dialled_link_closes_and_a_kept_one_stays() -> None:
    """Real QUIC: two links from one relay, one kept; after idle_close (short here) only the kept one is up."""
    a, b, c = await start_relay(), await start_relay(), await start_relay()
    for node in (a, b, c):
        node.links.settings = dataclasses.replace(node.links.settings, idle_close=1.5)
    try:
        to_b = await a.links.get_link("127.0.0.1", b.port, b.identity.node_id)
        to_c = await a.links.get_link("127.0.0.1", c.port, c.identity.node_id)
        to_c.kept = True
        async with asyncio.timeout(30):
            while b.identity.node_id in a.links.links or a.identity.node_id in b.links.links:
                await asyncio.sleep(0.1)
        assert to_b.close_reason is not None and "idle" in str(to_b.close_reason)
        await asyncio.sleep(2.0)
        assert a.links.links.get(c.identity.node_id) is to_c and to_c.is_ready
        # closing is the dialler's call: the listener's side of the kept link stays too
        assert a.identity.node_id in c.links.links
    finally:
        for node in (a, b, c):
            node.close()


def test_dht_upkeep_rounds_double_to_the_refresh_period_with_jitter() -> None:
    """Nodes started together must not run their DHT rounds (lookups to most of the network)
    at the same moment: every pause is jittered, and the schedule stays bounded."""
    rng = random.Random(7)
    delay, pauses = 1.0, []
    for _ in range(40):
        delay = next_delay(delay, rng=rng)
        pauses.append(delay)
    assert all(p <= DHT_REFRESH * (1 + JITTER) for p in pauses)
    assert all(p >= DHT_REFRESH * (1 - JITTER) for p in pauses[12:])  # it reaches the period and stays
    assert pauses[0] <= 2 * (1 + JITTER)  # joining is still quick
    starts = [next_delay(16.0, rng=random.Random(i)) for i in range(50)]  # 50 nodes in step
    assert max(starts) - min(starts) > 8.0  # now spread over seconds
    # a round that joined: the next one JOINED_PAUSE * 2 later at least (jittered), not 2 s
    assert next_delay(1.0, joined=True, rng=rng) >= 2 * JOINED_PAUSE * (1 - JITTER)
    assert next_delay(1.0, joined=False, rng=rng) <= 2 * (1 + JITTER)  # not joined: retry soon


async def test_only_kept_links_are_kept_alive_by_pings() -> None:
    """Real QUIC: the keepalive pings a link we keep (bootstrap peer, minimum links) and not
    one nothing keeps, which should go quiet and close; pinging every dialled link every
    15 s woke each relay of a 200-node testnet ~8 times a second for nothing."""
    # patched before the relays start: a keepalive loop already asleep would wake only after
    # the real 15 s (the test used to wait that long for its first ping)
    with mock.patch("globalnet.link.manager.KEEPALIVE_INTERVAL", 0.2):
        a, b, c = await start_relay(), await start_relay(), await start_relay()
        try:
            to_b = await a.links.get_link("127.0.0.1", b.port, b.identity.node_id)
            to_c = await a.links.get_link("127.0.0.1", c.port, c.identity.node_id)
            to_c.kept = True
            assert to_b.rtt is None and to_c.rtt is None
            async with asyncio.timeout(30):
                while to_c.rtt is None:  # a PONG came back
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # five more rounds
            assert to_b.rtt is None and to_b.is_ready  # never pinged, still up
        finally:
            for node in (a, b, c):
                node.close()
