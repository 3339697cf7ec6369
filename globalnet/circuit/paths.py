"""Choosing relays for `rand` hops (sans-IO: handed candidates, returns records).

Rules: never the client itself, never a node twice in one circuit, relays
from different /16 networks (IPv6: /32) when there is a choice, each network
weighted as one (a /16 that holds fifty relays is chosen as often as one that
holds one: an adversary who rents many addresses in one network gains no
share of the circuits by it), and the last
hop of a path to a TCP target is an exit whose announced policy allows that
target. The peer table is handed in by the node, so this module knows no DHT.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections import Counter
from collections.abc import Callable, Sequence

from ..errors import ErrorKind, GnetError
from ..wire.records import NodeRecord


def network_of(record: NodeRecord) -> str:
    """The /16 (IPv4) or /32 (IPv6) a relay is in, for path diversity."""
    if not record.addresses:
        return "?"
    return _network_of_host(record.addresses[0][0])


@functools.lru_cache(maxsize=8192)
def _network_of_host(host: str) -> str:
    """Cached: every path choice asks it of every known relay, several times (ipaddress is slow)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    prefix = 16 if ip.version == 4 else 32
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def choose_relays(
    candidates: Sequence[NodeRecord],
    slots: Sequence[Callable[[NodeRecord], bool] | None],
    exclude: set[bytes],
    avoid_networks: set[str],
    rng: random.Random | None = None,
) -> list[NodeRecord]:
    """Fill each slot with a distinct relay; a slot may carry a predicate (e.g. an exit check).

    Slots with a predicate are filled first (they are the scarce ones).
    Raises GnetError(NO_ROUTE) naming what is missing.
    """
    rng = rng or random.SystemRandom()
    used = set(exclude)
    nets = set(avoid_networks)
    chosen: dict[int, NodeRecord] = {}
    order = sorted(range(len(slots)), key=lambda i: slots[i] is None)
    crowd = Counter(network_of(r) for r in candidates)
    for i in order:
        want = slots[i]
        pool = [r for r in candidates if r.node_id not in used and (want is None or want(r))]
        if not pool:
            what = "exit that allows this target" if want is not None else "other relay"
            raise GnetError(ErrorKind.NO_ROUTE, f"no {what} among {len(candidates)} known relays")
        diverse = [r for r in pool if network_of(r) not in nets] or pool
        weights = [1.0 / crowd[network_of(r)] for r in diverse]
        pick = rng.choices(diverse, weights)[0]
        chosen[i] = pick
        used.add(pick.node_id)
        nets.add(network_of(pick))
    return [chosen[i] for i in range(len(slots))]
