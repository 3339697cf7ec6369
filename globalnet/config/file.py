"""The -config TOML file: bounded read, known keys only (with a did-you-mean).

tomllib and difflib are imported when a file is read or a key refused: a node started
without -config never loads them (memory per node, `make memory`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from globalnet.config.defaults import MAX_CONFIG_FILE_SIZE
from globalnet.config_values import ConfigError

# Top-level file keys: the flags in snake_case, plural for the repeatable
# -tunnel/-proxy, and bootstrap (peers that -connect adds to).
FILE_KEYS = (
    "listen", "no_listen", "connect", "bootstrap", "id", "data_dir", "tunnels",
    "proxies", "exit", "advertise", "console", "log_json", "log_level",
    "max_datagram_size", "idle_timeout", "services", "proxy_auth", "proxy_timeout",
    "exit_allow", "exit_allow_udp", "metrics",
    "udp_idle_timeout", "relay_budget", "publish", "mirror", "site_quota",
)  # fmt: skip
EXIT_KEYS = ("enabled", "allow", "allow_udp")


def unknown_key(key: str, known: Sequence[str], where: str) -> ConfigError:
    import difflib

    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint}")


def read_file(path: Path) -> dict[str, Any]:
    import tomllib

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
        if key not in FILE_KEYS:
            raise unknown_key(key, FILE_KEYS, f"config file {path}")
    return table

