"""Default values and bounds of the settings (the help text and the checks share them)."""

from __future__ import annotations

DEFAULT_LISTEN = ("0.0.0.0", 9000)
DEFAULT_MAX_DATAGRAM_SIZE = 1452
MIN_MAX_DATAGRAM_SIZE = 1200
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_PROXY_TIMEOUT = 30.0
DEFAULT_UDP_IDLE_TIMEOUT = 120.0
#: What a relay may hold for all circuits it carries, MiB (relay/budget.py).
DEFAULT_RELAY_BUDGET_MIB = 64
#: Disk for verified copies of other people's sites (mirrored and visited), MiB (site/cache.py).
DEFAULT_SITE_QUOTA_MIB = 2048
MIN_PROXY_TIMEOUT = 0.5
MAX_PROXY_TIMEOUT = 600.0
MAX_AUTH_FIELD = 255  # RFC 1929: ULEN and PLEN are one byte
MAX_IDLE_TIMEOUT = 86400.0
MIN_IDLE_TIMEOUT = 1.0
DATA_DIR_ENV = "GNET_DATA_DIR"
DEFAULT_DATA_DIR = "~/.globalnet"
IDENTITY_FILE_NAME = "identity.key"
MAX_CONFIG_FILE_SIZE = 1 << 20

UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::"})
