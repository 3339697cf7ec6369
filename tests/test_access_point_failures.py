"""A client tries the access points it recently failed to reach last (service/access_point_failures.py).

A service replaces a lost access point within seconds, but the client keeps its cached
descriptor; without this memory it would pick the dead one again at random on every
connection (the 200-node testnet: service sessions timing out right after a churn wave).
"""

from __future__ import annotations

import asyncio
import random
import time
from types import SimpleNamespace

import nacl.signing
import pytest

from globalnet.circuit.builder import HOP_TIMEOUT
from globalnet.errors import ErrorKind, GnetError
from globalnet.relay.server import CONNECT_TIMEOUT as RELAY_CONNECT_TIMEOUT
from globalnet.relay.server import RelayHop
from globalnet.service import access_point
from globalnet.service.access_point import RENDEZVOUS_CLIENT_WAIT
from globalnet.service.access_point_failures import AccessPointFailures
from globalnet.service.client import _through_access_points
from globalnet.service.descriptor import AccessPointEntry, Descriptor
from globalnet.wire.commands import Proto

A, B, C = b"a" * 20, b"b" * 20, b"c" * 20
SERVICE_KEY = bytes(nacl.signing.SigningKey(b"s" * 32).verify_key)


def test_a_failed_access_point_goes_last_until_it_is_forgotten() -> None:
    failures = AccessPointFailures(remember=600.0)
    failures.failed(A, now=100.0)
    for seed in range(20):  # whatever the shuffle, A comes last
        assert failures.order([A, B, C], lambda x: x, now=200.0, rng=random.Random(seed))[-1] == A
    failures.failed(B, now=150.0)
    assert failures.order([A, B, C], lambda x: x, now=200.0, rng=random.Random(1))[1:] == [A, B]  # older failure first
    # after `remember`, A is back among the others (and forgotten)
    assert failures.failed_at(A, now=700.0) is None and failures.failed_at(B, now=700.0) == 150.0
    failures.reached(B)
    assert failures.failed_at(B, now=700.0) is None


def test_the_memory_is_bounded() -> None:
    failures = AccessPointFailures(limit=3)
    for i in range(10):
        failures.failed(bytes([i]) * 20, now=float(i))
    assert [failures.failed_at(bytes([i]) * 20, now=10.0) for i in range(10)] == [None] * 7 + [7.0, 8.0, 9.0]


class _Circuit:
    def __init__(self, breaks: GnetError | None = None) -> None:
        self.breaks = breaks

    async def extend_to(self, node_id: bytes, onion_key: bytes, command: object) -> bytes:
        if self.breaks is not None:
            raise self.breaks
        return b""


class _Node:
    """What the client asks of the node to reach access points; `dead` never answer, and
    through those in `broken` the rendezvous is made but the handshake with the service fails."""

    def __init__(self, dead: set[bytes], broken: dict[bytes, GnetError] | None = None) -> None:
        self.dead = dead
        self.broken = broken or {}
        self.tried: list[bytes] = []
        self.final_waits: list[float | None] = []
        self.access_point_failures = AccessPointFailures()

    async def open_circuit(
        self, hops: tuple[object, ...], final: object, purpose: str, vanguards: bool = False, final_wait: float | None = None
    ) -> _Circuit:
        ap = hops[-1].node_id  # type: ignore[attr-defined]
        self.tried.append(ap)
        self.final_waits.append(final_wait)
        if ap in self.dead:
            raise GnetError(ErrorKind.TIMEOUT, "hop 3: timed out")
        return _Circuit(self.broken.get(ap))

    def forget_circuit(self, circuit: object) -> None:
        pass


async def test_after_one_failure_the_dead_access_point_is_not_tried_first_again() -> None:
    descriptor = Descriptor(1, 1, 2**40, tuple(AccessPointEntry(ap, ap, b"proof") for ap in (A, B, C)))
    node = _Node(dead={A})
    tried: list[bytes] = []
    for _ in range(12):
        node.tried.clear()
        await _through_access_points(node, SERVICE_KEY, descriptor, None, "test", 0.0)  # type: ignore[arg-type]
        assert node.tried[-1] != A  # reached through a live one
        tried.extend(node.tried)
    # A was tried once at most: at the first connection, before anything was known of it
    assert tried.count(A) <= 1


@pytest.mark.parametrize("dead", [{A, B, C}])
async def test_every_access_point_dead_is_still_a_clear_error(dead: set[bytes]) -> None:
    descriptor = Descriptor(1, 1, 2**40, tuple(AccessPointEntry(ap, ap, b"proof") for ap in (A, B, C)))
    node = _Node(dead=dead)
    with pytest.raises(GnetError) as info:
        await _through_access_points(node, SERVICE_KEY, descriptor, None, "test", 0.0)  # type: ignore[arg-type]
    assert info.value.kind is ErrorKind.SERVICE_ACCESS_POINTS_UNREACHABLE and sorted(node.tried) == [A, B, C]


