"""The floor under hopwatch's per-request line: a hand-written access log.

Not a peer and not hopwatch: the least a Django user writes to get one JSON line
per request into a file. An async middleware that times the rest of the chain,
builds a dict of five fields, ``json.dumps`` it and hands it to a
``logging.Logger`` whose ``FileHandler`` writes (and flushes) it. Everything
hopwatch's line costs beyond the hops, this pays too, except hopwatch's record,
names and fold: the logging call, the write system call, the bytes.

``PAD_TO`` (bytes, 0 for none) pads the line with one more field up to that
length, so the same number of bytes goes through the same handler as
hopwatch's line (``bench.request_wall``'s toggled process sets it to the length
of hopwatch's line on the same request).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import markcoroutinefunction

#: The logger the middleware writes to; its handler is the caller's to set up.
LOGGER_NAME = "bench.access_log"
#: Pad each line to this many bytes (0: no padding).
PAD_TO = 0

_logger = logging.getLogger(LOGGER_NAME)


class AccessLogMiddleware:
    """One JSON line per request: method, path, status, duration (async only)."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Awaitable[Any]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: Any) -> Any:
        started = time.perf_counter_ns()
        response = await self.get_response(request)
        fields: dict[str, Any] = {
            "event": "request",
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter_ns() - started) / 1e6, 3),
        }
        if PAD_TO:
            # json.dumps's default separators: ', "pad": ""' is 11 bytes
            fields["pad"] = "x" * max(0, PAD_TO - len(json.dumps(fields)) - 11)
        _logger.info(json.dumps(fields))
        return response
