"""The exit settings: -exit, -exit-allow, -exit-allow-udp and the file's [exit] table."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from globalnet.config.file import EXIT_KEYS, FILE_KEYS, unknown_key
from globalnet.config_values import ConfigError, Value, as_bool, each
from globalnet.policy.exit_rule import ExitRule, parse_exit_rule


@dataclass(frozen=True)
class ExitConfig:
    enabled: bool = False
    allow: tuple[ExitRule, ...] = ()
    allow_udp: tuple[ExitRule, ...] = ()  # UDP is exited only where a rule allows it



def exit_config(
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
            if key not in EXIT_KEYS:
                if key in FILE_KEYS:  # the classic TOML slip: a key after [exit]
                    raise ConfigError(
                        f"{where}: unknown key 'exit.{key}' (keys written after an "
                        "[exit] header belong to it: put top-level keys before it)"
                    )
                raise unknown_key(
                    f"exit.{key}", [f"exit.{k}" for k in EXIT_KEYS], where
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
