"""What a node reports about itself: the SIGUSR1 state dump and the UDP counters of
its statistics. Given the parts they read, never the node (no cycle with node/__init__)."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import structlog

from ..circuit.builder import ClientCircuit
from ..endpoint.datagram_flow import DatagramCounters
from ..link.manager import LinkManager
from ..relay.server import RelayService

log = structlog.get_logger("globalnet.node")


def udp_statistics(own: DatagramCounters, exited: DatagramCounters) -> dict[str, int]:
    """Datagrams of our own UDP flows and of those we exit, with what was dropped (never queued)."""
    return {
        "udp_datagrams_out": own.sent + exited.sent,
        "udp_datagrams_in": own.received + exited.received,
        "udp_dropped_window": own.dropped_window + exited.dropped_window,
        "udp_dropped_oversize": own.dropped_oversize + exited.dropped_oversize,
        "udp_dropped_other": own.dropped_other + exited.dropped_other,
    }


def dump_state(links: LinkManager, relay: RelayService, circuits: Iterable[ClientCircuit]) -> None:
    """Log every link, relay hop and circuit, and the modules loaded, at debug level
    (for diagnosing a stall, or what a node's memory holds)."""
    for link in links.all_links:
        log.debug("state link", **link.statistics())
    for hop in list(relay.hops):
        up, down = hop.upstream, hop.downstream
        log.debug(
            "state hop",
            state=hop.core.state.value,
            up=(up.stream_id, up.bytes_in, up.bytes_out, up.finished_sending, up.finished_receiving, up.closed),
            down=(down.stream_id, down.bytes_in, down.bytes_out, down.finished_sending, down.finished_receiving, down.closed)
            if down is not None
            else None,
            up_link=up.link.label(),
            down_link=down.link.label() if down is not None else None,
        )
    for circuit in circuits:
        log.debug("state circuit", **circuit.statistics(), stream=circuit.stream.stream_id, stream_in=circuit.stream.bytes_in)
    # what this process loaded (memory per node: an idle relay loads no face, site or service host)
    log.debug("state modules", count=len(sys.modules), names=" ".join(sorted(n for n, m in sys.modules.items() if m)))
