"""Where this node listens, links and forwards: -advertise, -connect, -tunnel/-proxy path
specs and the proxies' credentials, each checked now rather than on first use."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from globalnet.config.defaults import MAX_AUTH_FIELD, UNSPECIFIED_HOSTS
from globalnet.config_values import (
    MAX_LIST_ITEMS,
    ConfigError,
    Value,
    as_address,
    as_str,
    each,
    pick_value,
)
from globalnet.service.address import AddressError, decode_address
from globalnet.site.address import is_site_address
from globalnet.wire.pathspec import (
    HopAddr,
    PathSpec,
    TargetInternet,
    TargetService,
    TargetTcp,
    format_path_spec,
    parse_path_spec,
    parse_peer_list,
)
from globalnet.wire.socks_messages import ProxyAuth


def as_proxy_auth(value: Value) -> ProxyAuth:
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


def advertise_address(
    value: Value | None, listen: tuple[str, int] | None
) -> tuple[str, int] | None:
    """-advertise IP:PORT; by default the listen address if it is a specific one."""
    if value is None:
        if listen is None or listen[0] in UNSPECIFIED_HOSTS or listen[1] == 0:
            return None
        return listen
    if listen is None:
        value.fail("a node that does not listen has nothing to advertise")
    if isinstance(value.raw, int) or (
        isinstance(value.raw, str) and value.raw.strip().isdigit()
    ):
        value.fail("expected IP:PORT, the address others reach this node at")
    advertise = as_address(value, "0.0.0.0")
    if advertise[0] in UNSPECIFIED_HOSTS or advertise[1] == 0:
        value.fail("expected a specific IP address and a port other than 0")
    return advertise



def connect_peers(
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


def path_specs(value: Value | None, kind: str) -> tuple[PathSpec, ...]:
    if value is None:
        return ()
    specs = each(value, parse_path_spec)
    for spec in specs:
        target = spec.target
        if isinstance(target, TargetService) and not (kind == "tunnel" and is_site_address(target.address)):
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
