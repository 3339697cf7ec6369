"""What the local proxy protocols say, sans-IO: SOCKS5 (RFC 1928, RFC 1929) numbers, the
requested target, the events `wire.socks.SocksParser` returns, and the SOCKS replies.

`Rejected` and `name_target` are shared by the SOCKS5 and HTTP CONNECT halves of the
parser (`wire/socks.py`, `wire/http_connect.py`); nothing else raises `Rejected`.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

SOCKS_VERSION = 0x05
SOCKS4_VERSION = 0x04
AUTH_VERSION = 0x01  # RFC 1929 sub-negotiation version
CMD_CONNECT, CMD_BIND, CMD_UDP_ASSOCIATE = 0x01, 0x02, 0x03

#: Bytes that may wait for one message to complete (the largest SOCKS message,
#: the RFC 1929 request, is 513 bytes; an HTTP head may use MAX_HTTP_HEAD).
MAX_BUFFER = 16 * 1024
MAX_HTTP_HEAD = 8 * 1024
MAX_HTTP_HEADERS = 64
#: Longest name a circuit can carry (RELAY_CONNECT) and DNS allows.
MAX_NAME = 253
REALM = "GlobalNet"


class AddressType(enum.IntEnum):
    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


class Method(enum.IntEnum):
    NO_AUTH = 0x00
    USERNAME_PASSWORD = 0x02
    NO_ACCEPTABLE = 0xFF


class Reply(enum.IntEnum):
    """RFC 1928 section 6 reply codes."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class Flavor(enum.Enum):
    SOCKS5 = "socks5"
    HTTP = "http-connect"


class LocalProtocolError(Exception):
    """The caller used the parser wrongly (a bug on our side, not the client's)."""


@dataclass(frozen=True)
class Credentials:
    """RFC 1929 username/password (or HTTP Basic). Never printed."""

    username: bytes
    password: bytes = field(repr=False)

    def matches(self, other: Credentials) -> bool:
        """Constant-time comparison (no timing hint about a configured password)."""
        user_ok = hmac.compare_digest(self.username, other.username)
        pass_ok = hmac.compare_digest(self.password, other.password)
        return user_ok and pass_ok


@dataclass(frozen=True)
class ProxyAuth:
    """-proxy-auth USER:PASS: the only credentials the SOCKS proxies accept.

    Here, not in the SOCKS face, so that reading the configuration does not load the face
    (a relay without -proxy never imports it).
    """

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class SocksTarget:
    """What the client asked for: an IP literal (normalised) or a name, as given."""

    host: str
    port: int
    atyp: AddressType

    @property
    def is_name(self) -> bool:
        return self.atyp is AddressType.DOMAIN


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Connect:
    target: SocksTarget
    credentials: Credentials | None
    flavor: Flavor
    early: bytes = b""


@dataclass(frozen=True)
class Associate:
    """UDP ASSOCIATE (RFC 1928 section 7): `source` is where the client says it
    will send datagrams from (often 0.0.0.0:0, "not known yet")."""

    source: SocksTarget
    credentials: Credentials | None


@dataclass(frozen=True)
class Reject:
    data: bytes  # the last bytes to write (may be empty); then close
    reason: str  # for a debug log line; never contains the payload


Event = Send | Connect | Associate | Reject

class Rejected(Exception):
    """Raised inside the handlers; becomes a Reject event at one boundary."""

    def __init__(self, data: bytes, reason: str) -> None:
        super().__init__(reason)
        self.data = data
        self.reason = reason


_NULL_BIND = bytes([AddressType.IPV4]) + bytes(4) + bytes(2)  # BND.ADDR 0.0.0.0:0


def socks_reply(code: int) -> bytes:
    """The 10-byte SOCKS5 reply: VER REP RSV ATYP=IPv4 BND.ADDR=0.0.0.0 BND.PORT=0."""
    return bytes([SOCKS_VERSION, code, 0x00]) + _NULL_BIND


#: SOCKS4 "request rejected or failed" (VN=0, CD=91).
SOCKS4_REJECT = bytes([0x00, 0x5B]) + bytes(6)

_PRINTABLE = frozenset(range(0x21, 0x7F))


def name_target(raw: bytes, port: int, reply: Callable[[int], bytes]) -> SocksTarget:
    """A name as the client sent it; checked only for what a circuit can carry."""
    if not raw:
        raise Rejected(reply(Reply.GENERAL_FAILURE), "zero-length domain name")
    if not _PRINTABLE.issuperset(raw):
        raise Rejected(reply(Reply.HOST_UNREACHABLE), "domain name has non-printable or non-ASCII bytes")
    if len(raw) > MAX_NAME:
        raise Rejected(reply(Reply.HOST_UNREACHABLE), f"domain name longer than {MAX_NAME} bytes")
    return SocksTarget(raw.decode("ascii"), port, AddressType.DOMAIN)
