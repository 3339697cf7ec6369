#!/usr/bin/env python3
"""gclient: run a GlobalNet node (see `gclient --help`)."""

from __future__ import annotations

import asyncio
import signal
import sys

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
    try:
        identity = load_or_create_identity(config.identity_file)
    except (IdentityFileError, OSError) as exc:
        print(f"gclient: identity key: {exc}", file=sys.stderr)
        return 2
    if config.print_id:
        print(identity.node_id.hex())
        return 0
    setup_logging(config.log_level, config.log_json)
    return asyncio.run(_run(config, identity))


async def _run(config: object, identity: object) -> int:
    from globalnet.node import Node

    node = Node(config, identity)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, node.stop)
    loop.add_signal_handler(signal.SIGUSR1, node.dump_state)
    try:
        await node.run()
    except OSError as exc:
        print(f"gclient: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
