"""The demo's two servers, each in its own process, each stopping by itself.

    python -m example_site.servers asgi --port 8001 [--lifetime 300]
    python -m example_site.servers wsgi --port 8002 [--lifetime 300]

asgi: the example site under uvicorn. wsgi: under the standard library's
wsgiref (single-threaded; it closes responses as PEP 3333 says). Both listen on
127.0.0.1 only, stop on SIGTERM/SIGINT, and stop anyway after ``--lifetime``
seconds, so a killed demo never leaves a server behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings")


def serve_asgi(port: int, lifetime: float) -> None:
    import uvicorn

    config = uvicorn.Config(
        "example_site.asgi:application",
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    threading.Timer(lifetime, lambda: setattr(server, "should_exit", True)).start()
    server.run()
    os._exit(0)  # the lifetime timer thread must not keep the process alive


def serve_wsgi(port: int, lifetime: float) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from example_site.wsgi import application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = make_server("127.0.0.1", port, application, handler_class=QuietHandler)

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    timer = threading.Timer(lifetime, stop)
    timer.daemon = True
    timer.start()
    server.serve_forever(poll_interval=0.2)
    server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("interface", choices=["asgi", "wsgi"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lifetime", type=float, default=300.0)
    args = parser.parse_args()
    (serve_asgi if args.interface == "asgi" else serve_wsgi)(args.port, args.lifetime)


if __name__ == "__main__":
    main()
