"""Hidden-service cores without a network: sealed layers, client authorization, key files, PoW queues."""

from __future__ import annotations

import os
from pathlib import Path

import nacl.signing
import pytest

from globalnet.crypto.blinding import BlindedSigner, blind_public_key, verify_blinded
from globalnet.dht.values import validate_value
from globalnet.errors import ErrorKind, GnetError
from globalnet.service.client_auth import (
    format_key,
    generate_client_key,
    load_authorized_clients,
    load_client_key,
    public_of,
)
from globalnet.service.descriptor import AccessPointEntry, Descriptor, build_descriptor, descriptor_key, open_descriptor
from globalnet.service.descriptor_crypto import LayerError, open_descriptor_body, seal_descriptor_body
from globalnet.service.pow import EffortController, EffortQueue, ReplayCache, check_work, solve_work

NOW = 1_800_000_000.0
PERIOD_NOW = int(NOW // 86400)


def _service() -> tuple[bytes, bytes]:
    key = nacl.signing.SigningKey.generate()
    return bytes(key), bytes(key.verify_key)


def _desc(period: int = PERIOD_NOW, authorized: bool = False) -> Descriptor:
    entries = (AccessPointEntry(os.urandom(20), os.urandom(20), os.urandom(32)),)
    return Descriptor(period, 7, int(NOW) + 3600, entries, os.urandom(32), 128, authorized)


# -- sealed layers (generic: sites reuse them) ----------------------------------------------
def test_a_layer_opens_only_with_the_same_kind_key_period_and_secret() -> None:
    _, public = _service()
    sealed = seal_descriptor_body(b"hs-outer", public, 5, b"hello", b"s")
    assert open_descriptor_body(b"hs-outer", public, 5, sealed, b"s") == b"hello"
    assert len(sealed) % 256 == 24 + 16  # padded: the size says little
    _, other = _service()
    for kind, key, period, secret in ((b"site", public, 5, b"s"), (b"hs-outer", other, 5, b"s"),
                                      (b"hs-outer", public, 6, b"s"), (b"hs-outer", public, 5, b"")):
        with pytest.raises(LayerError):
            open_descriptor_body(kind, key, period, sealed, secret)
    with pytest.raises(LayerError):
        open_descriptor_body(b"hs-outer", public, 5, sealed[:-1] + bytes([sealed[-1] ^ 1]), b"s")
    with pytest.raises(LayerError):
        open_descriptor_body(b"hs-outer", public, 5, b"short")


# -- key blinding as descriptors use it (differential: the client side knows only the address)
def test_the_descriptor_signature_verifies_under_the_key_a_client_derives_from_the_address() -> None:
    seed, public = _service()
    value = build_descriptor(seed, public, _desc())
    assert value.blinded_key == blind_public_key(public, PERIOD_NOW)  # what a client computes
    assert verify_blinded(value.blinded_key, value.signed_message(), value.signature)
    assert value.blinded_key != public
    next_period = build_descriptor(seed, public, _desc(PERIOD_NOW + 1))
    assert next_period.blinded_key != value.blinded_key
    assert BlindedSigner(seed, PERIOD_NOW + 1).public_key == next_period.blinded_key
    assert validate_value(value.key, value.encode(), NOW).seq == 7


# -- client authorization -------------------------------------------------------------------
def test_only_authorized_clients_open_the_inner_layer() -> None:
    seed, public = _service()
    alice, bob, mallory = os.urandom(32), os.urandom(32), os.urandom(32)
    desc = _desc(authorized=True)
    value = build_descriptor(seed, public, desc, [public_of(alice), public_of(bob)])
    key = descriptor_key(public, PERIOD_NOW)
    for client in (alice, bob):
        opened = open_descriptor(public, key, value.encode(), client, NOW)
        assert opened.access_points == desc.access_points and opened.authorized
    for client in (mallory, None):
        with pytest.raises(GnetError) as info:
            open_descriptor(public, key, value.encode(), client, NOW)
        assert info.value.kind is ErrorKind.SERVICE_NOT_AUTHORIZED
    # revoked: the next descriptor no longer lists bob
    revoked = build_descriptor(seed, public, desc, [public_of(alice)])
    with pytest.raises(GnetError) as info:
        open_descriptor(public, key, revoked.encode(), bob, NOW)
    assert info.value.kind is ErrorKind.SERVICE_NOT_AUTHORIZED
    # the entries hide how many clients there are
    assert len(value.encode()) == len(build_descriptor(seed, public, desc, [public_of(alice)]).encode())


def test_the_largest_descriptor_fits_a_dht_value() -> None:
    from globalnet.service.client_auth import MAX_CLIENTS
    from globalnet.service.descriptor import MAX_ACCESS_POINTS

    seed, public = _service()
    entries = tuple(AccessPointEntry(os.urandom(20), os.urandom(20), os.urandom(32)) for _ in range(MAX_ACCESS_POINTS))
    desc = Descriptor(PERIOD_NOW, 1, int(NOW) + 3600, entries, os.urandom(32), 1 << 20, True)
    clients = [public_of(os.urandom(32)) for _ in range(MAX_CLIENTS)]
    value = build_descriptor(seed, public, desc, clients)
    assert validate_value(value.key, value.encode(), NOW).seq == 1


def test_client_key_files(tmp_path: Path) -> None:
    public = generate_client_key(tmp_path / "client_auth")
    path = tmp_path / "client_auth" / "private.key"
    assert path.stat().st_mode & 0o077 == 0
    assert generate_client_key(tmp_path / "client_auth") == public  # kept, not replaced
    private = load_client_key(tmp_path / "client_auth")
    assert private is not None and public_of(private) == public
    assert load_client_key(tmp_path / "nothing") is None
    clients = tmp_path / "authorized_clients"
    clients.mkdir()
    (clients / "alice.auth").write_text(format_key(public) + "\n")
    (clients / ".hidden").write_text("ignored")
    assert load_authorized_clients(clients) == [public]
    (clients / "bad.auth").write_text("x25519:" + "a" * 52)
    with pytest.raises(GnetError, match="bad.auth.*descriptor:x25519"):
        load_authorized_clients(clients)
    (clients / "bad.auth").write_text(format_key(public[:20]))
    with pytest.raises(GnetError, match="bad.auth.*32 bytes"):
        load_authorized_clients(clients)
    (clients / "bad.auth").write_text("descriptor:x25519:!!!!")
    with pytest.raises(GnetError, match="bad.auth.*base32"):
        load_authorized_clients(clients)
    path.chmod(0o644)
    with pytest.raises(GnetError, match="chmod 600"):
        load_client_key(tmp_path / "client_auth")


# -- proof of work and the effort queue (fake clock) ---------------------------------------
def test_work_is_checked_and_bound_to_seed_and_registration() -> None:
    seed, reg = os.urandom(32), os.urandom(20)
    nonce = solve_work(seed, reg, 200)
    assert check_work(seed, reg, nonce, 200)
    assert check_work(seed, reg, bytes(16), 0)  # no work asked, none needed
    wrong = sum(check_work(seed, reg, os.urandom(16), 200) for _ in range(200))
    assert wrong < 10  # a random nonce passes 1 time in 200
    assert not check_work(os.urandom(32), reg, nonce, 200) or not check_work(seed, os.urandom(20), nonce, 200)
    cache = ReplayCache(limit=2)
    assert not cache.seen(b"a") and cache.seen(b"a")
    cache.seen(b"b"), cache.seen(b"c")
    assert not cache.seen(b"a")  # the oldest was forgotten (bounded)


def test_a_flood_without_work_does_not_keep_out_a_request_with_work() -> None:
    queue: EffortQueue[str] = EffortQueue(limit=128, max_wait=8.0)
    controller = EffortController(interval=30.0, limit=128, now=NOW)
    served: list[str] = []
    t = NOW
    # 1,000 requests a second without work for 10 s; the service joins 8 a second
    for second in range(10):
        for i in range(1000):
            t = NOW + second + i / 1000
            queue.push(f"flood-{second}-{i}", 0, t)
            if second == 5 and i == 500:
                queue.push("worker", 64, t)
            controller.observe(len(queue), queue.dropped)
            queue.dropped = 0
        for _ in range(8):
            item = queue.pop(t)
            if item is not None:
                served.append(item)
        if "worker" in served:
            break
    assert "worker" in served and served.index("worker") == len(served) - 8  # first one served after it came
    assert len(queue) <= 128
    assert controller.handle_timer(NOW + 30) == EffortController.MIN_RAISE  # raised under load
    assert controller.handle_timer(NOW + 31) is None
    controller.observe(0, 0)
    assert controller.handle_timer(NOW + 60) == 0  # idle: lowered again


def test_the_queue_serves_by_effort_then_arrival_and_drops_stale_requests() -> None:
    queue: EffortQueue[str] = EffortQueue(limit=3, max_wait=5.0)
    assert queue.push("a", 1, 0.0) is None and queue.push("b", 5, 0.0) is None and queue.push("c", 1, 0.0) is None
    assert queue.push("d", 0, 0.0) == "d"  # full, and no more work than the least: refused
    assert queue.push("e", 3, 0.0) == "c"  # pushes out the lowest, latest
    assert [queue.pop(1.0), queue.pop(1.0)] == ["b", "e"]
    assert queue.pop(10.0) is None  # "a" waited too long


# -- configuration and the command line ----------------------------------------------------
def test_service_auth_option_and_gen_client_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    from globalnet.config import ConfigError, load_config
    from globalnet.localnet import ROOT

    config = load_config(["-data-dir", str(tmp_path), "-no-listen", "-service", "web=127.0.0.1:80,auth", "-service", "open=127.0.0.1:81"])
    assert [(s.name, s.auth) for s in config.services] == [("web", True), ("open", False)]
    with pytest.raises(ConfigError, match="only option after the target is ',auth'"):
        load_config(["-data-dir", str(tmp_path), "-service", "web=127.0.0.1:80,bogus"])
    out = subprocess.run(
        [sys.executable, str(ROOT / "gclient.py"), "-data-dir", str(tmp_path / "c"), "--gen-client-key"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    line = out.stdout.strip()
    assert line.startswith("descriptor:x25519:") and "authorized_clients" in out.stderr
    private = load_client_key(tmp_path / "c" / "client_auth")
    assert private is not None and format_key(public_of(private)) == line
    (tmp_path / "c" / "client_auth" / "private.key").write_text("descriptor:x25519:short\n")
    bad = subprocess.run(
        [sys.executable, str(ROOT / "gclient.py"), "-data-dir", str(tmp_path / "c"), "--gen-client-key"],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and "private.key" in bad.stderr and "Traceback" not in bad.stderr


# -- why a client cannot reach a service: distinct kinds ------------------------------------
class _Lookups:
    """Stands for the node's DHT lookups (what client.py asks of the node)."""

    def __init__(self, values: dict[bytes, bytes], client_auth_key: bytes | None = None) -> None:
        self.values = values
        self.client_auth_key = client_auth_key
        self.service_descriptors: dict[bytes, Descriptor] = {}

    async def dht_lookup(self, key: bytes) -> object:
        from globalnet.dht.values import ValidValue

        value = self.values.get(key)
        return None if value is None else ValidValue(key, value, 0, 0)


async def test_the_client_names_why_it_cannot_find_a_service() -> None:
    import time

    from globalnet.service.client import find_descriptor
    from globalnet.service.descriptor import current_period

    seed, public = _service()
    period = current_period()
    with pytest.raises(GnetError) as info:
        await find_descriptor(_Lookups({}), public)  # type: ignore[arg-type]
    assert info.value.kind is ErrorKind.SERVICE_UNKNOWN
    expired = Descriptor(period, 1, int(time.time()) - 10, _desc().access_points)
    stale = build_descriptor(seed, public, expired)
    with pytest.raises(GnetError) as info:
        await find_descriptor(_Lookups({stale.key: stale.encode()}), public)  # type: ignore[arg-type]
    assert info.value.kind is ErrorKind.SERVICE_NO_DESCRIPTOR and "expired" in str(info.value)
    current = build_descriptor(seed, public, Descriptor(period, 2, int(time.time()) + 600, _desc().access_points), [public_of(os.urandom(32))])
    with pytest.raises(GnetError) as info:
        await find_descriptor(_Lookups({current.key: current.encode()}, os.urandom(32)), public)  # type: ignore[arg-type]
    assert info.value.kind is ErrorKind.SERVICE_NOT_AUTHORIZED
    kinds = {ErrorKind.SERVICE_UNKNOWN, ErrorKind.SERVICE_NO_DESCRIPTOR, ErrorKind.SERVICE_NOT_AUTHORIZED, ErrorKind.SERVICE_ACCESS_POINTS_UNREACHABLE}
    assert {k.socks_reply for k in kinds} == {0xF0, 0xF4, 0xF2}
