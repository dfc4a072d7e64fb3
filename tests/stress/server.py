"""Serve the stress site under uvicorn on 127.0.0.1, then write what the process saw.

    python -m tests.stress.server --port P --summary FILE [--lifetime S] [--graceful-timeout S]

The environment names the database (``EXAMPLE_SITE_VAR``) and the hopwatch log
(``HOPWATCH_LOG``), as for the example site. The server stops on SIGTERM or
SIGINT (uvicorn's graceful shutdown: in-flight requests finish; with
``--graceful-timeout`` they are cancelled after that many seconds), and by
itself after ``--lifetime`` seconds, so a test that dies never leaves it behind.

When it has stopped it writes ``--summary``, a JSON object counted outside
Django and hopwatch (the ASGI application as the server called it) and inside
(request records closed), so a test can prove that every request that reached
the application was closed and logged exactly once, and nothing is left open.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.stress.settings")


class Counting:
    """An ASGI wrapper counting HTTP requests in, out and in flight, outside Django."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.started = 0
        self.finished = 0
        self.raised = 0
        self.cancelled = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        with self.lock:
            self.started += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            import asyncio

            with self.lock:
                if isinstance(exc, asyncio.CancelledError):
                    self.cancelled += 1
                else:
                    self.raised += 1
            raise
        finally:
            with self.lock:
                self.finished += 1
                self.in_flight -= 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--lifetime", type=float, default=120.0)
    parser.add_argument("--graceful-timeout", type=float, default=None)
    args = parser.parse_args()

    import uvicorn
    from example_site.asgi import application  # the example site's own entry point

    from hopwatch import _errors
    from hopwatch._django import is_installed
    from hopwatch._django_scope import _awaiting_close
    from hopwatch._recorder import add_sink, late

    closed: dict[str, int] = {}
    closed_lock = threading.Lock()

    def count(record: Any) -> None:
        with closed_lock:
            closed[record.interface] = closed.get(record.interface, 0) + 1

    add_sink(count)
    app = Counting(application)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=2048,
        timeout_graceful_shutdown=args.graceful_timeout,
    )
    server = uvicorn.Server(config)
    timer = threading.Timer(args.lifetime, lambda: setattr(server, "should_exit", True))
    timer.daemon = True
    timer.start()
    # uvicorn re-raises the signal it stopped on once it has shut down; the
    # handler it then restores is this one, so the summary still gets written.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    timer.cancel()
    summary = {
        "started": app.started,
        "finished": app.finished,
        "raised": app.raised,
        "cancelled": app.cancelled,
        "max_in_flight": app.max_in_flight,
        "records_closed": closed,
        "awaiting_close": len(_awaiting_close),
        "late_hops": len(late),
        "internal_errors": _errors.total(),
        "hopwatch_installed": is_installed(),
    }
    logging.shutdown()  # flush and close the hopwatch log file
    tmp = args.summary.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary))
    tmp.replace(args.summary)
    sys.stdout.flush()
    os._exit(0)  # threads of the request executors must not hold the process


if __name__ == "__main__":
    main()
