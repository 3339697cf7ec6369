"""Restarts lose nothing: data-dir files are replaced atomically, never left half-written.

The process test kills a real writer (the node's own PeerTable.save and
identity creation, in a child process) with SIGKILL at random moments, over
and over, and checks after every kill that the data dir is whole: peers.dat
holds one complete saved table (all of its records verify), every key file
loads, and a real gclient node then starts on that data dir with that identity.
"""

from __future__ import annotations

import random
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from globalnet.identity import load_or_create_identity
from globalnet.localnet import NodeProcess, free_port
from globalnet.peertable import PeerTable
from globalnet.storage.atomic import write_atomic
from globalnet.wire.buffer import blob16
from tests.identities import fixed_identity

pytestmark = pytest.mark.long(seconds=20)  # wall seconds here alone: run early (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent
SMALL, LARGE = 20, 120  # two peer tables the writer alternates between


def test_write_atomic_replaces_whole_file_with_mode(tmp_path: Path) -> None:
    path = tmp_path / "f"
    write_atomic(path, b"one", 0o600)
    write_atomic(path, b"two" * 1000, 0o600)
    assert path.read_bytes() == b"two" * 1000
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_atomic(path, b"three", 0o644)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no temporary file left


def test_write_atomic_exclusive_never_clobbers(tmp_path: Path) -> None:
    path = tmp_path / "key"
    write_atomic(path, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        write_atomic(path, b"second", exclusive=True)
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]


def test_write_atomic_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f"
    write_atomic(path, b"old")
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


_WRITER = textwrap.dedent(
    f"""
    import sys, time
    from pathlib import Path
    from globalnet.identity import Identity, load_or_create_identity, verify_node_record
    from globalnet.peertable import PeerTable
    from globalnet.wire.buffer import Reader

    data = Path(sys.argv[1])
    now = time.time()
    blob = Reader(Path(sys.argv[2]).read_bytes())
    records = [verify_node_record(blob.pull_blob16(4096)) for _ in range({LARGE})]
    tables = []
    for n in ({SMALL}, {LARGE}):
        table = PeerTable(b"\\0" * 20, data)
        for r in records[:n]:
            table.add(r, now)
        tables.append(table)
    print("ready", flush=True)
    i = 0
    while True:
        tables[i % 2].save()
        load_or_create_identity(data / "keys" / f"k{{i % 50}}.key")
        i += 1
    """
)


def _records_file(path: Path) -> Path:
    """LARGE signed records with proof-of-work ids, made once here (each id costs a puzzle)
    rather than in every writer process."""
    now = time.time()
    records = [fixed_identity(i).make_record((("127.0.0.1", 1000 + i),), now=now) for i in range(LARGE)]
    path.write_bytes(b"".join(blob16(r.encode(), 4096) for r in records))
    return path


def test_sigkill_during_writes_leaves_a_consistent_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "keys").mkdir(parents=True)
    records = _records_file(tmp_path / "records.bin")
    rng = random.Random(17)
    kills = 0
    for _ in range(25):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(data), str(records)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready", proc.stderr.read() if proc.stderr else b""
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        kills += 1
        if (data / "peers.dat").exists():
            table = PeerTable(b"\1" * 20, data)
            assert table.load() in (SMALL, LARGE), "peers.dat holds a partial table"
        for key in (data / "keys").glob("*.key"):
            assert stat.S_IMODE(key.stat().st_mode) == 0o600
            load_or_create_identity(key)  # raises if the key file is half-written
    assert kills == 25
    # A real node starts on the data dir the kills left behind, and keeps its identity.
    key = data / "keys" / "k0.key"
    assert key.exists()
    expected = load_or_create_identity(key).node_id.hex()
    port = free_port(socket.SOCK_DGRAM)
    node = NodeProcess("restarted", ["-listen", f"127.0.0.1:{port}", "-id", str(key)], data, listen_port=port)
    node.start()
    try:
        node.wait_for("node started", timeout=60, node_id=expected)
        node.wait_for("peer table loaded", timeout=60)
    finally:
        node.stop()
    out = subprocess.run(
        [sys.executable, str(ROOT / "gclient.py"), "-data-dir", str(data), "-id", str(key), "--print-id"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == expected
    stray = [p.name for p in data.rglob("*.tmp")]
    assert len(stray) <= 2 * kills  # a kill between mkstemp and rename may leave one temp file
