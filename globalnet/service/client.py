"""Reaching a hidden service: descriptor, rendezvous, end-to-end handshake.

The client looks the descriptor up through a circuit and decrypts it (with
its client key when the service wants client authorization), builds its own
circuit to one of the access points it names and asks for a rendezvous
(RENZV_CONNECT) with the proof the descriptor gives for that access point
and a proof of work of the suggested effort. When the access point answers OK, the service has joined
through a fresh circuit of its own, and the client extends its circuit "one
hop further" to the service itself: a Noise NK handshake to the X25519 key
derived from the address, carrying RELAY_CONNECT tcp (empty for the
service's own target, or the host:port the client asks the service side to
reach). Only the holder of the address's key can answer that handshake.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog

from ..errors import ErrorKind, GnetError
from ..wire.commands import Proto, RelayConnect
from ..wire.pathspec import HopId, HopRandom, TargetTcp
from ..wire.records import short_id
from .access_point import RENDEZVOUS_CLIENT_WAIT, RendezvousAsk
from .address import check_service_key, decode_address, service_id, service_onion_public
from .descriptor import AccessPointEntry, Descriptor, current_period, descriptor_key, open_descriptor
from .node_api import ServiceClientNode
from .pow import solve_work

if TYPE_CHECKING:
    from ..circuit.builder import ClientCircuit

log = structlog.get_logger("globalnet.service")


class ServiceError(GnetError):
    """A hidden-service failure with a message of its own (bad address, unknown service...)."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(kind, detail)
        self.args = (detail,)

    def __str__(self) -> str:
        return self.detail


_CACHE_MAX = 256
#: How a rendezvous can break before the service answers, none of them the service's refusal.
_RENDEZVOUS_LOST = (ErrorKind.LINK_LOST, ErrorKind.NO_ROUTE, ErrorKind.TIMEOUT, ErrorKind.CLOSED)
MAX_CLIENT_EFFORT = 1 << 20  # we never work longer than ~1-2 s for a rendezvous


async def find_descriptor(node: ServiceClientNode, service_key: bytes, fresh: bool = False) -> Descriptor:
    """The service's descriptor: cached until it expires, else looked up through a circuit."""
    cache: dict[bytes, Descriptor] = node.service_descriptors
    cached = cache.get(service_key)
    if cached is not None and not fresh and cached.expires > time.time() + 60:
        return cached
    descriptor = await _lookup_descriptor(node, service_key)
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[service_key] = descriptor
    return descriptor


async def _lookup_descriptor(node: ServiceClientNode, service_key: bytes) -> Descriptor:
    """This period's descriptor (or the previous period's, near the boundary), decrypted.

    The error says why not: SERVICE_NOT_AUTHORIZED (it wants a client key we lack),
    SERVICE_NO_DESCRIPTOR (only an expired or unreadable one), SERVICE_UNKNOWN (none)."""
    period = current_period()
    stale: GnetError | None = None
    for p in (period, period - 1):
        key = descriptor_key(service_key, p)
        found = await node.dht_lookup(key)
        if found is None:
            continue
        try:
            return open_descriptor(service_key, key, found.value, node.client_auth_key)
        except GnetError as exc:
            if exc.kind is ErrorKind.SERVICE_NOT_AUTHORIZED:
                raise ServiceError(exc.kind, f"not authorized: {exc.detail}") from None
            stale = stale or exc
    if stale is not None:
        raise ServiceError(
            ErrorKind.SERVICE_NO_DESCRIPTOR, f"no current descriptor for the service yet ({stale.detail}; is it starting or down?)"
        )
    raise ServiceError(ErrorKind.SERVICE_UNKNOWN, "unknown service: no descriptor found in the DHT (wrong address, or the service never published)")


