"""One error vocabulary for every layer.

Why: a failure deep in a circuit (an exit policy refusal, a pin mismatch, a dead
relay) has to reach the user as something they can act on: a RELAY_CONNECT_FAIL
code on the wire, a SOCKS reply code, a log line, a console message. Each place
branches on `ErrorKind` rather than on exception classes or message text
(Arti's ErrorKind, in small).
"""

from __future__ import annotations

import enum
from pathlib import Path


class ErrorKind(enum.IntEnum):
    """Wire value = the RELAY_CONNECT_FAIL code and the QUIC stream reset code."""

    PROTOCOL = 1  # a peer broke the protocol (malformed, out of place)
    EXIT_POLICY = 2  # refused by the exit's policy
    NO_ROUTE = 3  # the next hop is unknown or unreachable
    HOST_UNREACHABLE = 4  # DNS failure or unreachable host at the exit
    CONNECTION_REFUSED = 5  # the target refused the TCP connection
    TIMEOUT = 6  # something did not answer in time
    PIN_MISMATCH = 7  # host:port#id reached a node with another id
    HANDSHAKE_FAILED = 8  # the Noise handshake with a hop failed
    RESOURCE_LIMIT = 9  # a bound was hit (window overrun, too many streams)
    NOT_SUPPORTED = 10  # the command or protocol is not implemented
    LINK_LOST = 11  # the QUIC link under a circuit died
    INTERNAL = 12  # a bug on the far side
    TAMPERED = 13  # a sealed frame failed authentication
    CLOSED = 14  # closed on purpose (shutdown, circuit close)
    SERVICE_UNREACHABLE = 15  # a hidden service: bad address or another failure to reach it
    LOCAL_PROTOCOL = 16  # our own code misused an API (a local bug, never the peer's fault)
    # why a hidden service cannot be reached (20+: room below for other kinds)
    SERVICE_NO_DESCRIPTOR = 20  # the service's descriptor expired / not published for this period yet
    SERVICE_UNKNOWN = 21  # no descriptor at all: no such service (or never published)
    SERVICE_NOT_AUTHORIZED = 22  # the service wants client authorization and our key is not on its list
    SERVICE_ACCESS_POINTS_UNREACHABLE = 23  # descriptor found, but no access point answered

    @property
    def socks_reply(self) -> int:
        """RFC 1928 reply code for this failure (0x01, general failure, if none fits).

        0x07 (command not supported) is only for the SOCKS command itself
        (BIND, UDP ASSOCIATE), which the SOCKS parser answers; a hop that does
        not support what a circuit asked of it is a general failure."""
        return _SOCKS_REPLY.get(self, 0x01)

    @property
    def describe(self) -> str:
        return _DESCRIPTION[self]

    @classmethod
    def from_wire(cls, code: int) -> ErrorKind:
        """A kind a peer sent; a peer cannot claim our own misuse (LOCAL_PROTOCOL): that reads as PROTOCOL."""
        try:
            kind = cls(code)
        except ValueError:
            return cls.PROTOCOL
        return cls.PROTOCOL if kind is cls.LOCAL_PROTOCOL else kind


_SOCKS_REPLY = {
    ErrorKind.EXIT_POLICY: 0x02,
    ErrorKind.NO_ROUTE: 0x03,
    ErrorKind.PIN_MISMATCH: 0x03,
    ErrorKind.LINK_LOST: 0x03,
    ErrorKind.HOST_UNREACHABLE: 0x04,
    ErrorKind.SERVICE_UNREACHABLE: 0x04,
    # Tor's extended SOCKS5 errors for onion services (prop 304), which Tor Browser understands
    ErrorKind.SERVICE_NO_DESCRIPTOR: 0xF0,
    ErrorKind.SERVICE_UNKNOWN: 0xF0,
    ErrorKind.SERVICE_ACCESS_POINTS_UNREACHABLE: 0xF2,
    ErrorKind.SERVICE_NOT_AUTHORIZED: 0xF4,
    ErrorKind.CONNECTION_REFUSED: 0x05,
    ErrorKind.TIMEOUT: 0x06,
}

_DESCRIPTION = {
    ErrorKind.PROTOCOL: "protocol violation",
    ErrorKind.EXIT_POLICY: "refused by exit policy",
    ErrorKind.NO_ROUTE: "no route to the next hop",
    ErrorKind.HOST_UNREACHABLE: "host unreachable from the exit",
    ErrorKind.CONNECTION_REFUSED: "connection refused by the target",
    ErrorKind.TIMEOUT: "timed out",
    ErrorKind.PIN_MISMATCH: "node id does not match the pinned id",
    ErrorKind.HANDSHAKE_FAILED: "handshake failed",
    ErrorKind.RESOURCE_LIMIT: "resource limit reached",
    ErrorKind.NOT_SUPPORTED: "not supported",
    ErrorKind.LINK_LOST: "link to a relay was lost",
    ErrorKind.INTERNAL: "internal error",
    ErrorKind.TAMPERED: "data was tampered with in transit",
    ErrorKind.CLOSED: "closed",
    ErrorKind.SERVICE_UNREACHABLE: "hidden service unreachable",
    ErrorKind.LOCAL_PROTOCOL: "local protocol misuse (a bug in this node)",
    ErrorKind.SERVICE_NO_DESCRIPTOR: "hidden service has no current descriptor",
    ErrorKind.SERVICE_UNKNOWN: "hidden service unknown",
    ErrorKind.SERVICE_NOT_AUTHORIZED: "not authorized by the hidden service",
    ErrorKind.SERVICE_ACCESS_POINTS_UNREACHABLE: "hidden service's access points unreachable",
}


class GnetError(Exception):
    """An error with a kind; `str()` is what a user reads."""

    def __init__(self, kind: ErrorKind, detail: str = "", node_id: bytes | None = None) -> None:
        self.kind = kind
        self.detail = detail
        self.node_id = node_id  # the node the failure is about, when one is known
        super().__init__(f"{kind.describe}: {detail}" if detail else kind.describe)


class ProtocolError(GnetError):
    """The remote side sent something malformed or out of place."""

    def __init__(self, detail: str, kind: ErrorKind = ErrorKind.PROTOCOL) -> None:
        super().__init__(kind, detail)


class LocalProtocolError(GnetError):
    """Our own code misused an API (sent after END, extended a closed circuit...).

    Why a kind of its own (as h11 separates LocalProtocolError from
    RemoteProtocolError): INTERNAL means the far side had a bug; a local misuse
    is ours, and callers must not blame or penalise a peer for it."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.LOCAL_PROTOCOL, detail)


def describe_os_error(exc: OSError) -> str:
    """What went wrong with a path, in words and with the path, for a one-line error at start
    ("[Errno 20] Not a directory: 'x/sites/www'" names neither the culprit nor the fix)."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:
        path = Path(exc.filename)
        for folder in (path, *path.parents):  # the file that stands where a folder should be
            if folder.exists() and not folder.is_dir():
                return f"{folder} exists and is not a directory"
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return exc.strerror or str(exc)
