"""A circuit's congestion window (sans-IO): Vegas, as Tor's prop 324 TOR_VEGAS.

Theory of operation. The end-to-end credit window used to be a constant 256
KiB: enough on loopback, far too little over real delay (a 3-hop circuit with
20 ms per link has an RTT of ~120 ms, so 256 KiB caps it near 2 MiB/s). Now
each sending end keeps a congestion window `cwnd`, from INITIAL_WINDOW up to
the protocol's MAX_WINDOW, and may have at most `cwnd` wire bytes of DATA
unacknowledged. Acknowledgements are the receiver's CREDIT frames, unchanged
on the wire: relays still parse nothing, and enforce MAX_WINDOW (+ slack) per
circuit and direction without knowing any circuit's `cwnd`.

RTT samples come from the same CREDIT frames: the sender remembers when the
byte that ended each send went out, and a CREDIT that covers it gives
`now - then` (the receiver returns credit once its application took the
bytes, so a slow reader looks like a queue, which is what it is).

The update, once per window of acknowledged bytes (about once per RTT), is
prop 324's: with `bdp = cwnd * min_rtt / rtt` the window's estimate of what
the path holds without queueing, `queue = cwnd - bdp` estimates the bytes
sitting in queues along the circuit.
- Slow start: while queue < gamma, double cwnd each update (if the window was
  in use); on the first queue above gamma, cwnd = bdp + gamma and slow start
  ends.
- Then: queue > delta: cwnd = bdp + delta - INC (a steep cut); queue > beta:
  cwnd -= step; queue < alpha (and the window was in use): cwnd += step.
cwnd never leaves [MIN_WINDOW, MAX_WINDOW]. The thresholds are in bytes and
larger than Tor's cell counts: on one machine the "queue" is mostly CPU (three
relays' event loops), and fewer, bigger bursts are what make it fast.

Each threshold is the larger of its byte value (ALPHA, BETA, GAMMA, DELTA)
and a share of cwnd (1/4, 1/3, 1/4, 1/2: the RTT may grow by a third over
its minimum before the window stops growing, by half before it shrinks),
and the step is the larger of INC and cwnd/16. Why: over a long path the
RTT also varies with things that are not a queue at all (every relay's
event loop waiting for a CPU), and that noise is a share of the RTT, so in
bytes it grows with the window. With byte thresholds alone a 120 ms circuit
(3 hops, 20 ms per link, `make bench-wan`) stalled near 2.5-4 MiB of window,
~40 % of what TCP gets through the same links, and climbed by 128 KiB per
round trip.

A third bound is a queueing delay: what the window moves in ALPHA_DELAY
(BETA_DELAY, ...) at its rate `cwnd / rtt`; `queue < rate * ALPHA_DELAY` is
`rtt - min_rtt < ALPHA_DELAY`. Why: on a short fast path (loopback) the byte
thresholds held one stream's queue to ~5-10 ms of work, and the two cores sat
14-16 % idle while it flowed: a relay descheduled for a few ms left the next
one without input. 20-30 ms of queue keeps every stage busy (one stream 96-99
-> 117-122 MiB/s, idle 14-22 -> 5-12 %, alternating runs). It adds nothing
where it would cost: a slow circuit's 20 ms is less than ALPHA (the bytes
decide, no more standing queue than before), and circuits sharing a path
share its delay, so 8 circuits at 1/8 of the rate each keep the byte values
(relay RSS under 8 connections unchanged; thresholds x4 in bytes instead had
raised it from ~55 to 83-91 MiB). The price: other circuits through the same
busy relays wait behind that queue (a ping beside one loopback stream: median
17.7 against 11.2 ms); only circuits faster than ALPHA / ALPHA_DELAY (~25
MiB/s) queue more than before.
"""

from __future__ import annotations

from collections import deque

