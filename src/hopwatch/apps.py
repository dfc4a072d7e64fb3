"""The Django app: installs hopwatch once, when Django is ready."""

from __future__ import annotations

import os
import sys
import threading

from django.apps import AppConfig

_lock = threading.Lock()
#: Held by :func:`activate`, :func:`reinstall` and :func:`deactivate` throughout: each
#: installs or removes everything, never a part of it while another runs.
_lifecycle = threading.RLock()
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
    global enabled
    from hopwatch import conf
    from hopwatch.conf import hopwatch_settings

    conf.validate()
    _follow_setting_changes()
    with _lifecycle:
        if enabled is None:
            enabled = bool(hopwatch_settings.ENABLED)
        if not enabled:
            return
        _warn_without_accelerator()
        _install()


def _setting_changed(*, setting: str, **kwargs: object) -> None:
    """Django's ``setting_changed``: a change of ``HOPWATCH`` (``override_settings``'
    entry and exit) is read at once, so a relative ``OUTPUT`` path is resolved against
    the working directory of the change, and the output's listeners (held lines written
    out) run then, not at the next request."""
    if setting == "HOPWATCH":
        from hopwatch.conf import hopwatch_settings

        hopwatch_settings.merged()


def _follow_setting_changes() -> None:
    """Connect :func:`_setting_changed` (once; it stays connected, enabled or not)."""
    from django.core.signals import setting_changed

    setting_changed.connect(_setting_changed, weak=False, dispatch_uid="hopwatch.settings")


def _install() -> None:
    """Everything the app installs: asgiref's patch and Django's scopes, the database
    connections' signal, the request-line sink, the process lines, the hop tax, OTel."""
    global _emitter
    from hopwatch import _connections, _django
    from hopwatch._emit import Emitter
    from hopwatch._recorder import add_sink
    from hopwatch.conf import hopwatch_settings

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
        _measure_hop_tax_later()
    if hopwatch_settings.OTEL_METRICS or hopwatch_settings.OTEL_SPANS:
        _install_otel()


def reinstall() -> bool:
    """``hopwatch.install()`` in a process where this app (or its middleware) started
    hopwatch: everything :func:`deactivate` (``hopwatch.uninstall()``) removed, back as
    :func:`activate` installs it (``ENABLED`` as start-up read it; the process lines, the
    hop tax and OpenTelemetry as the settings say now). False, and nothing done, where
    hopwatch did not start that way (``ENABLED`` off at start-up, or never started)."""
    with _lifecycle:
        if not enabled:
            return False
        _install()
        return True


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
#: Whether this process measures it: MEASURE_HOP_TAX at start-up, until hopwatch is
#: uninstalled or the process ends.
_hop_tax_wanted = False
_hop_tax_started = False
_hop_tax_thread: threading.Thread | None = None
_hop_tax_stop = threading.Event()
_hop_tax_lock = threading.Lock()


def _measure_hop_tax_later() -> None:
    """MEASURE_HOP_TAX: measure when this process closes its first request (a sink until
    then). A process that serves none (``migrate``, the master of gunicorn ``--preload``)
    never measures; each worker it forks measures for itself."""
    global _hop_tax_wanted
    from hopwatch._recorder import add_sink

    with _hop_tax_lock:
        _hop_tax_wanted = True
        if hop_tax is None and not _hop_tax_started:
            add_sink(_measure_at_first_request)


def _measure_at_first_request(record: object) -> None:
    """The request sink that starts the measurement, then removes itself."""
    from hopwatch._recorder import remove_sink

    remove_sink(_measure_at_first_request)
    _start_hop_tax_measurement()


