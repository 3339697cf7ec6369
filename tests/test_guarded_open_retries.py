"""Which circuit failures are retried with other relays (circuit/guarded_open.py).

A path with `rand` hops is rebuilt through other relays when a relay on it could not be
reached, but not when the unreachable hop is one the caller named: at 200 nodes a client
whose descriptor still listed a killed access point rebuilt the same doomed circuit five
times, each waiting on the dead hop, and the SOCKS request ran out of time before the
service client could try the next access point.
"""

from __future__ import annotations

from typing import Any

import pytest

from globalnet.circuit.guarded_open import CIRCUIT_ATTEMPTS, GuardedCircuitOpener
from globalnet.errors import ErrorKind, GnetError
from globalnet.wire.commands import Proto, RelayConnect
from globalnet.wire.pathspec import HopId, HopRandom

NAMED, MIDDLE = b"n" * 20, b"m" * 20


class _Peers:
    def __init__(self) -> None:
        self.failed_ids: list[bytes] = []

    def failed(self, node_id: bytes) -> None:
        self.failed_ids.append(node_id)


class _Guards:
    def __init__(self) -> None:
        self.middle: set[bytes] = set()
        self.records: dict[bytes, Any] = {}


class _Opener(GuardedCircuitOpener):
    """The retry policy alone: every attempt fails at `failing_hop`."""

    def __init__(self, failing_hop: bytes | None, kind: ErrorKind) -> None:
        super().__init__(
            None, _Peers(), _Guards(), None,  # type: ignore[arg-type]
            never_through=set, refresh_guards=lambda: None, on_built=lambda c, s: None,
        )  # fmt: skip
        self.failing_hop, self.kind, self.attempts = failing_hop, kind, 0
        self.final_waits: list[float | None] = []

    async def _open_once(self, *args: Any) -> Any:
        self.attempts += 1
        self.final_waits.append(args[-1])
        raise GnetError(self.kind, "hop 3: not reachable", self.failing_hop)


FINAL = RelayConnect(Proto.TCP)


async def test_an_unreachable_named_hop_is_not_retried_through_other_relays() -> None:
    opener = _Opener(NAMED, ErrorKind.NO_ROUTE)
    with pytest.raises(GnetError) as info:
        await opener.open((HopRandom(), HopRandom(), HopId(NAMED)), FINAL, "service", None, True)
    assert opener.attempts == 1 and info.value.node_id == NAMED


@pytest.mark.parametrize("kind", [ErrorKind.NO_ROUTE, ErrorKind.TIMEOUT, ErrorKind.LINK_LOST])
async def test_an_unreachable_random_hop_is_retried_and_marked(kind: ErrorKind) -> None:
    opener = _Opener(MIDDLE, kind)
    with pytest.raises(GnetError):
        await opener.open((HopRandom(), HopRandom(), HopId(NAMED)), FINAL, "service", None, True)
    assert opener.attempts == CIRCUIT_ATTEMPTS
    assert opener.peers.failed_ids == [MIDDLE] * CIRCUIT_ATTEMPTS  # type: ignore[attr-defined]


async def test_a_refusal_is_not_retried() -> None:
    opener = _Opener(None, ErrorKind.EXIT_POLICY)
    with pytest.raises(GnetError):
        await opener.open((HopRandom(), HopRandom(), HopRandom()), FINAL, "socks", None, False)
    assert opener.attempts == 1


async def test_the_final_hops_wait_reaches_every_attempt() -> None:
    """A rendezvous waits for the service longer than a hop answers (service/access_point.py):
    the caller's `final_wait` must reach the build of each attempt."""
    opener = _Opener(MIDDLE, ErrorKind.TIMEOUT)
    with pytest.raises(GnetError):
        await opener.open((HopRandom(), HopRandom(), HopId(NAMED)), FINAL, "service", None, True, 25.0)
    assert opener.final_waits == [25.0] * CIRCUIT_ATTEMPTS
