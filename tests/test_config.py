"""CLI flags + TOML file -> Config (globalnet.config)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from globalnet.config import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_DATAGRAM_SIZE,
    DEFAULT_PROXY_TIMEOUT,
    Config,
    ConfigError,
    ExitConfig,
    ProxyAuth,
    build_parser,
    load_config,
)
from globalnet.policy.exit_rule import parse_exit_rule
from globalnet.service.address import encode_address
from globalnet.wire.pathspec import (
    HopAddr,
    HopRandom,
    TargetInternet,
    TargetService,
    TargetTcp,
    parse_path_spec,
)

REPO = Path(__file__).resolve().parent.parent
NODE_HEX = "0123456789abcdef0123456789abcdef01234567"
SERVICE = encode_address(bytes(range(32)))  # a well-formed .gnet address (checksum and version)
SERVICE_NAME = SERVICE.removesuffix(".gnet")
NODE_ID = bytes.fromhex(NODE_HEX)


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a config is sans-IO: any name lookup is a bug."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"DNS lookup attempted: {args!r}")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        monkeypatch.setattr(socket, name, refuse)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"GNET_DATA_DIR": str(tmp_path / "data")}


def load(argv: list[str], env: dict[str, str]) -> Config:
    return load_config(argv, env=env)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults and flags ------------------------------------------------------


def test_defaults(env: dict[str, str], tmp_path: Path) -> None:
    config = load([], env)
    assert config == Config(
        data_dir=tmp_path / "data",
        identity_file=tmp_path / "data" / "identity.key",
        print_id=False,
        listen=("0.0.0.0", 9000),
        advertise=None,
        connect=(),
        tunnels=(),
        proxies=(),
        exit=ExitConfig(enabled=False, allow=()),
        console=None,
        log_json=False,
        log_level="info",
        max_datagram_size=DEFAULT_MAX_DATAGRAM_SIZE,
        idle_timeout=DEFAULT_IDLE_TIMEOUT,
        version=False,
        proxy_auth=None,
        proxy_timeout=DEFAULT_PROXY_TIMEOUT,
    )


def test_default_data_dir_is_in_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config([], env={})
    assert config.data_dir == tmp_path / ".globalnet"
    assert config.identity_file == tmp_path / ".globalnet" / "identity.key"


def _argv(dash: str, tmp_path: Path) -> list[str]:
    return [
        f"{dash}listen", "127.0.0.1:9001",
        f"{dash}connect", f"127.0.0.1:9002#{NODE_HEX}, 127.0.0.1:9003",
        f"{dash}connect", "[::1]:9004",
        f"{dash}id", str(tmp_path / "key"),
        f"{dash}print-id",
        f"{dash}data-dir", str(tmp_path / "d"),
        f"{dash}tunnel", "localhost:1000>127.0.0.1:9002>127.0.0.1:8080",
        f"{dash}tunnel", f"1001>rand>{SERVICE}>127.0.0.1:22",
        f"{dash}proxy", "8080>rand>rand>internet",
        f"{dash}proxy-auth", "alice:s3:cret",
        f"{dash}proxy-timeout", "7.5",
        f"{dash}exit",
        f"{dash}exit-allow", "127.0.0.1/32",
        f"{dash}exit-allow", "[::1]/128:80,443",
        f"{dash}advertise", "127.0.0.2:9001",
        f"{dash}console", "7000",
        f"{dash}log-json",
        f"{dash}log-level", "DEBUG",
        f"{dash}max-datagram-size", "1280",
        f"{dash}idle-timeout", "2.5",
        f"{dash}version",
    ]  # fmt: skip


def test_every_flag_in_both_dash_styles(env: dict[str, str], tmp_path: Path) -> None:
    single = load(_argv("-", tmp_path), env)
    double = load(_argv("--", tmp_path), env)
    assert single == double
    assert single == Config(
        data_dir=tmp_path / "d",
        identity_file=tmp_path / "key",
        print_id=True,
        listen=("127.0.0.1", 9001),
        advertise=("127.0.0.2", 9001),
        connect=(
            HopAddr("127.0.0.1", 9002, NODE_ID),
            HopAddr("127.0.0.1", 9003),
            HopAddr("::1", 9004),
        ),
        tunnels=(
            parse_path_spec("127.0.0.1:1000>127.0.0.1:9002>127.0.0.1:8080"),
            parse_path_spec(f"127.0.0.1:1001>rand>{SERVICE}>127.0.0.1:22"),
        ),
        proxies=(parse_path_spec("127.0.0.1:8080>rand>rand>internet"),),
        exit=ExitConfig(
            True, (parse_exit_rule("127.0.0.1/32"), parse_exit_rule("[::1]:80,443"))
        ),
        console=("127.0.0.1", 7000),
        log_json=True,
        log_level="debug",
        max_datagram_size=1280,
        idle_timeout=2.5,
        version=True,
        proxy_auth=ProxyAuth("alice", "s3:cret"),
        proxy_timeout=7.5,
    )


def test_mixed_dashes_and_equals(env: dict[str, str]) -> None:
    config = load(["--listen=9001", "-console=127.0.0.1:7001"], env)
    assert config.listen == ("0.0.0.0", 9001)
    assert config.console == ("127.0.0.1", 7001)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9000", ("0.0.0.0", 9000)),  # the relay port is public: bare PORT is 0.0.0.0
        ("localhost:9001", ("127.0.0.1", 9001)),
        ("127.0.0.1:9001", ("127.0.0.1", 9001)),
        ("[::]:9000", ("::", 9000)),
        ("[::1]:9001", ("::1", 9001)),
        ("0", ("0.0.0.0", 0)),
    ],
)
def test_listen(env: dict[str, str], value: str, expected: tuple[str, int]) -> None:
    assert load(["-listen", value], env).listen == expected


@pytest.mark.parametrize(
    ("argv", "advertise"),
    [
        (["-listen", "127.0.0.1:9001"], ("127.0.0.1", 9001)),  # a specific address
        (["-listen", "9001"], None),  # 0.0.0.0 is not an address to give out
        (["-listen", "127.0.0.1:0"], None),  # the port is not known yet
        (["-listen", "9001", "-advertise", "203.0.113.5:9001"], ("203.0.113.5", 9001)),
        (["-listen", "[::1]:9001"], ("::1", 9001)),
    ],
)
def test_advertise(
    env: dict[str, str], argv: list[str], advertise: tuple[str, int] | None
) -> None:
    assert load(argv, env).advertise == advertise


def test_no_listen(env: dict[str, str]) -> None:
    config = load(["-no-listen", "-tunnel", f"2222>[{SERVICE_NAME}]>192.168.0.2:22"], env)
    assert config.listen is None
    assert config.advertise is None
    assert config.tunnels[0].target == TargetService(
        SERVICE, TargetTcp("192.168.0.2", 22)
    )


def test_proposal_examples(env: dict[str, str]) -> None:
    config = load(["-listen", "9000", "-connect", "peer:9000, peer2:9000"], env)
    assert config.connect == (HopAddr("peer", 9000), HopAddr("peer2", 9000))
    config = load(["--id", "publickey.pem"], env)
    assert config.identity_file == Path("publickey.pem")
    config = load(["-proxy", "8080>rand>rand>rand>rand>rand>internet"], env)
    assert config.proxies[0].hops == (HopRandom(),) * 5
    assert config.proxies[0].target == TargetInternet()


def test_help_prints_and_exits_zero(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps to the terminal width
    for flag in ("-h", "-help", "--help"):
        with pytest.raises(SystemExit) as info:
            load_config([flag])
        assert info.value.code == 0
    out = capsys.readouterr().out
    assert "-listen [HOST:]PORT, --listen [HOST:]PORT" in out
    assert "e.g. -listen 9000 or -listen 127.0.0.1:9001" in out
    assert '-proxy "8080>rand>rand>rand>rand>rand>internet"' in out
    assert "-no-listen -tunnel" in out


def test_parser_spells_every_long_flag_both_ways() -> None:
    for action in build_parser()._actions:
        longs = [o for o in action.option_strings if len(o) > 2]
        singles = {o[1:] for o in longs if not o.startswith("--")}
        doubles = {o[2:] for o in longs if o.startswith("--")}
        assert singles == doubles, action.option_strings


# -- bad values: ConfigError, never SystemExit(2) or a traceback ------------------

BAD_ARGV = [
    (["-listen"], "expected one argument"),
    (["-listen", "abc"], "-listen"),
    (["-listen", "example.com:9000"], "must be an IP address or localhost"),
    (["-listen", "70000"], "out of range"),
    (["-listen", "9000", "-no-listen"], "not allowed with argument"),
    (["-bogus"], "unrecognized arguments: -bogus"),
    (["-l", "9000"], "unrecognized arguments"),  # no abbreviations
    (["-lis", "9000"], "unrecognized arguments: -lis"),
    (["--list", "9000"], "unrecognized arguments"),
    (["stray"], "unrecognized arguments: stray"),
    (["-exit=yes"], "ignored explicit argument"),
    (["-connect", "peer"], "-connect: 'peer': peer 1 ('peer'): missing port"),
    (["-connect", "a:1#xyz"], "exactly 40 hex"),
    (
        ["-tunnel", "1000>example.com:80"],
        "-tunnel: '1000>example.com:80': a path needs",
    ),
    (["-tunnel", "1000>rand>internet"], "'internet' is for -proxy"),
    (["-proxy", "1000>rand>example.com:80"], "use -tunnel for a fixed host:port"),
    (["-exit-allow", "127.0.0.1/32"], "-exit-allow needs -exit"),
    (["-exit", "-exit-allow", "example.com"], "-exit-allow: exit rule 'example.com'"),
    (["-exit", "-no-listen"], "-exit needs a listening relay"),
    (["-advertise", "9000"], "expected IP:PORT"),
    (["-advertise", "0.0.0.0:9000"], "specific IP address"),
    (["-advertise", "relay.example.org:9000"], "must be an IP address"),
    (["-no-listen", "-advertise", "127.0.0.1:1"], "nothing to advertise"),
    (["-console", "host:1"], "-console: listen host 'host'"),
    (["-log-level", "loud"], "-log-level: 'loud' is not one of debug, info"),
    (["-max-datagram-size", "1500"], "1500 is out of range (1200..1452)"),
    (["-max-datagram-size", "1199"], "out of range"),
    (["-max-datagram-size", "big"], "'big' is not a whole number"),
    (["-idle-timeout", "0"], "out of range"),
    (["-idle-timeout", "-5"], "out of range"),
    (["-idle-timeout", "nan"], "out of range"),
    (["-idle-timeout", "inf"], "out of range"),
    (["-idle-timeout", "soon"], "not a number of seconds"),
    (["-data-dir", ""], "expected a path"),
    (["-config", "/nonexistent/gnet.toml"], "cannot read config file"),
    (
        ["-tunnel", "1000>rand>a:1", "-proxy", "localhost:1000>rand>internet"],
        "both listen on port 1000",
    ),
    (["-tunnel", "0.0.0.0:7000>rand>a:1", "-console", "7000"], "both listen on port"),
]


@pytest.mark.parametrize(("argv", "fragment"), BAD_ARGV)
def test_bad_values_raise_config_error(
    env: dict[str, str], argv: list[str], fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(argv, env)
    assert fragment in str(info.value)


def test_distinct_hosts_may_share_a_port(env: dict[str, str]) -> None:
    config = load(["-tunnel", "127.0.0.1:7000>rand>a:1", "-console", "[::1]:7000"], env)
    assert len(config.tunnels) == 1


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# -- config file -----------------------------------------------------------


def test_file_and_cli_override(env: dict[str, str], tmp_path: Path) -> None:
    path = write(
        tmp_path / "node.toml",
        f"""
