"""The Django app: installs hopwatch once, when Django is ready."""

from __future__ import annotations

import sys
import threading

from django.apps import AppConfig

_lock = threading.Lock()
_emitter = None

#: ``HOPWATCH["ENABLED"]`` as read once, when hopwatch started in this process (the first
#: :func:`activate`: the app's ``ready()``, or the middleware's first load without the
#: app); None before. Off, nothing is installed and the middleware removes itself
#: (``MiddlewareNotUsed``); a later change of the setting (``override_settings``) turns
#: neither way.
enabled: bool | None = None


def activate() -> None:
    """Check the settings, then install the instrumentation and the request-line sink, if
    enabled at start-up (``ENABLED`` is read by the first call only). Idempotent. A bad
    setting raises ``ImproperlyConfigured`` (start-up stops)."""
    global _emitter, enabled
    from hopwatch import _connections, _django, conf
    from hopwatch._emit import Emitter
    from hopwatch._recorder import add_sink
    from hopwatch.conf import hopwatch_settings

    conf.validate()
    if enabled is None:
        enabled = bool(hopwatch_settings.ENABLED)
    if not enabled:
        return
    _warn_without_accelerator()
    with _lock:
        _django.install()
        _connections.install()
        if _emitter is None:
            _emitter = Emitter(hopwatch_settings, hop_tax_us)
        # The bound method, not the instance: calling an instance looks up its
        # __call__ on the type every time, a lookup a request evicts from the
        # type cache (about 1,800 instructions a line, Python 3.11).
        add_sink(_emitter.__call__)
    if hopwatch_settings.PROCESS_LINE_SECONDS:
        _start_process_lines(hopwatch_settings.PROCESS_LINE_SECONDS)
    if hopwatch_settings.MEASURE_HOP_TAX:
        _start_hop_tax_measurement()
    if hopwatch_settings.OTEL_METRICS or hopwatch_settings.OTEL_SPANS:
        _install_otel()


_accelerator_warned = False


def _warn_without_accelerator() -> None:
    """Once per process, on the ``hopwatch`` logger: the C accelerator did not load
    (the system check hopwatch.W006 says the same, but a server runs no checks;
    ``SILENCED_SYSTEM_CHECKS`` silences both)."""
    global _accelerator_warned
    from hopwatch import _hotpath

    if _hotpath.UNAVAILABLE is None or _accelerator_warned:
        return
    from hopwatch.conf import silenced

    if silenced("hopwatch.W006"):
        return
    _accelerator_warned = True
    import logging

    logging.getLogger("hopwatch").warning(
        "%s %s (hopwatch.W006)", _hotpath.unavailable_message(), _hotpath.REBUILD_HINT
    )


def _install_otel() -> None:
    """hopwatch.otel, only when configured: off, OpenTelemetry is never imported."""
    from django.core.exceptions import ImproperlyConfigured

    try:
        from hopwatch import otel
    except ImportError as exc:
        raise ImproperlyConfigured(
            'HOPWATCH["OTEL_METRICS"] / ["OTEL_SPANS"] need opentelemetry-api:'
            f" pip install 'hopwatch[otel]' ({exc})"
        ) from None
    otel.install()


#: The hopwatch.process line writer (hopwatch._process.ProcessLines), when on.
process_lines = None


def _start_process_lines(seconds: float) -> None:
    """One hopwatch.process line every ``seconds``, through the request lines' output."""
    global process_lines
    from hopwatch._process import ProcessLines
    from hopwatch._recorder import add_sink

    with _lock:
        if process_lines is None and _emitter is not None:
            process_lines = ProcessLines(seconds, _emitter.write_event)
            add_sink(process_lines)


#: What a no-op hop costs on this host (hopwatch.hop_tax.HopTax), once measured.
hop_tax = None
_hop_tax_started = False
_hop_tax_thread: threading.Thread | None = None


def _start_hop_tax_measurement() -> None:
    """Measure once, in a daemon thread (never inside a request); lines carry the result."""
    global _hop_tax_started, _hop_tax_thread
    with _lock:
        if _hop_tax_started:
            return
        _hop_tax_started = True

    def measure() -> None:
        global hop_tax
        from hopwatch import _errors
        from hopwatch.hop_tax import measure_hop_tax

        try:
            hop_tax = measure_hop_tax(samples=30)
        except Exception as exc:
            _errors.report("measuring the hop tax", exc)

    _hop_tax_thread = threading.Thread(target=measure, name="hopwatch-hop-tax", daemon=True)
    _hop_tax_thread.start()


def hop_tax_us() -> float | None:
    """This host's hop tax in µs, once measured (the request line's ``hop_tax_us``)."""
    tax = hop_tax
    return None if tax is None else round(tax.sync_to_async_us, 1)


def wait_for_hop_tax_measurement(timeout: float = 30.0) -> None:
    """Let a start-up measurement finish (the audit's own would compete with it for the GIL)."""
    thread = _hop_tax_thread
    if thread is not None:
        thread.join(timeout)


def deactivate() -> None:
    """Remove the sink and the instrumentation (asgiref and Django as they were)."""
    from hopwatch import _connections, _django
    from hopwatch._recorder import remove_sink

    with _lock:
        try:
            if _emitter is not None:
                remove_sink(_emitter.__call__)
                _emitter.close()
            _stop_process_lines()
            otel = sys.modules.get("hopwatch.otel")
            if otel is not None:
                otel.uninstall()
        finally:
            _connections.uninstall()
            _django.uninstall()


def _stop_process_lines() -> None:
    global process_lines
    from hopwatch._recorder import remove_sink

    if process_lines is not None:
        remove_sink(process_lines)
        process_lines.stop()
        process_lines = None


class HopwatchConfig(AppConfig):
    name = "hopwatch"
    verbose_name = "hopwatch"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from hopwatch import checks  # noqa: F401  (registers the system checks)

        activate()
