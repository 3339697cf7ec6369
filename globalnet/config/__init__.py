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

The package: ``command_line`` (the flags), ``file`` (the TOML file), one module per
group of settings (``network``, ``exit``, ``services``), ``defaults``; this module merges.

Every problem is a :class:`ConfigError` whose message names the flag or the
file key; argparse's own errors are turned into ConfigError too (no usage
dump, no SystemExit(2)). ``--help`` still prints and raises SystemExit(0);
``--version`` only sets ``Config.version`` and the caller prints it.

Nothing here resolves names or touches the network; relative paths in the
file are relative to the file's directory.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from globalnet.config.command_line import build_parser
from globalnet.config.defaults import (
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LISTEN,
    DEFAULT_MAX_DATAGRAM_SIZE,
    DEFAULT_PROXY_TIMEOUT,
    DEFAULT_RELAY_BUDGET_MIB,
    DEFAULT_SITE_QUOTA_MIB,
    DEFAULT_UDP_IDLE_TIMEOUT,
    IDENTITY_FILE_NAME,
    MAX_IDLE_TIMEOUT,
    MAX_PROXY_TIMEOUT,
    MIN_IDLE_TIMEOUT,
    MIN_MAX_DATAGRAM_SIZE,
    MIN_PROXY_TIMEOUT,
    UNSPECIFIED_HOSTS,
)
from globalnet.config.exit import ExitConfig, exit_config
from globalnet.config.file import read_file
from globalnet.config.network import advertise_address, as_proxy_auth, connect_peers, path_specs
from globalnet.config.services import hidden_services, mirrored_sites, site_folders
from globalnet.config_values import (
    LOG_LEVELS,
    ConfigError,
    Value,
    as_address,
    as_bool,
    as_int,
    as_level,
    as_path,
    as_seconds,
    or_default,
    pick_value,
)
from globalnet.service.settings import ServiceConfig
from globalnet.wire.pathspec import HopAddr, PathSpec, format_path_spec
from globalnet.wire.socks_messages import ProxyAuth

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

_T = TypeVar("_T")


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
    mirror: tuple[bytes, ...] = ()  # site keys this node mirrors (-mirror ADDRESS)
    proxy_auth: ProxyAuth | None = None  # None: any client may use the proxies
    proxy_timeout: float = DEFAULT_PROXY_TIMEOUT  # bound on one SOCKS request's circuit
    metrics: tuple[str, int] | None = None  # -metrics: Prometheus /metrics and the status page
    verify_config: bool = False  # --verify-config: check, print a summary, exit
    udp_idle_timeout: float = DEFAULT_UDP_IDLE_TIMEOUT  # UDP circuits close after this long idle
    relay_budget_mib: int = DEFAULT_RELAY_BUDGET_MIB  # what relaying may queue in memory, all circuits together
    site_quota_mib: int = DEFAULT_SITE_QUOTA_MIB  # disk for mirrored and visited sites, all together



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
                or host in UNSPECIFIED_HOSTS
                or other_host in UNSPECIFIED_HOSTS
            ):
                raise ConfigError(f"{name} and {other_name} both listen on port {port}")
        seen.setdefault(port, []).append((name, host))



class _Sources:
    """One setting from the flags or the file: the flag wins, the file's key is the fallback."""

    def __init__(self, ns: argparse.Namespace, file: Mapping[str, Any], path: Path | None) -> None:
        self.ns, self.file, self.path = ns, file, path

    def pick(self, dest: str, key: str) -> Value | None:
        """The raw value of flag `dest` (-dest-with-dashes) or of file key `key`."""
        return pick_value(getattr(self.ns, dest), "-" + dest.replace("_", "-"), self.file, key, self.path)

    def typed(self, dest: str, key: str, convert: Callable[[Value], _T], default: _T) -> _T:
        return or_default(self.pick(dest, key), convert, default)


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """One parser per process: building it costs more than parsing (30 options, formatters).

    parse_args does not change the parser, so load_config can reuse it.
    """
    return build_parser()


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
        file = read_file(path)
    src = _Sources(ns, file, path)
    data_dir_value = src.pick("data_dir", "data_dir")
    data_dir = as_path(data_dir_value) if data_dir_value is not None else _default_data_dir(env)
    listen = _listen(ns, file, path)
    exit_settings = exit_config(ns, file, path)
    if exit_settings.enabled and listen is None:
        raise ConfigError("-exit needs a listening relay (remove -no-listen)")
    local = lambda v: as_address(v, "127.0.0.1")
    config = Config(
        data_dir=data_dir,
        identity_file=src.typed("id", "id", as_path, data_dir / IDENTITY_FILE_NAME),
        print_id=bool(ns.print_id),
        gen_client_key=bool(ns.gen_client_key),
        version=bool(ns.version),
        verify_config=bool(ns.verify_config),
        listen=listen,
        advertise=advertise_address(src.pick("advertise", "advertise"), listen),
        connect=connect_peers(ns, file, path),
        tunnels=path_specs(src.pick("tunnel", "tunnels"), "tunnel"),
        proxies=path_specs(src.pick("proxy", "proxies"), "proxy"),
        exit=exit_settings,
        services=hidden_services(src.pick("service", "services")),
        publish=site_folders(src.pick("publish", "publish")),
        mirror=mirrored_sites(src.pick("mirror", "mirror")),
        console=src.typed("console", "console", local, None),
        metrics=src.typed("metrics", "metrics", local, None),
        log_json=src.typed("log_json", "log_json", as_bool, False),
        log_level=src.typed("log_level", "log_level", as_level, "info"),
        max_datagram_size=src.typed(
            "max_datagram_size", "max_datagram_size",
            lambda v: as_int(v, MIN_MAX_DATAGRAM_SIZE, DEFAULT_MAX_DATAGRAM_SIZE), DEFAULT_MAX_DATAGRAM_SIZE,
        ),
        idle_timeout=src.typed(
            "idle_timeout", "idle_timeout",
            lambda v: as_seconds(v, MIN_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT), DEFAULT_IDLE_TIMEOUT,
        ),
        proxy_auth=src.typed("proxy_auth", "proxy_auth", as_proxy_auth, None),
        proxy_timeout=src.typed(
            "proxy_timeout", "proxy_timeout",
            lambda v: as_seconds(v, MIN_PROXY_TIMEOUT, MAX_PROXY_TIMEOUT), DEFAULT_PROXY_TIMEOUT,
        ),
        udp_idle_timeout=src.typed(
            "udp_idle_timeout", "udp_idle_timeout", lambda v: as_seconds(v, 1.0, 24 * 3600.0), DEFAULT_UDP_IDLE_TIMEOUT,
        ),
        relay_budget_mib=src.typed(
            "relay_budget", "relay_budget", lambda v: as_int(v, 4, 1 << 20), DEFAULT_RELAY_BUDGET_MIB,
        ),
        site_quota_mib=src.typed(
            "site_quota", "site_quota", lambda v: as_int(v, 1, 1 << 24), DEFAULT_SITE_QUOTA_MIB,
        ),
    )  # fmt: skip
    if config.proxy_auth is not None and not config.proxies:
        raise ConfigError("-proxy-auth needs a -proxy (there is no proxy to protect)")
    _check_local_ports(config)
    return config

