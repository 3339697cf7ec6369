"""What the console reads from a running Node, as rows of raw values.

The one place that knows the Node's insides on behalf of the console, so the
commands stay testable with a fake, and what other issues will change is a
small function here: `services` (the services issue fills it), `peers` (the
peer table), `dht_get` / `dht_put` (the node's own DHT lookups and stores,
which go through a circuit, never from this node's address).
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..dht.values import ValueKind, record_from_value, validate_value
from ..errors import ErrorKind, GnetError
from ..logs import set_level
from ..service.address import AddressError
from ..site.address import decode_site_address
from ..wire.records import FLAG_EXIT, FLAG_RELAY
from .commands import ConsoleError, Destination

#: The node's own DHT requests wait for a circuit and then for an answer; the console waits no longer than this.
DHT_TIMEOUT = 60.0

from .node_api import ConsoleNode


def rss_bytes() -> int | None:
    """Resident memory now (Linux /proc), else the peak that getrusage knows."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def flags_of(flags: int) -> list[str]:
    return [name for bit, name in ((FLAG_RELAY, "relay"), (FLAG_EXIT, "exit")) if flags & bit]


class NodeConsoleView:
    def __init__(self, node: ConsoleNode) -> None:
        self.node = node

    def node_id(self) -> str:
        return self.node.identity.node_id.hex()

    def links(self) -> list[dict[str, Any]]:
        rows = []
        for link in sorted(self.node.links.links.values(), key=lambda link: link.created):
            s = link.statistics()
            rows.append({
                "peer": link.peer_id.hex(),
                "address": s["address"],
                "age": s["age"],
                "bytes_in": link.total_in,
                "bytes_out": link.total_out,
                "rtt_ms": s["rtt_ms"],
                "streams": s["streams"],
                "dialled": s["dialled"],
            })
        return rows

    def peers(self) -> list[dict[str, Any]]:
        """Known relays: the peer table (verified records), newest first."""
        now = time.time()
        linked = self.node.links.links
        rows = []
        for entry in sorted(self.node.peers.entries(), key=lambda e: -e.last_seen):
            record = entry.record
            rows.append({
                "id": record.node_id.hex(),
                "addresses": [f"{h}:{p}" if ":" not in h else f"[{h}]:{p}" for h, p in record.addresses],
                "flags": flags_of(record.flags),
                "last_seen": round(max(0.0, now - entry.last_seen), 1),
                "linked": record.node_id in linked,
            })
        return rows

    def guards(self) -> list[dict[str, Any]]:
        return self.node.guards.rows()

    def circuits(self) -> list[dict[str, Any]]:
        rows = [c.statistics() for c in self.node.circuits.values()]
        rows += [c.statistics() for c in self.node.messages.circuits.values()]
        return sorted(rows, key=lambda r: int(r["id"]))

    def services(self) -> list[dict[str, Any]]:
        """Hidden services hosted here: name, address, access points (short ids), sessions."""
        return [service.statistics() for service in self.node.services]

    def sites(self) -> list[dict[str, Any]]:
        """Signed sites served here (published or mirrored): label, seq, this node's mirror address."""
        return [mirror.statistics() for mirror in self.node.site_mirrors.values()]

    def mirror(self, address: str) -> dict[str, Any]:
        try:
            site_key = decode_site_address(address)
        except AddressError as exc:
            raise ConsoleError(f"not a site address: {exc.problem}") from None
        return self.node.mirror_site(site_key).statistics()

    def publish(self, name: str, folder: str) -> dict[str, Any]:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ConsoleError(f"{folder!r} is not a folder")
        seq, changed = self.node.publish_site(name.lower(), path)
        return {"name": name.lower(), "seq": seq, "changed": changed}

    def stats(self) -> dict[str, Any]:
        node = self.node
        s = node.statistics()
        return {
            "node_id": s["node_id"],
            "version": __version__,
            "uptime": s["uptime"],
            "links": s["links"],
            "connections": s["connections"],
            "circuits": s["circuits"],
            "message_circuits_in": len(node.messages.circuits),
            "relays_known": s.get("relays_known", 0),
            "bytes_relayed": s["bytes_relayed"],
            "circuits_served": s["circuits_served"],
            "bridges": s["bridges"],
            "exits": s["exits"],
            "messages_received": node.messages.received,
            "crypto": s["crypto"],
            "rss_bytes": rss_bytes(),
            "consoles": len(node.console.clients) if node.console is not None else 0,
            "bootstrap": s["bootstrap"],
            **{k: v for k, v in s.items() if k.startswith("udp_")},
        }

    async def send(self, dest: Destination, message: str) -> dict[str, Any]:
        target = dest.node_id if dest.node_id is not None else dest.service
        assert target is not None
        delivery = await self.node.messenger.send(target, message, dest.via)
        return _delivery(delivery)

    async def ping(self, dest: Destination) -> dict[str, Any]:
        assert dest.node_id is not None
        delivery = await self.node.messenger.ping(dest.node_id, dest.via)
        return _delivery(delivery)

    def close_circuit(self, circuit_id: int) -> str:
        circuit = self.node.circuits.get(circuit_id)
        if circuit is not None:
            # tell its user first (a tunnel's pump resets its TCP connection), then the relays
            circuit.stream_reset(ErrorKind.CLOSED)
            circuit.reset(ErrorKind.CLOSED)
            self.node.forget_circuit(circuit)
            return circuit.purpose
        inbound = self.node.messages.circuits.get(circuit_id)
        if inbound is not None:
            inbound.close()
            return "message (in)"
        raise ConsoleError(f"no circuit {circuit_id}; see 'list circuits'")

    async def dht_get(self, key: bytes) -> dict[str, Any] | None:
        if getattr(self.node, "dht_client", None) is None:
            raise ConsoleError("the DHT is not running")
        try:
            async with asyncio.timeout(DHT_TIMEOUT):
                found = await self.node.dht_lookup(key)
        except TimeoutError:
            raise ConsoleError(f"no answer from the DHT within {DHT_TIMEOUT:.0f} s") from None
        if found is None:
            return None
        row: dict[str, Any] = {"key": found.key.hex(), "kind": found.value[0], "seq": found.seq,
                               "expires": found.expires, "value": found.value.hex(), "record": None}
        if found.value[0] == ValueKind.NODE_RECORD:
            record = record_from_value(found.value)
            row["record"] = {"id": record.node_id.hex(), "flags": flags_of(record.flags),
                             "addresses": [f"{h}:{p}" for h, p in record.addresses]}
        return row

    async def dht_put(self, key: bytes, value: bytes) -> int:
        if getattr(self.node, "dht_client", None) is None:
            raise ConsoleError("the DHT is not running")
        try:
            validate_value(key, value)  # say why here, before a circuit carries it to be refused
        except GnetError as exc:
            raise ConsoleError(f"not stored: {exc.detail}") from None
        try:
            async with asyncio.timeout(DHT_TIMEOUT):
                return int(await self.node.dht_publish(key, value))
        except TimeoutError:
            raise ConsoleError(f"no answer from the DHT within {DHT_TIMEOUT:.0f} s") from None

    def set_log_level(self, level: str) -> None:
        set_level(level)

    def now(self) -> float:
        return time.time()


def _delivery(delivery: Any) -> dict[str, Any]:
    return {
        "delivered": True,
        "circuit": delivery.circuit,
        "hops": delivery.hops,
        "rtt_ms": round(delivery.rtt * 1000, 2),
        "built_ms": round(delivery.built * 1000, 2) if delivery.built is not None else None,
    }

