"""The metrics face: Prometheus `/metrics` and a status page `/` on one local HTTP port.

It reads the node only through :class:`MetricsSource` (source.py), so it
knows no Node, config or CLI; the node builds the source and the settings.
"""

from .history import BandwidthHistory
from .registry import NodeMetrics
from .server import MetricsServer, start_metrics
from .source import CircuitRow, LinkRow, MetricsSettings, MetricsSource, NodeStatus

__all__ = [
    "BandwidthHistory",
    "CircuitRow",
    "LinkRow",
    "MetricsServer",
    "MetricsSettings",
    "MetricsSource",
    "NodeMetrics",
    "NodeStatus",
    "start_metrics",
]
