#!/usr/bin/env python3
"""gclient: run a GlobalNet node (see `gclient --help`)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sys
from pathlib import Path

from globalnet import __version__
from globalnet.config import ConfigError, load_config
from globalnet.identity import IdentityFileError, load_or_create_identity
from globalnet.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    try:
        config = load_config(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"gclient: {exc}", file=sys.stderr)
        print("gclient: try 'gclient --help'", file=sys.stderr)
        return 2
    if config.version:
        from globalnet.crypto import BACKEND_NAME

        print(f"gclient {__version__}\ncrypto: {BACKEND_NAME}")
        return 0
    if config.gen_client_key:
        return _gen_client_key(config.data_dir)
    try:
        identity = load_or_create_identity(config.identity_file)
    except (IdentityFileError, OSError) as exc:
        print(f"gclient: identity key: {exc}", file=sys.stderr)
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
    except (OSError, BaseExceptionGroup) as error:  # a port that cannot be bound: one clear line
        exc = _first_os_error(error)
        if exc is None:
            raise
        hint = " (ports below 1024 need root: pick a higher one)" if isinstance(exc, PermissionError) else ""
        print(f"gclient: cannot start: {exc}{hint}", file=sys.stderr)
        return 1
    return 0


def _gen_client_key(data_dir: Path) -> int:
    from globalnet.errors import GnetError
    from globalnet.service.client_auth import format_key, generate_client_key

    try:
        public = generate_client_key(data_dir / "client_auth")
    except (GnetError, OSError) as exc:
        print(f"gclient: client key: {exc}", file=sys.stderr)
        return 2
    print(format_key(public))
    print(
        "gclient: give this line to the service's operator: one file (e.g. NAME.auth) "
        "in DATA_DIR/services/NAME/authorized_clients/",
        file=sys.stderr,
    )
    return 0


def _first_os_error(error: BaseException) -> OSError | None:
    if isinstance(error, OSError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _first_os_error(inner)
            if found is not None:
                return found
    return None


def lock_data_dir(data_dir: Path) -> object | None:
    """One node per data dir: two would share an identity and fight over its files."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = open(data_dir / "lock", "a+")
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


if __name__ == "__main__":
    sys.exit(main())
