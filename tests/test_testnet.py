"""The CI version of `make testnet`: 30 real nodes in namespaces, 50 s of workload with churn.

50 s rather than `make testnet`'s 120 s, 8 nodes starting at once rather than 4 and 10 s
of settling rather than 20 (~85 s in all instead of ~160 s alone on this machine):
the run still does every operation (tunnel, SOCKS, service sessions, DHT lookups),
one churn wave (2 relays killed at 25 s, restarted 10 s later), and has operations
outside churn before and after it to judge.

Runs bench/testnet.py as `make testnet` does (its own process: it builds and
deletes its namespaces itself) and checks the report: no corrupted transfer,
no byte lost from a transfer that closed cleanly, and circuits, SOCKS,
service sessions and DHT lookups mostly succeeding outside the churned nodes'
windows (the bar of the 200-node run is 99 %; on a shared 2-core CI machine
this test asks 90 %). Skipped, saying why, without root or namespaces.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import unavailable_reason

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.long(seconds=85)
def test_testnet_30_nodes_with_churn(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    out = tmp_path / "testnet.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.testnet", "--nodes", "30", "--duration", "50",
         "--start-parallel", "8", "--settle", "10", "--dir", str(tmp_path / "net"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1500, check=False,
    )  # fmt: skip
    if done.returncode == 77:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    report = json.loads(out.read_text())
    print("\n" + out.with_suffix(".txt").read_text())
    ops = report["ops"]
    for op in ("tunnel", "socks", "service"):
        assert ops[op]["attempts"] > 0, ops
        assert ops[op]["corrupted_transfers"] == 0 and ops[op]["bytes_lost"] == 0, ops[op]
        assert ops[op]["success_rate_outside_churn"] >= 0.9, (op, ops[op])
    assert ops["dht"]["attempts"] > 0 and ops["dht"]["success_rate_outside_churn"] >= 0.9, ops["dht"]
    assert report["churn"]["killed_and_restarted"] >= 1
    assert report["relays_idle"]["relays_measured"] >= 20
