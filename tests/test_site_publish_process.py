"""`gclient -publish NAME=DIR -proxy ...` in a real process: curl loads the site through its SOCKS proxy, byte for byte."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from globalnet.localnet import free_port
from tests.identities import SeededLocalNet

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


def _curl(port: int, url: str) -> tuple[int, bytes]:
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "120", "--socks5-hostname", f"127.0.0.1:{port}", "-o", "-", "-w", "%{http_code}", url],
        capture_output=True, timeout=150, check=True,
    ).stdout  # fmt: skip
    return int(out[-3:]), out[:-3]


def test_publish_and_browse_through_socks(tmp_path: Path) -> None:
    www = tmp_path / "www"
    (www / "css").mkdir(parents=True)
    files = {f"page{i}.html": f"<p>page {i}</p>".encode() for i in range(18)}
    files["index.html"] = b"<h1>home</h1>"
    files["css/big.bin"] = os.urandom(20 * 1024 * 1024)
    for path, data in files.items():
        (www / path).write_bytes(data)
    net = SeededLocalNet(tmp_path / "net")
    port = free_port()
    try:
        node = net.client("pub", "-publish", f"blog={www}", "-proxy", f"{port}>rand>internet")
        published = node.wait_for("site published", timeout=60)
        assert published["seq"] == 1 and published["files"] == 20
        address = node.wait_for("site address", timeout=5)["address"]
        node.wait_for("socks proxy listening", timeout=30)
        for path, data in files.items():
            assert _curl(port, f"http://{address}/{path}") == (200, data)
        assert _curl(port, f"http://{address}/")[1] == files["index.html"]
        assert _curl(port, f"http://{address}/../site.key")[0] == 404
        # the address printed by the offline signer is the same, and the seq is kept (unchanged content)
        signer = subprocess.run(
            [sys.executable, str(ROOT / "gclient.py"), "site", "sign", str(www), "--name", "blog", "--data-dir", str(node.data_dir)],
            check=False, capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
        assert signer.returncode == 0 and signer.stdout.splitlines()[0] == address and "seq 1" in signer.stdout
    finally:
        net.stop_all()


def test_a_bad_publish_folder_is_a_clear_error_at_start(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "gclient.py"), "-data-dir", str(tmp_path / "d"), "-no-listen", "-publish", f"blog={tmp_path / 'none'}"],
        check=False, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode != 0 and "is not a folder" in proc.stderr + proc.stdout
    assert not (tmp_path / "d" / "sites").exists()


def test_a_publish_folder_that_cannot_be_signed_is_a_clear_error_at_start(tmp_path: Path) -> None:
    """The folder exists (config accepts it) but holds a symlink: the node says so and exits 2, no traceback."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hi")
    (www / "link").symlink_to(www / "index.html")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "gclient.py"), "-data-dir", str(tmp_path / "d"), "-no-listen", "-publish", f"blog={www}"],
        check=False, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "cannot start: -publish blog: link: a symlink" in proc.stderr
    assert "Traceback" not in proc.stderr
