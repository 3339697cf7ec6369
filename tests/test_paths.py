"""`rand` hop selection rules (sans-IO)."""

from __future__ import annotations

import random

import pytest

from globalnet.circuit.paths import choose_relays, network_of
from globalnet.circuit.resolve import exit_allows
from globalnet.errors import GnetError
from globalnet.policy.exit_policy import ExitPolicy
from globalnet.policy.exit_rule import parse_exit_rule
from globalnet.wire.commands import Proto, RelayConnect
from globalnet.wire.records import FLAG_EXIT, FLAG_RELAY, NodeRecord
from tests.identities import next_identity


def relay(host: str, exit_policy: ExitPolicy | None = None) -> NodeRecord:
    flags = FLAG_RELAY | (FLAG_EXIT if exit_policy and exit_policy.enabled else 0)
    summary = exit_policy.summary() if exit_policy else "reject *"
    return next_identity().make_record(((host, 9000),), flags, summary)


def test_never_twice_and_never_excluded() -> None:
    relays = [relay(f"10.{i}.0.1") for i in range(6)]
    me = relays[0].node_id
    for seed in range(50):
        chosen = choose_relays(relays, [None, None, None], {me}, set(), random.Random(seed))
        ids = [r.node_id for r in chosen]
        assert len(set(ids)) == 3 and me not in ids


def test_prefers_different_16s_when_there_is_a_choice() -> None:
    same = [relay(f"10.1.0.{i}") for i in range(1, 10)]  # nine relays in one /16
    others = [relay("10.2.0.1"), relay("10.3.0.1")]
    for seed in range(50):
        chosen = choose_relays(same + others, [None, None, None], set(), set(), random.Random(seed))
        assert len({network_of(r) for r in chosen}) == 3


def test_an_over_represented_network_weighs_as_one() -> None:
    crowd = [relay(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(50)]  # fifty relays in one /16
    singles = [relay(f"10.{n}.0.1") for n in range(2, 12)]  # ten /16s with one relay each
    rng = random.Random(7)
    crowd_ids = {r.node_id for r in crowd}
    picks = [choose_relays(crowd + singles, [None], set(), set(), rng)[0] for _ in range(2000)]
    share = sum(p.node_id in crowd_ids for p in picks) / len(picks)
    assert 0.05 < share < 0.14  # ~1/11 (one network of eleven), not 50/60 as uniform choice would give


def test_falls_back_to_one_16_when_that_is_all_there_is() -> None:
    relays = [relay(f"127.0.0.{i}") for i in range(1, 5)]
    chosen = choose_relays(relays, [None, None, None], set(), set(), random.Random(1))
    assert len({r.node_id for r in chosen}) == 3


def test_the_exit_slot_gets_an_exit_that_allows_the_target() -> None:
    loop_exit = relay("10.9.0.1", ExitPolicy(True, [parse_exit_rule("127.0.0.1/32")]))
    public_exit = relay("10.8.0.1", ExitPolicy(True))
    plain = [relay(f"10.{i}.0.1") for i in range(3)]
    allows = exit_allows(RelayConnect(Proto.TCP, "127.0.0.1", 8080))
    assert allows is not None
    for seed in range(30):
        chosen = choose_relays(plain + [loop_exit, public_exit], [None, None, allows], set(), set(), random.Random(seed))
        assert chosen[-1].node_id == loop_exit.node_id  # the public exit refuses loopback
    # `localhost` is chosen like 127.0.0.1: only the exit that allows loopback
    by_localhost = exit_allows(RelayConnect(Proto.TCP, "localhost", 8080))
    assert by_localhost is not None and by_localhost(loop_exit) and not by_localhost(public_exit)
    # a name target: any exit whose policy could allow the port
    by_name = exit_allows(RelayConnect(Proto.TCP, "example.org", 443))
    assert by_name is not None and by_name(public_exit) and not by_name(plain[0])


def test_not_enough_relays_is_a_clear_no_route() -> None:
    with pytest.raises(GnetError, match="no another relay|among 2 known relays"):
        choose_relays([relay("10.1.0.1"), relay("10.2.0.1")], [None, None, None], set(), set())
    allows = exit_allows(RelayConnect(Proto.TCP, "127.0.0.1", 80))
    with pytest.raises(GnetError, match="exit that allows"):
        choose_relays([relay("10.1.0.1")], [allows], set(), set())


def test_policy_summary_round_trips_for_path_selection() -> None:
    policy = ExitPolicy(True, [parse_exit_rule("127.0.0.1/32"), parse_exit_rule("0.0.0.0/0:80,443")])
    again = ExitPolicy.from_summary(policy.summary())
    assert again == policy
    assert not ExitPolicy.from_summary("reject *").enabled
    assert ExitPolicy.from_summary("accept public:*") == ExitPolicy(True)
