"""Guards and vanguards (sans-IO core on a fake clock), rand weighting, and what an
exit refuses before DNS."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from globalnet.circuit.guards import DAY, GuardSet, GuardStore
from globalnet.circuit.paths import choose_relays, network_of
from globalnet.circuit.resolve import PathResolver, exit_allows
from globalnet.identity import Identity
from globalnet.peertable import PeerTable
from globalnet.policy.before_dns import name_refusal, reserved_name_problem
from globalnet.policy.exit_policy import ExitPolicy, parse_exit_rule
from globalnet.wire.commands import Proto, RelayConnect
from globalnet.wire.pathspec import HopAddr, HopId, HopRandom
from globalnet.wire.records import FLAG_EXIT, FLAG_RELAY, NodeRecord

T0 = 1_800_000_000.0


def relay(host: str, exit_policy: ExitPolicy | None = None) -> NodeRecord:
    flags = FLAG_RELAY | (FLAG_EXIT if exit_policy and exit_policy.enabled else 0)
    summary = exit_policy.summary() if exit_policy else "reject *"
    return Identity.generate().make_record(((host, 9000),), flags, summary)


RELAYS = [relay(f"10.{i}.0.1") for i in range(12)]


# -- the core, on a fake clock ------------------------------------------------


def test_first_choice_is_three_guards_from_different_16s() -> None:
    crowded = [relay(f"10.99.0.{i}") for i in range(1, 30)]
    guards = GuardSet(rng=random.Random(1))
    events = guards.maintain(crowded + RELAYS[:3], T0)
    assert [e.change for e in events] == ["added"] * 3 and all(e.reason == "first choice" for e in events)
    assert len({g.network for g in guards.guards}) == 3
    for g in guards.guards:
        assert 30 * DAY <= g.expires - T0 <= 60 * DAY


def test_rotation_per_guard_with_jitter() -> None:
    guards = GuardSet(rng=random.Random(2))
    guards.maintain(RELAYS, T0)
    expiries = sorted(g.expires for g in guards.guards)
    assert len(set(expiries)) == 3  # each guard its own expiry: the set never turns over at once
    assert guards.maintain(RELAYS, expiries[0] - 1) == []
    events = guards.maintain(RELAYS, expiries[0])
    assert [(e.change, e.reason) for e in events] == [
        ("removed", "its rotation time came"),
        ("added", "replaces a removed one"),
    ]
    assert len(guards.guards) == 3
    events = guards.maintain(RELAYS, T0 + 61 * DAY)
    assert sum(e.change == "removed" for e in events) == 2  # the two older ones; the new one stays


def test_circuit_failures_never_rotate_a_guard() -> None:
    """Only link failures are fed to the core; a guard whose link comes up is healthy."""
    guards = GuardSet(rng=random.Random(3))
    guards.maintain(RELAYS, T0)
    victim = guards.guards[0]
    for i in range(1000):  # link up each time, circuits through it dropped: the node reports success
        guards.link_succeeded(victim.node_id)
        assert guards.maintain(RELAYS, T0 + i * 60) == []
    assert guards.get(victim.node_id) is victim


def test_a_guard_is_replaced_only_when_unreachable_for_a_sustained_period() -> None:
    guards = GuardSet(rng=random.Random(4))
    guards.maintain(RELAYS, T0)
    dead = guards.guards[0]
    # many failures in a short burst (an adversary on the path for a minute): kept
    for i in range(20):
        guards.link_failed(dead.node_id, T0 + i)
    assert guards.maintain(RELAYS, T0 + 60) == []
    assert guards.choose(T0 + 61, set()) is not dead  # skipped while resting
    # one success resets the count
    guards.link_succeeded(dead.node_id)
    assert dead.failures == 0
    # five failures over more than an hour: replaced
    for i in range(5):
        guards.link_failed(dead.node_id, T0 + 100 + i * 900)
    events = guards.maintain(RELAYS, T0 + 100 + 4 * 900)
    assert events[0].change == "removed" and events[0].node_id == dead.node_id
    assert events[0].reason.startswith("unreachable: 5 link failures")
    assert events[1].change == "added" and guards.get(dead.node_id) is None


def test_choose_never_leaves_the_guard_set() -> None:
    guards = GuardSet(rng=random.Random(5))
    guards.maintain(RELAYS, T0)
    for g in guards.guards:
        guards.link_failed(g.node_id, T0)
    chosen = guards.choose(T0 + 1, set())
    assert chosen is not None and chosen in guards.guards  # all resting: still a guard
    assert guards.choose(T0, {g.node_id for g in guards.guards}) is None


def test_store_survives_restart_and_damage(tmp_path: Path) -> None:
    store = GuardStore(tmp_path)
    store.guards.maintain(RELAYS, T0)
    store.vanguards.maintain(RELAYS, T0)
    store.save()
    path = tmp_path / "guards.json"
    assert path.stat().st_mode & 0o777 == 0o600
    again = GuardStore(tmp_path)
    assert again.load() == 3
    assert [g.node_id for g in again.guards.guards] == [g.node_id for g in store.guards.guards]
    assert len(again.vanguards.guards) == 4
    for v in again.vanguards.guards:
        assert 1 * DAY <= v.expires - T0 <= 12 * DAY
    data = json.loads(path.read_text())
    data["guards"][0]["node_id"] = "zz"
    data["guards"].append("garbage")
    path.write_text(json.dumps(data))
    assert GuardStore(tmp_path).load() == 2  # a damaged entry is dropped, the rest kept
    path.write_text("{not json")
    assert GuardStore(tmp_path).load() == 0


# -- the resolver with guards -------------------------------------------------


def _resolver(tmp_path: Path, relays: list[NodeRecord]) -> PathResolver:
    peers = PeerTable(b"\x00" * 32)
    for r in relays:
        peers.add(r)
    return PathResolver(peers, None, GuardStore(tmp_path))


async def test_every_rand_path_starts_at_a_guard_unless_pinned(tmp_path: Path) -> None:
    exit_relay = relay("10.50.0.1", ExitPolicy(True))
    resolver = _resolver(tmp_path, [*RELAYS, exit_relay])
    final = RelayConnect(Proto.TCP, "example.org", 80)
    firsts = Counter()
    for _ in range(200):
        path = await resolver.resolve((HopRandom(), HopRandom(), HopRandom()), final, wait=1)
        firsts[path[0].node_id] += 1
        assert path[2].node_id == exit_relay.node_id
    assert resolver.guards is not None
    assert set(firsts) <= {g.node_id for g in resolver.guards.guards.guards} and len(firsts) == 3
    pinned = await resolver.resolve((HopAddr("10.7.0.1", 9000, None), HopRandom(), HopRandom()), final, wait=1)
    assert pinned[0].host == "10.7.0.1"
    by_id = await resolver.resolve((HopId(RELAYS[5].node_id), HopRandom()), RelayConnect(Proto.DHT), wait=1)
    assert by_id[0].node_id == RELAYS[5].node_id


async def test_service_and_dht_circuits_use_vanguards(tmp_path: Path) -> None:
    resolver = _resolver(tmp_path, RELAYS)
    store = resolver.guards
    assert store is not None
    ap = RELAYS[11].node_id
    seconds = Counter()
    for _ in range(100):
        path = await resolver.resolve(
            (HopRandom(), HopRandom(), HopId(ap)), RelayConnect(Proto.SERVICE, 1), wait=1, layer2=True
        )
        seconds[path[1].node_id] += 1
        assert path[0].node_id in {g.node_id for g in store.guards.guards}
    assert set(seconds) <= {v.node_id for v in store.vanguards.guards}
    assert 2 <= len(seconds) <= 4
    saved = json.loads((tmp_path / "guards.json").read_text())
    assert len(saved["vanguards"]) == 4


# -- rand weighting -----------------------------------------------------------


def test_rand_weights_away_from_crowded_networks() -> None:
    """30 relays in one /16 and 10 in ten others: the crowded /16 gets about 1/11 of
    the picks (it had 3/4 of the relays), each other /16 about the same."""
    crowded = [relay(f"10.77.{i}.1") for i in range(30)]
    spread = [relay(f"10.{i}.0.1") for i in range(10)]
    rng = random.Random(7)
    picks = Counter(network_of(choose_relays(crowded + spread, [None], set(), set(), rng)[0]) for _ in range(11000))
    assert 700 <= picks["10.77.0.0/16"] <= 1300
    assert all(700 <= n <= 1300 for n in picks.values())


# -- the exit before DNS ------------------------------------------------------

LOOPBACK_ONLY = ExitPolicy(True, [parse_exit_rule("127.0.0.1/32"), parse_exit_rule("[::1]/128")])


@pytest.mark.parametrize(
    "name", ["x.invalid", "printer.local", "abc.onion", "abc.gnet", "a.localhost", "a.test", "www.example", "X.INVALID."]
)
def test_reserved_names_refused_by_any_exit(name: str) -> None:
    assert reserved_name_problem(name) is not None
    assert name_refusal(ExitPolicy(True), name, 443) is not None


def test_names_the_exit_may_resolve() -> None:
    assert name_refusal(ExitPolicy(True), "example.org", 443) is None
    assert name_refusal(ExitPolicy(True), "localhost", 80) is None  # then refused as loopback after resolving
    assert name_refusal(LOOPBACK_ONLY, "localhost", 8080) is None
    assert name_refusal(LOOPBACK_ONLY, "localhost.", 8080) is None
    web = ExitPolicy(True, [parse_exit_rule("0.0.0.0/0:443")])
    assert name_refusal(web, "example.org", 443) is None


def test_names_refused_by_policy_without_resolving() -> None:
    assert name_refusal(ExitPolicy(False), "example.org", 443) == "this node is not an exit"
    web = ExitPolicy(True, [parse_exit_rule("0.0.0.0/0:443")])
    assert name_refusal(web, "example.org", 80) == "port 80 is not allowed by exit policy"
    assert "no public address" in (name_refusal(LOOPBACK_ONLY, "example.org", 80) or "")
    lan = ExitPolicy(True, [parse_exit_rule("192.168.0.0/16"), parse_exit_rule("10.0.0.0/8:22")])
    assert "no public address" in (name_refusal(lan, "nas.example.org", 445) or "")
    assert "no public address" in (name_refusal(lan, "localhost", 445) or "")  # no loopback rule
    some_loop = ExitPolicy(True, [parse_exit_rule("127.0.0.1/32:8080")])
    assert name_refusal(some_loop, "localhost", 80) is not None
    # a client does not pick such an exit for a public name
    allows = exit_allows(RelayConnect(Proto.TCP, "example.org", 80))
    assert allows is not None and not allows(relay("10.1.0.1", LOOPBACK_ONLY))


def test_resolver_waits_then_fails_clearly_without_exit(tmp_path: Path) -> None:
    resolver = _resolver(tmp_path, RELAYS)
    with pytest.raises(Exception, match="exit that allows"):
        asyncio.run(resolver.resolve((HopRandom(), HopRandom()), RelayConnect(Proto.TCP, "example.org", 80), wait=0.3))
