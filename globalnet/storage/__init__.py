"""Files in the data dir (lowest layer: imports nothing of ours)."""

from globalnet.storage.atomic import write_atomic

__all__ = ["write_atomic"]
