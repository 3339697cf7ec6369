"""Prometheus metrics of one node, in its own CollectorRegistry.

Why per node: tests and the in-process network run several nodes in one
process; the default global registry would mix them (and refuse duplicate
names). Everything is read at scrape time: gauges from the MetricsSource, the
circuit build histogram and the DHT counters from the node's NodeCounters
(counters.py, plain numbers: this module is imported only with -metrics).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .counters import NodeCounters
from .source import MetricsSource

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NodeMetrics:
    """The registry over the node's counters (counters.py) and, once attached, its state."""

    def __init__(self, counters: NodeCounters) -> None:
        self.counters = counters
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_CounterCollector(counters))
        self._source: MetricsSource | None = None

    def attach(self, source: MetricsSource) -> None:
        """Start reporting the node's state (once; the metrics server calls it when it starts)."""
        if self._source is None:
            self._source = source
            self.registry.register(_StateCollector(source))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _CounterCollector(Collector):
    def __init__(self, counters: NodeCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        yield HistogramMetricFamily(
            "gnet_circuit_build_seconds", "Time to build one client circuit (every hop's handshake)",
            buckets=c.build_histogram(), sum_value=c.build_sum,
        )  # fmt: skip
        yield CounterMetricFamily("gnet_dht_lookups", "DHT lookups made for this node", value=c.dht_lookups)
        yield CounterMetricFamily(
            "gnet_dht_lookup_failures", "DHT lookups that failed (error or nothing found)", value=c.dht_failures
        )


class _StateCollector(Collector):
    def __init__(self, source: MetricsSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        status = self.source.snapshot()
        yield GaugeMetricFamily("gnet_links", "Authenticated links to other nodes", value=len(status.links))
        circuits = GaugeMetricFamily("gnet_circuits", "Open circuits by this node's role in them", labels=["role"])
        for role in ("client", "bridge", "exit", "message"):
            circuits.add_metric([role], status.circuits_by_role.get(role, 0))
        yield circuits
        yield CounterMetricFamily("gnet_bytes_relayed", "Bytes relayed for others' circuits", value=status.bytes_relayed)
        traffic = CounterMetricFamily("gnet_link_bytes", "Stream bytes over all links", labels=["direction"])
        total_in, total_out = self.source.traffic()
        traffic.add_metric(["in"], total_in)
        traffic.add_metric(["out"], total_out)
        yield traffic
        replies = CounterMetricFamily("gnet_socks_replies", "SOCKS replies by reply code", labels=["code"])
        for code, count in sorted(status.socks_replies.items()):
            replies.add_metric([f"0x{code:02x}"], count)
        yield replies
        yield GaugeMetricFamily("gnet_relays_known", "Relays in the peer table", value=status.relays_known)
        yield GaugeMetricFamily("gnet_dht_contacts", "Contacts in the DHT routing table", value=status.dht_contacts)
        yield GaugeMetricFamily(
            "gnet_bootstrap_percent", "Bootstrap progress (100: ready)", value=float(status.bootstrap.get("percent", 0))
        )
        udp = status.udp
        datagrams = CounterMetricFamily("gnet_udp_datagrams", "UDP datagrams carried (own flows and exited)", labels=["direction"])
        datagrams.add_metric(["out"], udp.get("udp_datagrams_out", 0))
        datagrams.add_metric(["in"], udp.get("udp_datagrams_in", 0))
        yield datagrams
        dropped = CounterMetricFamily("gnet_udp_dropped", "UDP datagrams dropped, never queued", labels=["reason"])
        for reason in ("window", "oversize", "other"):
            dropped.add_metric([reason], udp.get(f"udp_dropped_{reason}", 0))
        yield dropped
        if status.rss_bytes is not None:
            yield GaugeMetricFamily("gnet_resident_memory_bytes", "Resident memory of the node process", value=status.rss_bytes)
