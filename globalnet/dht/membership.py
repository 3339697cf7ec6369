"""A relay's place in the DHT: join through the relays we know, publish our own record,
keep the routing table and values fresh, and learn the records of contacts we do not
know yet (relay work, never a private lookup: those go through circuits, `agent.DhtClient`)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import structlog

from ..errors import GnetError
from ..peertable import PeerTable
from ..wire.records import NodeRecord
from .participant import Dht
from .values import node_record_value, record_from_value

log = structlog.get_logger("globalnet.dht")

#: The longest pause between two rounds of upkeep (the first ones come sooner, doubling).
DHT_REFRESH = 300.0
#: Records of unknown contacts fetched per round: each is a full lookup (three paths) for a
#: record that peer exchange mostly brings anyway; 16 a round made joining cost ~3 % CPU per
#: node for minutes (make testnet, N=100).
LEARN_PER_ROUND = 4
#: After a round that joined, the next comes at least this long after (then doubling): a
#: joined node's rounds at 1, 3, 7 and 15 s were most of a network start's lookups.
JOINED_PAUSE = 15.0
#: Each pause is drawn from [1 - JITTER, 1 + JITTER] times the schedule's: nodes started
#: together (a restart of many, make testnet) would otherwise run every round at the same
#: moment, a lookup storm that timed links out at N=200.
JITTER = 0.25


def next_delay(delay: float, joined: bool = False, rng: random.Random | None = None) -> float:
    """The pause after one of `delay`: double (at most DHT_REFRESH; from JOINED_PAUSE at least
    after a round that joined), with jitter."""
    base = min(max(delay, JOINED_PAUSE if joined else 0.0) * 2, DHT_REFRESH)
    return base * (rng or random).uniform(1 - JITTER, 1 + JITTER)


class DhtMembership:
    def __init__(
        self, dht: Dht, peers: PeerTable, own_record: Callable[[], NodeRecord], on_joined: Callable[[], None]
    ) -> None:
        self.dht = dht
        self.peers = peers
        self._own_record = own_record
        self._on_joined = on_joined  # bootstrap progress: the DHT is joined

    async def run(self) -> None:
        """Join the DHT, publish our record, then keep the routing table and values fresh."""
        dht = self.dht
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            joined = False
            try:
                contacts = await dht.bootstrap(self.peers.relays())
                if contacts:
                    key, value = node_record_value(self._own_record())
                    stored = await dht.publish(key, value, keep=True)
                    log.debug("dht joined", contacts=contacts, record_stored_on=stored)
                    self._on_joined()
                    await self._learn_from_dht()
                    await dht.refresh(skip={key})  # our record was just published
                    joined = True
            except (GnetError, TimeoutError) as exc:
                log.debug("dht upkeep failed", reason=str(exc))
            delay = next_delay(delay, joined)

    async def _learn_from_dht(self) -> None:
        """Fetch the records of DHT contacts we do not know yet."""
        dht = self.dht
        unknown = [n.id for b in dht.protocol.router.buckets for n in b.get_nodes() if n.id not in self.peers]
        for node_id in unknown[:LEARN_PER_ROUND]:
            found = await dht.lookup(node_id)
            if found is not None:
                try:
                    self.peers.add(record_from_value(found.value))
                except GnetError:
                    pass
