"""Bootstrap progress (sans-IO): the lines a node logs as it comes up, Tor-style."""

from __future__ import annotations

from globalnet.bootstrap import BootstrapTracker, Progress, relays_needed
from globalnet.wire.pathspec import parse_path_spec


def test_pinned_tunnel_needs_no_relays_and_is_ready_at_start() -> None:
    spec = parse_path_spec("1000>127.0.0.1:9001>127.0.0.1:9002>127.0.0.1:8080")
    needed = relays_needed((spec,), services=0, listening=False)
    assert needed == 0
    tracker = BootstrapTracker(needed, expect_links=False)
    assert tracker.start() == Progress(100, "ready")
    assert tracker.ready and tracker.start() is None  # one ready line


def test_rand_hops_and_services_need_relays() -> None:
    rand = parse_path_spec("1000>rand>rand>rand>127.0.0.1:8080")
    by_id = parse_path_spec("1000>0123456789abcdef0123456789abcdef01234567>127.0.0.1:8080")
    assert relays_needed((rand,), 0, False) == 3
    assert relays_needed((by_id,), 0, False) == 1
    assert relays_needed((), 1, False) == 3
    assert relays_needed((), 0, True) == 1


def test_client_progress_goes_up_through_every_phase_then_ready_once() -> None:
    tracker = BootstrapTracker(3, expect_links=True, expect_dht=True, services=("web",))
    lines = [tracker.start()]  # listeners up first, as node.py does
    lines.append(tracker.links_up(1))
    lines.append(tracker.relays_learned(1))
    lines.append(tracker.relays_learned(1))  # nothing new: no line
    lines.append(tracker.relays_learned(3))
    lines.append(tracker.dht_joined())
    lines.append(tracker.guards_chosen(2))
    lines.append(tracker.links_up(0))  # a lost link never lowers the percentage
    lines.append(tracker.service_published("web"))
    lines.append(tracker.service_published("web"))
    shown = [p.line() for p in lines if p is not None]
    assert shown == [
        "bootstrapped 0% (starting: no link up yet)",
        "bootstrapped 10% (linked, learning relays: 0 of 3 known)",
        "bootstrapped 26% (linked, learning relays: 1 of 3 known)",
        "bootstrapped 60% (joining the DHT)",
        "bootstrapped 80% (publishing services: 0 of 1)",
        "ready",
    ]
    status = tracker.status()
    assert status["ready"] is True and status["percent"] == 100 and status["services_published"] == ["web"]


def test_guards_hook_holds_ready_until_guards_are_chosen() -> None:
    tracker = BootstrapTracker(1, expect_links=True, expect_guards=True)
    tracker.start()
    tracker.links_up(1)
    step = tracker.relays_learned(1)
    assert step == Progress(70, "choosing guards") and not tracker.ready
    assert tracker.guards_chosen(3) == Progress(100, "ready")


def test_unknown_service_name_changes_nothing() -> None:
    tracker = BootstrapTracker(0, expect_links=False, services=("web",))
    assert tracker.start() == Progress(80, "publishing services: 0 of 1")
    assert tracker.service_published("other") is None
    assert tracker.status()["services_published"] == []


def test_ready_waits_for_the_listeners() -> None:
    tracker = BootstrapTracker(1, expect_links=True)
    assert tracker.links_up(1) is None or not tracker.ready
    tracker.relays_learned(1)
    assert not tracker.ready  # the facts say ready, but the tunnels do not listen yet
    assert tracker.start() == Progress(100, "ready")