#: The protocol's maximum window (wire bytes): no end may have more in flight,
#: and relays reset a circuit that queues more (plus RELAY_SLACK).
MAX_WINDOW = 8 * 1024 * 1024
#: Where every circuit starts (the old fixed window), and the floor.
INITIAL_WINDOW = 256 * 1024
MIN_WINDOW = INITIAL_WINDOW
#: Vegas thresholds on the estimated queue, in bytes (see the module docstring).
ALPHA = 512 * 1024
BETA = 1024 * 1024
GAMMA = 512 * 1024
DELTA = 2 * 1024 * 1024
#: The same thresholds as queueing delay (seconds): a fast circuit may queue what its rate
#: moves in this long, when that is more than the byte values (module docstring).
ALPHA_DELAY = 0.020
BETA_DELAY = 0.030
GAMMA_DELAY = 0.020
DELTA_DELAY = 0.060
#: Additive step of the steady state.
INC = 128 * 1024
#: The window counts as "in use" when at most this much of it was left unused.
FULL_GAP = 64 * 1024
#: Send marks kept for RTT samples (older ones are merged: coarser, never unbounded).
MAX_MARKS = 1024
#: Weight of a new RTT sample in the smoothed RTT.
EWMA_WEIGHT = 0.5


class VegasWindow:
    """The congestion window of one sending end."""

    __slots__ = (
        "_acked_since_update",
        "_marks",
        "_sent_total",
        "_window_used",
        "cwnd",
        "ewma_rtt",
        "maximum",
        "min_rtt",
        "slow_start",
    )

    def __init__(self, initial: int = INITIAL_WINDOW, maximum: int = MAX_WINDOW) -> None:
        self.cwnd = initial
        self.maximum = maximum
        self.slow_start = True
        self.min_rtt: float | None = None
        self.ewma_rtt: float | None = None
        self._sent_total = 0  # wire bytes of DATA ever sent
        self._marks: deque[tuple[int, float]] = deque()  # (sent_total after a send, when)
        self._acked_since_update = 0
        self._window_used = False

    def on_send(self, wire: int, inflight: int, now: float | None) -> None:
        """`wire` bytes of DATA went out at `now`; `inflight` is the total unacknowledged after it."""
        self._sent_total += wire
        if inflight + FULL_GAP >= self.cwnd:
            self._window_used = True
        if now is None:
            return
        if len(self._marks) >= MAX_MARKS:
            self._marks.pop()  # merge into the newest: the next mark stands for both
        self._marks.append((self._sent_total, now))

    def on_ack(self, acked: int, acked_total: int, now: float | None) -> None:
        """A CREDIT for `acked` bytes arrived at `now`; `acked_total` is all acknowledged so far."""
        sent_at = None
        marks = self._marks
        while marks and marks[0][0] <= acked_total:
            sent_at = marks.popleft()[1]
        if now is not None and sent_at is not None:
            self._sample(now - sent_at)
        self._acked_since_update += acked
        if self._acked_since_update >= self.cwnd and self.ewma_rtt is not None:
            self._acked_since_update = 0
            self._update()
            self._window_used = False

    def _sample(self, rtt: float) -> None:
        rtt = max(rtt, 1e-6)
        self.min_rtt = rtt if self.min_rtt is None else min(self.min_rtt, rtt)
        self.ewma_rtt = rtt if self.ewma_rtt is None else EWMA_WEIGHT * rtt + (1 - EWMA_WEIGHT) * self.ewma_rtt

    def _update(self) -> None:
        assert self.min_rtt is not None and self.ewma_rtt is not None
        cwnd = self.cwnd
        rate = cwnd / max(self.ewma_rtt, self.min_rtt)  # bytes per second the window moves
        bdp = int(rate * self.min_rtt)
        queue = cwnd - bdp
        alpha, beta = max(ALPHA, cwnd // 4, int(rate * ALPHA_DELAY)), max(BETA, cwnd // 3, int(rate * BETA_DELAY))
        gamma, delta = max(GAMMA, cwnd // 4, int(rate * GAMMA_DELAY)), max(DELTA, cwnd // 2, int(rate * DELTA_DELAY))
        if self.slow_start:
            if queue < gamma:
                if self._window_used:
                    cwnd *= 2
            else:
                cwnd = bdp + gamma
                self.slow_start = False
            if cwnd >= self.maximum:
                self.slow_start = False
        elif queue > delta:
            cwnd = bdp + delta - INC
        elif queue > beta:
            cwnd -= max(INC, cwnd // 16)
        elif queue < alpha and self._window_used:
            cwnd += max(INC, cwnd // 16)
        self.cwnd = max(MIN_WINDOW, min(self.maximum, cwnd))
