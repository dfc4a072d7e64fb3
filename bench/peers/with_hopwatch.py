"""hopwatch exactly as the example site sets it up: its app, its middleware
first, one JSON line per request through the ``hopwatch`` logger to the file
named by ``HOPWATCH_LOG``."""

import os

from example_site.settings import *  # noqa: F403

_lines_at_start = 0


def evidence() -> dict[str, object]:
    """How many request lines the server wrote, and their mean length in bytes
    (read from its log file)."""
    path = os.environ.get("HOPWATCH_LOG", "")
    try:
        with open(path, "rb") as log:
            sizes = [len(line) for line in log]
    except OSError:
        sizes = []
    found: dict[str, object] = {"request lines logged": len(sizes)}
    if sizes:
        found["bytes a line"] = round(sum(sizes) / len(sizes))
    return found
