"""The test settings with both OpenTelemetry settings on, from start-up; the request
lines go to the file named by HOPWATCH_LOG when it is set."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import HOPWATCH

HOPWATCH = {
    **HOPWATCH,
    "OUTPUT": os.environ.get("HOPWATCH_LOG") or "logging",
    "OTEL_METRICS": True,
    "OTEL_SPANS": True,
    "SITES_LIMIT": 100,  # every cause in the line, to compare with the counter by cause
}
