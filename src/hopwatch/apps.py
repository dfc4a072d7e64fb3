"""The Django app: installs hopwatch once, when Django is ready."""

from __future__ import annotations

import threading

from django.apps import AppConfig

_lock = threading.Lock()
_emitter = None


def activate() -> None:
    """Install the instrumentation and the request-line sink, if enabled. Idempotent."""
    global _emitter
    from hopwatch import _django
    from hopwatch._emit import Emitter
    from hopwatch._recorder import add_sink
    from hopwatch.conf import hopwatch_settings

    if not hopwatch_settings.ENABLED:
        return
    with _lock:
        _django.install()
        if _emitter is None:
            _emitter = Emitter(hopwatch_settings)
        add_sink(_emitter)


def deactivate() -> None:
    """Remove the sink and the instrumentation (asgiref and Django as they were)."""
    from hopwatch import _django
    from hopwatch._recorder import remove_sink

    with _lock:
        if _emitter is not None:
            remove_sink(_emitter)
            _emitter.close()
        _django.uninstall()


class HopwatchConfig(AppConfig):
    name = "hopwatch"
    verbose_name = "hopwatch"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from hopwatch import checks  # noqa: F401  (registers the system checks)

        activate()
