"""A new user's mistakes at start, in real `gclient` processes: each gives one line on
stderr that names the flag or path and says what is wrong, never a traceback or an errno."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from globalnet.localnet import GCLIENT_CMD

pytestmark = pytest.mark.long(seconds=12)  # wall seconds here alone: run early (tests/conftest.py)


def run_gclient(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GCLIENT_CMD, *args], capture_output=True, text=True, timeout=120, check=False)


def gclient_lines(out: subprocess.CompletedProcess[str]) -> list[str]:
    """gclient's own lines on stderr (the node's log lines, if it got that far, are dated)."""
    assert "Traceback" not in out.stderr, out.stderr
    return [line for line in out.stderr.splitlines() if line.startswith("gclient")]


@contextmanager
def busy_port(kind: int) -> Iterator[int]:
    """A port on 127.0.0.1 that another socket holds (TCP listening, or UDP bound)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("flag", "value", "kind", "shown"),
    [
        ("-proxy", "{port}>rand>internet", socket.SOCK_STREAM, "-proxy 127.0.0.1:{port}"),
        ("-tunnel", "{port}>rand>127.0.0.1:80", socket.SOCK_STREAM, "-tunnel 127.0.0.1:{port}"),
        ("-tunnel", "udp:{port}>rand>127.0.0.1:53", socket.SOCK_DGRAM, "-tunnel 127.0.0.1:{port} (UDP)"),
        ("-console", "{port}", socket.SOCK_STREAM, "-console 127.0.0.1:{port}"),
        ("-metrics", "{port}", socket.SOCK_STREAM, "-metrics 127.0.0.1:{port}"),
    ],
)
def test_a_port_in_use_is_one_line_naming_the_flag(tmp_path: Path, flag: str, value: str, kind: int, shown: str) -> None:
    with busy_port(kind) as port:
        out = run_gclient("-data-dir", str(tmp_path), "-no-listen", flag, value.format(port=port))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    # every port is bound before the node logs or links anything: this is the only line
    assert out.stderr.strip() == f"gclient: cannot start: {shown.format(port=port)}: Address already in use"


@pytest.mark.parametrize("args", [["--bogus"], ["sit"], ["-listen"], ["-listen", "abc"]])
def test_a_wrong_flag_or_command_is_one_line(args: list[str]) -> None:
    out = run_gclient(*args)
    assert out.returncode == 2 and out.stdout == ""
    (line,) = gclient_lines(out)
    assert out.stderr.strip() == line and line.endswith("(see gclient --help)")


def test_an_unknown_command_names_the_one_there_is() -> None:
    (line,) = gclient_lines(run_gclient("sit"))
    assert "unknown command 'sit'" in line and "'site'" in line


def test_a_data_dir_that_is_a_file_is_one_line_naming_it(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    key = tmp_path / "node.private.key"
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("<h1>hello</h1>")
    assert run_gclient("--id", str(key), "--print-id").returncode == 0  # the key is elsewhere
    for args in (
        ["-data-dir", str(not_a_dir), "-no-listen"],  # the identity key is first to need it
        ["-data-dir", str(not_a_dir), "--id", str(key), "-no-listen"],  # the data dir lock is
        ["-data-dir", str(not_a_dir), "--gen-client-key"],
        ["site", "sign", str(www), "--data-dir", str(not_a_dir)],
    ):
        out = run_gclient(*args)
        assert out.returncode == 2
        (line,) = gclient_lines(out)
        assert f"{not_a_dir} exists and is not a directory" in line and "Errno" not in line
