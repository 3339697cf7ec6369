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
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ErrorKind

#: A link with open streams pings after this much silence and is dropped after DEAD_AFTER.
QUIET_PING = 2.0
DEAD_AFTER = 10.0
#: How often an authenticated link is checked (and, while quiet and busy, pinged).
CHECK_EVERY = 1.0
#: Pings remembered for RTT (older ones are forgotten; their PONG is ignored).
MAX_PINGS_IN_FLIGHT = 8


@dataclass(frozen=True)
class SendPing:
    nonce: int


@dataclass(frozen=True)
class LinkDead:
    kind: ErrorKind
    reason: str


LivenessEvent = SendPing | LinkDead


class LivenessCore:
    """Deadlines and RTT of one link."""

    def __init__(
        self, now: float, auth_timeout: float, quiet_ping: float = QUIET_PING, dead_after: float = DEAD_AFTER
    ) -> None:
        self.last_heard = now
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

    def handle_timer(self, now: float, carrying: bool) -> list[LivenessEvent]:
        """`carrying`: the link has open streams (only then does silence matter)."""
        if self.closed:
            return []
        if not self.authenticated:
            if now < self._auth_deadline:
                return []
            self.closed = True
            return [LinkDead(ErrorKind.TIMEOUT, "link authentication timed out")]
        if now < self._next_check:
            return []
        quiet = now - self.last_heard
        if carrying and quiet <= self._quiet_ping:
            self._next_check = max(self.last_heard + self._quiet_ping, now + 0.05)
        else:
            self._next_check = now + CHECK_EVERY
        if not carrying or quiet <= self._quiet_ping:
            return []
        if quiet > self._dead_after:
            self.closed = True
            return [LinkDead(ErrorKind.LINK_LOST, f"peer silent for {quiet:.0f} s")]
        return [SendPing(self.ping(now))]
