"""GlobalNet: an anonymous, decentralized overlay network (see DESIGN.md)."""

__version__ = "0.1.0"


def prepare_node_process() -> None:
    """Called first by the node's entry points (`python -m globalnet`, gclient.py), never on import.

    structlog's dev module imports `rich` at import time when it is installed
    (here only as a development tool's dependency), for pretty tracebacks a
    node never prints: logs.py formats exceptions as plain text before
    rendering. rich and pygments cost ~3.7 MiB of every node process; marked
    absent, structlog falls back to plain tracebacks. A test or tool process
    that imports globalnet keeps rich.
    """
    import sys

    if "structlog" not in sys.modules and "rich" not in sys.modules:
        sys.modules["rich"] = None  # type: ignore[assignment]  # (None: "not installed" to the import system)
