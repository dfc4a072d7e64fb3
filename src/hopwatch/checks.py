"""Django system checks for hopwatch's configuration.

Ids are stable; each message says what is wrong and each hint how to fix it.

* ``hopwatch.E001`` ``HOPWATCH`` is not a dict.
* ``hopwatch.E002`` ``HOPWATCH`` has a key hopwatch does not know (a typo).
* ``hopwatch.E003`` a ``HOPWATCH`` value has the wrong type or range.
* ``hopwatch.W001`` the middleware is missing from ``MIDDLEWARE``.
* ``hopwatch.W002`` the middleware is not first in ``MIDDLEWARE``.
* ``hopwatch.W003`` the middleware is used but the app is not installed (these checks are
  then registered by the middleware as Django loads it: ``manage.py check`` alone,
  which loads no middleware, cannot run them).
* ``hopwatch.W004`` request lines go to a logger with no handler at INFO (lost).
* ``hopwatch.W005`` ``OTEL_SPANS`` is on but OpenTelemetry's Django middleware is
  below hopwatch's: the request's span does not exist yet when hopwatch looks for it.
* ``hopwatch.W006`` the C accelerator did not load: hopwatch runs its pure-Python hop
  path, which costs several times as much per hop.
* ``hopwatch.W007`` ``OUTPUT`` is a file this process cannot append to (lost lines).
* ``hopwatch.W008`` ``PROFILE_DIR`` is a directory no profile would be written to (not
  this user's own, writable by others, inside a directory others may write to and
  not sticky, not a directory, or not one this user can make). Writable by a group is
  writable by others unless the group is this user's private one.
* ``hopwatch.W010`` a sync-only middleware in an ASGI project (``hopwatch audit`` shows
  what it costs).
* ``hopwatch.I001`` Django or asgiref is a version hopwatch was not tested on
  (it keeps working; the counts may miss hops a new version adds).
"""

from __future__ import annotations

import os
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Tags, Warning, register

from hopwatch.conf import hopwatch_settings, lines_lost_to, problems

MIDDLEWARE_PATH = "hopwatch.middleware.HopwatchMiddleware"
#: What ``DjangoInstrumentor().instrument()`` inserts in MIDDLEWARE. It may stand
#: above hopwatch's (it must, for OTEL_SPANS: hopwatch parents its spans on the
#: span that middleware starts), so it does not count against "first".
OTEL_MIDDLEWARE_PATH = (
    "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"
)


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001-E003 from the settings table (hopwatch's start-up refuses the same problems)."""
    return [
        Error(problem.message, hint=problem.hint, id=problem.id)
        for problem in problems(getattr(settings, "HOPWATCH", None))
    ]


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
                    " lines will have no route or view; under WSGI a generated request_id"
                    " (REQUEST_ID_HEADER is not read), under ASGI status null.",
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
                f" ({_named(above)}) is not covered and may change what it sees.",
                hint=f"Move {MIDDLEWARE_PATH!r} to the top of MIDDLEWARE.",
                id="hopwatch.W002",
            )
        )
    if MIDDLEWARE_PATH in middleware and not app_installed:
        messages.append(Warning(WITHOUT_THE_APP, hint=WITHOUT_THE_APP_HINT, id="hopwatch.W003"))
    return messages


#: Middleware named in full by hopwatch.W002; past these, how many more.
ABOVE_NAMED = 3


