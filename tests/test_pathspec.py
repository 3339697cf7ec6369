"""Path specs (globalnet.wire.pathspec): examples, round trips, errors, fuzzing."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from globalnet.wire.host_port import PathSpecError, parse_listen
from globalnet.wire.pathspec import (
    MAX_HOPS,
    NEVER_LOOKED_UP_TLDS,
    HopAddr,
    HopId,
    HopRandom,
    PathSpec,
    TargetInternet,
    TargetService,
    TargetTcp,
    format_path_spec,
    parse_hop_addr,
    parse_path_spec,
    parse_peer_list,
)

NODE_HEX = "0123456789abcdef0123456789abcdef01234567"
NODE_ID = bytes.fromhex(NODE_HEX)
SERVICE = "abcdefghijklmnopqrstuvwxyz234567"  # valid base32


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing is sans-IO: any name lookup is a bug."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"DNS lookup attempted: {args!r}")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        monkeypatch.setattr(socket, name, refuse)


# -- valid specs -----------------------------------------------------------

VALID = [
    (
        "localhost:1000>peer1:9000>peer2:8080>peer3:9000>example.com:80",
        PathSpec(
            "127.0.0.1",
            1000,
            (HopAddr("peer1", 9000), HopAddr("peer2", 8080), HopAddr("peer3", 9000)),
            TargetTcp("example.com", 80),
        ),
    ),
    (
        f"2222>[{SERVICE}]>192.168.0.2:22",
        PathSpec(
            "127.0.0.1",
            2222,
            (),
            TargetService(f"{SERVICE}.gnet", TargetTcp("192.168.0.2", 22)),
        ),
    ),
    (
        "8080>rand>rand>rand>rand>rand>internet",
        PathSpec("127.0.0.1", 8080, (HopRandom(),) * 5, TargetInternet()),
    ),
    (
        f"1000>127.0.0.1:9001>127.0.0.1:9002#{NODE_HEX}>127.0.0.1:9003>127.0.0.1:8080",
        PathSpec(
            "127.0.0.1",
            1000,
            (
                HopAddr("127.0.0.1", 9001),
                HopAddr("127.0.0.1", 9002, NODE_ID),
                HopAddr("127.0.0.1", 9003),
            ),
            TargetTcp("127.0.0.1", 8080),
        ),
    ),
    (
        "[::1]:1000>[::1]:9001#" + NODE_HEX.upper() + ">[2001:DB8::1]:80",
        PathSpec(
            "::1", 1000, (HopAddr("::1", 9001, NODE_ID),), TargetTcp("2001:db8::1", 80)
        ),
    ),
    (
        " 1000 > 127.0.0.1:9001 >\trand > 127.0.0.1:8080 ",
        PathSpec(
            "127.0.0.1",
            1000,
            (HopAddr("127.0.0.1", 9001), HopRandom()),
            TargetTcp("127.0.0.1", 8080),
        ),
    ),
    (
        f"127.0.0.1:0>{NODE_HEX}>{SERVICE.upper()}.GNET",
        PathSpec("127.0.0.1", 0, (HopId(NODE_ID),), TargetService(f"{SERVICE}.gnet")),
    ),
    (
        "0.0.0.0:1080>rand>[abc.gnet]",
        PathSpec("0.0.0.0", 1080, (HopRandom(),), TargetService("abc.gnet")),
    ),
    (
        "1000>rand>abc.gnet>localhost:22",
        PathSpec(
            "127.0.0.1",
            1000,
            (HopRandom(),),
            TargetService("abc.gnet", TargetTcp("localhost", 22)),
        ),
    ),
    (
        "1000>Relay-1.Example.ORG:9000>rand>[::1]:8080",
        PathSpec(
            "127.0.0.1",
            1000,
            (HopAddr("relay-1.example.org", 9000), HopRandom()),
            TargetTcp("::1", 8080),
        ),
    ),
    (
        "1000>rand>internet",  # keywords are case-insensitive
        PathSpec("127.0.0.1", 1000, (HopRandom(),), TargetInternet()),
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_parse_valid(text: str, expected: PathSpec) -> None:
    spec = parse_path_spec(text)
    assert spec == expected
    assert parse_path_spec(format_path_spec(spec)) == spec


def test_format_is_canonical() -> None:
    spec = parse_path_spec(
        f"localhost:1000 > [::1]:9001#{NODE_HEX.upper()} > RAND > [{SERVICE}] > h:1"
    )
    assert format_path_spec(spec) == (
        f"127.0.0.1:1000>[::1]:9001#{NODE_HEX}>rand>{SERVICE}.gnet>h:1"
    )


def test_max_hops_is_accepted() -> None:
    spec = parse_path_spec("1000>" + "rand>" * MAX_HOPS + "internet")
    assert len(spec.hops) == MAX_HOPS


# -- bad specs -------------------------------------------------------------

LONG_LABEL = "a" * 64
LONG_NAME = ".".join(["abcdefghi"] * 26)  # 259 characters

BAD = [
    ("", "empty"),
    ("   ", "empty"),
    ("1000", "has no '>'"),
    ("1000>example.com:80", "at least one hop"),
    ("8080>internet", "at least one hop"),
    ("1000>>a:1>b:2", "element 2 of the path spec is empty"),
    ("1000>a:1>b:2>", "element 4 of the path spec is empty"),
    ("1000>peer1>b:2", "did you mean 'peer1:9000'"),
    ("1000>peer1>b:2", "hop 1 (element 2, 'peer1')"),
    ("1000>a:0>b:2", "port 0 is out of range"),
    ("1000>a:65536>b:2", "port 65536 is out of range"),
    ("1000>a:1>b:99999", "out of range"),
    ("1000>a:x>b:2", "is not a number"),
    ("1000>a:>b:2", "missing port"),
    ("1000>:1>b:2", "missing host"),
    ("1000>a:1#abc>b:2", "exactly 40 hex"),
    (f"1000>a:1#{NODE_HEX}00>b:2", "exactly 40 hex"),
    ("1000>" + NODE_HEX[:38] + ">b:2", "(got 38)"),
    ("1000>::1:9000>b:2", "must be in brackets"),
    ("1000>[::1]>b:2", "missing port"),
    ("1000>[::1>b:2", "missing ']'"),
    ("1000>[::1]9000>b:2", "expected ':PORT' after ']'"),
    ("1000>[::g]:1>b:2", "not a valid IPv6 address"),
    ("1000>a:1>[fe80::1%eth0]:80", "zone ids"),
    ("1000>a:1>internet>b:2", "'internet' can only be the last element"),
    ("1000>a:1>rand", "'rand' is a hop"),
    (f"1000>a:1>{NODE_HEX}", "a node id is a hop, not a target"),
    ("1000>abc.gnet>a:1>b:2", "hidden service can only be the target"),
    ("1000>[abc]>a:1>b:2", "hidden service can only be the target"),
    ("1000>a:1>xyz.gnet:80", "names a hidden service"),
    ("1000>a:1>[abc1]", "base32"),
    ("1000>a:1>" + "a" * 101 + ".gnet", "base32"),
    ("1000>a:1>.gnet", "base32"),
    (f"1000>a:1>b:2#{NODE_HEX}", "pin belongs on hops"),
    (f"1000>[{SERVICE}]>rand", "after the service"),
    ("example.com:1000>a:1>b:2", "must be an IP address or localhost"),
    ("example.com:1000>a:1>b:2", "listen part"),
    ("70000>a:1>b:2", "out of range"),
    ("-1>a:1>b:2", "listen part"),
    ("1000>a b:1>c:2", "contains whitespace"),
    ("1000>a:1>\u00e9t\u00e9.com:80", "non-ASCII"),
    ("1000>a\x00:1>b:2", "control character"),
    ("1000>a:1>b:2\n", "contains whitespace"),
    ("1000>" + "rand>" * (MAX_HOPS + 1) + "internet", f"at most {MAX_HOPS} hops"),
    ("1000>" + "a" * 4096, "longer than 4096"),
    ("1000>-bad-.com:1>b:2", "invalid label"),
    ("1000>a_b.com:1>b:2", "invalid label"),
    (f"1000>a:1>{LONG_LABEL}.com:80", "invalid label"),
    (f"1000>a:1>{LONG_NAME}:80", "longer than 253"),
    ("1000>a..b:1>b:2", "empty label"),
    ("1000>a:1>example.com.:80", "empty label"),
    ("1000>a:1>127.1:80", "neither a valid IP address nor a host name"),
    ("1000>a:1>1.2.3.256:80", "neither a valid IP address nor a host name"),
    ("1000>a:1>0x7f.1:80", "neither a valid IP address nor a host name"),
    ("1000>a:1>01.2.3.4:80", "neither a valid IP address nor a host name"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD)
def test_parse_bad(text: str, fragment: str) -> None:
    with pytest.raises(PathSpecError) as info:
        parse_path_spec(text)
    assert fragment in str(info.value)
    assert len(str(info.value)) < 400  # messages quote input, shortened


@pytest.mark.parametrize(
    "element",
    [
        "[" + "1:" * 1000 + "]",
        "[" + "1:" * 1000 + "]:1",
        "a" * 3000 + ":1",
        "[::1%" + "e" * 3000 + "]:1",
    ],
)
def test_messages_stay_short(element: str) -> None:
    with pytest.raises(PathSpecError) as info:
        parse_path_spec(f"1000>{element}>b:2")
    assert len(str(info.value)) < 300


def test_not_text_is_a_path_spec_error() -> None:
    with pytest.raises(PathSpecError):
        parse_path_spec(b"1000>a:1>b:2")  # type: ignore[arg-type]


# -- hop addresses, peer lists, listen addresses ------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("peer:9000", HopAddr("peer", 9000)),
        (" 10.0.0.1:1 ", HopAddr("10.0.0.1", 1)),
        (f"[::1]:9001#{NODE_HEX}", HopAddr("::1", 9001, NODE_ID)),
        (
            f"boot.example.org:15441#{NODE_HEX}",
            HopAddr("boot.example.org", 15441, NODE_ID),
        ),
        ("localhost:65535", HopAddr("localhost", 65535)),
    ],
)
def test_parse_hop_addr(text: str, expected: HopAddr) -> None:
    assert parse_hop_addr(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("peer", "missing port"),
        ("peer:9000#", "exactly 40 hex"),
        ("rand", "missing port"),
        ("x.gnet:1", "names a hidden service"),
        ("a:1>b:2", "contains"),
    ],
)
def test_parse_hop_addr_bad(text: str, fragment: str) -> None:
    with pytest.raises(PathSpecError, match=fragment):
        parse_hop_addr(text)


def test_parse_peer_list() -> None:
    assert parse_peer_list("peer:9000, peer2:9000") == [
        HopAddr("peer", 9000),
        HopAddr("peer2", 9000),
    ]
    assert parse_peer_list(f" a:1 ,, [::1]:2#{NODE_HEX} , ") == [
        HopAddr("a", 1),
        HopAddr("::1", 2, NODE_ID),
    ]
    assert parse_peer_list("") == []


def test_parse_peer_list_names_the_bad_peer() -> None:
    with pytest.raises(PathSpecError, match=r"peer 2 \('peer2'\): missing port"):
        parse_peer_list("peer:9000, peer2")


@pytest.mark.parametrize(
    ("text", "default_host", "expected"),
    [
        ("1000", "127.0.0.1", ("127.0.0.1", 1000)),
        ("9000", "0.0.0.0", ("0.0.0.0", 9000)),
        ("0", "127.0.0.1", ("127.0.0.1", 0)),
        ("localhost:1000", "0.0.0.0", ("127.0.0.1", 1000)),
        ("LOCALHOST:1000", "0.0.0.0", ("127.0.0.1", 1000)),
        ("127.0.0.1:1000", "0.0.0.0", ("127.0.0.1", 1000)),
        ("0.0.0.0:9000", "127.0.0.1", ("0.0.0.0", 9000)),
        ("[::1]:1000", "127.0.0.1", ("::1", 1000)),
        ("[::]:1000", "127.0.0.1", ("::", 1000)),
    ],
)
def test_parse_listen(text: str, default_host: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text, default_host) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("example.com:80", "must be an IP address or localhost"),
        ("localhost", "missing port"),
        ("65536", "out of range"),
        ("1.2.3.4:", "missing port"),
        ("::1:1000", "must be in brackets"),
        ("1000 2000", "whitespace"),
    ],
)
def test_parse_listen_bad(text: str, fragment: str) -> None:
    with pytest.raises(PathSpecError, match=fragment):
        parse_listen(text)


# -- property tests --------------------------------------------------------

FRAGMENTS = [
    ">", " > ", ":", "[", "]", "#", ",", ".", "-", " ", "\t", "\x00", "\u00e9",
    "1000", "0", "65535", "65536", "9000", "localhost", "127.0.0.1", "::1", "::",
    "rand", "RAND", "internet", "example", "com", ".gnet", "abc", "a2z7",
    NODE_HEX, NODE_HEX[:20], "%eth0", "/", "0x7f", "1", "a" * 64,
]  # fmt: skip

LISTENS = ["1000", "localhost:1000", "[::1]:0", "0.0.0.0:8080"]
HOPS = ["rand", "127.0.0.1:9001", f"h:1#{NODE_HEX}", NODE_HEX, "[::1]:9"]
TARGETS = ["internet", "abc.gnet", "[abc]>h:22", "[::1]:80", "example.com:80"]
SEPARATORS = [">"] * 8 + [" > ", ">>", ""]
junk = st.lists(st.sampled_from(FRAGMENTS), max_size=4).map("".join)


def _mostly(valid: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(*[st.sampled_from(valid)] * 9, junk)


# Mostly well-formed specs with junk mixed in: every branch of the parser runs.
near_specs = st.tuples(
    _mostly(LISTENS),
    st.lists(st.tuples(st.sampled_from(SEPARATORS), _mostly(HOPS)), max_size=6),
    st.sampled_from(SEPARATORS),
    _mostly(TARGETS),
).map(lambda t: t[0] + "".join(sep + hop for sep, hop in t[1]) + t[2] + t[3])


def _parse_or_error(text: str) -> PathSpec | None:
    try:
        spec = parse_path_spec(text)
    except PathSpecError:
        return None
    assert parse_path_spec(format_path_spec(spec)) == spec
    return spec


@given(st.text(max_size=300))
def test_arbitrary_text_only_raises_path_spec_error(text: str) -> None:
    _parse_or_error(text)


@given(near_specs)
def test_near_valid_text_only_raises_path_spec_error(text: str) -> None:
    _parse_or_error(text)


@given(st.one_of(st.text(max_size=100), near_specs))
def test_other_parsers_only_raise_path_spec_error(text: str) -> None:
    for parse in (parse_hop_addr, parse_peer_list, parse_listen):
        try:
            parse(text)
        except PathSpecError:
            pass


ports = st.integers(1, 65535)
node_ids = st.binary(min_size=20, max_size=20)
names = st.from_regex(
    r"[a-z][a-z0-9-]{0,8}[a-z0-9](\.[a-z][a-z0-9]{0,10}){0,3}", fullmatch=True
).filter(lambda n: not n.endswith(".gnet") and n.rpartition(".")[2] not in NEVER_LOOKED_UP_TLDS)
hosts = st.one_of(
    names,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
listen_hosts = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
tcp_targets = st.builds(TargetTcp, hosts, ports)
hops = st.one_of(
    st.builds(HopAddr, hosts, ports, st.one_of(st.none(), node_ids)),
    st.builds(HopId, node_ids),
    st.just(HopRandom()),
)
services = st.builds(
    TargetService,
    st.from_regex(r"[a-z2-7]{1,100}", fullmatch=True).map(lambda n: n + ".gnet"),
    st.one_of(st.none(), tcp_targets),
)


@st.composite
def path_specs(draw: st.DrawFn) -> PathSpec:
    target = draw(st.one_of(tcp_targets, st.just(TargetInternet()), services))
    min_hops = 0 if isinstance(target, TargetService) else 1
    hop_list = draw(st.lists(hops, min_size=min_hops, max_size=MAX_HOPS))
    return PathSpec(
        draw(listen_hosts), draw(st.integers(0, 65535)), tuple(hop_list), target
    )


@given(path_specs())
def test_generated_specs_round_trip(spec: PathSpec) -> None:
    text = format_path_spec(spec)
    assert parse_path_spec(text) == spec
    spaced = text.replace(">", " > ")
    assert parse_path_spec(spaced) == spec


@pytest.mark.parametrize("text", ["abc.onion:9000", "relay.ONION:9000", "x.invalid:9000#" + "ab" * 20])
def test_a_relay_under_onion_or_invalid_is_refused_before_any_lookup(text: str) -> None:
    # a .onion relay name would go to the dialling node's resolver (RFC 7686 forbids it)
    with pytest.raises(PathSpecError, match="never looked up"):
        parse_hop_addr(text)
    with pytest.raises(PathSpecError, match="never looked up"):
        parse_path_spec(f"1000>{text}>127.0.0.1:80")


@pytest.mark.parametrize("text", ["relay.local:9000", "relay.internal:9000", "localhost:9000", "onion.example.org:9000"])
def test_lan_and_lab_relay_names_stay_allowed(text: str) -> None:
    assert parse_hop_addr(text).port == 9000