def _start_hop_tax_measurement() -> None:
    """Measure once, in a daemon thread (never inside a request); lines carry the result."""
    global _hop_tax_started, _hop_tax_thread, _hop_tax_stop
    # Imported here, not in the thread: a fork while the thread imported a module would
    # leave the child that module's import lock, held for ever.
    import hopwatch._errors
    import hopwatch.hop_tax

    with _hop_tax_lock:
        if _hop_tax_started or not _hop_tax_wanted or hop_tax is not None:
            return
        _hop_tax_started = True
        if hopwatch.hop_tax.threads_are_greenlets():
            hopwatch._errors.logger.warning(
                "hopwatch: MEASURE_HOP_TAX measures nothing in this process: threading is"
                " monkey-patched (gevent or eventlet), and the measurement's event loop"
                " would run in the requests' own thread. `hopwatch audit` measures the"
                " price on the host; `hopwatch report --hop-tax US` applies it."
            )
            return
        _hop_tax_stop = stop = threading.Event()
        _hop_tax_thread = threading.Thread(
            target=_measure, args=(stop,), name="hopwatch-hop-tax", daemon=True
        )
        _hop_tax_thread.start()


def _measure(stop: threading.Event) -> None:
    global hop_tax
    from hopwatch import _errors
    from hopwatch.hop_tax import MeasurementStopped, measure_hop_tax

    try:
        hop_tax = measure_hop_tax(samples=30, stop=stop)
    except MeasurementStopped:  # uninstalled, or the process is ending
        pass
    except Exception as exc:
        _errors.report("measuring the hop tax", exc)


def _stop_hop_tax_measurement() -> None:
    """No measurement from now on (until activated again): one under way ends before its
    next hop, and is waited for, so that it leaves nothing half done."""
    global _hop_tax_wanted, _hop_tax_started, _hop_tax_thread
    from hopwatch._recorder import remove_sink

    with _hop_tax_lock:
        _hop_tax_wanted = False
        remove_sink(_measure_at_first_request)
        _hop_tax_stop.set()
        thread, _hop_tax_thread = _hop_tax_thread, None
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=10)
    with _hop_tax_lock:
        _hop_tax_started = hop_tax is not None


def _hop_tax_at_exit() -> None:
    """The process is ending: a measurement under way stops between two hops and its
    thread ends, before the interpreter would freeze it mid-hop (an ``async_to_sync``'s
    coroutine then never awaited, a ``RuntimeWarning`` at exit)."""
    if _hop_tax_wanted or _hop_tax_thread is not None:
        _stop_hop_tax_measurement()


def _after_fork_in_child() -> None:
    """In a forked child: the parent's threads are not here (nor are the locks they held).
    A hop tax measurement the parent finished stands (the same host); one it had under
    way starts again at the child's first request."""
    global _lifecycle, _hop_tax_lock, _hop_tax_started, _hop_tax_thread, _hop_tax_stop
    _lifecycle = threading.RLock()
    _hop_tax_lock = threading.Lock()
    _hop_tax_thread = None
    _hop_tax_stop = threading.Event()
    if hop_tax is None and _hop_tax_started:
        _hop_tax_started = False
        if _hop_tax_wanted:
            from hopwatch._recorder import add_sink

            add_sink(_measure_at_first_request)


# threading's exit hook: before the interpreter waits for its threads and runs atexit.
threading._register_atexit(_hop_tax_at_exit)  # type: ignore[attr-defined]
os.register_at_fork(after_in_child=_after_fork_in_child)


def hop_tax_us() -> float | None:
    """This host's hop tax in µs, once measured (the request line's ``hop_tax_us``)."""
    tax = hop_tax
    return None if tax is None else round(tax.sync_to_async_us, 1)


def wait_for_hop_tax_measurement(timeout: float = 30.0, *, start: bool = True) -> None:
    """Let this process's MEASURE_HOP_TAX measurement finish; ``start``: start it now if it
    is due and no request has started it yet (tests, and the audit, whose own would
    compete with it for the GIL)."""
    if start:
        _start_hop_tax_measurement()
    thread = _hop_tax_thread
    if thread is not None:
        thread.join(timeout)


def deactivate() -> None:
    """Remove everything :func:`activate` installed (``hopwatch.uninstall()``): the sinks,
    the process lines, a hop tax measurement, OpenTelemetry's hooks, the connections'
    signal, Django's scopes and the test client's import hook, asgiref's patch. Django
    and asgiref are then as they were; :func:`reinstall` puts it all back."""
    from hopwatch import _connections, _django
    from hopwatch._recorder import remove_sink

    with _lifecycle:
        try:
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
        finally:
            _stop_hop_tax_measurement()


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
