"""The metrics face: Prometheus `/metrics` and a status page `/` on one local HTTP port.

It reads the node only through :class:`MetricsSource` (source.py), so it
knows no Node, config or CLI; the node builds the source and the settings.
The node counts in plain numbers (counters.py); the server (server.py) and
the Prometheus registry (registry.py) are imported from their modules, only
when -metrics is given: this package's import loads neither.
"""

from .counters import NodeCounters
from .history import BandwidthHistory
from .source import CircuitRow, LinkRow, MetricsSettings, MetricsSource, NodeStatus

__all__ = [
    "BandwidthHistory",
    "CircuitRow",
    "LinkRow",
    "MetricsSettings",
    "MetricsSource",
    "NodeCounters",
    "NodeStatus",
]
