"""Test-only: a gclient process started with this directory on PYTHONPATH
resolves no name but those in GNET_TEST_RESOLVE_ALLOW (default: localhost),
and appends every name it is asked to resolve to GNET_TEST_RESOLVE_LOG.

Why: the tests must not send DNS queries (a browser asks its proxy for
update servers even in headless mode, and the exit would resolve them), and
the SOCKS tests prove which process resolved a name: the exit, never the
client. IP literals pass untouched.
"""

from __future__ import annotations

import ipaddress
import os
import socket

_real_getaddrinfo = socket.getaddrinfo
_ALLOW = {n.strip().lower() for n in os.environ.get("GNET_TEST_RESOLVE_ALLOW", "localhost").split(",") if n.strip()}
_LOG = os.environ.get("GNET_TEST_RESOLVE_LOG")


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False


def _getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if name and not _is_literal(name):
        if _LOG:
            with open(_LOG, "a", encoding="utf-8") as f:
                f.write(name + "\n")
        if name.rstrip(".").lower() not in _ALLOW:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (no DNS in tests)")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
