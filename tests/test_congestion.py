"""The Vegas congestion window on a fake clock: a modelled path (a bottleneck
rate and a base RTT; the queue a window builds adds delay), no sockets, no sleeping."""

from __future__ import annotations

from itertools import pairwise

from globalnet.crypto import AeadOpener, AeadSealer
from globalnet.endpoint.congestion import INITIAL_WINDOW, MAX_WINDOW, MIN_WINDOW, VegasWindow
from globalnet.endpoint.session import FrameSession
from tests.fakenet import FakeClock

MiB = 1024 * 1024
CHUNK = 64 * 1024


def _round(window: VegasWindow, clock: FakeClock, base_rtt: float, rate: float, acked: list[int]) -> int:
    """One window's worth sent at once; every byte acknowledged one RTT later,
    the RTT being the base plus the queue the window builds at the bottleneck."""
    cwnd = window.cwnd
    inflight = 0
    for _ in range(0, cwnd, CHUNK):
        inflight += CHUNK
        window.on_send(CHUNK, inflight, clock.now)
    queue = max(0.0, inflight - rate * base_rtt)
    clock.advance(base_rtt + queue / rate)
    for _ in range(0, inflight, CHUNK):
        acked[0] += CHUNK
        window.on_ack(CHUNK, acked[0], clock.now)
    return window.cwnd


def test_the_window_grows_on_an_idle_long_path_and_never_passes_the_maximum() -> None:
    clock, window, acked = FakeClock(), VegasWindow(), [0]
    assert window.cwnd == INITIAL_WINDOW
    # 3 hops of 20 ms: ~120 ms RTT; a 200 MiB/s path holds 24 MiB without queueing
    history = [_round(window, clock, 0.120, 200 * MiB, acked) for _ in range(40)]
    assert history[0] > INITIAL_WINDOW  # it grew from the first window on
    assert max(history) == MAX_WINDOW  # up to the protocol's maximum...
    assert all(c <= MAX_WINDOW for c in history)  # ...and never above it
    assert window.min_rtt is not None and abs(window.min_rtt - 0.120) < 1e-9


def test_the_window_backs_off_when_the_rtt_rises() -> None:
    clock, window, acked = FakeClock(), VegasWindow(), [0]
    for _ in range(30):
        _round(window, clock, 0.120, 200 * MiB, acked)
    grown = window.cwnd
    assert grown == MAX_WINDOW
    # the bottleneck drops to 8 MiB/s (~1 MiB in flight fills it): queues build, RTT rises
    history = [_round(window, clock, 0.120, 8 * MiB, acked) for _ in range(40)]
    assert history[-1] < grown / 2
    assert all(b <= a for a, b in pairwise(history) if a > 3 * MiB)  # it only comes down
    assert history[-1] >= MIN_WINDOW
    # the queue it leaves is bounded by the Vegas thresholds (a few MiB at most, not the maximum window)
    assert history[-1] - 8 * MiB * 0.120 <= 2 * MiB


def test_rtt_noise_that_is_a_share_of_the_rtt_does_not_cap_a_long_path() -> None:
    """A 120 ms path whose RTT is 20 % above its minimum whatever the window (event loops
    waiting for a CPU, not a queue): the window still reaches the maximum. With byte
    thresholds alone, 20 % of a 2.5 MiB window already counted as a 512 KiB queue."""
    clock, window, acked = FakeClock(), VegasWindow(), [0]
    window.on_send(CHUNK, CHUNK, clock.now)
    clock.advance(0.120)  # one clean sample: the minimum
    acked[0] += CHUNK
    window.on_ack(CHUNK, acked[0], clock.now)
    history = [_round(window, clock, 0.144, 200 * MiB, acked) for _ in range(40)]
    assert window.min_rtt is not None and abs(window.min_rtt - 0.120) < 1e-9
    assert max(history) == MAX_WINDOW


def test_a_short_fast_path_queues_what_its_rate_moves_in_tens_of_ms_not_the_maximum() -> None:
    """Loopback-like: 1 ms RTT, 100 MiB/s (a 100 KiB path): any window mostly queues. Growth
    stops at ALPHA_DELAY (20 ms) of queue, the window shrinks past BETA_DELAY (30 ms): ~2-3 MiB,
    the queue that keeps three relays' event loops busy on one machine, not the 8 MiB maximum."""
    clock, window, acked = FakeClock(), VegasWindow(), [0]
    rate, base = 100 * MiB, 0.001
    history = [_round(window, clock, base, rate, acked) for _ in range(80)]
    settled = history[40:]
    assert max(history) < MAX_WINDOW
    delays = [(cwnd - rate * base) / rate for cwnd in settled]
    assert min(delays) >= 0.010 and max(delays) <= 0.045, delays  # about ALPHA_DELAY..BETA_DELAY


def test_a_slow_short_path_keeps_the_byte_thresholds() -> None:
    """1 ms RTT at 5 MiB/s: 20 ms of queue would be 100 KiB, less than ALPHA, so the byte
    thresholds decide as before (half a MiB to a MiB queued), not the delay ones."""
    clock, window, acked = FakeClock(), VegasWindow(), [0]
    rate, base = 5 * MiB, 0.001
    history = [_round(window, clock, base, rate, acked) for _ in range(80)]
    assert max(history) <= 2 * MiB
    assert MIN_WINDOW <= history[-1] <= 1.5 * MiB


def test_an_idle_sender_does_not_grow_its_window() -> None:
    """Growth needs the window in use (prop 324's cwnd_full): a trickle proves nothing."""
    clock, window, acked = FakeClock(), VegasWindow(), [0]
    for _ in range(20):
        window.on_send(1000, 1000, clock.now)
        clock.advance(0.1)
        acked[0] += 1000
        window.on_ack(1000, acked[0], clock.now)
    assert window.cwnd == INITIAL_WINDOW


def test_rtt_samples_come_from_credit_frames() -> None:
    k1, k2 = bytes([1]) * 32, bytes([2]) * 32
    a = FrameSession(AeadSealer(k1), AeadOpener(k2))
    b = FrameSession(AeadSealer(k2), AeadOpener(k1))
    clock = FakeClock()
    wire = a.send_data(b"x" * 100_000, clock.now)
    assert a.send_credit == INITIAL_WINDOW - len(wire)
    events = b.receive(wire, clock.advance(0.010))
    credit = b.consumed(sum(e.wire_size for e in events))  # type: ignore[union-attr]
    a.receive(credit, clock.advance(0.030))
    assert a.window.min_rtt is not None and abs(a.window.min_rtt - 0.040) < 1e-9
    assert a.send_credit == a.window.cwnd


def test_bytes_read_before_the_window_shrank_still_go() -> None:
    """The pump asks `sendable()`, awaits TCP, then sends: a CREDIT that shrinks the
    window in between must not turn the read bytes into an error (a relay-hop crash
    seen through a hidden service); the protocol's maximum stays the hard limit."""
    k1, k2 = bytes([1]) * 32, bytes([2]) * 32
    a = FrameSession(AeadSealer(k1), AeadOpener(k2))
    room = a.sendable()
    a.window.cwnd = INITIAL_WINDOW // 4  # as if a Vegas round had just cut it
    assert a.send_credit < room
    wire = a.send_data(b"r" * room)  # what was read under the older window
    assert len(wire) <= INITIAL_WINDOW
    assert a.sendable() == 0
