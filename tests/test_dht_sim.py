"""The DHT simulation (bench/dht_sim.py) at a size a test can afford.

150 real `Dht` nodes on an in-memory network with a virtual clock: lookups
must succeed at 0 % churn and still mostly succeed with 20 % of the nodes
dead and no repair. The full table (N up to 2,000) is `make dht-sim`.
The adversary model (bench/dht_adversary.py) runs at N = 600 here: Sybils
that answer with each other, drop stores and grind ids next to the looked-up
keys defeat a plain lookup and not the defended one.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.dht_adversary import MODES
from bench.dht_adversary import simulate as simulate_adversary
from bench.dht_sim import VirtualClockLoop, no_id_work, quiet_logs, run, simulate

pytestmark = pytest.mark.long(seconds=20)  # wall seconds here alone: run early (tests/conftest.py)


def test_simulation_at_150_nodes() -> None:
    started = time.perf_counter()
    report = run([150], lookups=60, seed=7)
    rows = {row["churn"]: row for row in report["rows"]}
    assert rows[0.0]["success_pct"] >= 95, rows[0.0]
    assert rows[0.2]["success_pct"] >= 80, rows[0.2]
    assert 1 <= rows[0.0]["hops_mean"] <= 4
    assert rows[0.2]["timeouts_mean"] > 0  # dead nodes were on the lookups' paths and timed out
    assert report["runs"]["150"]["stored_min"] >= 10  # every publish reached the k closest
    assert time.perf_counter() - started < 300  # generous: a loaded machine


def test_virtual_clock_jumps_to_timers() -> None:
    async def sleepy() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        begun = loop.time()
        await asyncio.sleep(3600)
        return begun, loop.time()

    wall = time.perf_counter()
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        begun, ended = runner.run(sleepy())
    assert ended - begun == pytest.approx(3600)
    assert time.perf_counter() - wall < 1


def test_a_lookup_of_a_dead_nodes_peers_times_out_in_virtual_time() -> None:
    with quiet_logs(), no_id_work(), asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        result = runner.run(simulate(40, lookups=10, churn=0.5, seed=3))
    by_churn = {row["churn"]: row for row in result["rows"]}
    assert by_churn[0.0]["success_pct"] == 100
    assert by_churn[0.5]["timeouts_mean"] > 0


def test_sybils_eclipse_plain_lookups_and_not_defended_ones() -> None:
    off = simulate_adversary(600, 0.2, MODES["off"], lookups=80, seed=2)
    on = simulate_adversary(600, 0.2, MODES["on"], lookups=80, seed=2)
    assert off.ground_per_key >= 3
    assert off.success_pct <= 50, off  # ids ground next to the keys took the storage slots
    assert on.success_pct >= 95, on
    assert on.sybil_storage_slots_pct < off.sybil_storage_slots_pct
    assert on.hops_mean >= 1
