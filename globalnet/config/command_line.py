"""The gclient command line: every long flag in both spellings, values kept as strings.

argparse only collects; `load_config` checks every value. argparse's own errors become
ConfigError (no usage dump, no SystemExit(2)); ``--help`` still prints and exits 0.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from globalnet.config.defaults import (
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_DATAGRAM_SIZE,
    DEFAULT_PROXY_TIMEOUT,
    DEFAULT_RELAY_BUDGET_MIB,
    DEFAULT_SITE_QUOTA_MIB,
    DEFAULT_UDP_IDLE_TIMEOUT,
    MIN_MAX_DATAGRAM_SIZE,
)
from globalnet.config_values import LOG_LEVELS, ConfigError

_EPILOG = """\
examples:
  # a relay on UDP port 9000 that links to two peers at start
  gclient -listen 9000 -connect "peer:9000, peer2:9000"

  # print this node's id (the identity key is created on first run)
  gclient --id node.private.key --print-id

  # local port 1000 -> peer1 -> peer2 -> peer3, which connects to example.com:80
  gclient -tunnel "localhost:1000>peer1:9000>peer2:8080>peer3:9000>example.com:80"

  # pin a hop to its node id, and pick a random relay from the peer table
  gclient -tunnel "1000>relay.example.org:9000#<40 hex node id>>rand>example.com:80"

  # no relaying; local port 2222 -> a hidden service, whose side connects to 192.168.0.2:22
  gclient -no-listen -tunnel "2222>[<service name>]>192.168.0.2:22"

  # a SOCKS5 proxy on 127.0.0.1:8080 through five random relays to the internet
  gclient -proxy "8080>rand>rand>rand>rand>rand>internet"

  # the same, only for clients that give this username and password
  gclient -proxy "9050>rand>rand>rand>internet" -proxy-auth alice:s3cret

  # an exit that may reach only 127.0.0.1 (as in local tests), with a debug console
  gclient -listen 127.0.0.1:9001 -exit -exit-allow 127.0.0.1/32 -console 7000

  # local UDP port 5353 through three random relays to a DNS server (an exit must allow UDP 53)
  gclient -no-listen -connect "peer:9000" -tunnel "udp:5353>rand>rand>rand>9.9.9.9:53"

  # sign a folder as a site and print its address (the one subcommand: gclient site -h)
  gclient site sign ./www --name blog

  # everything from a file, with one setting overridden; or only check the file
  gclient -config configs/relay.toml -log-level debug
  gclient -config configs/relay.toml --verify-config