@pytest.mark.parametrize("kind", [ErrorKind.LINK_LOST, ErrorKind.NO_ROUTE, ErrorKind.TIMEOUT, ErrorKind.CLOSED])
async def test_a_rendezvous_lost_before_the_service_answers_is_tried_at_the_next_access_point(kind: ErrorKind) -> None:
    """The 200-node testnet: a relay of the splice died between RENZV_CONNECT_OK and the
    service's handshake answer, and the SOCKS client got reply 3 although two more access
    points were there to try."""
    descriptor = Descriptor(1, 1, 2**40, tuple(AccessPointEntry(ap, ap, b"proof") for ap in (A, B, C)))
    node = _Node(dead=set(), broken={A: GnetError(kind, "the circuit was reset"), B: GnetError(kind, "reset")})
    node.access_point_failures.failed(C, now=time.monotonic())  # C last: the two broken ones come first
    await _through_access_points(node, SERVICE_KEY, descriptor, None, "test", 0.0)  # type: ignore[arg-type]
    assert node.tried[-1] == C and sorted(node.tried) == [A, B, C]
    # and each rendezvous circuit waits for the access point's answer as long as the AP waits for the service
    assert node.final_waits == [RENDEZVOUS_CLIENT_WAIT] * 3


@pytest.mark.parametrize("kind", [ErrorKind.EXIT_POLICY, ErrorKind.CONNECTION_REFUSED, ErrorKind.HANDSHAKE_FAILED])
async def test_the_services_own_answer_is_not_retried_elsewhere(kind: ErrorKind) -> None:
    """A refusal from the service itself (its target, its policy, a key that does not match)
    would be the same through every access point: it reaches the user at once."""
    descriptor = Descriptor(1, 1, 2**40, tuple(AccessPointEntry(ap, ap, b"proof") for ap in (A, B, C)))
    node = _Node(dead=set(), broken={ap: GnetError(kind, "refused") for ap in (A, B, C)})
    with pytest.raises(GnetError) as info:
        await _through_access_points(node, SERVICE_KEY, descriptor, None, "test", 0.0)  # type: ignore[arg-type]
    assert info.value.kind is kind and len(node.tried) == 1


def test_a_rendezvous_outwaits_the_services_join_and_the_client_outwaits_the_access_point() -> None:
    """The access point waits long enough for a join built by a loaded service (three hops),
    the relay's deadline for the command covers that wait, and the client waits for the access
    point's answer longer still, so a slow join is answered, not timed out at one end and
    retried from scratch at the other."""
    assert access_point.RENDEZVOUS_WAIT >= 2 * HOP_TIMEOUT
    assert access_point.RENDEZVOUS_WAIT < access_point.CONNECT_TIMEOUT < access_point.RENDEZVOUS_CLIENT_WAIT
    assert access_point.AccessPoint(b"x" * 20).connect_timeout == access_point.CONNECT_TIMEOUT > RELAY_CONNECT_TIMEOUT
    # and the relay gives service commands the access point's deadline, any other its own
    hop = SimpleNamespace(relay=SimpleNamespace(access_point=access_point.AccessPoint(b"x" * 20)))
    assert RelayHop._connect_timeout(hop, Proto.SERVICE) == access_point.CONNECT_TIMEOUT  # type: ignore[arg-type]
    assert RelayHop._connect_timeout(hop, Proto.TCP) == RELAY_CONNECT_TIMEOUT  # type: ignore[arg-type]


async def test_a_client_waiting_at_an_access_point_is_answered_when_the_service_circuit_ends() -> None:
    """Not after RENDEZVOUS_WAIT (20 s): the request went down the circuit that just ended."""
    sent: list[bytes] = []
    hop = SimpleNamespace(send_wire=lambda data, end=False: sent.append(data))
    session = SimpleNamespace(send_frame=lambda frame_type, body: b"request " + body)
    ap = access_point.AccessPoint(node_id=A)
    registration = access_point.Registration(ap=ap, hop=hop, session=session, service=B)  # type: ignore[arg-type]
    ap.registrations[B] = registration
    asked = access_point._Waiting(asyncio.get_running_loop().create_future(), effort=0)
    registration.enqueue(b"k" * 20, asked)
    assert sent and not asked.future.done()

    registration.circuit_reset(ErrorKind.LINK_LOST)

    assert B not in ap.registrations and asked.future.done()
    with pytest.raises(GnetError) as info:
        asked.future.result()
    assert info.value.kind is ErrorKind.HOST_UNREACHABLE
