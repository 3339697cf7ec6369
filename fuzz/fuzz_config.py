"""Configuration (config.py): a -config TOML file and a command line, as a user writes them."""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import tempfile

from fuzz.harness import check, guarded, instrumented, main

with instrumented():
    from globalnet.config import ConfigError, load_config

ALLOWED = (ConfigError,)
# a file written per input: on tmpfs when there is one (a disk write per input would be the cost)
_DIR = tempfile.mkdtemp(prefix="gnet-fuzz-config-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
atexit.register(shutil.rmtree, _DIR, True)
_FILE = os.path.join(_DIR, "gnet.toml")
_ENV = {"GNET_DATA_DIR": os.path.join(_DIR, "data")}
SEEDS = [
    (
        b'\x00listen = "127.0.0.1:9000"\nconnect = ["127.0.0.1:9001"]\ntunnels = ["127.0.0.1:8000=rand>rand>tcp:127.0.0.1:80"]\n'
        b'proxies = ["127.0.0.1:1080"]\nlog_level = "debug"\nidle_timeout = 30\n[exit]\nenabled = true\nallow = ["*:443"]\n'
    ),
    b'\x00no_listen = true\nconsole = "127.0.0.1:9999"\n[[services]]\nname = "site"\ntarget = "127.0.0.1:8080"\n',
    b"\x01-listen\x00127.0.0.1:9000\x00-connect\x00127.0.0.1:9001,[::1]:9002\x00-exit\x00-log-level\x00info",
]


def one_input(data: bytes) -> None:
    """First byte even: the file's text; odd: argv words split at NUL."""
    if not data:
        return
    if data[0] % 2 == 0:
        with open(_FILE, "wb") as handle:
            handle.write(data[1:])
        argv = ["-config", _FILE, "-no-listen"]
    else:
        argv = [w.decode("utf-8", "replace") for w in data[1:].split(b"\x00")]
        if any(w.startswith(("--h", "-h")) or "version" in w for w in argv):
            return  # --help prints and exits(0) by design
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        config = load_config(argv, _ENV)
    check(config is not None, "no config and no error")


if __name__ == "__main__":
    main(guarded(one_input, ALLOWED), SEEDS)