async def open_service_circuit(
    node: ServiceClientNode, address: str, then: TargetTcp | None, purpose: str, command: RelayConnect | None = None
) -> ClientCircuit:
    """A circuit whose last hop is the service; `command` is what we ask of it
    (default: a TCP session to its own target, or to `then`)."""
    service_key = decode_address(address)  # AddressError (SERVICE_UNREACHABLE) says what is wrong
    check_service_key(address, service_key)
    started = time.monotonic()
    try:
        return await _through_access_points(
            node, service_key, await find_descriptor(node, service_key), then, purpose, started, command
        )
    except ServiceError as exc:
        if exc.kind not in (ErrorKind.SERVICE_ACCESS_POINTS_UNREACHABLE, ErrorKind.SERVICE_NOT_AUTHORIZED):
            raise
    # every access point we knew failed or refused us: the service may have moved or
    # renewed its proofs (after revoking a client); ask the DHT again
    descriptor = await find_descriptor(node, service_key, fresh=True)
    return await _through_access_points(node, service_key, descriptor, then, purpose, started, command)


async def _rendezvous_command(descriptor: Descriptor, entry: AccessPointEntry) -> RelayConnect:
    effort = min(descriptor.pow_effort, MAX_CLIENT_EFFORT)
    nonce = solve_work(descriptor.pow_seed, entry.registration_id, 0)
    if effort:  # the work runs beside the event loop, not in it
        nonce = await asyncio.to_thread(solve_work, descriptor.pow_seed, entry.registration_id, effort)
    ask = RendezvousAsk(entry.proof, nonce, effort)
    return RelayConnect(Proto.SERVICE, ask.encode(), node_id=entry.registration_id)


async def _through_access_points(
    node: ServiceClientNode,
    service_key: bytes,
    descriptor: Descriptor,
    then: TargetTcp | None,
    purpose: str,
    started: float,
    command: RelayConnect | None = None,
) -> ClientCircuit:
    sid = service_id(service_key)
    failures = node.access_point_failures
    entries = failures.order(descriptor.access_points, lambda entry: entry.node_id, time.monotonic())
    last: GnetError | None = None
    for entry in entries:
        try:
            circuit = await node.open_circuit(
                (HopRandom(), HopRandom(), HopId(entry.node_id)), await _rendezvous_command(descriptor, entry), purpose,
                vanguards=True, final_wait=RENDEZVOUS_CLIENT_WAIT,
            )
        except GnetError as exc:
            last = exc
            if exc.kind is not ErrorKind.SERVICE_NOT_AUTHORIZED:
                failures.failed(entry.node_id, time.monotonic())
            log.debug("access point failed", ap=short_id(entry.node_id), reason=str(exc))
            continue
        failures.reached(entry.node_id)
        if command is None:
            command = RelayConnect(Proto.TCP, then.host, then.port) if then else RelayConnect(Proto.TCP)
        try:
            await circuit.extend_to(sid, service_onion_public(service_key), command)
        except GnetError as exc:
            node.forget_circuit(circuit)
            if exc.kind is ErrorKind.EXIT_POLICY:
                raise ServiceError(ErrorKind.EXIT_POLICY, f"the service refused the target: {exc.detail}") from None
            if exc.kind in _RENDEZVOUS_LOST:
                # the splice broke under the handshake (a relay of our circuit or of the service's
                # join circuit died, or the access point did): another access point may work
                last = exc
                log.debug("rendezvous lost before the service answered", ap=short_id(entry.node_id), reason=str(exc))
                continue
            raise ServiceError(exc.kind, f"the service did not answer: {exc.detail}") from None
        log.debug("service reached", took_ms=round((time.monotonic() - started) * 1000, 1))
        return circuit
    if last is not None and last.kind is ErrorKind.SERVICE_NOT_AUTHORIZED:
        raise ServiceError(ErrorKind.SERVICE_NOT_AUTHORIZED, f"not authorized: the access points refused our proof ({last.detail})")
    reason = f" (last: {last})" if last else ""
    raise ServiceError(
        ErrorKind.SERVICE_ACCESS_POINTS_UNREACHABLE, f"all {len(entries)} access points of the service are unreachable{reason}"
    )
