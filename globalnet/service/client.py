"""Reaching a hidden service: descriptor, rendezvous, end-to-end handshake.

The client looks the descriptor up through a circuit, builds its own circuit
to one of the access points it names and asks for a rendezvous
(RENZV_CONNECT). When the access point answers OK, the service has joined
through a fresh circuit of its own, and the client extends its circuit "one
hop further" to the service itself: a Noise NK handshake to the X25519 key
derived from the address, carrying RELAY_CONNECT tcp (empty for the
service's own target, or the host:port the client asks the service side to
reach). Only the holder of the address's key can answer that handshake.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import structlog

from ..errors import ErrorKind, GnetError
from ..wire.commands import SERVICE_RENDEZVOUS, Proto, RelayConnect
from ..wire.pathspec import HopId, HopRandom, TargetTcp
from ..wire.records import short_id
from .address import decode_address, service_id, service_onion_public
from .descriptor import Descriptor, current_period, descriptor_key, verify_descriptor

if TYPE_CHECKING:
    from ..circuit.builder import ClientCircuit
    from ..node import Node

log = structlog.get_logger("globalnet.service")


class ServiceError(GnetError):
    """A hidden-service failure with a message of its own (bad address, unknown service...)."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(kind, detail)
        self.args = (detail,)

    def __str__(self) -> str:
        return self.detail


_CACHE_MAX = 256


async def find_descriptor(node: "Node", service_key: bytes, fresh: bool = False) -> Descriptor:
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


async def _lookup_descriptor(node: "Node", service_key: bytes) -> Descriptor:
    period = current_period()
    expired = False
    for p in (period, period - 1):
        key = descriptor_key(service_key, p)
        found = await node.dht_lookup(key)
        if found is None:
            continue
        try:
            return verify_descriptor(key, found.value)
        except GnetError as exc:
            expired = expired or "expired" in exc.detail
    if expired:
        raise ServiceError(ErrorKind.SERVICE_UNREACHABLE, "the service's descriptor has expired (is the service down?)")
    raise ServiceError(ErrorKind.SERVICE_UNREACHABLE, "unknown service: no descriptor found in the DHT")


async def open_service_circuit(
    node: "Node", address: str, then: TargetTcp | None, purpose: str, command: RelayConnect | None = None
) -> "ClientCircuit":
    """A circuit whose last hop is the service; `command` is what we ask of it
    (default: a TCP session to its own target, or to `then`)."""
    service_key = decode_address(address)  # AddressError (SERVICE_UNREACHABLE) says what is wrong
    started = time.monotonic()
    try:
        return await _through_access_points(
            node, service_key, await find_descriptor(node, service_key), then, purpose, started, command
        )
    except ServiceError as exc:
        if "access points" not in exc.detail:
            raise
    # every access point we knew failed: the service may have moved; ask the DHT again
    descriptor = await find_descriptor(node, service_key, fresh=True)
    return await _through_access_points(node, service_key, descriptor, then, purpose, started, command)


async def _through_access_points(
    node: "Node",
    service_key: bytes,
    descriptor: Descriptor,
    then: TargetTcp | None,
    purpose: str,
    started: float,
    command: RelayConnect | None = None,
) -> "ClientCircuit":
    sid = service_id(service_key)
    aps = list(descriptor.access_points)
    random.shuffle(aps)
    last: GnetError | None = None
    for ap in aps:
        try:
            circuit = await node.open_circuit(
                (HopRandom(), HopRandom(), HopId(ap)), RelayConnect(Proto.SERVICE, SERVICE_RENDEZVOUS, node_id=sid), purpose,
                vanguards=True,
            )
        except GnetError as exc:
            last = exc
            log.debug("access point failed", ap=short_id(ap), reason=str(exc))
            continue
        if command is None:
            command = RelayConnect(Proto.TCP, then.host, then.port) if then else RelayConnect(Proto.TCP)
        try:
            await circuit.extend_to(sid, service_onion_public(service_key), command)
        except GnetError as exc:
            node.forget_circuit(circuit)
            if exc.kind is ErrorKind.EXIT_POLICY:
                raise ServiceError(ErrorKind.EXIT_POLICY, f"the service refused the target: {exc.detail}") from None
            raise ServiceError(exc.kind, f"the service did not answer: {exc.detail}") from None
        log.debug("service reached", took_ms=round((time.monotonic() - started) * 1000, 1))
        return circuit
    reason = f" (last: {last})" if last else ""
    raise ServiceError(ErrorKind.SERVICE_UNREACHABLE, f"all {len(aps)} access points of the service are down{reason}")
