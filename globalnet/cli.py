"""gclient: run a GlobalNet node (see `gclient --help`).

The console script `gclient` (pyproject), `python -m globalnet` and the
root `gclient.py` shim all call :func:`main`. Every startup problem is one
line on stderr naming what is wrong, and exit status 2 (config) or 1 (a
port that cannot be bound).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sys
from pathlib import Path
from typing import TypeVar

from globalnet import __version__
from globalnet.config import Config, ConfigError, load_config
from globalnet.errors import describe_os_error
from globalnet.identity import IdentityFileError, load_or_create_identity
from globalnet.logs import setup_logging

_E = TypeVar("_E", bound=BaseException)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["site"]:
        from globalnet.site.cli import site_main

        return site_main(args[1:])
    if args and not args[0].startswith("-"):  # e.g. 'gclient sit': not one of the flags' values
        print(
            f"gclient: unknown command {args[0]!r}: the one command is 'site' (gclient site -h); "
            "everything else is a flag (see gclient --help)",
            file=sys.stderr,
        )
        return 2
    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"gclient: {exc} (see gclient --help)", file=sys.stderr)  # one line: scripts and people read the first
        return 2
    if config.version:
        from globalnet.crypto import BACKEND_NAME

        print(f"gclient {__version__}\ncrypto: {BACKEND_NAME}")
        return 0
    if config.verify_config:
        print(f"gclient: configuration OK: {describe_config(config)}")
        return 0
    if config.gen_client_key:
        return _gen_client_key(config.data_dir)
    try:
        identity = load_or_create_identity(config.identity_file)
    except IdentityFileError as exc:
        print(f"gclient: identity key: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a data dir that cannot be created
        print(f"gclient: identity key {config.identity_file}: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    if config.print_id:
        print(identity.node_id.hex())
        return 0
    lock = lock_data_dir(config.data_dir)
    if lock is None:
        return 2
    setup_logging(config.log_level, config.log_json)
    return asyncio.run(_run(config, identity))


async def _run(config: object, identity: object) -> int:
    from globalnet.errors import GnetError
    from globalnet.node import Node

    try:
        node = Node(config, identity)  # type: ignore[arg-type]
    except GnetError as exc:  # e.g. a malformed key file of a hidden service: say so at start
        print(f"gclient: cannot start: {exc.detail}", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, node.stop)
    loop.add_signal_handler(signal.SIGUSR1, node.dump_state)
    try:
        await node.run()
    except (OSError, ConfigError, BaseExceptionGroup) as error:  # a port that cannot be bound: one clear line
        setting_error = _first_error(error, ConfigError)
        if setting_error is not None:  # e.g. a -publish folder that cannot be signed
            print(f"gclient: cannot start: {setting_error}", file=sys.stderr)
            return 2
        os_error = _first_error(error, OSError)
        if os_error is None:
            raise
        hint = " (ports below 1024 need root: pick a higher one)" if isinstance(os_error, PermissionError) else ""
        # the node names the flag and address in strerror; "[Errno 98]" would add nothing
        reason = os_error.strerror if os_error.strerror and os_error.filename is None else str(os_error)
        print(f"gclient: cannot start: {reason}{hint}", file=sys.stderr)
        return 1
    return 0


def _gen_client_key(data_dir: Path) -> int:
    """--gen-client-key: this node's hidden-service client key; print its public line."""
    from globalnet.errors import GnetError
    from globalnet.service.client_auth import format_key, generate_client_key

    try:
        public = generate_client_key(data_dir / "client_auth")
    except GnetError as exc:
        print(f"gclient: client key: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gclient: client key: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    print(format_key(public))
    print(
        "gclient: give this line to the service's operator: one file (e.g. NAME.auth) "
        "in DATA_DIR/services/NAME/authorized_clients/",
        file=sys.stderr,
    )
    return 0


def describe_config(config: Config) -> str:
    """One line saying what the node would do (for --verify-config)."""
    parts = [f"listen {config.listen[0]}:{config.listen[1]}" if config.listen else "client only (no listen)"]
    if config.exit.enabled:
        parts.append(f"exit with {len(config.exit.allow)} allow rules" if config.exit.allow else "exit (public addresses)")
    counted = (("peer", "peers", config.connect), ("tunnel", "tunnels", config.tunnels), ("proxy", "proxies", config.proxies))
    for one, many, items in counted:
        if items:
            parts.append(f"{len(items)} {one if len(items) == 1 else many}")
    if config.services:
        parts.append("services " + ", ".join(s.name for s in config.services))
    for what, where in (("console", config.console), ("metrics", config.metrics)):
        if where is not None:
            parts.append(f"{what} {where[0]}:{where[1]}")
    parts.append(f"data dir {config.data_dir}")
    return "; ".join(parts)


def _first_error(error: BaseException, kind: type[_E]) -> _E | None:
    """The first `kind` in `error` or, for a TaskGroup's exception group, inside it."""
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _first_error(inner, kind)
            if found is not None:
                return found
    return None


def lock_data_dir(data_dir: Path) -> object | None:
    """One node per data dir: two would share an identity and fight over its files."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = open(data_dir / "lock", "a+")  # noqa: SIM115 (held open: the lock lives as long as the node)
    except OSError as exc:  # with --id elsewhere, the data dir is first used here
        print(f"gclient: data dir {data_dir}: {describe_os_error(exc)}", file=sys.stderr)
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        print(
            f"gclient: {data_dir} is in use by another gclient (pid {owner}); give each node its own -data-dir",
            file=sys.stderr,
        )
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def entry_point() -> None:
    """The `gclient` console script."""
    sys.exit(main())
