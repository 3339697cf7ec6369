"""Operating a node (issue 14), the parts without processes: address typos, config keys
as the example configs claim, the no-exit verdict, the library log bridge, bandwidth history."""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path

import pytest

from globalnet.circuit.resolve import NoExitError, PathResolver
from globalnet.config import ConfigError, load_config
from globalnet.errors import ErrorKind
from globalnet.logs import setup_logging
from globalnet.metrics.history import BandwidthHistory
from globalnet.peertable import PeerTable
from globalnet.policy.exit_policy import ExitPolicy
from globalnet.policy.exit_rule import parse_exit_rule
from globalnet.service.address import AddressError, decode_address, encode_address
from globalnet.wire.commands import Proto, RelayConnect
from globalnet.wire.pathspec import HopRandom
from globalnet.wire.records import FLAG_EXIT, FLAG_RELAY
from tests.identities import next_identity

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
GOOD = encode_address(bytes(range(32)))


def test_every_single_character_typo_is_caught_and_a_last_character_typo_says_checksum() -> None:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for position in range(56):
        for replacement in alphabet[:: 7]:
            if GOOD[position] == replacement:
                continue
            typo = GOOD[:position] + replacement + GOOD[position + 1 :]
            with pytest.raises(AddressError) as caught:
                decode_address(typo)
            if position == 55:
                assert caught.value.problem == "checksum does not match: a typo?"
            assert "version" not in caught.value.problem or position != 55
            assert typo not in caught.value.problem  # safe to log


def test_address_problems_name_what_is_wrong() -> None:
    with pytest.raises(AddressError, match="10 characters, an address has 56"):
        decode_address(GOOD[:10] + ".gnet")
    with pytest.raises(AddressError, match="not base32"):
        decode_address("0" * 56 + ".gnet")
    assert decode_address(GOOD.upper()) == bytes(range(32))