listen = "127.0.0.1:9001"
bootstrap = ["127.0.0.1:9002#{NODE_HEX}", "127.0.0.1:9003, 127.0.0.1:9004"]
connect = ["127.0.0.1:9005"]
tunnels = ["1000>rand>127.0.0.1:8080"]
proxies = ["1080>rand>internet"]
data_dir = "state"
id = "keys/identity.key"
console = 7000
log_json = true
log_level = "warning"
max_datagram_size = 1300
idle_timeout = 30
exit = {{ enabled = true, allow = ["127.0.0.1/32"] }}
""",
    )
    config = load(["-config", str(path)], env)
    assert config.listen == ("127.0.0.1", 9001)
    assert config.connect == (
        HopAddr("127.0.0.1", 9002, NODE_ID),
        HopAddr("127.0.0.1", 9003),
        HopAddr("127.0.0.1", 9004),
        HopAddr("127.0.0.1", 9005),
    )
    assert config.data_dir == tmp_path / "state"  # relative to the file
    assert config.identity_file == tmp_path / "keys" / "identity.key"
    assert config.console == ("127.0.0.1", 7000)
    assert config.log_json is True
    assert config.log_level == "warning"
    assert config.max_datagram_size == 1300
    assert config.idle_timeout == 30.0
    assert config.exit == ExitConfig(True, (parse_exit_rule("127.0.0.1/32"),))
    assert [t.listen_port for t in config.tunnels] == [1000]

    overridden = load(
        [
            "--config", str(path),
            "-listen", "127.0.0.1:9100",
            "-connect", "127.0.0.1:9200, 127.0.0.1:9003",
            "-tunnel", "2000>rand>127.0.0.1:8081",
            "-exit-allow", "127.0.0.2",
            "-log-level", "error",
            "-idle-timeout", "5",
            "-data-dir", "rel",
        ],
        env,
    )  # fmt: skip
    assert overridden.listen == ("127.0.0.1", 9100)
    # bootstrap from the file stays; -connect replaces the file's connect
    assert overridden.connect == (
        HopAddr("127.0.0.1", 9002, NODE_ID),
        HopAddr("127.0.0.1", 9003),
        HopAddr("127.0.0.1", 9004),
        HopAddr("127.0.0.1", 9200),
    )
    assert [t.listen_port for t in overridden.tunnels] == [2000]
    assert overridden.proxies == config.proxies
    assert overridden.exit == ExitConfig(True, (parse_exit_rule("127.0.0.2"),))
    assert overridden.log_level == "error"
    assert overridden.idle_timeout == 5.0
    assert overridden.data_dir == Path("rel")  # relative to the cwd on the CLI
    assert overridden.identity_file == tmp_path / "keys" / "identity.key"


def test_cli_listen_overrides_file_no_listen(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = write(tmp_path / "c.toml", "no_listen = true\n")
    assert load(["-config", str(path)], env).listen is None
    assert load(["-config", str(path), "-listen", "9001"], env).listen == (
        "0.0.0.0",
        9001,
    )
    path = write(tmp_path / "r.toml", 'listen = "9001"\nno_listen = false\n')
    assert load(["-config", str(path)], env).listen == ("0.0.0.0", 9001)
    assert load(["-config", str(path), "-no-listen"], env).listen is None


def test_exit_shorthand_and_cli_enable(env: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path / "e.toml", "exit = true\n")
    assert load(["-config", str(path)], env).exit == ExitConfig(True, ())
    path = write(tmp_path / "a.toml", '[exit]\nallow = ["127.0.0.1/32"]\n')
    assert load(["-config", str(path)], env).exit.enabled is False
    assert load(["-config", str(path), "-exit"], env).exit == ExitConfig(
        True, (parse_exit_rule("127.0.0.1/32"),)
    )


BAD_FILES = [
    ("listen = 9000\nlisen = 1\n", "unknown key 'lisen' (did you mean 'listen'?)"),
    ("tunnel = []\n", "unknown key 'tunnel' (did you mean 'tunnels'?)"),
    ("config = 'x.toml'\n", "unknown key 'config'"),
    ("[exit]\nenabled = true\nlog_level = 'debug'\n", "keys written after an [exit]"),
    ("exit = { enable = true }\n", "unknown key 'exit.enable'"),
    ("exit = 'yes'\n", "expected a table"),
    ("exit = { enabled = 1 }\n", "key 'exit.enabled'"),
    ("exit = { enabled = true, allow = ['10.0.0.1/8'] }\n", "host bits set"),
    ("listen = true\n", "key 'listen'"),
    ("listen = '9000'\nno_listen = true\n", "exclude each other"),
    ("no_listen = 'yes'\n", "expected true or false, got a string"),
    ("log_json = 1\n", "expected true or false, got an integer"),
    ("max_datagram_size = true\n", "expected a whole number, got a boolean"),
    ("max_datagram_size = 1300.5\n", "expected a whole number, got a float"),
    ("idle_timeout = '60s'\n", "not a number of seconds"),
    ("tunnels = 5\n", "expected a list of strings, got an integer"),
    ("tunnels = [5]\n", "found an integer 5"),
    ("tunnels = ['1000>example.com:80']\n", "a path needs at least one hop"),
    ("proxies = ['1080>rand>1.2.3.4:80']\n", "proxy's target is internet"),
    ("bootstrap = ['peer']\n", "key 'bootstrap'"),
    ("connect = ['peer:0']\n", "port 0 is out of range"),
    ("log_level = 'verbose'\n", "is not one of"),
    ("advertise = 9000\n", "expected IP:PORT"),
    ("data_dir = 5\n", "expected a string"),
    ("listen = \n", "not valid TOML"),
    ("tunnels = [" + "'1000>rand>a:1', " * 257 + "]\n", "more than 256 entries"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_FILES)
def test_bad_files(
    env: dict[str, str], tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load(["-config", str(path)], env)
    assert fragment in str(info.value)
    assert str(path) in str(info.value) or "exclude" not in fragment


def test_file_errors_name_the_file(env: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "log_level = 'loud'\n")
    with pytest.raises(ConfigError, match=r"key 'log_level' in .*bad\.toml"):
        load(["-config", str(path)], env)


def test_not_utf8(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"log_level = '\xe9'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(["-config", str(path)], env)


def test_directory_as_config(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(["-config", str(tmp_path)], env)


@pytest.mark.parametrize("name", ["relay.toml", "exit.toml", "client.toml"])
def test_example_configs_load(env: dict[str, str], name: str) -> None:
    config = load(["-config", str(REPO / "configs" / name)], env)
    if name == "client.toml":
        assert config.listen is None
        assert config.proxies and isinstance(config.proxies[0].target, TargetInternet)
    else:
        assert config.listen == ("0.0.0.0", 9000)
    assert config.exit.enabled is (name == "exit.toml")


FLAG_NAMES = [
    "listen", "no-listen", "connect", "id", "print-id", "data-dir", "tunnel", "proxy",
    "proxy-auth", "proxy-timeout",
    "exit", "exit-allow", "advertise", "console", "log-json", "log-level",
    "max-datagram-size", "idle-timeout", "version",
]  # fmt: skip
VALUES = [
    "9000", "0", "127.0.0.1:9001", "[::1]:1", "x", "", "-", "--", "1e9", "nan",
    "1000>rand>internet", "1000>rand>a:1", f"2222>[{SERVICE_NAME}]>h:1", "127.0.0.1/32",
    "peer:9000, peer2:9000", "debug", "1300", "5", "-5", "=", "a=b",
]  # fmt: skip
tokens = st.one_of(
    st.sampled_from(FLAG_NAMES).flatmap(
        lambda n: st.sampled_from([f"-{n}", f"--{n}", f"-{n}=9000", f"-{n[:3]}"])
    ),
    st.sampled_from(VALUES),
    st.text(max_size=12).filter(lambda t: t not in ("-h", "-help", "--help")),
)


@given(st.lists(tokens, max_size=8))
def test_any_argv_gives_config_or_config_error(argv: list[str]) -> None:
    try:
        load_config(argv, env={"GNET_DATA_DIR": "/nonexistent/gnet-test"})
    except ConfigError:
        pass


# -- proxy auth and timeout ------------------------------------------------------


def test_proxy_auth_and_timeout_from_a_file(env: dict[str, str], tmp_path: Path) -> None:
    path = write(
        tmp_path / "client.toml",
        'proxies = ["9050>rand>internet"]\nproxy_auth = "bob:pa ss"\nproxy_timeout = 12\n',
    )
    config = load(["-config", str(path)], env)
    assert config.proxy_auth == ProxyAuth("bob", "pa ss")
    assert config.proxy_timeout == 12.0
    assert load(["-config", str(path), "-proxy-auth", "carol:x"], env).proxy_auth == ProxyAuth("carol", "x")


def test_proxy_auth_password_is_not_printed(env: dict[str, str]) -> None:
    config = load(["-proxy", "9050>rand>internet", "-proxy-auth", "alice:hunter2"], env)
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-proxy", "9050>rand>internet", "-proxy-auth", "alice"], "expected USER:PASS"),
        (["-proxy", "9050>rand>internet", "-proxy-auth", ":pw"], "expected USER:PASS"),
        (["-proxy", "9050>rand>internet", "-proxy-auth", "alice:"], "expected USER:PASS"),
        (["-proxy", "9050>rand>internet", "-proxy-auth", "a" * 256 + ":pw"], "longer than 255 bytes"),
        (["-proxy", "9050>rand>internet", "-proxy-auth", "al\tice:pw"], "control character"),
        (["-proxy-auth", "alice:pw"], "-proxy-auth needs a -proxy"),
        (["-proxy-timeout", "0"], "out of range"),
        (["-proxy-timeout", "soon"], "not a number of seconds"),
    ],
)
def test_proxy_auth_and_timeout_errors(env: dict[str, str], argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(argv, env)
