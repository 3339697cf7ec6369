"""A link's deadlines (sans-IO): authenticate in time, and stay audible.

Theory of operation. Two rules, both on a clock the core never reads itself
(the shell passes `now`, arms one timer at `get_timer()` and calls
`handle_timer(now)` when it fires, as aioquic does):
- Authentication: a connection that has not finished the control stream's
  CHALLENGE/AUTH/AUTH_OK by `auth_timeout` after it was made is dropped.
- Liveness: QUIC alone notices a dead peer only at its idle timeout (a
  minute); a circuit through a relay that died must be reset within seconds.
  So a link that carries streams pings once a second after `quiet_ping`
  seconds without hearing anything, and is dropped after `dead_after`.
The shell records `last_heard` for every datagram (an attribute write, the
only per-packet cost) and reports PONGs (`pong()`), which give the RTT.
- Idleness: a link that carries no stream is checked only rarely (its
  timer moves to CHECK_EVERY again when a first stream opens,
  `carrying_started()`), and one the shell says may close (a link we
  dialled that nothing keeps) is closed once it has carried no stream and no
  DHT message (`used()`) for `idle_close` seconds. Links are made on demand
  (a DHT RPC, a circuit's next hop), so without this a relay ended up linked
  to every relay it ever spoke to, each link waking it every second (make
  testnet: a full mesh, 25 links a node at N=30, 50 at N=60). Tor closes
  connections without circuits after a while for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..errors import ErrorKind

#: A link with open streams pings after this much silence and is dropped after DEAD_AFTER.
QUIET_PING = 2.0
DEAD_AFTER = 10.0
#: How often an authenticated link is checked (and, while quiet and busy, pinged).
CHECK_EVERY = 1.0
#: Pings remembered for RTT (older ones are forgotten; their PONG is ignored).
MAX_PINGS_IN_FLIGHT = 8
#: A link that may close is closed after this long without a stream or a DHT message.
IDLE_CLOSE = 120.0


class LinkDeadlines(Protocol):
    """The settings a link's deadlines come from: authentication within `dial_timeout`,
    an idle dialled link closed after `idle_close` (the node's Settings has both)."""

    @property
    def dial_timeout(self) -> float: ...
    @property
    def idle_close(self) -> float: ...


@dataclass(frozen=True)
class SendPing:
    nonce: int


@dataclass(frozen=True)
class LinkDead:
    kind: ErrorKind
    reason: str


@dataclass(frozen=True)
class LinkIdle:
    idle_for: float


LivenessEvent = SendPing | LinkDead | LinkIdle


class LivenessCore:
    """Deadlines and RTT of one link."""

    def __init__(
        self,
        now: float,
        auth_timeout: float,
        quiet_ping: float = QUIET_PING,
        dead_after: float = DEAD_AFTER,
        idle_close: float = IDLE_CLOSE,
    ) -> None:
        self.last_heard = now
        self.last_used = now  # a stream opened or ended, a DHT message: what keeps a link worth having
        self._idle_close = idle_close
        self.rtt: float | None = None
        self.authenticated = False
        self.closed = False
        self._auth_deadline = now + auth_timeout
        self._quiet_ping = quiet_ping
        self._dead_after = dead_after
        self._next_check = now + CHECK_EVERY
        self._nonce = 0
        self._pings: dict[int, float] = {}

    # -- inputs ----------------------------------------------------------------
    def heard(self, now: float) -> None:
        self.last_heard = now

    def used(self, now: float) -> None:
        """The link carried something worth keeping it for (not a PING, not PEERS)."""
        self.last_used = now

    def carrying_started(self, now: float) -> bool:
        """A first stream opened: silence matters again. True when the timer moved (re-arm it)."""
        self.last_used = now
        soon = now + CHECK_EVERY
        if self.closed or not self.authenticated or soon >= self._next_check:
            return False
        self._next_check = soon
        return True

    def link_ready(self, now: float) -> None:
        """The control stream authenticated the peer: the auth deadline no longer applies."""
        self.authenticated = True
        self._next_check = now + CHECK_EVERY

    def ping(self, now: float) -> int:
        """A nonce for a PING being sent now (its PONG gives the RTT)."""
        self._nonce += 1
        self._pings[self._nonce] = now
        if len(self._pings) > MAX_PINGS_IN_FLIGHT:
            self._pings.pop(next(iter(self._pings)))
        return self._nonce

    def pong(self, nonce: int, now: float) -> float | None:
        """A PONG arrived; returns the RTT it measured (None for an unknown nonce)."""
        sent = self._pings.pop(nonce, None)
        if sent is None:
            return None
        self.rtt = now - sent
        return self.rtt

    # -- timer -------------------------------------------------------------------
    def get_timer(self) -> float | None:
        if self.closed:
            return None
        return self._next_check if self.authenticated else self._auth_deadline

    def handle_timer(self, now: float, carrying: bool, may_close: bool = False) -> list[LivenessEvent]:
        """`carrying`: the link has open streams (only then does silence matter);
        `may_close`: nothing keeps the link up when it is idle."""
        if self.closed:
            return []
        if not self.authenticated:
            if now < self._auth_deadline:
                return []
            self.closed = True
            return [LinkDead(ErrorKind.TIMEOUT, "link authentication timed out")]
        if now < self._next_check:
            return []
        if not carrying:
            idle_for = now - self.last_used
            if may_close and idle_for >= self._idle_close:
                self.closed = True
                return [LinkIdle(idle_for)]
            # nothing to watch until a stream opens (carrying_started) or the link has idled long enough
            self._next_check = self.last_used + self._idle_close if may_close else now + self._idle_close
            self._next_check = max(self._next_check, now + CHECK_EVERY)
            return []
        quiet = now - self.last_heard
        if quiet <= self._quiet_ping:
            self._next_check = max(self.last_heard + self._quiet_ping, now + 0.05)
            return []
        self._next_check = now + CHECK_EVERY
        if quiet > self._dead_after:
            self.closed = True
            return [LinkDead(ErrorKind.LINK_LOST, f"peer silent for {quiet:.0f} s")]
        return [SendPing(self.ping(now))]
