"""CLI flags + TOML config file -> one typed, validated :class:`Config`.

Theory of operation
-------------------
``load_config(argv)`` parses the command line with argparse (every long flag
in both spellings, ``-listen`` as in the proposal and ``--listen``), reads the
``-config`` TOML file if one is given, and merges them: a flag given on the
command line replaces the file's value for that key (lists too), except that
the file's ``bootstrap`` peers are always kept and the command line's
``-connect`` peers are added to them. Then every value is checked and turned
into its typed form (path specs, peer addresses, exit rules), and a few
combinations are checked across keys (``-exit`` needs a listening relay, two
local listeners may not share a port).

Every problem is a :class:`ConfigError` whose message names the flag or the
file key; argparse's own errors are turned into ConfigError too (no usage
dump, no SystemExit(2)). ``--help`` still prints and raises SystemExit(0);
``--version`` only sets ``Config.version`` and the caller prints it.

Nothing here resolves names or touches the network; relative paths in the
file are relative to the file's directory.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from globalnet.config_values import (
    LOG_LEVELS,
    MAX_LIST_ITEMS,
    ConfigError,
    Value,
    as_address,
    as_bool,
    as_int,
    as_level,
    as_path,
    as_seconds,
    as_str,
    each,
    or_default,
    pick_value,
)
from globalnet.policy.exit_policy import ExitRule, parse_exit_rule
from globalnet.service.address import AddressError, decode_address
from globalnet.service.settings import ServiceConfig
from globalnet.wire.pathspec import (
    HopAddr,
    PathSpec,
    PathSpecError,
    TargetInternet,
    TargetService,
    TargetTcp,
    format_path_spec,
    parse_hop_addr,
    parse_path_spec,
    parse_peer_list,
)
from globalnet.wire.socks import ProxyAuth

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_DATAGRAM_SIZE",
    "DEFAULT_PROXY_TIMEOUT",
    "LOG_LEVELS",
    "Config",
    "ConfigError",
    "ExitConfig",
    "ProxyAuth",
    "build_parser",
    "load_config",
]

DEFAULT_LISTEN = ("0.0.0.0", 9000)
DEFAULT_MAX_DATAGRAM_SIZE = 1452
MIN_MAX_DATAGRAM_SIZE = 1200
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_PROXY_TIMEOUT = 30.0
DEFAULT_UDP_IDLE_TIMEOUT = 120.0
#: What a relay may hold for all circuits it carries, MiB (relay/budget.py).
DEFAULT_RELAY_BUDGET_MIB = 64
MIN_PROXY_TIMEOUT = 0.5
MAX_PROXY_TIMEOUT = 600.0
MAX_AUTH_FIELD = 255  # RFC 1929: ULEN and PLEN are one byte
MAX_IDLE_TIMEOUT = 86400.0
MIN_IDLE_TIMEOUT = 1.0
DATA_DIR_ENV = "GNET_DATA_DIR"
DEFAULT_DATA_DIR = "~/.globalnet"
IDENTITY_FILE_NAME = "identity.key"
MAX_CONFIG_FILE_SIZE = 1 << 20

_UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::"})

@dataclass(frozen=True)
class ExitConfig:
    enabled: bool = False
    allow: tuple[ExitRule, ...] = ()
    allow_udp: tuple[ExitRule, ...] = ()  # UDP is exited only where a rule allows it


@dataclass(frozen=True)
class Config:
    data_dir: Path
    identity_file: Path
    print_id: bool
    listen: tuple[str, int] | None  # None when -no-listen
    advertise: tuple[str, int] | None
    connect: tuple[HopAddr, ...]
    tunnels: tuple[PathSpec, ...]
    proxies: tuple[PathSpec, ...]
    exit: ExitConfig
    console: tuple[str, int] | None
    log_json: bool
    log_level: str
    max_datagram_size: int
    idle_timeout: float
    version: bool = False
    gen_client_key: bool = False
    services: tuple[ServiceConfig, ...] = ()
    publish: tuple[tuple[str, Path], ...] = ()  # signed sites: (name, folder)
    proxy_auth: ProxyAuth | None = None  # None: any client may use the proxies
    proxy_timeout: float = DEFAULT_PROXY_TIMEOUT  # bound on one SOCKS request's circuit
    metrics: tuple[str, int] | None = None  # -metrics: Prometheus /metrics and the status page
    verify_config: bool = False  # --verify-config: check, print a summary, exit
    udp_idle_timeout: float = DEFAULT_UDP_IDLE_TIMEOUT  # UDP circuits close after this long idle
    relay_budget_mib: int = DEFAULT_RELAY_BUDGET_MIB  # what relaying may queue in memory, all circuits together


# -- command line ----------------------------------------------------------

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
        raise ConfigError(f"{message} (see gclient --help)")

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
     ("forward a local TCP port through relays; repeatable, e.g. "
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
    ("proxy-auth", None, "USER:PASS",
     ("only clients giving this username and password may use the proxies (SOCKS5 "
     "RFC 1929 or HTTP Basic); in any case different credentials never share a "
     "circuit. Visible to other local users in the process list: prefer proxy_auth "
     "in a -config file. E.g. -proxy-auth alice:s3cret")),
    ("proxy-timeout", None, "SECONDS",
     (f"how long a proxy request may wait for its circuit, including while the node "
     f"is still learning relays (default {DEFAULT_PROXY_TIMEOUT:g}), e.g. -proxy-timeout 10")),
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


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """One parser per process: building it costs more than parsing (30 options, formatters).

    parse_args does not change the parser, so load_config can reuse it.
    """
    return build_parser()


# -- config file -----------------------------------------------------------

# Top-level file keys: the flags in snake_case, plural for the repeatable
# -tunnel/-proxy, and bootstrap (peers that -connect adds to).
_FILE_KEYS = (
    "listen", "no_listen", "connect", "bootstrap", "id", "data_dir", "tunnels",
    "proxies", "exit", "advertise", "console", "log_json", "log_level",
    "max_datagram_size", "idle_timeout", "services", "proxy_auth", "proxy_timeout",
    "exit_allow", "exit_allow_udp", "metrics",
    "udp_idle_timeout", "relay_budget",
)  # fmt: skip
_EXIT_KEYS = ("enabled", "allow", "allow_udp")


def _unknown_key(key: str, known: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint}")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_FILE_SIZE + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror or exc}"
        ) from None
    if len(data) > MAX_CONFIG_FILE_SIZE:
        raise ConfigError(
            f"config file {path} is larger than {MAX_CONFIG_FILE_SIZE} bytes"
        )
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for key in table:
        if key not in _FILE_KEYS:
            raise _unknown_key(key, _FILE_KEYS, f"config file {path}")
    return table


# -- one setting from one source --------------------------------------------


def _as_proxy_auth(value: Value) -> ProxyAuth:
    text = as_str(value)
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        value.fail("expected USER:PASS, both non-empty")
    for what, part in (("username", user), ("password", password)):
        if len(part.encode("utf-8")) > MAX_AUTH_FIELD:
            value.fail(f"the {what} is longer than {MAX_AUTH_FIELD} bytes (RFC 1929)")
        if any(not ch.isprintable() for ch in part):
            value.fail(f"the {what} contains a control character")
    return ProxyAuth(user, password)


def _advertise(
    value: Value | None, listen: tuple[str, int] | None
) -> tuple[str, int] | None:
    """-advertise IP:PORT; by default the listen address if it is a specific one."""
    if value is None:
        if listen is None or listen[0] in _UNSPECIFIED_HOSTS or listen[1] == 0:
            return None
        return listen
    if listen is None:
        value.fail("a node that does not listen has nothing to advertise")
    if isinstance(value.raw, int) or (
        isinstance(value.raw, str) and value.raw.strip().isdigit()
    ):
        value.fail("expected IP:PORT, the address others reach this node at")
    advertise = as_address(value, "0.0.0.0")
    if advertise[0] in _UNSPECIFIED_HOSTS or advertise[1] == 0:
        value.fail("expected a specific IP address and a port other than 0")
    return advertise


# -- the merge -------------------------------------------------------------


def _default_data_dir(env: Mapping[str, str]) -> Path:
    text = env.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:
        raise ConfigError(
            f"cannot find a data directory ({exc}); give -data-dir or set {DATA_DIR_ENV}"
        ) from None


def _listen(
    ns: argparse.Namespace, file: Mapping[str, Any], path: Path | None
) -> tuple[str, int] | None:
    if ns.listen is not None:
        return as_address(Value(ns.listen, "-listen"), "0.0.0.0")
    if ns.no_listen:
        return None
    listen = pick_value(None, "-listen", file, "listen", path)
    no_listen = pick_value(None, "-no-listen", file, "no_listen", path)
    if no_listen is not None and as_bool(no_listen):
        if listen is not None:
            raise ConfigError(
                f"config file {path}: 'listen' and 'no_listen = true' exclude each other"
            )
        return None
    if listen is not None:
        return as_address(listen, "0.0.0.0")
    return DEFAULT_LISTEN


def _exit(
    ns: argparse.Namespace, file: Mapping[str, Any], path: Path | None
) -> ExitConfig:
    enabled = False
    allow: tuple[ExitRule, ...] = ()
    allow_udp: tuple[ExitRule, ...] = ()
    if "exit" in file:
        where = f"key 'exit' in {path}"
        table = file["exit"]
        if isinstance(table, bool):
            table = {"enabled": table}
        if not isinstance(table, dict):
            raise ConfigError(
                f"{where}: expected a table like {{enabled = true, allow = [...]}}"
            )
        for key in table:
            if key not in _EXIT_KEYS:
                if key in _FILE_KEYS:  # the classic TOML slip: a key after [exit]
                    raise ConfigError(
                        f"{where}: unknown key 'exit.{key}' (keys written after an "
                        "[exit] header belong to it: put top-level keys before it)"
                    )
                raise _unknown_key(
                    f"exit.{key}", [f"exit.{k}" for k in _EXIT_KEYS], where
                )
        if "enabled" in table:
            enabled = as_bool(
                Value(table["enabled"], f"key 'exit.enabled' in {path}")
            )
        if "allow" in table:
            allow_value = Value(table["allow"], f"key 'exit.allow' in {path}")
            allow = tuple(each(allow_value, parse_exit_rule, quote_item=False))
        if "allow_udp" in table:
            udp_value = Value(table["allow_udp"], f"key 'exit.allow_udp' in {path}")
            allow_udp = tuple(each(udp_value, parse_exit_rule, quote_item=False))
    # the flags' spellings (exit_allow, exit_allow_udp), beside [exit] allow and allow_udp
    allow = _flag_spelled_rules(file, path, "exit_allow", "allow", allow, enabled or bool(ns.exit))
    allow_udp = _flag_spelled_rules(file, path, "exit_allow_udp", "allow_udp", allow_udp, enabled or bool(ns.exit))
    if ns.exit:
        enabled = True
    if ns.exit_allow is not None:
        allow_value = Value(ns.exit_allow, "-exit-allow")
        allow = tuple(each(allow_value, parse_exit_rule, quote_item=False))
        if not enabled:
            raise ConfigError("-exit-allow needs -exit (this node is not an exit)")
    if ns.exit_allow_udp is not None:
        udp_value = Value(ns.exit_allow_udp, "-exit-allow-udp")
        allow_udp = tuple(each(udp_value, parse_exit_rule, quote_item=False))
        if not enabled:
            raise ConfigError("-exit-allow-udp needs -exit (this node is not an exit)")
    return ExitConfig(enabled, allow, allow_udp)


def _flag_spelled_rules(
    file: Mapping[str, Any], path: Path | None, key: str, table_key: str,
    rules: tuple[ExitRule, ...], exit_enabled: bool,
) -> tuple[ExitRule, ...]:
    """`exit_allow = [...]` at the top level, as the flag -exit-allow is spelled."""
    if key not in file:
        return rules
    exit_table = file.get("exit")
    if isinstance(exit_table, dict) and table_key in exit_table:
        raise ConfigError(f"config file {path}: give '{key}' or 'exit.{table_key}', not both")
    if not exit_enabled:
        raise ConfigError(f"key '{key}' in {path} needs exit = true (this node is not an exit)")
    value = Value(file[key], f"key '{key}' in {path}")
    return tuple(each(value, parse_exit_rule, quote_item=False))


def _connect(
    ns: argparse.Namespace, file: Mapping[str, Any], path: Path | None
) -> tuple[HopAddr, ...]:
    peers: list[HopAddr] = []
    sources = [
        pick_value(None, "", file, "bootstrap", path),
        pick_value(ns.connect, "-connect", file, "connect", path),
    ]
    for value in sources:
        if value is None:
            continue
        for peer_list in each(value, parse_peer_list):
            peers.extend(peer_list)
    unique = tuple(dict.fromkeys(peers))
    if len(unique) > MAX_LIST_ITEMS * 4:
        raise ConfigError(
            f"too many peers to connect to ({len(unique)}, at most {MAX_LIST_ITEMS * 4})"
        )
    return unique


def _specs(value: Value | None, kind: str) -> tuple[PathSpec, ...]:
    if value is None:
        return ()
    specs = each(value, parse_path_spec)
    for spec in specs:
        target = spec.target
        if isinstance(target, TargetService):
            try:
                decode_address(target.address)
            except AddressError as exc:  # a typo found now, not on the first connection
                value.fail(f"{format_path_spec(spec)!r}: service address: {exc.problem}")
        if kind == "tunnel" and isinstance(target, TargetInternet):
            value.fail(
                f"{format_path_spec(spec)!r}: 'internet' is for -proxy; a tunnel needs "
                "host:port or a service as its target"
            )
        if kind == "proxy" and spec.udp:
            value.fail(f"{format_path_spec(spec)!r}: 'udp:' is for tunnels; a SOCKS proxy carries UDP by UDP ASSOCIATE")
        if kind == "tunnel" and spec.udp and isinstance(target, TargetService) and target.then is not None:
            value.fail(f"{format_path_spec(spec)!r}: a UDP tunnel to a service goes to the service's own target")
        if kind == "proxy" and isinstance(target, TargetTcp):
            value.fail(
                f"{format_path_spec(spec)!r}: a proxy's target is internet or a service "
                "(the SOCKS request says where to go); use -tunnel for a fixed host:port"
            )
    return tuple(specs)


def _check_local_ports(config: Config) -> None:
    """Two local TCP listeners (tunnels, proxies, console) may not share a port."""
    seen: dict[int, list[tuple[str, str]]] = {}
    named = [
        ("-tunnel " + format_path_spec(s), (s.listen_host, s.listen_port))
        for s in config.tunnels
        if not s.udp  # a UDP port may share its number with a TCP listener
    ]
    named += [
        ("-proxy " + format_path_spec(s), (s.listen_host, s.listen_port))
        for s in config.proxies
    ]
    if config.console is not None:
        named.append(("-console", config.console))
    if config.metrics is not None:
        named.append(("-metrics", config.metrics))
    for name, (host, port) in named:
        if port == 0:
            continue
        for other_name, other_host in seen.get(port, []):
            if (
                host == other_host
                or host in _UNSPECIFIED_HOSTS
                or other_host in _UNSPECIFIED_HOSTS
            ):
                raise ConfigError(f"{name} and {other_name} both listen on port {port}")
        seen.setdefault(port, []).append((name, host))


_SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def _publish(value: Value | None) -> tuple[tuple[str, Path], ...]:
    """`NAME=DIR`: a folder to sign and serve as a site (checked at start: it must be a folder)."""
    if value is None:
        return ()
    out: list[tuple[str, Path]] = []
    for item in value.raw if isinstance(value.raw, list) else [value.raw]:
        if not isinstance(item, str) or "=" not in item:
            value.fail(f"{item!r}: expected NAME=DIR, e.g. blog=./www")
        name, _, folder = item.partition("=")
        name = name.strip().lower()
        if not _SERVICE_NAME.fullmatch(name):
            value.fail(f"{name!r}: a site name is 1-32 of a-z 0-9 _ - (starting with a letter or digit)")
        if not Path(folder).expanduser().is_dir():
            value.fail(f"{folder!r} is not a folder")
        out.append((name, Path(folder).expanduser()))
    return tuple(out)


def _services(value: Value | None) -> tuple[ServiceConfig, ...]:
    """`NAME=HOST:PORT[,auth]` (the service's target; `auth`: client authorization) and
    `NAME=allow:NET:PORTS` (client-chosen targets)."""
    if value is None:
        return ()
    targets: dict[str, tuple[str, int]] = {}
    auth: set[str] = set()
    allows: dict[str, list[ExitRule]] = {}
    udp: set[str] = set()
    items = value.raw if isinstance(value.raw, list) else [value.raw]
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            value.fail(f"{item!r}: expected NAME=HOST:PORT or NAME=allow:NET:PORTS")
        name, _, rest = item.partition("=")
        name = name.strip().lower()
        if not _SERVICE_NAME.fullmatch(name):
            value.fail(f"{name!r}: a service name is 1-32 of a-z 0-9 _ - (starting with a letter or digit)")
        if rest.startswith("allow:"):
            try:
                allows.setdefault(name, []).append(parse_exit_rule(rest[len("allow:"):]))
            except ValueError as exc:
                value.fail(f"{item!r}: {exc}")
        else:
            if name in targets:
                value.fail(f"service {name!r} has two targets")
            rest, comma, option = rest.partition(",")
            if comma:
                if option.strip().lower() != "auth":
                    value.fail(f"{item!r}: the only option after the target is ',auth' (client authorization)")
                auth.add(name)
            if rest.lower().startswith("udp:"):
                udp.add(name)
                rest = rest[len("udp:"):]
            if rest.strip().isdigit():
                udp_prefix = "udp:" if name in udp else ""
                value.fail(f"{item!r}: the host is missing: write {name}={udp_prefix}127.0.0.1:{rest.strip()}")
            try:
                hop = parse_hop_addr(rest)
            except PathSpecError as exc:
                value.fail(f"{item!r}: {exc}")
            targets[name] = (hop.host, hop.port)
    for name in allows:
        if name not in targets:
            value.fail(f"service {name!r} has allow rules but no NAME=HOST:PORT target")
    if len(targets) > MAX_LIST_ITEMS:
        value.fail(f"too many services ({len(targets)})")
    for name in udp & set(allows):
        value.fail(f"service {name!r}: a UDP service has one target (no allow rules)")
    return tuple(ServiceConfig(n, t, tuple(allows.get(n, ())), n in udp, n in auth) for n, t in targets.items())


def load_config(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Config:
    """Parse flags (and the -config file) into a Config; ConfigError on any problem.

    ``env`` defaults to os.environ; it is only read for GNET_DATA_DIR.
    """
    if env is None:
        env = os.environ
    ns = _parser().parse_args(list(argv))

    path: Path | None = None
    file: dict[str, Any] = {}
    if ns.config is not None:
        path = as_path(Value(ns.config, "-config"))
        file = _read_file(path)

    def pick(cli_name: str, flag: str, key: str) -> Value | None:
        return pick_value(getattr(ns, cli_name), flag, file, key, path)

    data_dir_value = pick("data_dir", "-data-dir", "data_dir")
    if data_dir_value is not None:
        data_dir = as_path(data_dir_value)
    else:
        data_dir = _default_data_dir(env)
    id_value = pick("id", "-id", "id")
    identity_file = or_default(id_value, as_path, data_dir / IDENTITY_FILE_NAME)
    listen = _listen(ns, file, path)
    exit_config = _exit(ns, file, path)
    if exit_config.enabled and listen is None:
        raise ConfigError("-exit needs a listening relay (remove -no-listen)")

    config = Config(
        data_dir=data_dir,
        identity_file=identity_file,
        print_id=bool(ns.print_id),
        gen_client_key=bool(ns.gen_client_key),
        listen=listen,
        advertise=_advertise(pick("advertise", "-advertise", "advertise"), listen),
        connect=_connect(ns, file, path),
        tunnels=_specs(pick("tunnel", "-tunnel", "tunnels"), "tunnel"),
        proxies=_specs(pick("proxy", "-proxy", "proxies"), "proxy"),
        exit=exit_config,
        console=or_default(
            pick("console", "-console", "console"),
            lambda v: as_address(v, "127.0.0.1"),
            None,
        ),
        log_json=or_default(pick("log_json", "-log-json", "log_json"), as_bool, False),
        log_level=or_default(pick("log_level", "-log-level", "log_level"), as_level, "info"),
        max_datagram_size=or_default(
            pick("max_datagram_size", "-max-datagram-size", "max_datagram_size"),
            lambda v: as_int(v, MIN_MAX_DATAGRAM_SIZE, DEFAULT_MAX_DATAGRAM_SIZE),
            DEFAULT_MAX_DATAGRAM_SIZE,
        ),
        idle_timeout=or_default(
            pick("idle_timeout", "-idle-timeout", "idle_timeout"),
            lambda v: as_seconds(v, MIN_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT),
            DEFAULT_IDLE_TIMEOUT,
        ),
        version=bool(ns.version),
        verify_config=bool(ns.verify_config),
        metrics=or_default(
            pick("metrics", "-metrics", "metrics"),
            lambda v: as_address(v, "127.0.0.1"),
            None,
        ),
        services=_services(pick("service", "-service", "services")),
        publish=_publish(pick("publish", "-publish", "publish")),
        proxy_auth=or_default(pick("proxy_auth", "-proxy-auth", "proxy_auth"), _as_proxy_auth, None),
        proxy_timeout=or_default(
            pick("proxy_timeout", "-proxy-timeout", "proxy_timeout"),
            lambda v: as_seconds(v, MIN_PROXY_TIMEOUT, MAX_PROXY_TIMEOUT),
            DEFAULT_PROXY_TIMEOUT,
        ),
        udp_idle_timeout=or_default(
            pick("udp_idle_timeout", "-udp-idle-timeout", "udp_idle_timeout"),
            lambda v: as_seconds(v, 1.0, 24 * 3600.0),
            DEFAULT_UDP_IDLE_TIMEOUT,
        ),
        relay_budget_mib=or_default(
            pick("relay_budget", "-relay-budget", "relay_budget"),
            lambda v: as_int(v, 4, 1 << 20),
            DEFAULT_RELAY_BUDGET_MIB,
        ),
    )
    if config.proxy_auth is not None and not config.proxies:
        raise ConfigError("-proxy-auth needs a -proxy (there is no proxy to protect)")
    _check_local_ports(config)
    return config
