"""The exit ACL (globalnet.policy.exit_policy)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from globalnet.policy.exit_policy import ExitDecision, ExitPolicy
from globalnet.policy.exit_rule import ExitRule, parse_exit_rule
from globalnet.policy.target_name import target_name_problem


def _policy(*rules: str, enabled: bool = True) -> ExitPolicy:
    return ExitPolicy(enabled, [parse_exit_rule(rule) for rule in rules])


def _check(policy: ExitPolicy, address: str, port: int) -> ExitDecision:
    return policy.check(ipaddress.ip_address(address), port)


# -- rules -----------------------------------------------------------------

V4 = ipaddress.IPv4Network
V6 = ipaddress.IPv6Network


@pytest.mark.parametrize(
    ("text", "network", "ports"),
    [
        ("127.0.0.1/32", V4("127.0.0.1/32"), None),
        ("127.0.0.1", V4("127.0.0.1/32"), None),
        ("0.0.0.0/0:80,443", V4("0.0.0.0/0"), {80, 443}),
        ("10.0.0.0/8:1000-2000,22", V4("10.0.0.0/8"), {22, *range(1000, 2001)}),
        ("10.0.0.0/8:22, 80", V4("10.0.0.0/8"), {22, 80}),
        ("1.2.3.4:80", V4("1.2.3.4/32"), {80}),
        ("1.2.3.4/32:*", V4("1.2.3.4/32"), None),
        ("1.2.3.4:1-65535", V4("1.2.3.4/32"), None),  # every port is "*"
        ("::1/128", V6("::1/128"), None),
        ("::1", V6("::1/128"), None),
        ("[::1]/128:80", V6("::1/128"), {80}),
        ("[::1]:80", V6("::1/128"), {80}),
        ("[::1/128]:80", V6("::1/128"), {80}),
        ("::1/128:80", V6("::1/128"), {80}),
        ("[2000::]/3:443", V6("2000::/3"), {443}),
        ("fe80::/10", V6("fe80::/10"), None),
        # an IPv4-mapped rule is the IPv4 rule it stands for
        ("::ffff:127.0.0.1", V4("127.0.0.1/32"), None),
        ("::ffff:0:0/96:80", V4("0.0.0.0/0"), {80}),
    ],
)
def test_parse_exit_rule(text: str, network: object, ports: set[int] | None) -> None:
    rule = parse_exit_rule(text)
    assert rule.network == network
    assert rule.ports == (None if ports is None else frozenset(ports))
    assert parse_exit_rule(str(rule)) == rule


def test_rule_text_is_compact() -> None:
    assert str(parse_exit_rule("10.0.0.0/8:22,1000-2000,21,23")) == (
        "10.0.0.0/8:21-23,1000-2000"
    )
    assert str(parse_exit_rule("[::1]:80")) == "[::1]/128:80"
    assert str(parse_exit_rule("127.0.0.1")) == "127.0.0.1/32:*"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("example.com", "is not an IP address"),
        ("localhost/32", "is not an IP address"),
        ("10.0.0.1/8", "host bits set; did you mean 10.0.0.0/8?"),
        ("1.2.3.4/33", "prefix length 33 is more than 32"),
        ("::1/129", "prefix length 129 is more than 128"),
        ("1.2.3.4/x", "bad prefix length"),
        ("1.2.3.4/", "bad prefix length"),
        ("1.2.3.4:0", "port 0 is out of range"),
        ("1.2.3.4:70000", "port 70000 is out of range"),
        ("1.2.3.4:5-3", "backwards"),
        ("1.2.3.4:", "missing ports"),
        ("1.2.3.4:80,", "bad port item"),
        ("1.2.3.4:http", "bad port item"),
        ("1.2.3.4:-80", "bad port item"),
        ("[::1", "missing ']'"),
        ("[::1]x", "expected ':PORTS'"),
        ("fe80::1%eth0", "zone ids"),
        ("1.2.3.4\n/8", "not allowed"),
        ("1.2.3.4:\u0668", "not allowed"),  # an Arabic-Indic digit
        ("1.2.3.4/" + "0" * 5000, "longer than"),
    ],
)
def test_parse_exit_rule_bad(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_exit_rule(text)


@given(st.text(max_size=60))
def test_arbitrary_rule_text_only_raises_value_error(text: str) -> None:
    try:
        rule = parse_exit_rule(text)
    except ValueError:
        return
    assert parse_exit_rule(str(rule)) == rule


# -- decisions -------------------------------------------------------------

NO_RULES: tuple[str, ...] = ()
LOCAL = ("127.0.0.1/32",)
WEB = ("0.0.0.0/0:80,443",)
LAN = ("10.0.0.0/8:1000-2000,22",)

CASES = [
    # enabled, no rules: every public address and port, no special ones
    (NO_RULES, "8.8.8.8", 80, True),
    (NO_RULES, "8.8.8.8", 25, True),
    (NO_RULES, "2606:4700:4700::1111", 443, True),
    (NO_RULES, "64:ff9b::808:808", 443, True),  # NAT64 of a public address
    (NO_RULES, "127.0.0.1", 80, False),
    (NO_RULES, "127.255.255.254", 80, False),
    (NO_RULES, "::1", 80, False),
    (NO_RULES, "::ffff:127.0.0.1", 80, False),  # IPv4-mapped loopback
    (NO_RULES, "::ffff:10.0.0.1", 80, False),
    (NO_RULES, "64:ff9b::7f00:1", 80, False),  # NAT64 of loopback
    (NO_RULES, "2002:7f00:1::1", 80, False),  # 6to4 of loopback
    (NO_RULES, "::127.0.0.1", 80, False),  # IPv4-compatible (deprecated)
    (NO_RULES, "10.1.2.3", 443, False),
    (NO_RULES, "172.16.0.1", 443, False),
    (NO_RULES, "172.31.255.255", 443, False),
    (NO_RULES, "192.168.1.1", 443, False),
    (NO_RULES, "169.254.169.254", 80, False),  # cloud metadata: link-local
    (NO_RULES, "224.0.0.1", 80, False),
    (NO_RULES, "239.255.255.250", 1900, False),
    (NO_RULES, "100.64.0.1", 80, False),
    (NO_RULES, "100.127.255.255", 80, False),
    (NO_RULES, "0.0.0.0", 80, False),
    (NO_RULES, "0.1.2.3", 80, False),
    (NO_RULES, "255.255.255.255", 80, False),
    (NO_RULES, "240.0.0.1", 80, False),
    (NO_RULES, "192.0.2.1", 80, False),
    (NO_RULES, "198.18.0.1", 80, False),
    (NO_RULES, "::", 80, False),
    (NO_RULES, "fe80::1", 80, False),
    (NO_RULES, "fc00::1", 80, False),
    (NO_RULES, "fd12:3456::1", 80, False),
    (NO_RULES, "fec0::1", 80, False),
    (NO_RULES, "ff02::1", 80, False),
    (NO_RULES, "2001:db8::1", 80, False),
    (NO_RULES, "2001::1", 80, False),  # Teredo
    (NO_RULES, "5f00::1", 80, False),  # outside 2000::/3
    # an explicit rule opens a denied address, and only that
    (LOCAL, "127.0.0.1", 9000, True),
    (LOCAL, "::ffff:127.0.0.1", 9000, True),
    (LOCAL, "127.0.0.2", 9000, False),
    (LOCAL, "8.8.8.8", 80, False),  # rules given: allow-list
    (LOCAL, "::1", 9000, False),
    (("127.0.0.0/8:8000-8100",), "127.0.0.5", 8050, True),
    (("127.0.0.0/8:8000-8100",), "127.0.0.5", 8101, False),
    (("::1/128",), "::1", 80, True),
    (("[::1]/128:80",), "::1", 80, True),
    (("[::1]/128:80",), "::1", 81, False),
    (("::ffff:127.0.0.1",), "127.0.0.1", 80, True),
    (("169.254.169.254",), "169.254.169.254", 80, True),
    # a broad rule never opens a denied range by accident
    (WEB, "8.8.8.8", 443, True),
    (WEB, "8.8.8.8", 80, True),
    (WEB, "8.8.8.8", 25, False),
    (WEB, "127.0.0.1", 80, False),
    (WEB, "10.0.0.1", 80, False),
    (WEB, "::ffff:127.0.0.1", 80, False),
    (WEB, "2606:4700::1", 80, False),  # an IPv4 rule says nothing of IPv6
    (("0.0.0.0/0",), "127.0.0.1", 80, False),
    (("::/0",), "::1", 80, False),
    (("::/0",), "::ffff:127.0.0.1", 80, False),
    (("10.0.0.0/7",), "10.0.0.1", 80, False),  # wider than 10/8
    (("10.0.0.0/7",), "11.0.0.1", 80, True),
    # port lists and ranges
    (LAN, "10.1.1.1", 1500, True),
    (LAN, "10.1.1.1", 1000, True),
    (LAN, "10.1.1.1", 2000, True),
    (LAN, "10.1.1.1", 22, True),
    (LAN, "10.1.1.1", 999, False),
    (LAN, "10.1.1.1", 2001, False),
    (LAN, "11.0.0.1", 1500, False),
    (LAN + WEB, "8.8.8.8", 443, True),
    (LAN + WEB, "10.2.3.4", 22, True),
    (LAN + WEB, "10.2.3.4", 443, False),
]


@pytest.mark.parametrize(("rules", "address", "port", "allowed"), CASES)
def test_check(rules: tuple[str, ...], address: str, port: int, allowed: bool) -> None:
    decision = _check(_policy(*rules), address, port)
    assert decision.allowed is allowed, decision.reason
    assert decision.reason


@pytest.mark.parametrize(
    ("rules", "address", "port", "reason"),
    [
        (NO_RULES, "127.0.0.1", 80, "127.0.0.1 is a loopback address, refused by exit policy"),
        (NO_RULES, "::ffff:127.0.0.1", 80, "::ffff:127.0.0.1 maps to 127.0.0.1, a loopback address, refused by exit policy"),
        (NO_RULES, "10.0.0.1", 80, "10.0.0.1 is a private address, refused by exit policy"),
        (NO_RULES, "169.254.1.1", 80, "169.254.1.1 is a link-local address, refused by exit policy"),
        (NO_RULES, "224.0.0.1", 80, "224.0.0.1 is a multicast address, refused by exit policy"),
        (NO_RULES, "100.64.0.1", 80, "100.64.0.1 is a shared (CGNAT) address, refused by exit policy"),
        (NO_RULES, "fe80::1", 80, "fe80::1 is a link-local address, refused by exit policy"),
        (NO_RULES, "::", 80, ":: is an unspecified address, refused by exit policy"),
        (WEB, "8.8.8.8", 25, "port 25 is not allowed by exit policy"),
        (LOCAL, "8.8.8.8", 80, "8.8.8.8 is not allowed by exit policy"),
        (("127.0.0.1:80",), "127.0.0.1", 25, "port 25 is not allowed by exit policy for 127.0.0.1"),
        (LOCAL, "127.0.0.1", 80, "127.0.0.1 is allowed by exit rule 127.0.0.1/32:*"),
    ],
)  # fmt: skip
def test_reasons(rules: tuple[str, ...], address: str, port: int, reason: str) -> None:
    assert _check(_policy(*rules), address, port).reason == reason


def test_disabled_refuses_everything() -> None:
    policy = ExitPolicy()
    assert not policy.enabled
    for address in ("8.8.8.8", "127.0.0.1", "2606:4700::1"):
        assert _check(policy, address, 80) == ExitDecision(
            False, "this node is not an exit"
        )
    assert _check(_policy(*LOCAL, enabled=False), "127.0.0.1", 80).allowed is False


@pytest.mark.parametrize("port", [0, -1, 65536, True])
def test_bad_port_is_refused(port: int) -> None:
    decision = _check(_policy(), "8.8.8.8", port)
    assert not decision.allowed
    assert "not a valid port" in decision.reason


def test_check_takes_resolved_addresses_only() -> None:
    with pytest.raises(TypeError):
        _policy().check("example.com", 80)  # type: ignore[arg-type]


def test_summary() -> None:
    assert ExitPolicy().summary() == "reject *"
    assert _policy(*LOCAL, enabled=False).summary() == "reject *"
    assert _policy().summary() == "accept public:*"
    assert _policy(*LOCAL).summary() == "accept 127.0.0.1/32:*"
    assert _policy("0.0.0.0/0:80,443", "[::1]:22").summary() == (
        "accept 0.0.0.0/0:80,443 [::1]/128:22"
    )
    many = _policy(*(f"10.0.{i}.0/24:{1000 + i}" for i in range(200)))
    assert len(many.summary()) <= 255
    assert many.summary().endswith(" ...")


def test_may_exit_to_port() -> None:
    assert not ExitPolicy().may_exit_to_port(80)
    assert _policy().may_exit_to_port(25)
    assert _policy(*LOCAL).may_exit_to_port(9000)
    assert _policy(*WEB).may_exit_to_port(443)
    assert not _policy(*WEB).may_exit_to_port(25)
    assert not _policy().may_exit_to_port(0)


def test_policy_value_semantics() -> None:
    rules = [parse_exit_rule("127.0.0.1")]
    assert ExitPolicy(True, rules) == ExitPolicy(True, tuple(rules))
    assert ExitPolicy(True, rules) != ExitPolicy(False, rules)
    assert ExitPolicy(True, rules).allow == (ExitRule(V4("127.0.0.1/32")),)
    assert "127.0.0.1/32" in repr(ExitPolicy(True, rules))


# -- properties ------------------------------------------------------------

addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@given(addresses, st.integers(1, 65535))
def test_never_allows_what_ipaddress_calls_non_global(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    decision = _policy().check(address, port)
    if not address.is_global or address.is_multicast or address.is_loopback:
        assert not decision.allowed, decision.reason


@given(st.ip_addresses(v=4), st.integers(1, 65535))
def test_mapped_is_judged_as_ipv4(address: ipaddress.IPv4Address, port: int) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    for policy in (_policy(), _policy(*LOCAL), _policy(*WEB)):
        assert policy.check(mapped, port).allowed == policy.check(address, port).allowed


# -- names an exit will resolve -------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost.", "Example.ORG", "a-b.c_d.example.org", "127.0.0.1", "::1", "x" * 63 + ".com", ("a." * 126) + "b"],
)
def test_target_names_an_exit_resolves(host: str) -> None:
    assert target_name_problem(host) is None


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("", "empty"),
        (".", "empty"),
        ("bad..name", "empty label"),
        (".leading", "empty label"),
        ("-dash.example", "not a valid host name"),
        ("dash-.example", "not a valid host name"),
        ("sp ace.example", "not a valid host name"),
        ("evil\x00.example", "not a valid host name"),
        ("bücher.de", "not a valid host name"),
        ("x" * 64 + ".com", "not a valid host name"),
        ("a." * 127 + "b", "longer than 253"),
        ("abcdef.gnet", "hidden service"),
        ("abcdef.GNET.", "hidden service"),
    ],
)
def test_target_names_an_exit_refuses_without_dns(host: str, why: str) -> None:
    problem = target_name_problem(host)
    assert problem is not None and why in problem
    assert host.strip(".") == "" or host not in problem  # the reason does not repeat the name


# -- what an exit refuses before its resolver sees anything ----------------------


@pytest.mark.parametrize(
    "host",
    ["no-such-host.invalid", "printer.local", "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion",
     "a.localhost", "x.test", "www.example", "db.internal", "router.home.arpa", "abc.gnet"],
)
def test_reserved_names_are_never_resolved(host: str) -> None:
    assert target_name_problem(host) is not None


def test_a_name_is_resolved_only_when_some_rule_could_allow_the_answer() -> None:
    loopback_only = ExitPolicy(True, [parse_exit_rule("127.0.0.1/32")])
    assert loopback_only.name_refusal("localhost", 8080) is None
    assert "no public address" in (loopback_only.name_refusal("example.org", 80) or "")
    lan_only = ExitPolicy(True, [parse_exit_rule("192.168.0.0/16:22")])
    assert "loopback" in (lan_only.name_refusal("localhost", 22) or "")
    assert "no public address" in (lan_only.name_refusal("nas.example.org", 22) or "")
    web = ExitPolicy(True, [parse_exit_rule("0.0.0.0/0:80,443")])
    assert web.name_refusal("example.org", 443) is None
    assert web.name_refusal("example.org", 25) == "port 25 is not allowed by exit policy"
    assert ExitPolicy(True).name_refusal("example.org", 25) is None  # every public address, every port
    assert "loopback" in (ExitPolicy(True).name_refusal("localhost", 80) or "")  # no loopback rule
    assert ExitPolicy(False).name_refusal("example.org", 80) is not None
    assert not loopback_only.allows_public() and web.allows_public() and ExitPolicy(True).allows_public()
