"""Network diversity limits for routing tables: how many contacts one network may hold.

Why: addresses are what a Sybil attacker has least of. Ids are cheap-ish (see
the id puzzle in wire/records.py), but a thousand Sybils usually sit in a few
hosting /24s and /16s. Bounding each network's share of a table (discv5: 2
per /24 per bucket, 10 per table; libp2p: per /16) means such an attacker
fills at most a few slots of every honest node's table, whatever ids it
ground, so honest contacts remain in each bucket for lookups to route over.

Limits, per table:
- a bucket (a DHT k-bucket, or a peer-table bucket of the same XOR-distance
  shape) holds at most PER_BUCKET_SMALL (2) contacts from one /24 (IPv6: /48);
- the whole table holds at most PER_TABLE_LARGE (10) from one /16 (IPv6: /32).
Lookups apply a third limit to the k closest nodes they ask and store on
(PER_SET_LARGE, see `diverse_closest`). A contact over a limit is not refused outright: the caller keeps it as a
replacement only (used when a slot frees and the limits allow it).

Loopback (127.0.0.0/8, ::1) is exempt by default: a local test network or the
demo puts every node on 127.0.0.1, one /24, and would otherwise be capped at a
handful of contacts. A real deployment never sees loopback peers from other
hosts (links to them would reach the node itself), so the exemption opens
nothing to a remote attacker. `DiversityPolicy(exempt_loopback=False)` turns
the limits on for loopback too; every other range, private ones (10/8 etc.)
included, is always limited. A host that is not an IP literal (a name) is its
own network: limited like a /24 of one.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

PER_BUCKET_SMALL = 2
PER_TABLE_LARGE = 10
#: In the k closest nodes a lookup path asks next, and the k nodes a publish
#: stores on: at most this many per /16 (/32), as long as enough other networks
#: are known (otherwise the closest of the rest fill the set).
PER_SET_LARGE = 2


@dataclass(frozen=True)
class Networks:
    """The two prefixes a host belongs to, as strings ('v4:10.9.8/24'); None if exempt."""

    small: str
    large: str


@functools.lru_cache(maxsize=65536)
def _networks(host: str, exempt_loopback: bool) -> Networks | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return Networks(f"name:{host.lower()}", f"name:{host.lower()}")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback and exempt_loopback:
        return None
    small_bits, large_bits = (24, 16) if isinstance(ip, ipaddress.IPv4Address) else (48, 32)
    small = ipaddress.ip_network(f"{ip}/{small_bits}", strict=False)
    large = ipaddress.ip_network(f"{ip}/{large_bits}", strict=False)
    return Networks(str(small), str(large))


@dataclass(frozen=True)
class DiversityPolicy:
    per_bucket_small: int = PER_BUCKET_SMALL
    per_table_large: int = PER_TABLE_LARGE
    per_set_large: int = PER_SET_LARGE
    exempt_loopback: bool = True

    def networks(self, host: str | None) -> Networks | None:
        """The /24 and /16 (IPv6 /48 and /32) of `host`, or None when no limit applies."""
        return _networks(host, self.exempt_loopback) if host else None

    def admits(self, host: str | None, bucket_hosts: Iterable[str | None], table_hosts: Iterable[str | None]) -> bool:
        """May a contact at `host` take a slot, given the hosts already in its bucket and table?"""
        mine = self.networks(host)
        if mine is None:
            return True
        in_bucket = sum(1 for h in bucket_hosts if (n := self.networks(h)) is not None and n.small == mine.small)
        if in_bucket >= self.per_bucket_small:
            return False
        in_table = sum(1 for h in table_hosts if (n := self.networks(h)) is not None and n.large == mine.large)
        return in_table < self.per_table_large

    def large_counts(self, hosts: Iterable[str | None]) -> Counter[str]:
        """How many of `hosts` each /16 (/32) holds: for weighting and reports."""
        return Counter(n.large for h in hosts if (n := self.networks(h)) is not None)


    def diverse_closest(self, ordered: Iterable[T], n: int, host: Callable[[T], str | None]) -> list[T]:
        """The first n of `ordered` (closest first) with at most per_set_large per /16 (/32).

        Why: Sybils ground next to a key come from few networks; without this
        they are the whole k-closest set a crawl follows and a publish stores
        on. If fewer than n items pass, the closest of the others fill up
        (a small or local network still gets n).
        """
        chosen: list[T] = []
        spare: list[T] = []
        counts: Counter[str] = Counter()
        for item in ordered:
            nets = self.networks(host(item))
            if nets is None or counts[nets.large] < self.per_set_large:
                chosen.append(item)
                if nets is not None:
                    counts[nets.large] += 1
                if len(chosen) == n:
                    return chosen
            elif len(spare) < n:
                spare.append(item)
        return chosen + spare[: n - len(chosen)]


DEFAULT_POLICY = DiversityPolicy()