def _named(paths: list[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``, ``A, B, C and 2 more``."""
    if len(paths) > ABOVE_NAMED:
        return f"{', '.join(paths[:ABOVE_NAMED])} and {len(paths) - ABOVE_NAMED} more"
    if len(paths) == 1:
        return paths[0]
    return f"{', '.join(paths[:-1])} and {paths[-1]}"


#: hopwatch.W003, as the check says it and as the middleware logs it when it is loaded
#: without the app (``manage.py check`` loads no middleware: without the app, nothing of
#: hopwatch's is imported when it runs, so it can report nothing).
WITHOUT_THE_APP = (
    "hopwatch's middleware is in MIDDLEWARE but 'hopwatch' is not in INSTALLED_APPS:"
    " hopwatch installs itself only as Django loads its middleware, and Django loads"
    " MIDDLEWARE from the bottom up, so in the first handler of each process (a server's"
    " only one) the sync process_view, process_template_response and process_exception"
    " hooks of the middleware below it are named as the view (kind \"view\", site"
    " \"django.middleware.csrf.process_view\") instead of as middleware (the hops are all"
    " counted). manage.py check runs hopwatch's checks only in a process that has loaded"
    " the middleware (never on its own), and manage.py hopwatch_audit is missing."
)
WITHOUT_THE_APP_HINT = "Add 'hopwatch' to INSTALLED_APPS."


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
    if disabled:
        return []
    output = hopwatch_settings.OUTPUT
    if output == "stdout":
        return []
    if output != "logging":
        return _file_output_problems(output)
    name = hopwatch_settings.LOGGER_NAME
    lost = lines_lost_to(name)
    if lost is None:
        return []
    return [
        Warning(
            lost,
            hint=f'Add a handler for {name!r} with level "INFO" to LOGGING (see "Logging'
            " configuration\" in docs/settings.md in hopwatch's source distribution), or set"
            ' HOPWATCH["OUTPUT"] to "stdout" or a file.',
            id="hopwatch.W004",
        )
    ]


def _file_output_problems(output: str | os.PathLike[str]) -> list[CheckMessage]:
    """``hopwatch.W007``: a file ``OUTPUT`` this process cannot append to (checked, not
    opened: a check creates no file)."""
    path = os.fspath(output)
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        why = "is a directory"
    elif not os.path.isdir(folder):
        why = f"is in {folder!r}, which does not exist"
    elif os.path.exists(target) and not os.access(target, os.W_OK):
        why = "exists and this process may not write to it"
    elif not os.path.exists(target) and not os.access(folder, os.W_OK):
        why = f"does not exist and this process may not create it in {folder!r}"
    else:
        return []
    return [
        Warning(
            f'HOPWATCH["OUTPUT"] is {path!r}, which {why}: the request lines would be lost'
            " (each failed write counted as an internal error).",
            hint="Create the directory or fix its permissions before the server starts, or"
            ' set HOPWATCH["OUTPUT"] to "logging" or "stdout".',
            id="hopwatch.W007",
        )
    ]


@register(Tags.security)
def check_profile_dir(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``hopwatch.W008``: profiling is configured and no profile would be written to
    ``PROFILE_DIR``: the same judgement as each profile's (``profiling._unsafe_directory``),
    made without creating the directory."""
    from pathlib import Path

    from hopwatch.profiling import _unsafe_ancestor, _unsafe_directory

    user = getattr(settings, "HOPWATCH", None)
    if isinstance(user, dict) and not user.get("ENABLED", True):
        return []
    configured = hopwatch_settings.PROFILE_DIR
    if not configured:
        return []
    directory = Path(configured)
    try:
        if os.path.lexists(directory):
            why = _unsafe_directory(directory)
        else:
            parent = directory.absolute().parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            why = (
                None
                if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
                else f"does not exist and this process may not create it in {str(parent)!r}"
            ) or _unsafe_ancestor(directory)
    except OSError as exc:
        why = f"cannot be examined ({exc.strerror or exc})"
    if why is None:
        return []
    return [
        Warning(
            f'HOPWATCH["PROFILE_DIR"] {str(directory)!r} {why}: no profile would be written'
            " there (the requests are served, their lines name no profile).",
            hint="Use a directory of this user's that only it may write to (chown, chmod go-w),"
            " in directories only it or root may write to (or sticky ones, as /tmp; its group"
            " may write to them only if it is this user's private group), or a missing one it"
            " may create (made with mode 0700, as the missing directories above it); see"
            " docs/profiling.md in hopwatch's source distribution.",
            id="hopwatch.W008",
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


@register(Tags.compatibility)
def check_accelerator(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``hopwatch.W006``: the C accelerator did not load (and nobody asked for pure Python)."""
    from hopwatch import _hotpath

    if _hotpath.UNAVAILABLE is None:
        return []
    return [
        Warning(
            _hotpath.unavailable_message(),
            hint=_hotpath.REBUILD_HINT
            + " To run the pure-Python path on purpose, set HOPWATCH_PURE_PYTHON=1.",
            id="hopwatch.W006",
        )
    ]


#: A sync-only middleware in a project served by ASGI.
SYNC_ONLY_CHECK_ID = "hopwatch.W010"


@register(Tags.compatibility)
def check_sync_only_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``hopwatch.W010``: a sync-only middleware in a project served by ASGI.

    Read from the class's flags only: the check does not build the middleware (its
    ``__init__`` is the project's code, run by every ``manage.py`` command otherwise),
    so it cannot know one that raises ``MiddlewareNotUsed``; its message says "if
    Django uses it", and ``hopwatch audit``, which builds each one, shows "not used".
    """
    from django.utils.module_loading import import_string

    if not getattr(settings, "ASGI_APPLICATION", None):
        return []
    messages: list[CheckMessage] = []
    for path in list(getattr(settings, "MIDDLEWARE", None) or []):
        try:
            factory = import_string(path)
        except Exception:
            continue  # Django reports a middleware that does not import
        can_sync = bool(getattr(factory, "sync_capable", True))
        can_async = bool(getattr(factory, "async_capable", False))
        if can_async or not can_sync:
            continue
        name = path.rsplit(".", 1)[-1]
        deliberate = "async_capable" in getattr(factory, "__dict__", {})
        hint = (
            f"Make {name} sync and async capable: set sync_capable = async_capable = True, call"
            " markcoroutinefunction(self) in __init__ when get_response is a coroutine function,"
            " and add an async __acall__ (see docs/audit.md in hopwatch's source distribution)."
            " That frees the thread, but each MiddlewareMixin hook above it then hops on its"
            " own: a trade, not always a saving. If it is third-party, upgrade it or ask its"
            " maintainers."
        )
        if deliberate:
            hint += (
                f" {name} sets async_capable = False itself: if that trade (fewer hops, a thread"
                f" held per request) is deliberate, add {SYNC_ONLY_CHECK_ID!r} to"
                " SILENCED_SYSTEM_CHECKS."
            )
        hint += " `hopwatch audit` shows what it costs."
        messages.append(
            Warning(
                f"{path} is sync-only and this project is served by ASGI: if Django uses it"
                " (it does not raise MiddlewareNotUsed), Django runs it, and every middleware"
                " above it, in a worker thread the request holds until it ends, and adapts the"
                " chain around it (sync_to_async in, async_to_sync out).",
                hint=hint,
                obj=path,
                id=SYNC_ONLY_CHECK_ID,
            )
        )
    return messages
