"""hopwatch exactly as the example site sets it up: its app, its middleware
first, one JSON line per request through the ``hopwatch`` logger to the file
named by ``HOPWATCH_LOG``."""

import os

from example_site.settings import *  # noqa: F403

_lines_at_start = 0


def evidence() -> dict[str, object]:
    """How many request lines the server wrote (read from its log file)."""
    path = os.environ.get("HOPWATCH_LOG", "")
    try:
        with open(path, "rb") as log:
            lines = sum(1 for _ in log)
    except OSError:
        lines = 0
    return {"request lines logged": lines}