Every long flag takes one or two dashes (-listen or --listen). Path specs are
listen>hop>...>target; a hop is host:port, host:port#<node id>, a 40-hex node
id or rand; a target is host:port, internet, <name>.gnet or [<name>], and a
service may be followed by >host:port. A bare PORT in a path spec binds
127.0.0.1 (the relay's -listen PORT binds 0.0.0.0).
"""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage and exiting 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)  # main() adds the pointer to --help, on the same line

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        # Python 3.11 still matches prefixes of single-dash long options even
        # with allow_abbrev=False (-lis would mean -listen): only exact flags
        # (and -flag=value) are accepted here.
        return []


_FLAG = "flag"  # store_true
_MANY = "many"  # append: repeatable
# (name, kind, metavar, help): each becomes -name and --name, dest name_with_underscores.
_OPTIONS: tuple[tuple[str, str | None, str | None, str], ...] = (
    ("version", _FLAG, None, "print the version and exit"),
    ("verify-config", _FLAG, None,
     "check the flags and the -config file, say what is wrong or that it is fine, and exit"),
    ("metrics", None, "[HOST:]PORT",
     ("Prometheus metrics (/metrics) and a status page (/) over HTTP; a bare PORT "
     "binds 127.0.0.1, e.g. -metrics 9100")),
    ("connect", _MANY, "PEERS",
     ("peers to link to at start, comma separated, optionally pinned to a node id; "
     'repeatable, e.g. -connect "peer:9000, 10.1.2.3:9000#<40 hex>"')),
    ("id", None, "FILE",
     ("identity key file, created on first run (default <data dir>/identity.key), "
     "e.g. --id node.private.key; it is a private key: keep it secret, out of git")),
    ("print-id", _FLAG, None, "print this node's id (40 hex) and exit"),
    ("gen-client-key", _FLAG, None,
     ("create this node's hidden-service client key (DATA_DIR/client_auth/private.key, kept "
      "if it exists), print its public line for a service's authorized_clients/ and exit")),
    ("data-dir", None, "DIR",
     (f"state directory (default ${DATA_DIR_ENV} or {DEFAULT_DATA_DIR}), "
     "e.g. -data-dir /var/lib/globalnet")),
    ("tunnel", _MANY, "SPEC",
     ("forward a local TCP port (or UDP: udp:PORT>...) through relays; repeatable, e.g. "
     '-tunnel "1000>peer1:9000>rand>example.com:80"')),
    ("proxy", _MANY, "SPEC",
     ("a local SOCKS5 proxy whose target is internet or a service; repeatable, "
     'e.g. -proxy "8080>rand>rand>rand>internet"')),
    ("service", _MANY, "NAME=[udp:]HOST:PORT[,auth]",
     ("host a hidden service that forwards each session to HOST:PORT; "
     "NAME=allow:NET:PORTS lets clients choose targets in NET (none by default); "
     ",auth admits only clients whose public key (gclient --gen-client-key) is a file in "
     "DATA_DIR/services/NAME/authorized_clients/; "
     "repeatable, e.g. -service web=127.0.0.1:8080")),
    ("publish", _MANY, "NAME=DIR",
     ("sign folder DIR as site NAME (key in DATA_DIR/sites/NAME/, 0600; seq raised when the "
      "files change) and serve it from this node's verified site cache: http://SITE.gnet/ "
      "through this node's -proxy; gclient site sign DIR --name NAME prints the address; "
      "repeatable, e.g. -publish blog=./www")),
    ("mirror", _MANY, "ADDRESS",
     ("mirror the signed site ADDRESS (a site's .gnet address): keep a verified copy "
      "(DATA_DIR/site-cache/) and serve it as a hidden service of its own, one identity per site "
      "(DATA_DIR/sites/.mirrors/), never by IP; updates arrive by broadcast among the mirrors; "
      "repeatable")),
    ("proxy-auth", None, "USER:PASS",
     ("only clients giving this username and password may use the proxies (SOCKS5 "
     "RFC 1929 or HTTP Basic); in any case different credentials never share a "
     "circuit. Visible to other local users in the process list: prefer proxy_auth "
     "in a -config file. E.g. -proxy-auth alice:s3cret")),
    ("proxy-timeout", None, "SECONDS",
     (f"how long a proxy request may wait for its circuit, including while the node "
     f"is still learning relays (default {DEFAULT_PROXY_TIMEOUT:g}; a .gnet service gets twice "
     f"this: it takes two circuits and a descriptor lookup), e.g. -proxy-timeout 10")),
    ("exit", _FLAG, None,
     ("be an exit: connect out of the network for circuits (off by default; "
     "loopback, private, link-local and multicast stay refused)")),
    ("exit-allow", _MANY, "NET[:PORTS]",
     ("allow rule for the exit (needs -exit), e.g. 127.0.0.1/32 or "
            "0.0.0.0/0:80,443; with any rule the exit allows only what the rules "
            "allow; repeatable")),
    ("exit-allow-udp", _MANY, "NET[:PORTS]",
     ("UDP allow rule for the exit (needs -exit); UDP is refused unless a rule allows "
      "it, e.g. 127.0.0.1/32:53 or 0.0.0.0/0:53,443; repeatable")),
    ("udp-idle-timeout", None, "SECONDS",
     (f"close a UDP circuit (tunnel, SOCKS association, exit) after this long without "
      f"a datagram (default {DEFAULT_UDP_IDLE_TIMEOUT:g}), e.g. -udp-idle-timeout 60")),
    ("relay-budget", None, "MiB",
     (f"memory this node may queue for the circuits it relays, all together "
      f"(default {DEFAULT_RELAY_BUDGET_MIB}); over 3/4 of it, the circuits holding the most "
      f"are reset, e.g. -relay-budget 256")),
    ("site-quota", None, "MiB",
     (f"disk for the verified copies of sites this node mirrors or visits, all together "
      f"(default {DEFAULT_SITE_QUOTA_MIB}); a site that does not fit is refused with a clear "
      f"error and nothing written, e.g. -site-quota 10000")),
    ("advertise", None, "IP:PORT",
     ("address put in this node's record (default: the listen address when it is "
     "a specific address), e.g. -advertise 203.0.113.5:9000")),
    ("config", None, "FILE",
     ("TOML config file; flags on the command line override it, "
     "e.g. -config configs/relay.toml")),
    ("console", None, "[HOST:]PORT",
     "debug console (use nc); a bare PORT binds 127.0.0.1, e.g. -console 7000"),
    ("log-json", _FLAG, None, "log JSON lines instead of key=value"),
    ("log-level", None, "LEVEL",
     f"one of {', '.join(LOG_LEVELS)} (default info), e.g. -log-level debug"),
    ("max-datagram-size", None, "N",
     (f"largest QUIC datagram, {MIN_MAX_DATAGRAM_SIZE}..{DEFAULT_MAX_DATAGRAM_SIZE} "
     f"(default {DEFAULT_MAX_DATAGRAM_SIZE}), e.g. -max-datagram-size 1280")),
    ("idle-timeout", None, "SECONDS",
     (f"close idle links after this long (default {DEFAULT_IDLE_TIMEOUT:g}), "
     "e.g. -idle-timeout 30")),
)  # fmt: skip


def _add_option(
    parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup,
    name: str,
    kind: str | None,
    metavar: str | None,
    help: str,
) -> None:
    names = (f"-{name}", f"--{name}")
    dest = name.replace("-", "_")
    if kind == _FLAG:  # default None: "not given" differs from false (file merge)
        parser.add_argument(
            *names, dest=dest, action="store_true", default=None, help=help
        )
    else:
        action = "append" if kind == _MANY else "store"
        parser.add_argument(
            *names, dest=dest, action=action, metavar=metavar, help=help
        )


def build_parser() -> argparse.ArgumentParser:
    """The gclient command line; every value stays a string, checked later."""
    parser = _ArgumentParser(
        prog="gclient",
        description="GlobalNet node: relay, client, exit and hidden services in one.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # -l must not silently mean -listen or -log-level
        add_help=False,
    )
    parser.add_argument(
        "-h", "-help", "--help", action="help", help="show this help and exit"
    )
    listen = parser.add_mutually_exclusive_group()
    _add_option(
        listen, "listen", None, "[HOST:]PORT",
        "UDP address of this relay (QUIC); a bare PORT binds 0.0.0.0 (default "
        "0.0.0.0:9000), e.g. -listen 9000 or -listen 127.0.0.1:9001",
    )  # fmt: skip
    _add_option(
        listen, "no-listen", _FLAG, None,
        "client only: do not listen and do not relay for others",
    )  # fmt: skip
    for name, kind, metavar, help in _OPTIONS:
        _add_option(parser, name, kind, metavar, help)
    return parser

