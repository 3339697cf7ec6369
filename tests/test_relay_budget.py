"""A relay's memory budget: the core on a fake clock, the flag, and a flood of
circuits that never read against a relay with a 16 MiB budget (real QUIC)."""

from __future__ import annotations

import asyncio

import pytest

from globalnet.config import ConfigError, load_config
from globalnet.endpoint.congestion import MAX_WINDOW
from globalnet.endpoint.session import RELAY_SLACK
from globalnet.relay.budget import CALM_INTERVAL, CHECK_INTERVAL, DEFAULT_BUDGET, PER_CIRCUIT, RelayBudget
from globalnet.relay.server import RelayService
from tests.fakenet import FakeClock
from tests.inproc import InprocNode, attach_socket, open_circuit, start_client, start_relay
from tests.targets import EchoServer, pattern, serve

MiB = 1024 * 1024


def test_budget_names_the_largest_holders_until_under_half() -> None:
    clock = FakeClock()
    budget = RelayBudget(16 * MiB, clock.now)
    assert budget.get_timer() == clock.now + CHECK_INTERVAL
    assert budget.per_circuit == PER_CIRCUIT == MAX_WINDOW + RELAY_SLACK
    holdings = {"a": 1 * MiB, "b": 6 * MiB, "c": 3 * MiB, "d": 2 * MiB, "e": 0}
    asked = []

    def report() -> list[tuple[int, str]]:
        asked.append(1)
        return [(v, k) for k, v in holdings.items()]

    assert budget.handle_timer(clock.advance(CHECK_INTERVAL), 12 * MiB, report) == []  # at 3/4: fine
    assert not asked  # nobody is asked what they hold while under
    victims = budget.handle_timer(clock.advance(CHECK_INTERVAL), 15 * MiB, report)
    assert victims == ["b", "c"]  # 15 - 6 = 9 MiB is still over half (8 MiB); - 3 is under
    victims = budget.handle_timer(clock.advance(CHECK_INTERVAL), 20 * MiB, report)
    assert victims == ["b", "c", "d", "a"]  # down to 8 MiB only with all but the empty one
    assert budget.shed == 6 and budget.peak == 20 * MiB
    assert budget.get_timer() == pytest.approx(clock.now + CHECK_INTERVAL)


def test_a_calm_relay_checks_once_a_second_and_a_loaded_one_every_20_ms() -> None:
    """Holding at most 1/16 of the budget, the next check is CALM_INTERVAL away (idle relays
    carrying a few circuits woke 50 times a second for it); above, CHECK_INTERVAL again; a
    backed-up stream's bytes still ask for a check at once, calm or not."""
    clock = FakeClock()
    budget = RelayBudget(16 * MiB, clock.now)
    assert budget.calm == 1 * MiB
    budget.handle_timer(clock.advance(CHECK_INTERVAL), 0, list)
    assert budget.get_timer() == pytest.approx(clock.now + CALM_INTERVAL) and CALM_INTERVAL >= 1.0
    budget.handle_timer(clock.advance(CALM_INTERVAL), 1 * MiB, list)  # at calm: still calm
    assert budget.get_timer() == pytest.approx(clock.now + CALM_INTERVAL)
    budget.handle_timer(clock.advance(CALM_INTERVAL), 1 * MiB + 1, list)
    assert budget.get_timer() == pytest.approx(clock.now + CHECK_INTERVAL)
    budget.handle_timer(clock.advance(CHECK_INTERVAL), 0, list)
    assert budget.get_timer() == pytest.approx(clock.now + CALM_INTERVAL)
    assert not budget.pressed(32 * 1024) and budget.pressed(32 * 1024)  # PRESSURE_BYTES: check now


def test_budget_flag() -> None:
    assert load_config(["-data-dir", "/tmp/gnet-budget-test"], {}).relay_budget_mib == DEFAULT_BUDGET // MiB
    assert load_config(["-relay-budget", "16", "-data-dir", "/tmp/gnet-budget-test"], {}).relay_budget_mib == 16
    with pytest.raises(ConfigError, match="relay-budget"):
        load_config(["-relay-budget", "1", "-data-dir", "/tmp/gnet-budget-test"], {})
    with pytest.raises(ValueError):
        RelayBudget(1 * MiB)


_go = asyncio.Event()


async def _source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = bytes(64 * 1024)
    try:
        await _go.wait()  # every circuit is built before any downloads
        for _ in range(4096):  # 256 MiB each: more than the test ever takes
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass  # the test is over (cancelled at teardown) or the circuit was reset
    finally:
        writer.close()


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(1 << 16):
        pass


def _held(node: InprocNode) -> int:
    return sum(link.send_buffer_size_total() for link in node.links.all_links)


async def test_a_flood_of_circuits_that_never_read_stays_within_the_budget() -> None:
    """200 circuits download at full speed, then their client stops reading at all
    (its QUIC socket paused): what their senders had in flight (a window each,
    ~50 MiB together) piles up at the first relay. With a 16 MiB budget that
    relay never holds more, and a well-behaved client's circuit through the
    same relay still works."""
    r1, r2, r3 = await start_relay(), await start_relay(), await start_relay(exit_allow="127.0.0.1/32")
    relay = r1.relay
    assert isinstance(relay, RelayService)
    relay.budget = RelayBudget(16 * MiB, asyncio.get_running_loop().time())
    _go.clear()
    flood, good = start_client(), start_client()
    source = await asyncio.start_server(_source, "127.0.0.1", 0)
    port = source.sockets[0].getsockname()[1]
    peak = 0
    try:
        async with asyncio.timeout(120):
            apps = []
            drains = []
            for _ in range(200):
                circuit = await open_circuit(flood, [r1, r2, r3], "127.0.0.1", port)
                app = await attach_socket(circuit)
                apps.append(app)
                drains.append(asyncio.ensure_future(_drain(app[0])))
            link = flood.links.links[r1.identity.node_id]
            _go.set()
            await asyncio.sleep(1.0)  # every circuit downloads
            link._transport.pause_reading()  # and now the flood client stops reading: QUIC, and so everything
            for task in drains:
                task.cancel()
            loop = asyncio.get_running_loop()
            end = loop.time() + 3.0  # under the relay's liveness deadline (it drops a silent link after 10 s)
            async with serve(EchoServer()) as echo_port:
                circuit = await open_circuit(good, [r1, r2, r3], "127.0.0.1", echo_port)
                reader, writer, pump = await attach_socket(circuit)
                payload = pattern(1 << 20, seed=7)
                writer.write(payload)
                echoed = bytearray()
                while loop.time() < end or len(echoed) < len(payload):
                    peak = max(peak, _held(r1))
                    if len(echoed) < len(payload):
                        try:
                            echoed += await asyncio.wait_for(reader.read(65536), 0.01)
                        except TimeoutError:
                            pass
                    else:
                        await asyncio.sleep(0.01)
                assert bytes(echoed) == payload  # the well-behaved circuit was served throughout
                writer.close()
                await pump
            for _, w, task in apps:
                w.close()
                task.cancel()
    finally:
        source.close()
        for n in (flood, good, r1, r2, r3):
            n.close()
    print(f"relay 1 held at most {peak / MiB:.1f} MiB; budget peak {relay.budget.peak / MiB:.1f} MiB; shed {relay.budget.shed}")
    assert peak <= 16 * MiB
    assert relay.budget.peak <= 16 * MiB
    assert relay.budget.shed > 0  # the flood did press on the budget, and the relay shed it
