"""Raise qh3's fixed limit of 100 concurrent bidirectional streams per connection.

Why: one link carries every circuit between two nodes (a hop stream each), so
100 concurrent streams would cap a relay pair at 100 circuits. qh3 2.1 hard-codes
the limit in two places (the native core's local limit and the transport
parameter it advertises); both are looked up as module globals, so wrapping
those two names is enough. The pin `qh3>=2.1,<2.2` keeps the argument position
below valid; `test_more_than_100_circuits_share_one_link` fails loudly if it ever
stops working.
"""

from __future__ import annotations

from typing import Any

import qh3.quic.connection as _connection
import qh3.quic.tls_bridge as _tls_bridge

MAX_STREAMS_BIDI = 8192
#: Position of `local_max_streams_bidi` in QuicConnectionCore(...) (qh3 2.1).
_LOCAL_MAX_STREAMS_BIDI_ARG = 21

_original_core = _connection.QuicConnectionCore
_original_parameters = _tls_bridge.QuicTransportParameters


def _core(*args: Any) -> Any:
    values = list(args)
    if values[_LOCAL_MAX_STREAMS_BIDI_ARG] == 100:
        values[_LOCAL_MAX_STREAMS_BIDI_ARG] = MAX_STREAMS_BIDI
    return _original_core(*values)


def _parameters(**kwargs: Any) -> Any:
    if kwargs.get("initial_max_streams_bidi") == 100:
        kwargs["initial_max_streams_bidi"] = MAX_STREAMS_BIDI
    return _original_parameters(**kwargs)


def apply() -> None:
    _connection.QuicConnectionCore = _core  # type: ignore[misc, assignment]  # a factory stands in for the class
    _tls_bridge.QuicTransportParameters = _parameters  # type: ignore[misc, assignment]  # a factory stands in for the class


apply()
