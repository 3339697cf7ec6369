"""How one flag or config-file value becomes a typed one, with an error that names its source.

Split from config.py (which decides *what* the settings are): every converter here
takes a `Value` (the raw text or TOML item and where it came from) and either
returns the typed value or raises ConfigError naming the flag or file key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from globalnet.wire.host_port import PathSpecError, parse_listen

T = TypeVar("T")
D = TypeVar("D")

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_LIST_ITEMS = 256  # tunnels, proxies, exit rules, peers from one source


class ConfigError(ValueError):
    """A bad flag, flag value, config file or combination of settings."""


@dataclass(frozen=True)
class Value:
    """A raw value and where it came from, for error messages."""

    raw: Any
    where: str  # "-listen" or "key 'listen' in FILE"
    base_dir: Path | None = None  # relative paths in a file are relative to it

    def fail(self, problem: str) -> NoReturn:
        raise ConfigError(f"{self.where}: {problem}")


def pick_value(
    cli: Any, flag: str, file: Mapping[str, Any], key: str, path: Path | None
) -> Value | None:
    """The command line value if given, else the file's, else None."""
    if cli is not None:
        return Value(cli, flag)
    if key in file:
        assert path is not None
        return Value(file[key], f"key {key!r} in {path}", path.parent)
    return None


def as_str(value: Value) -> str:
    if not isinstance(value.raw, str):
        value.fail(f"expected a string, got {toml_type(value.raw)}")
    return value.raw


def as_bool(value: Value) -> bool:
    if not isinstance(value.raw, bool):
        value.fail(f"expected true or false, got {toml_type(value.raw)}")
    return value.raw


def as_list(value: Value) -> list[str]:
    """A list of strings (a file may also give a single string)."""
    raw = value.raw
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        value.fail(f"expected a list of strings, got {toml_type(raw)}")
    if len(raw) > MAX_LIST_ITEMS:
        value.fail(f"more than {MAX_LIST_ITEMS} entries")
    for item in raw:
        if not isinstance(item, str):
            value.fail(f"expected a list of strings, found {toml_type(item)} {item!r}")
    return list(raw)


def toml_type(raw: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(raw), type(raw).__name__)


def as_path(value: Value) -> Path:
    text = as_str(value)
    if not text or "\0" in text:
        value.fail("expected a path")
    try:
        path = Path(text).expanduser()
    except RuntimeError as exc:  # "~" without a home directory
        value.fail(str(exc))
    if value.base_dir is not None and not path.is_absolute():
        path = value.base_dir / path
    return path


def as_address(value: Value, default_host: str) -> tuple[str, int]:
    raw = value.raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)  # listen = 9000 in a file
    if not isinstance(raw, str):
        value.fail(f"expected [HOST:]PORT, got {toml_type(raw)}")
    try:
        return parse_listen(raw, default_host=default_host)
    except PathSpecError as exc:
        value.fail(str(exc))


def as_int(value: Value, low: int, high: int) -> int:
    raw = value.raw
    if isinstance(raw, str):
        try:
            raw = int(raw.strip(), 10)
        except ValueError:
            value.fail(f"{value.raw!r} is not a whole number")
    if isinstance(raw, bool) or not isinstance(raw, int):
        value.fail(f"expected a whole number, got {toml_type(raw)}")
    if not low <= raw <= high:
        value.fail(f"{raw} is out of range ({low}..{high})")
    return raw


def as_seconds(value: Value, low: float, high: float) -> float:
    raw = value.raw
    if isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            value.fail(f"{value.raw!r} is not a number of seconds")
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        value.fail(f"expected a number of seconds, got {toml_type(raw)}")
    if not math.isfinite(raw) or not low <= raw <= high:
        value.fail(f"{raw} is out of range ({low:g}..{high:g} seconds)")
    return float(raw)


def each(
    value: Value, parse: Callable[[str], T], *, quote_item: bool = True
) -> list[T]:
    """Parse every string of a list; the error names the bad item."""
    out: list[T] = []
    for item in as_list(value):
        try:
            out.append(parse(item))
        except ValueError as exc:  # PathSpecError is a ValueError too
            shown = item if len(item) <= 80 else item[:77] + "..."
            value.fail(f"{shown!r}: {exc}" if quote_item else str(exc))
    return out


def or_default(value: Value | None, convert: Callable[[Value], T], default: D) -> T | D:
    return default if value is None else convert(value)


def as_level(value: Value) -> str:
    level = as_str(value).strip().lower()
    if level not in LOG_LEVELS:
        value.fail(f"{value.raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return level
