"""kademlia's routing table with a neighbour search that returns the k closest,
id-work checks and network-diversity limits.

The package's `RoutingTable.find_neighbors` walks buckets outward from the
target's bucket with `TableTraverser` and stops after k nodes. Two faults
(bmuller/kademlia#28, PR #52): the walk ends early when it meets an empty
bucket on one side and the other side is exhausted, so a node with contacts
can answer "no neighbours" (its publish then stored only locally; found by
bench/dht_sim.py at N=500 and 2,000); and the first k in bucket order are not
the k closest by XOR distance. Here every contact is a candidate and the k
closest are kept: a routing table holds a few hundred contacts at most, and
`Node.distance_to` is one XOR of two ints.

Admission (issue 11): a contact enters only if its id carries the proof of
work (wire/records.py; refused outright, counted in `refused_work`), and it
takes a bucket slot only while its /24 has fewer than 2 contacts in that
bucket and its /16 fewer than 10 in the table (netdiversity.py; loopback
exempt by default). Over a limit it is kept as a replacement only, and the
limits are re-applied when a bucket splits or a replacement is promoted.
"""

from __future__ import annotations

import heapq
from typing import Any

import structlog
from kademlia.node import Node as KNode
from kademlia.routing import KBucket, RoutingTable

from ..netdiversity import DEFAULT_POLICY, DiversityPolicy
from ..wire.records import id_work_refusal

log = structlog.get_logger("globalnet.dht")


class ClosestRoutingTable(RoutingTable):
    def __init__(self, protocol: Any, ksize: int, node: KNode, policy: DiversityPolicy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self.refused_work = 0
        self.held_back = 0  # contacts kept as replacements by the diversity limits
        super().__init__(protocol, ksize, node)

    def find_neighbors(self, node: KNode, k: int | None = None, exclude: KNode | None = None) -> list[KNode]:
        k = k or self.ksize
        self.buckets[self.get_bucket_for(node)].touch_last_updated()  # as the package does: a lookup refreshes
        target = node.long_id
        candidates = (
            n
            for bucket in self.buckets
            for n in bucket.nodes.values()
            if n.id != node.id and (exclude is None or not n.same_home_as(exclude))
        )
        return heapq.nsmallest(k, candidates, key=lambda n: n.long_id ^ target)

    def _table_hosts(self) -> list[str | None]:
        return [n.ip for b in self.buckets for n in b.nodes.values()]

    def add_contact(self, node: KNode) -> None:
        refusal = id_work_refusal(node.id)
        if refusal is not None:
            self.refused_work += 1
            log.debug("dht contact refused", reason=refusal)
            return
        bucket = self.buckets[self.get_bucket_for(node)]
        if node.id not in bucket.nodes and not self.policy.admits(
            node.ip, (n.ip for n in bucket.nodes.values()), self._table_hosts()
        ):
            self.held_back += 1
            _keep_as_replacement(bucket, node)
            return
        super().add_contact(node)

    def split_bucket(self, index: int) -> None:
        super().split_bucket(index)
        for bucket in (self.buckets[index], self.buckets[index + 1]):
            self._enforce(bucket)

    def remove_contact(self, node: KNode) -> None:
        index = self.get_bucket_for(node)
        bucket = self.buckets[index]
        if node.id in bucket.replacement_nodes:
            del bucket.replacement_nodes[node.id]
        if node.id in bucket.nodes:
            del bucket.nodes[node.id]
            self._promote(bucket)

    def _promote(self, bucket: KBucket) -> None:
        """Fill a freed slot with the newest replacement the limits admit."""
        for rid in reversed(list(bucket.replacement_nodes)):
            candidate = bucket.replacement_nodes[rid]
            if self.policy.admits(candidate.ip, (n.ip for n in bucket.nodes.values()), self._table_hosts()):
                del bucket.replacement_nodes[rid]
                bucket.nodes[rid] = candidate
                return

    def _enforce(self, bucket: KBucket) -> None:
        """After a split: demote contacts over the limits (the split may have promoted replacements)."""
        kept: list[KNode] = []
        for node in list(bucket.nodes.values()):
            others = [n.ip for b in self.buckets if b is not bucket for n in b.nodes.values()]
            if self.policy.admits(node.ip, (n.ip for n in kept), others + [n.ip for n in kept]):
                kept.append(node)
            else:
                del bucket.nodes[node.id]
                _keep_as_replacement(bucket, node)


def _keep_as_replacement(bucket: KBucket, node: KNode) -> None:
    bucket.replacement_nodes.pop(node.id, None)
    bucket.replacement_nodes[node.id] = node
    while len(bucket.replacement_nodes) > bucket.max_replacement_nodes:
        bucket.replacement_nodes.popitem(last=False)
