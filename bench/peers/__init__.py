"""One settings (and wiring) module per server configuration of the benchmark.

Each module is a Django settings module: it star-imports the example site's
settings and changes only what its configuration needs. A module may also define

* ``instrument()``: called by ``bench.server`` once settings are importable and
  before Django builds its ASGI handler (where a tool's own docs say to set it up);
* ``evidence()``: a small dict, written when the server stops, showing that the
  tool really recorded something (spans exported, transactions sent, ...).

``baseline`` has no instrumentation at all; every peer starts from it, so the
only difference between a peer and the baseline is the peer.
"""