def test_config_file_keys_match_the_flags_as_the_configs_say(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('listen = "127.0.0.1:9001"\nexit = true\nexit_allow = ["127.0.0.1/32:80"]\nmetrics = "9100"\n')
    config = load_config(["-config", str(path)], {})
    assert config.exit.enabled and config.exit.allow == (parse_exit_rule("127.0.0.1/32:80"),)
    assert config.metrics == ("127.0.0.1", 9100)
    path.write_text('listen = "127.0.0.1:9001"\nexit_allow = ["127.0.0.1/32"]\n')
    with pytest.raises(ConfigError, match="needs exit = true"):
        load_config(["-config", str(path)], {})
    path.write_text('exit_allow = ["127.0.0.1/32"]\n[exit]\nenabled = true\nallow = ["127.0.0.1/32"]\n')
    with pytest.raises(ConfigError, match="not both"):
        load_config(["-config", str(path)], {})


@pytest.mark.parametrize("name", ["client.toml", "exit.toml", "relay.toml"])
def test_every_commented_key_in_the_example_configs_is_a_known_key(name: str, tmp_path: Path) -> None:
    """Uncommenting any `# key = value` line of an example config gives a valid config."""
    text = (CONFIGS / name).read_text()
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.fullmatch(r"# ?([a-z_]+ = .+)", line)
        if match is None or "[" in match.group(1) and "]" not in match.group(1):
            continue
        if index > 0 and lines[index - 1].strip().endswith("["):
            continue  # an item of a list, not a key
        trial = lines[:index] + [match.group(1)] + lines[index + 1 :]
        # a top-level key must stay above the [exit] table
        path = tmp_path / name
        path.write_text("\n".join(trial) + "\n")
        try:
            load_config(["-config", str(path), "-data-dir", str(tmp_path)], {})
        except ConfigError as exc:
            assert "exclude each other" in str(exc) or "listen" in str(exc), f"{name}: {match.group(1)!r}: {exc}"


def test_metrics_and_verify_config_flags() -> None:
    config = load_config(["-metrics", "127.0.0.2:9100", "--verify-config"], {})
    assert config.metrics == ("127.0.0.2", 9100) and config.verify_config
    with pytest.raises(ConfigError, match="both listen on port 9100"):
        load_config(["-metrics", "9100", "-console", "9100"], {})
    assert load_config(["-verify-config"], {}).verify_config


# -- a target no exit allows -----------------------------------------------------


def _relay(exit_rules: tuple[str, ...] | None, port: int) -> object:
    identity = next_identity()
    policy = ExitPolicy(True, tuple(parse_exit_rule(r) for r in exit_rules)) if exit_rules is not None else ExitPolicy(False)
    flags = FLAG_RELAY | (FLAG_EXIT if exit_rules is not None else 0)
    return identity.make_record(((f"127.0.{port % 250}.1", port),), flags, policy.summary())


async def test_no_exit_allows_the_port_answers_at_once_once_the_table_settled() -> None:
    peers = PeerTable(b"\x01" * 20)
    for i in range(4):
        peers.add(_relay(None, 9001 + i))  # type: ignore[arg-type]
    peers.add(_relay(("127.0.0.1/32:80",), 9010))  # type: ignore[arg-type]
    peers.last_new = time.time() - 10  # no relay was new for a while: settled
    resolver = PathResolver(peers)
    with pytest.raises(NoExitError) as caught:  # a verdict, where a wait would end in "gave up waiting"
        await resolver.resolve((HopRandom(),) * 3, RelayConnect(Proto.TCP, "127.0.0.1", 8080), wait=30)
    assert caught.value.kind is ErrorKind.EXIT_POLICY and caught.value.kind.socks_reply == 0x02
    assert (caught.value.port, caught.value.exits) == (8080, 1)
    assert "no exit allows port 8080 (1 exits considered" in str(caught.value)
    # the allowed port still works
    chosen = await resolver.resolve((HopRandom(),) * 3, RelayConnect(Proto.TCP, "127.0.0.1", 80), wait=30)
    assert len(chosen) == 3


async def test_while_still_learning_relays_it_waits_and_keeps_the_reason() -> None:
    peers = PeerTable(b"\x01" * 20)
    for i in range(3):
        peers.add(_relay(None, 9001 + i))  # type: ignore[arg-type]
    peers.add(_relay(("127.0.0.1/32:80",), 9010))  # type: ignore[arg-type]  # just learned: not settled
    resolver = PathResolver(peers)
    with pytest.raises(Exception) as caught:
        await resolver.resolve((HopRandom(),) * 3, RelayConnect(Proto.TCP, "127.0.0.1", 8080), wait=0.6)
    assert not isinstance(caught.value, NoExitError)
    assert "gave up waiting for relays: no exit that allows this target" in str(caught.value)
    # a caller whose own timeout ends the wait first can still say why
    assert resolver.waiting_reason.startswith("still waiting for relays: no exit that allows this target")


# -- logs and history -------------------------------------------------------------


def test_library_lines_go_through_structlog_peer_chatter_at_debug() -> None:
    out = io.StringIO()
    setup_logging("info", False, out)
    try:
        logging.getLogger("quic").warning("Native peer close %s", "x")
        logging.getLogger("asyncio").error("something broke")
        text = out.getvalue()
        assert "WARNING:quic" not in text and "Native peer close" not in text
        assert "something broke" in text and "library=asyncio" in text
        out.truncate(0)
        setup_logging("debug", True, out)
        logging.getLogger("quic").warning("Native peer close %s", "x")
        assert '"library": "quic"' in out.getvalue() and '"level": "debug"' in out.getvalue()
    finally:
        setup_logging("info", False)


def test_bandwidth_history_rates_and_bounds() -> None:
    history = BandwidthHistory(span=10.0, max_samples=100)
    assert history.feed(0.0, 0, 0) is None
    sample = history.feed(2.0, 2000, 500)
    assert sample is not None and (sample.rate_in, sample.rate_out) == (1000.0, 250.0)
    history.feed(4.0, 1000, 500)  # a total that went down: no negative rate
    assert history.samples[-1].rate_in == 0.0
    for t in range(5, 200):
        history.feed(float(t), t * 10, t * 10)
    assert all(s.at >= 199 - 10 for s in history.samples)
    assert history.as_json(199.0)[-1] == {"ago": 0.0, "in": 10.0, "out": 10.0}
