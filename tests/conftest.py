"""Settings for the whole suite.

Hypothesis's per-example deadline (200 ms by default) is a timed assertion in
disguise: on a shared 2-core CI machine an example can wait that long for the
CPU, so the suite runs without it (speed goals live in `make bench`).

`make test` runs the suite on pytest-xdist workers. Each worker hands out listening
ports from its own slice of localnet's range (PORTS_ENV; the node processes a test starts
inherit it, and so does the demo a test runs), so two workers never race for one port
between a check and a bind; tests/identities.py gives each worker its own pre-solved
identities; tmp dirs are per worker already; network-namespace labs carry random names.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from globalnet.localnet import PORTS_ENV, port_slice
from tests.workers import worker_slot

settings.register_profile("globalnet", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("globalnet")


def pytest_configure(config: pytest.Config) -> None:
    index, count = worker_slot()
    if count > 1 and PORTS_ENV not in os.environ:
        os.environ[PORTS_ENV] = port_slice(index, count)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first (marked `long(seconds=...)`: their wall time alone here), longest
    of all first: xdist hands files out in this order (`make test` passes --no-loadscope-reorder,
    else xdist puts files with the most tests first), so the short files fill in around the long
    ones instead of a long one starting last and the others waiting for it."""

    def seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("long")
        return float(mark.kwargs["seconds"]) if mark is not None else 0.0

    items.sort(key=lambda item: -seconds(item))
