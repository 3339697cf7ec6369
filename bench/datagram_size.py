"""What qh3's `max_datagram_size` and `probe_datagram_size` actually do.

    python -m bench.datagram_size

Two sans-IO qh3 connections (no sockets, a simulated clock) send 4 MiB on a
stream through a simulated path that drops datagrams above `path` bytes. For
each setting: the sizes of the datagrams the client sent and how much arrived.
This is the evidence behind globalnet/link/path_mtu.py.
"""

from __future__ import annotations

import collections
import ssl
import sys

from qh3._hazmat import pull_quic_header
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.tls import SignatureAlgorithm

from globalnet.identity import Identity
from globalnet.link.certs import certificate_pem

PAYLOAD = 4 * 1024 * 1024


def transfer(size: int, probe: bool, path: int, seconds: float) -> tuple[collections.Counter[int], int, float]:
    cert, key = certificate_pem(Identity.generate())
    cc = QuicConfiguration(is_client=True, alpn_protocols=["t"], max_datagram_size=size, probe_datagram_size=probe)
    cc.verify_mode = ssl.CERT_NONE
    cc.signature_algorithms = [SignatureAlgorithm.ED25519]
    sc = QuicConfiguration(is_client=False, alpn_protocols=["t"], max_datagram_size=size)
    sc.load_cert_chain(cert, key)
    client = QuicConnection(configuration=cc)
    now = 0.0
    client.connect(("127.0.0.1", 4433), now=now)
    first = client.datagrams_to_send(now=now)
    server = QuicConnection(configuration=sc, original_destination_connection_id=pull_quic_header(first[0][0], 0, 8)[3])
    for data, _ in first:
        server.receive_datagram(data, ("127.0.0.1", 5555), now=now)
    sizes: collections.Counter[int] = collections.Counter()
    got, sent = 0, False
    while now < seconds and got < PAYLOAD:
        now += 0.001
        for a, b, addr in ((client, server, ("127.0.0.1", 5555)), (server, client, ("127.0.0.1", 4433))):
            for data, _ in a.datagrams_to_send(now=now):
                if a is client:
                    sizes[len(data)] += 1
                if len(data) <= path:
                    b.receive_datagram(data, addr, now=now)
            while (ev := a.next_event()) is not None:
                if a is server and isinstance(ev, events.StreamDataReceived):
                    got += len(ev.data)
        if not sent and client._handshake_complete:
            client.send_stream_data(client._open_stream(), b"x" * PAYLOAD, True)
            sent = True
        for conn in (client, server):
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
    return sizes, got, now


def main() -> int:
    print(f"{'max_datagram_size':>17} {'probe':>5} {'path':>5}  {'full packets':>12} {'largest':>7}  delivered")
    for size, probe, path, seconds in (
        (1200, False, 1500, 10), (1452, False, 1500, 10), (1452, True, 1500, 10),
        (1452, True, 1280, 60), (1452, False, 1280, 60), (1200, False, 1280, 10),
    ):
        sizes, got, took = transfer(size, probe, path, seconds)
        common = sizes.most_common(1)[0][0]
        print(f"{size:>17} {probe!s:>5} {path:>5}  {common:>12} {max(sizes):>7}  {got / PAYLOAD:4.0%} in {took:.3f} s simulated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
