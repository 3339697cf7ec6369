"""When a node gives freed heap memory back (globalnet/node/memory.py): once per burst of
traffic, after it ended, never while bytes flow. Fake time, no sleeping."""

from __future__ import annotations

import asyncio

import pytest

from globalnet.node import memory
from globalnet.node.memory import BURST, QUIET, BurstTrim

MiB = 1024 * 1024


def test_trims_once_after_a_burst_ends_and_never_while_it_flows() -> None:
    core, total, now = BurstTrim(0.0), 0, 0.0
    decisions = []
    for _ in range(50):  # 50 s of traffic, 1 MiB a second: never during it
        now += 1.0
        total += MiB
        decisions.append(core.observe(now, total))
    assert not any(decisions)
    assert not core.observe(now + QUIET / 2, total)  # quiet, but not long enough
    assert core.observe(now + QUIET, total)  # the burst is over: trim
    assert not any(core.observe(now + QUIET + t, total) for t in range(1, 30))  # once, not again while idle


def test_a_trickle_never_trims_and_each_new_burst_trims_again() -> None:
    core, now = BurstTrim(0.0), 0.0
    total = BURST // 2  # less than a burst, then quiet: nothing worth trimming
    core.observe(1.0, total)
    assert not any(core.observe(1.0 + t, total) for t in range(1, 10))
    for burst in range(3):
        now = 100.0 * (burst + 1)
        total += BURST
        assert not core.observe(now, total)
        assert core.observe(now + QUIET, total), f"burst {burst} was not followed by a trim"


def test_the_shell_calls_malloc_trim_after_a_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    """The asyncio shell, on a fast fake clock: glibc's malloc_trim(0) once per burst."""
    if memory.malloc_trim() is None:
        pytest.skip("no glibc malloc_trim here")
    calls: list[int] = []
    clock = [0.0]
    counter = [0]
    monkeypatch.setattr(memory, "malloc_trim", lambda: lambda pad: calls.append(pad) or 1)
    monkeypatch.setattr(memory.time, "monotonic", lambda: clock[0])

    async def fake_sleep(seconds: float) -> None:
        clock[0] += seconds
        if clock[0] <= 5:
            counter[0] += MiB  # traffic for the first 5 s
        if clock[0] > 20:
            raise asyncio.CancelledError

    monkeypatch.setattr(memory.asyncio, "sleep", fake_sleep)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(memory.run(lambda: (counter[0], 0)))
    assert calls == [0]
