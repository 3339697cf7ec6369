"""When a node gives freed heap memory back (globalnet/node/memory.py): once per burst of
traffic, after it ended, never while bytes flow. Fake time, no sleeping."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from globalnet.node import memory
from globalnet.node.memory import BURST, QUIET, SETTLE, BurstTrim

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


def test_start_up_trims_once_when_settled_and_quiet() -> None:
    """Start-up leaves freed chunks too: one trim SETTLE seconds after start, never during traffic."""
    core = BurstTrim(0.0, 0, settle=SETTLE)
    assert not any(core.observe(float(t), 0) for t in range(1, int(SETTLE)))  # not yet
    total = 0
    for t in range(int(SETTLE), int(SETTLE) + 5):  # traffic when it is due: it waits
        total += 1000
        assert not core.observe(float(t), total)
    end = SETTLE + 4
    assert not core.observe(end + QUIET / 2, total)
    assert core.observe(end + QUIET, total)  # settled and quiet: the start-up trim
    assert not any(core.observe(end + QUIET + t, total) for t in range(1, 60))  # once
    assert not any(BurstTrim(0.0, 0).observe(float(t), 0) for t in range(1, 60))  # none unless asked


def test_the_extension_trims_the_heap() -> None:
    """cext/gnetcrypto.c's malloc_trim, used so that a node never loads ctypes for it."""
    cext = pytest.importorskip("globalnet._gnetcrypto")
    if not hasattr(cext, "malloc_trim"):
        pytest.skip("not glibc")
    assert memory.malloc_trim() is cext.malloc_trim
    assert cext.malloc_trim(0) in (0, 1)
    with pytest.raises(OverflowError):
        cext.malloc_trim(-1)
    with pytest.raises(TypeError):
        cext.malloc_trim("0")


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


_CHURN = """
import resource, sys
from globalnet.node import memory
if sys.argv[1] == "steady":
    assert memory.steady_heap()
def rounds(n):
    for _ in range(n):
        held = [b"x" * 300_000 for _ in range(8)]  # a burst's buffers: ~2.3 MiB at once
        del held
rounds(3)  # the heap reaches its size
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(200)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True, timeout=60)
    return int(out.stdout)


def test_a_steady_heap_does_not_fault_its_pages_in_again_for_each_burst() -> None:
    """Without fixed thresholds glibc hands the freed top of the heap back after each burst
    of 300 KB buffers and faults it in again for the next one; with them the heap keeps it
    (the burst trim gives it back once traffic pauses)."""
    if memory.mallopt() is None:
        pytest.skip("no glibc mallopt here")
    steady, default = _page_faults("steady"), _page_faults("default")
    assert steady < 100, f"{steady} page faults in 200 bursts"  # ~1,400 pages are moved per burst
    assert default > 10 * max(steady, 10), (steady, default)


def test_an_extension_built_before_mallopt_falls_back_to_ctypes(monkeypatch: pytest.MonkeyPatch) -> None:
    cext = pytest.importorskip("globalnet._gnetcrypto")
    if memory.mallopt() is None:
        pytest.skip("no glibc mallopt here")
    monkeypatch.delattr(cext, "mallopt", raising=False)
    setting = memory.mallopt()
    assert setting is not None and setting is not getattr(cext, "mallopt", None)
    assert memory.steady_heap()
