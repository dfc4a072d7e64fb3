"""Django system checks for hopwatch's configuration.

Ids are stable; each message says what is wrong and each hint how to fix it.

* ``hopwatch.E001`` ``HOPWATCH`` is not a dict.
* ``hopwatch.E002`` ``HOPWATCH`` has a key hopwatch does not know (a typo).
* ``hopwatch.E003`` a ``HOPWATCH`` value has the wrong type or range.
* ``hopwatch.W001`` the middleware is missing from ``MIDDLEWARE``.
* ``hopwatch.W002`` the middleware is not first in ``MIDDLEWARE``.
* ``hopwatch.W003`` the middleware is used but the app is not installed.
* ``hopwatch.W004`` request lines go to a logger with no handler at INFO (lost).
* ``hopwatch.W005`` ``OTEL_SPANS`` is on but OpenTelemetry's Django middleware is
  below hopwatch's: the request's span does not exist yet when hopwatch looks for it.
* ``hopwatch.W010`` a sync-only middleware in an ASGI project (``hopwatch.audit``).
* ``hopwatch.I001`` Django or asgiref is a version hopwatch was not tested on
  (it keeps working; the counts may miss hops a new version adds).
"""

from __future__ import annotations

import difflib
import logging
import numbers
import os
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Tags, Warning, register

from hopwatch.audit import check_sync_only_middleware
from hopwatch.conf import CREDENTIAL_HEADERS, DEFAULTS, hopwatch_settings

MIDDLEWARE_PATH = "hopwatch.middleware.HopwatchMiddleware"
#: What ``DjangoInstrumentor().instrument()`` inserts in MIDDLEWARE. It may stand
#: above hopwatch's (it must, for OTEL_SPANS: hopwatch parents its spans on the
#: span that middleware starts), so it does not count against "first".
OTEL_MIDDLEWARE_PATH = (
    "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"
)


def _number(low: float, high: float | None) -> Callable[[Any], bool]:
    def ok(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        return value >= low and (high is None or value <= high)

    return ok


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_VALIDATORS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "ENABLED": (lambda v: isinstance(v, bool), "True or False"),
    "OUTPUT": (lambda v: isinstance(v, str) and bool(v), '"logging", "stdout" or a file path'),
    "LOGGER_NAME": (lambda v: isinstance(v, str) and bool(v), "a logger name"),
    "REQUEST_ID_HEADER": (
        lambda v: v is None or (isinstance(v, str) and v.lower() not in CREDENTIAL_HEADERS),
        "a header name that carries no credential, or None",
    ),
    "SAMPLE_RATE": (_number(0.0, 1.0), "a number from 0.0 to 1.0"),
    "MIN_HOPS": (_count, "a whole number >= 0"),
    "MIN_HOP_MS": (_number(0.0, None), "a number of milliseconds >= 0"),
    "SITES_LIMIT": (_count, "a whole number >= 0"),
    "DETAIL": (lambda v: isinstance(v, bool), "True or False"),
    "DETAIL_LIMIT": (_count, "a whole number >= 0"),
    "EXTRA_FIELDS": (
        lambda v: v is None or callable(v) or isinstance(v, str),
        "None, a callable or its dotted path",
    ),
    "PATH_MAX_LENGTH": (lambda v: _count(v) and v > 0, "a whole number > 0"),
    "MEASURE_HOP_TAX": (lambda v: isinstance(v, bool), "True or False"),
    "PROCESS_LINE_SECONDS": (_number(0.0, 86400.0), "seconds from 0 (off) to 86400"),
    "OTEL_METRICS": (lambda v: isinstance(v, bool), "True or False"),
    "OTEL_SPANS": (lambda v: isinstance(v, bool), "True or False"),
    "PROFILE_DIR": (lambda v: v is None or isinstance(v, str | os.PathLike), "None or a path"),
    "PROFILE_TOKEN": (
        lambda v: v is None or (isinstance(v, str) and len(v) >= 16),
        "None or a secret string of at least 16 characters",
    ),
    "PROFILE_HEADER": (lambda v: v is None or isinstance(v, str), "a header name or None"),
    "PROFILE_STAFF_PARAM": (lambda v: v is None or isinstance(v, str), "a parameter name or None"),
    "PROFILE_INLINE_PARAM": (lambda v: v is None or isinstance(v, str), "a parameter name or None"),
    "PROFILE_AUTO_SAMPLE": (_number(0.0, 1.0), "a number from 0.0 to 1.0"),
    "PROFILE_AUTO_MIN_HOP_MS": (_number(0.0, None), "a number of milliseconds >= 0"),
    "PROFILE_AUTO_MIN_DURATION_MS": (_number(0.0, None), "a number of milliseconds >= 0"),
    "PROFILE_RATE_LIMIT": (lambda v: _count(v) and v > 0, "a whole number > 0"),
    "PROFILE_INTERVAL": (_number(0.0001, 1.0), "seconds between samples, 0.0001-1.0"),
}


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    user = getattr(settings, "HOPWATCH", None)
    if user is None:
        return []
    if not isinstance(user, dict):
        return [
            Error(
                f"HOPWATCH must be a dict, not {type(user).__name__}.",
                hint='Write HOPWATCH = {"ENABLED": True, ...} in your settings.',
                id="hopwatch.E001",
            )
        ]
    messages: list[CheckMessage] = []
    for key in user:
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else "See docs/settings.md."
            messages.append(
                Error(f"HOPWATCH has an unknown key {key!r}.", hint=hint, id="hopwatch.E002")
            )
    for key, (valid, expected) in _VALIDATORS.items():
        if key in user and not valid(user[key]):
            messages.append(
                Error(
                    f"HOPWATCH[{key!r}] is {user[key]!r}; it must be {expected}.",
                    hint=f"Set HOPWATCH[{key!r}] to {expected}, or remove it for the default"
                    f" ({DEFAULTS[key]!r}).",
                    id="hopwatch.E003",
                )
            )
    return messages


