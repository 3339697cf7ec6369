"""HTTP CONNECT on the proxy port (wire/socks.py), from HTTP seeds."""

from __future__ import annotations

from fuzz.fuzz_socks import ALLOWED, feed_all
from fuzz.harness import guarded, main

SEEDS = [
    b"\x00CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\nearly",
    b"\x01CONNECT [::1]:80 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n",
    b"\x10GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n",
    b"\x00CONNECT abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvw.gnet:80 HTTP/1.0\r\n\r\n",
]

if __name__ == "__main__":
    main(guarded(feed_all, ALLOWED), SEEDS)
