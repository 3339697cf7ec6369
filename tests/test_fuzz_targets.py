"""A short pass of every fuzz target (fuzz/): the long run is `make fuzz`.

Each target runs in its own process, as `make fuzz` runs it: under atheris
(coverage-guided) when it is installed, else the harness's seeded mutation
loop. A target fails if a decoder raised anything but its documented errors
or broke a bound.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.run import jobs

pytestmark = pytest.mark.long(seconds=20)  # wall seconds here alone: run early (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent
RUNS = 3000


@pytest.mark.parametrize(("name", "backend"), jobs(), ids=lambda v: str(v))
def test_fuzz_target_short_pass(name: str, backend: str | None, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "GNET_FUZZ_CORPUS": str(tmp_path / "corpus")}
    if backend:
        env["GNET_CRYPTO"] = backend
    proc = subprocess.run(
        [sys.executable, "-m", f"fuzz.{name}", f"-runs={RUNS}", "-timeout=60", f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
        timeout=300,
    )
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode == 0, out[-4000:]
    # libFuzzer may run a few inputs past -runs (it once said "Done 3004 runs")
    done = re.search(r"Done (\d+) runs", out)
    assert (done is not None and int(done.group(1)) >= RUNS) or f"{RUNS} inputs" in out or "inputs, no contract violation" in out, out[-2000:]
