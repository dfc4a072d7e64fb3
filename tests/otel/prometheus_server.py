"""The test app under uvicorn with OTEL_METRICS on, scraped as Prometheus would scrape it.

    python -m tests.otel.prometheus_server --port P --metrics-port M [--lifetime S]

Set up as a project would: the OpenTelemetry SDK's MeterProvider with the
Prometheus exporter's reader, made global, and prometheus_client's HTTP server
serving it; then Django's ASGI application, hopwatch installed by its app from
``tests.otel.settings_on``. Both servers listen on 127.0.0.1 only. The request
lines go to the file named by ``HOPWATCH_LOG``. It stops on SIGTERM or SIGINT,
and by itself after ``--lifetime`` seconds, so a test that dies never leaves it
behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.otel.settings_on")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--lifetime", type=float, default=120.0)
    args = parser.parse_args()

    from opentelemetry import metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import start_http_server

    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
    metrics_server, _thread = start_http_server(port=args.metrics_port, addr="127.0.0.1")

    import uvicorn
    from django.core.asgi import get_asgi_application

    server = uvicorn.Server(
        uvicorn.Config(
            get_asgi_application(),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    timer = threading.Timer(args.lifetime, lambda: setattr(server, "should_exit", True))
    timer.daemon = True
    timer.start()
    # uvicorn re-raises the signal it stopped on once it has shut down.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    timer.cancel()
    metrics_server.shutdown()


if __name__ == "__main__":
    main()
