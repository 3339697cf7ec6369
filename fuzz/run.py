"""Run every fuzz target for N inputs, on both crypto backends where crypto is involved.

    python -m fuzz.run [--runs N] [--only NAME ...] [--max-time S]

Each target runs as its own process (atheris/libFuzzer flags), one at a time
(one core), with a corpus kept in fuzz/corpus/<target> between runs and
crash inputs written to fuzz/crashes/, output in fuzz/logs/. The summary (inputs, seconds, exec/s,
coverage, crashes per target) goes to bench/results/fuzz.json and stdout.
Exit status 1 if any target found a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: (module, crypto backends it runs on: None = the crypto backend does not matter)
TARGETS: list[tuple[str, tuple[str, ...] | None]] = [
    ("fuzz_control", None),
    ("fuzz_commands", None),
    ("fuzz_frames", ("cext", "python")),
    ("fuzz_hop", ("cext", "python")),
    ("fuzz_records", None),
    ("fuzz_descriptor", None),
    ("fuzz_dht", None),
    ("fuzz_datagram", None),
    ("fuzz_socks", None),
    ("fuzz_http_connect", None),
    ("fuzz_console", None),
    ("fuzz_pathspec", None),
    ("fuzz_config", None),
]

#: Longest input: every message a decoder takes whole fits (a PEERS control message may be longer,
#: but its records are fuzzed one by one in fuzz_records); longer inputs only slow the search.
MAX_LEN = 2048
_DONE = re.compile(rb"Done (\d+) runs in (\d+) second")
_COV = re.compile(rb"cov: (\d+) ft: (\d+)")


def jobs() -> list[tuple[str, str | None]]:
    """Every (target, backend) pair to run."""
    return [(name, backend) for name, backends in TARGETS for backend in (backends or (None,))]


def run_one(
    name: str, backend: str | None, runs: int, max_time: int | None, timeout: float, max_len: int = MAX_LEN
) -> dict[str, object]:
    """One target in its own process; returns what it reported (its output is in fuzz/logs/)."""
    label = f"{name}[{backend}]" if backend else name
    crashes = ROOT / "fuzz" / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GNET_FUZZ_CORPUS=str(ROOT / "fuzz" / "corpus" / name))
    if backend:
        env["GNET_CRYPTO"] = backend
    args = [sys.executable, "-m", f"fuzz.{name}", f"-runs={runs}", "-rss_limit_mb=2048", "-timeout=30",
            f"-max_len={max_len}", "-print_final_stats=1", f"-artifact_prefix={crashes}/{label}-"]  # fmt: skip
    if max_time:
        args.append(f"-max_total_time={max_time}")
    logs = ROOT / "fuzz" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{label}.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            rc = subprocess.run(
                args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    seconds = time.monotonic() - started
    out = log_path.read_bytes()
    done = _DONE.findall(out)
    cov = _COV.findall(out)
    inputs = int(done[-1][0]) if done else 0
    result: dict[str, object] = {
        "target": label,
        "inputs": inputs,
        "seconds": round(seconds, 1),
        "exec_per_s": round(inputs / seconds) if seconds else 0,
        "coverage": int(cov[-1][0]) if cov else None,
        "features": int(cov[-1][1]) if cov else None,
        "ok": rc == 0,
    }
    if rc != 0:
        result["output_tail"] = out[-3000:].decode("utf-8", "replace")
    return result


def write_summary(path: Path, results: list[dict[str, object]]) -> None:
    """The summary file, rewritten after every target so a long run that is stopped keeps what it did.

    Targets not run this time keep their last result (a `--only` run updates its own rows).
    """
    previous: list[dict[str, object]] = []
    try:
        previous = json.loads(path.read_text()).get("targets", [])
    except (OSError, ValueError, AttributeError):
        pass
    ran = {r["target"] for r in results}
    merged = [r for r in previous if isinstance(r, dict) and r.get("target") not in ran] + results
    order = {(f"{n}[{b}]" if b else n): i for i, (n, b) in enumerate(jobs())}
    merged.sort(key=lambda r: order.get(str(r.get("target")), len(order)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "targets": merged}, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs per target (default 1,000,000)")
    parser.add_argument("--max-time", type=int, default=None, help="stop a target after this many seconds")
    parser.add_argument("--only", nargs="*", default=None, help="target names (e.g. fuzz_socks)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz.json"))
    ns = parser.parse_args()
    results: list[dict[str, object]] = []
    for name, backend in jobs():
        if ns.only and name not in ns.only:
            continue
        timeout = (ns.max_time or 6 * 3600) + 300
        result = run_one(name, backend, ns.runs, ns.max_time, timeout)
        result["runs_asked"] = ns.runs
        results.append(result)
        write_summary(Path(ns.out), results)
        status = "ok" if result["ok"] else "CRASH"
        print(f"{result['target']:32} {result['inputs']:>10} inputs {result['seconds']:>8}s "
              f"{result['exec_per_s']:>7}/s cov {result['coverage']}  {status}", flush=True)  # fmt: skip
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