@register(Tags.compatibility)
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    messages: list[CheckMessage] = []
    app_installed = apps.is_installed("hopwatch")
    if MIDDLEWARE_PATH not in middleware:
        if app_installed:
            messages.append(
                Warning(
                    "hopwatch is installed but its middleware is not in MIDDLEWARE: request"
                    " lines will have no route, view or request id.",
                    hint=f"Add {MIDDLEWARE_PATH!r} as the first entry of MIDDLEWARE.",
                    id="hopwatch.W001",
                )
            )
    elif above := [
        m for m in middleware[: middleware.index(MIDDLEWARE_PATH)] if m != OTEL_MIDDLEWARE_PATH
    ]:
        messages.append(
            Warning(
                f"{MIDDLEWARE_PATH} is not first in MIDDLEWARE: middleware above it"
                f" ({above[0]}) is not covered and may change what it sees.",
                hint=f"Move {MIDDLEWARE_PATH!r} to the top of MIDDLEWARE.",
                id="hopwatch.W002",
            )
        )
    if MIDDLEWARE_PATH in middleware and not app_installed:
        messages.append(
            Warning(
                "hopwatch's middleware is in MIDDLEWARE but 'hopwatch' is not in"
                " INSTALLED_APPS: hops Django makes outside the middleware (request_started,"
                " response.close) are not counted and request lines are not configured.",
                hint="Add 'hopwatch' to INSTALLED_APPS.",
                id="hopwatch.W003",
            )
        )
    return messages


@register(Tags.compatibility)
def check_otel_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not hopwatch_settings.OTEL_SPANS:
        return []
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH not in middleware or OTEL_MIDDLEWARE_PATH not in middleware:
        return []
    if middleware.index(OTEL_MIDDLEWARE_PATH) < middleware.index(MIDDLEWARE_PATH):
        return []
    return [
        Warning(
            "OTEL_SPANS is on but OpenTelemetry's Django middleware is below hopwatch's in"
            " MIDDLEWARE: its span starts after hopwatch looks for the request's span, so"
            " crossings cannot be its children (they get no span, unless OpenTelemetry's"
            " ASGI or WSGI middleware wraps the application).",
            hint="Instrument with DjangoInstrumentor().instrument() (it puts its middleware"
            " first, its default), or move it above hopwatch's middleware.",
            id="hopwatch.W005",
        )
    ]


@register(Tags.compatibility)
def check_logging(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    user = getattr(settings, "HOPWATCH", None)
    disabled = isinstance(user, dict) and not user.get("ENABLED", True)
    if disabled or not apps.is_installed("hopwatch"):
        return []
    if hopwatch_settings.OUTPUT != "logging":
        return []
    name = hopwatch_settings.LOGGER_NAME
    logger = logging.getLogger(name)
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        return []
    return [
        Warning(
            f"hopwatch writes request lines to the logger {name!r} at INFO, but that logger"
            " has no handler or a level above INFO: the lines are lost.",
            hint=f'Add a handler for {name!r} with level "INFO" to LOGGING (see "Logging'
            ' configuration" in docs/settings.md), or set HOPWATCH["OUTPUT"] to "stdout"'
            " or a file.",
            id="hopwatch.W004",
        )
    ]


@register(Tags.compatibility)
def check_versions(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from hopwatch import _versions

    try:
        found = _versions.untested()
    except Exception as exc:  # reading package metadata must never stop `manage.py check`
        found = [("Django and asgiref", f"hopwatch could not read their versions ({exc})")]
    return [
        Info(
            f"hopwatch runs on {installed}, a version it was not tested on: {reason}.",
            hint="hopwatch keeps working. Hops a new version adds are still counted, but may"
            " be named only by the callable (kind other) and some counts in its docs may"
            " differ. Check for a newer hopwatch; silence with SILENCED_SYSTEM_CHECKS ="
            ' ["hopwatch.I001"].',
            id="hopwatch.I001",
        )
        for installed, reason in found
    ]


# The audit owns the middleware model; the check is registered here with the others.
register(Tags.compatibility)(check_sync_only_middleware)
