"""Identities with proof-of-work ids for tests, without solving the id puzzle in every run.

`Identity.generate()` solves a 12-bit puzzle (~0.13 s, more under load); the suite makes
hundreds of identities. `data/solved_seeds.txt` holds seeds already solved, one per line
(``solved_seed(b"globalnet-test-identity-%d" % i)``, see `regenerate`); each is checked
for its work when used, so a stale file fails loudly rather than making unusable ids.
`next_identity()` hands out each of the FRESH seeds once per test session (as generate()
would, every identity differs), then falls back to generate(); when the suite runs in
parallel, each pytest-xdist worker takes every count-th of them from its own index, so no
two workers' nodes share an identity (a serial run makes about 420 identities, and one
worker of three up to about 240: there are 1,200). `fixed_identity(i)` is the same identity
in every run (as `Identity.from_label` would be), from the FIXED seeds.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import nacl.signing

from globalnet.config.defaults import IDENTITY_FILE_NAME
from globalnet.identity import Identity, solved_seed
from globalnet.localnet import LocalNet, NodeProcess
from globalnet.storage.atomic import write_atomic
from globalnet.wire.records import has_id_work
from tests.workers import worker_slot

SEEDS_FILE = Path(__file__).with_name("data") / "solved_seeds.txt"
LABEL = b"globalnet-test-identity-%d"

_seeds = [bytes.fromhex(line) for line in SEEDS_FILE.read_text().split()]
#: Lines of the seeds file: 400..599 are fixed_identity(0..199), the others next_identity()'s
#: (the first 400 were all of them before the file grew; fixed identities kept their lines).
FIXED = range(400, 600)
FRESH = [*range(FIXED.start), *range(FIXED.stop, len(_seeds))]
_worker, _workers = worker_slot()
_counter = itertools.count(_worker, _workers)
_lock = threading.Lock()


def _solved(index: int) -> Identity:
    identity = Identity(nacl.signing.SigningKey(_seeds[index]))
    assert has_id_work(identity.node_id), f"{SEEDS_FILE} line {index + 1} has no id work: regenerate it"
    return identity


def next_identity() -> Identity:
    """A fresh identity whose id carries the required work (each seed once per session)."""
    with _lock:
        index = next(_counter)
    return _solved(FRESH[index]) if index < len(FRESH) else Identity.generate()


def fixed_identity(i: int) -> Identity:
    """The same identity with id work in every run, for tests that must repeat exactly."""
    if i < len(FIXED):
        return _solved(FIXED[i])
    return Identity.from_label(b"globalnet-test-fixed-identity-%d" % i)


def seed_identity_file(data_dir: Path) -> None:
    """Give a node's data dir an identity key (0600, as gclient writes it) unless it has one,
    so the node loads it instead of solving the puzzle at start."""
    path = data_dir / IDENTITY_FILE_NAME
    if path.exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, next_identity().private_key_pem(), 0o600, exclusive=True)


class SeededLocalNet(LocalNet):
    """LocalNet whose nodes start with a solved identity key in their data dir."""

    def _start(self, node: NodeProcess) -> NodeProcess:
        seed_identity_file(node.data_dir)
        return super()._start(node)


def regenerate(count: int = 1400) -> None:
    """Rewrite the seeds file (python -c 'from tests.identities import regenerate; regenerate()')."""
    SEEDS_FILE.write_text("".join(solved_seed(LABEL % i).hex() + "\n" for i in range(count)))
