"""Hidden services (-service) and signed sites (-publish, -mirror): names, targets, allow rules."""

from __future__ import annotations

import re
from pathlib import Path

from globalnet.config_values import MAX_LIST_ITEMS, Value
from globalnet.policy.exit_rule import ExitRule, parse_exit_rule
from globalnet.service.address import AddressError
from globalnet.service.settings import ServiceConfig
from globalnet.site.address import decode_site_address
from globalnet.wire.host_port import PathSpecError
from globalnet.wire.pathspec import parse_hop_addr

_SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def site_folders(value: Value | None) -> tuple[tuple[str, Path], ...]:
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


def mirrored_sites(value: Value | None) -> tuple[bytes, ...]:
    """`ADDRESS`: a site address to mirror (a typo or a service address is refused at start)."""
    if value is None:
        return ()
    out: list[bytes] = []
    for item in value.raw if isinstance(value.raw, list) else [value.raw]:
        try:
            out.append(decode_site_address(str(item)))
        except AddressError as exc:
            value.fail(f"{str(item)[:70]!r}: {exc.problem}")
    return tuple(dict.fromkeys(out))


def hidden_services(value: Value | None) -> tuple[ServiceConfig, ...]:
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

