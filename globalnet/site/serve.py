"""The asyncio shell of the site HTTP responder: read one bounded request, write the answer.

The SOCKS proxy (for `http://SITE.gnet/`) and `-tunnel PORT>SITE` hand it the
browser's stream and a lookup into verified content; it only moves bytes.
"""

from __future__ import annotations

import asyncio

from .http import MAX_REQUEST, Lookup, RequestError, answer, error_page, parse_request

READ_TIMEOUT = 30.0


async def serve_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lookup: Lookup, timeout: float = READ_TIMEOUT, initial: bytes = b"") -> None:
    head = initial
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    request = parse_request(head)
                except RequestError as exc:
                    writer.write(error_page(exc.status, "Bad request", str(exc)))
                    break
                if request is not None:
                    writer.write(answer(request, lookup))
                    break
                data = await reader.read(MAX_REQUEST)
                if not data:
                    break
                head += data
            await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 5)
        except (TimeoutError, ConnectionError):
            pass
