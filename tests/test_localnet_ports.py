"""The demo's port check agrees with how its nodes bind: a port whose last connections are in
TIME_WAIT (a demo just stopped) is free, a listening one is not."""

from __future__ import annotations

import socket

from globalnet.localnet import free_port, port_is_free


def _time_wait_on(port: int) -> None:
    """Leave the server side of one connection on `port` in TIME_WAIT (the server closes first)."""
    with socket.create_server(("127.0.0.1", port)) as listener:
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()  # the side that closes first holds TIME_WAIT
        client.recv(1)
        client.close()


def test_a_port_in_time_wait_is_free_and_a_listening_one_is_not() -> None:
    port = free_port()
    _time_wait_on(port)
    with socket.socket() as plain:  # what the check did before: without SO_REUSEADDR the bind fails
        try:
            plain.bind(("127.0.0.1", port))
            time_wait_held = False
        except OSError:
            time_wait_held = True
    assert time_wait_held  # the situation is real, not one this machine never shows
    assert port_is_free(port)
    with socket.create_server(("127.0.0.1", port)):
        assert not port_is_free(port)


def test_a_bound_udp_port_is_not_free() -> None:
    port = free_port(socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))
        assert not port_is_free(port, socket.SOCK_DGRAM)
    assert port_is_free(port, socket.SOCK_DGRAM)
