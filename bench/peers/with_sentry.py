"""sentry-sdk with its Django integration, tracing every request, sending nothing.

``traces_sample_rate=1.0`` makes a transaction (with its database spans) for
every request; the transport accepts each envelope and drops it, so there is no
network traffic at all (the DSN points at port 9 on 127.0.0.1, the discard
port, and is never contacted).
"""

from __future__ import annotations

from typing import Any

from bench.peers.baseline import *  # noqa: F403

_envelopes = 0


def instrument() -> None:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.transport import Transport

    class DiscardTransport(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            global _envelopes
            _envelopes += 1

    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        traces_sample_rate=1.0,
        transport=DiscardTransport,
        integrations=[DjangoIntegration()],
    )


def evidence() -> dict[str, object]:
    return {"envelopes (transactions) discarded": _envelopes}
