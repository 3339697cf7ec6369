"""Which pytest-xdist worker this process is, for what workers must not share (ports, identities)."""

from __future__ import annotations

import os


def worker_slot() -> tuple[int, int]:
    """(this worker's index, the number of workers); (0, 1) when the suite runs in one process."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not name.startswith("gw"):
        return 0, 1
    return int(name[2:]), max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
