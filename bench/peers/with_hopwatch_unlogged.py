"""Diagnostic, not a peer: hopwatch counting and attributing every hop but
logging no line (``SAMPLE_RATE`` 0). Next to ``with_hopwatch`` it splits
hopwatch's cost into the hop path and the request line."""

from bench.peers.with_hopwatch import *  # noqa: F403
from bench.peers.with_hopwatch import HOPWATCH

HOPWATCH = {**HOPWATCH, "SAMPLE_RATE": 0.0}
