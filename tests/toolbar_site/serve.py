"""Serve the toolbar test site under uvicorn on 127.0.0.1; stops by itself.

python -m tests.toolbar_site.serve PORT [LIFETIME_SECONDS]
"""

import os
import sys
import threading

import uvicorn


def main() -> None:
    port = int(sys.argv[1])
    lifetime = float(sys.argv[2]) if len(sys.argv) > 2 else 120.0
    config = uvicorn.Config(
        "tests.toolbar_site.asgi:application",
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    timer = threading.Timer(lifetime, lambda: setattr(server, "should_exit", True))
    timer.daemon = True
    timer.start()
    server.run()
    os._exit(0)


if __name__ == "__main__":
    main()
