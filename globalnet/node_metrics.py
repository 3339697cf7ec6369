"""The node, as the metrics face sees it (globalnet.metrics.MetricsSource).

Only what the console would show its owner, and less: short peer ids and
counts, never addresses, destinations or keys.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import __version__
from .console.view import rss_bytes
from .metrics.source import CircuitRow, LinkRow, NodeStatus
from .wire.records import short_id

if TYPE_CHECKING:
    from .node import Node


class NodeMetricsSource:
    def __init__(self, node: Node) -> None:
        self.node = node

    def traffic(self) -> tuple[int, int]:
        return self.node.links.traffic()

    def snapshot(self) -> NodeStatus:
        node = self.node
        relay = node.relay.statistics()
        role = "client" if not node.config.listen else ("relay + exit" if node.exit_policy.enabled else "relay")
        now = time.monotonic()
        links = tuple(
            LinkRow(short_id(link.peer_id), round(now - link.created, 1), _rtt(link.rtt), len(link.streams),
                    link.total_in, link.total_out)
            for link in sorted(node.links.links.values(), key=lambda k: k.created)
        )  # fmt: skip
        circuits = tuple(
            CircuitRow(c.id, c.purpose, len(c.path), "closed" if c.closed else c.core.state.value, round(now - c.created, 1))
            for c in sorted(node.circuits.values(), key=lambda c: c.id)
        )
        replies: dict[int, int] = {}
        for proxy in node.proxies:
            for key, count in proxy.counts.items():
                if key.startswith("reply_"):
                    code = int(key[len("reply_"):])
                    replies[code] = replies.get(code, 0) + count
        guard_ids = tuple(short_id(g.node_id) for g in node.guards.entry.guards)  # entry guards, as `list guards` shows
        return NodeStatus(
            node_id=node.identity.node_id.hex(),
            role=role,
            version=__version__,
            uptime=round(now - node.started, 1),
            bootstrap=node.bootstrap.status(),
            relays_known=len(node.peers.relays()),
            guards=guard_ids,
            links=links,
            circuits=circuits,
            circuits_by_role={
                "client": len(node.circuits),
                "bridge": relay["bridges"],
                "exit": relay["exits"],
                "message": len(node.messages.circuits),
            },
            bytes_relayed=relay["bytes_relayed"],
            socks_replies=replies,
            rss_bytes=rss_bytes(),
            dht_contacts=node.dht.contacts() if node.dht is not None else 0,
        )


def _rtt(rtt: float | None) -> float | None:
    return round(rtt * 1000, 2) if rtt is not None else None
