"""What every fuzz target shares: the error contract, the atheris entry point, a fallback loop.

Why one module: the contract ("bad input raises only the documented error
kinds, never anything else, and stays within bounds") is the same for every
decoder; a target only says which decoder, which errors and what bounds.

A target module is run as a program (`python -m fuzz.fuzz_control -runs=N`)
under atheris when it is installed (coverage-guided, libFuzzer flags); without
atheris, `fallback(...)` mutates the seeds with a seeded PRNG, so the CI pass
still exercises every decoder.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

OneInput = Callable[[bytes], None]


class ContractViolation(AssertionError):
    """A decoder broke its contract (raised something undocumented, or exceeded a bound)."""


def guarded(one_input: OneInput, allowed: tuple[type[BaseException], ...]) -> OneInput:
    """Wrap a target: documented errors pass, anything else fails loudly with the input."""

    def run(data: bytes) -> None:
        try:
            one_input(data)
        except allowed:
            pass
        except ContractViolation:
            raise
        except Exception as exc:  # the point: any other exception type is a finding
            raise ContractViolation(f"{type(exc).__name__}: {exc} on input {data[:200]!r}") from exc

    return run


def check(condition: bool, what: str) -> None:
    """A bound the decoder must keep (an `assert` that survives -O)."""
    if not condition:
        raise ContractViolation(what)


def instrumented() -> contextlib.AbstractContextManager[object]:
    """Wrap the target's imports so atheris sees coverage of our code (a no-op without atheris)."""
    try:
        import atheris
    except ImportError:
        return contextlib.nullcontext()
    return atheris.instrument_imports(include=["globalnet"])


def _seed_dir(seeds: Sequence[bytes], corpus: str | None) -> str:
    """The corpus directory (kept between runs when given), with the seeds in it."""
    path = Path(corpus) if corpus else Path(tempfile.mkdtemp(prefix="gnet-fuzz-seeds-"))
    path.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds):
        (path / f"seed{i}").write_bytes(seed)
    return str(path)


def mutate(rng: random.Random, data: bytes, seeds: Sequence[bytes]) -> bytes:
    """One cheap structural mutation (flip, insert, delete, splice, truncate)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf.insert(rng.randrange(len(buf) + 1), rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256))))
        elif op == 2 and buf:
            del buf[rng.randrange(len(buf))]
        elif op == 3 and seeds:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            buf[rng.randrange(len(buf) + 1) :] = other[cut:]
        elif op == 4 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif op == 5 and buf:
            i = rng.randrange(len(buf))
            buf[i] = rng.choice((0, 1, 0xFF, 0xFE, 0x7F, 0x80))
    return bytes(buf)


def fallback(one_input: OneInput, seeds: Sequence[bytes], runs: int, seed: int = 1) -> int:
    """Mutation loop without atheris: every seed, then `runs` mutants; returns inputs run."""
    rng = random.Random(seed)
    pool = [bytes(s) for s in seeds] or [b""]
    for s in pool:
        one_input(s)
    for _ in range(runs):
        data = mutate(rng, rng.choice(pool), pool)
        one_input(data)
        if len(pool) < 256 and rng.random() < 0.05:
            pool.append(data)
    return len(seeds) + runs


def main(one_input: OneInput, seeds: Sequence[bytes], argv: Sequence[str] | None = None) -> None:
    """Program entry: atheris with libFuzzer flags, seeded with `seeds` unless a corpus dir is given."""
    args = list(sys.argv if argv is None else argv)
    try:
        import atheris
    except ImportError:
        runs = next((int(a.split("=", 1)[1]) for a in args if a.startswith("-runs=")), 10000)
        n = fallback(one_input, seeds, runs)
        print(f"fuzz (no atheris, mutation fallback): {n} inputs, no contract violation")
        return
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(_seed_dir(seeds, os.environ.get("GNET_FUZZ_CORPUS")))
    os.environ.setdefault("GNET_FUZZ", "1")
    atheris.Setup(args, one_input)
    atheris.Fuzz()
