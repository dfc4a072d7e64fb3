"""``HopwatchMiddleware``: names the request (route, view, status) in its record.

Put it first in ``MIDDLEWARE``. It is both sync and async capable, so Django
runs it in whichever mode the chain around it needs: it never adds a hop.
First, it is the top of the chain itself, without the exception-to-response
wrapper Django puts around each middleware (``_django_scope.without_wrapper``
says why that is safe): it adds no frame to the request's awaiting chain.

The request record itself is opened earlier, by the handler (see
``hopwatch._django_scope``), so hops Django makes before and after the middleware
chain are counted. Where that did not happen (hopwatch installed after the
handler was called, a custom handler), the middleware opens the record itself
and the line says ``"scope": "middleware"``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponseBase

from hopwatch import _errors, profiling
from hopwatch import apps as hopwatch_apps
from hopwatch._django import active_staff, is_active_staff
from hopwatch._django_names import _named, names_of
from hopwatch._django_scope import (
    INTERFACE_ASGI,
    INTERFACE_WSGI,
    finish_request,
)
from hopwatch._hotpath import begin_request as _begin_request
from hopwatch._hotpath import name_request, then
from hopwatch._patch import is_installed
from hopwatch._recorder import (
    RequestRecord,
    current_scope,
    open_request,
    outside_requests,
    request_ids,
)
from hopwatch.conf import hopwatch_settings, request_id_meta_key

#: Called with the record as each request enters the middleware. hopwatch.otel
#: adds its span capture here when OTEL_SPANS is on, and ``_keep_detail_hops`` is here while
#: DETAIL lists more hops than a record keeps; otherwise it stays empty.
begin_hooks: list[Callable[[RequestRecord], None]] = []

#: How many hops a request's record keeps as objects unless told otherwise
#: (``RequestRecord``'s ``detail_limit``: ``_hotpath_py``, ``_speedups.c``). Beyond
#: them hops are counted only: ``detail`` and OpenTelemetry's spans list kept hops.
KEPT_HOPS = 1000


def keep_hops(record: RequestRecord, limit: int) -> None:
    """Keep up to ``limit`` (DETAIL_LIMIT) hops as objects in ``record`` when that is
    more than it keeps: for DETAIL's ``detail`` (``_keep_detail_hops``) and
    OpenTelemetry's spans (``otel._capture``)."""
    if limit > record.detail_limit:
        record.detail_limit = limit


def _keep_detail_hops(record: RequestRecord) -> None:
    """A begin hook while DETAIL lists more hops (DETAIL_LIMIT) than a record keeps."""
    keep_hops(record, hopwatch_settings.merged()["DETAIL_LIMIT"])


def _follow_detail(settings: dict[str, Any]) -> None:
    """With each change of the settings: ``_keep_detail_hops`` is a begin hook only while
    DETAIL asks for more hops than a record keeps (no request pays for it otherwise)."""
    wanted = bool(settings["DETAIL"]) and settings["DETAIL_LIMIT"] > KEPT_HOPS
    if wanted != (_keep_detail_hops in begin_hooks):
        try:
            if wanted:
                begin_hooks.append(_keep_detail_hops)
            else:
                begin_hooks.remove(_keep_detail_hops)
        except ValueError:  # another thread removed it first
            pass


hopwatch_settings.follow(_follow_detail)


class HopwatchMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if hopwatch_apps.enabled is None:
            # Not started: the app, which starts it in ready(), is not installed. (Not
            # INSTALLED_APPS as it is now: a test's override_settings(INSTALLED_APPS=[])
            # after the app started hopwatch is no missing app.)
            _start_without_the_app()
        if not hopwatch_apps.enabled:
            # HOPWATCH["ENABLED"] was False at start-up: off for the process. Django
            # leaves the middleware out of the chain (read once: a later
            # override_settings turns nothing on).
            raise MiddlewareNotUsed("hopwatch is off: HOPWATCH['ENABLED'] is False")
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        settings = hopwatch_settings.merged()
        if self.async_mode:
            # The async chain's call: the request is begun here, and the awaitable
            # given back is the next middleware's, with the naming to run when it
            # has ended (``_hotpath.then``: in C, no frame of hopwatch's is added
            # to the chain, which Python passes through twice per crossing). With
            # profiling configured, :meth:`__acall__`, which awaits the profile's
            # end too.
            if settings["PROFILE_DIR"]:
                return self.__acall__(request)
            record, own = _begin(request, settings, async_mode=True)
            if record is None:
                return self.get_response(request)
            try:
                awaitable = self.get_response(request)
            except BaseException:
                _ended(record, request, None, own)
                raise
            try:
                # _name: the request's own record is finished by its handler
                return then(awaitable, _ended_own if own else _name, record, request)
            except Exception as exc:
                # then's wrapper not made (memory exhausted): the next middleware's
                # awaitable, as without hopwatch, the record named without a response
                # and finished if it is the middleware's own. (No cost when it is made.)
                _errors.report("HopwatchMiddleware (request)", exc)
                _ended(record, request, None, own)
                return awaitable
        record, own = _begin(request, settings, async_mode=False)
        response = None
        try:
            response = self.get_response(request)
        finally:
            try:
                _name(record, request, response)
                if profiling.running and record is not None and profiling.active(record):
                    response = _profiled(request, record, response)
            finally:
                if own:  # (else _end has nothing to do: the handler finishes the record)
                    _end(record, own)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        settings = hopwatch_settings.merged()
        record, own = _begin(request, settings, async_mode=True)
        response = None
        try:
            response = await self.get_response(request)
        finally:
            try:
                _name(record, request, response)
                if profiling.running and record is not None and profiling.active(record):
                    response = await _aprofiled(request, record, response)
            finally:
                _end(record, own)
        return response


_warned_without_the_app = False


def _start_without_the_app() -> None:
    """The app is missing from INSTALLED_APPS: start hopwatch here (as its ``ready()``
    would: the settings checked, ``ENABLED`` read once), so hops are counted from the
    first request on; register the system checks the app would have registered (a
    ``check`` run in this process then reports hopwatch.W003); and, when it is on, say
    once what is missing (a server runs no checks)."""
    global _warned_without_the_app
    import logging

    from hopwatch import checks
    from hopwatch.conf import silenced

    hopwatch_apps.activate()
    if not hopwatch_apps.enabled or _warned_without_the_app or silenced("hopwatch.W003"):
        return
    _warned_without_the_app = True
    logging.getLogger("hopwatch").warning(
        "%s %s (hopwatch.W003)", checks.WITHOUT_THE_APP, checks.WITHOUT_THE_APP_HINT
    )


# --- profiling (hopwatch.profiling does the work; only profiled requests get here) ---


# The profile is stopped first, as the request's own work ends: the staff check
# that follows is not in it, and a request cancelled during the check (the client
# went away) cannot leave it running. The check's hops (``request.auser()`` can
# query) are hopwatch's: they go to ``_recorder.own_work``, not to the request.


def _profiled(request: HttpRequest, record: RequestRecord, response: Any) -> Any:
    stopped = profiling.stop_quietly(record)
    if stopped is None:
        return response
    is_staff = None
    if profiling.needs_staff_check(stopped):
        try:
            with outside_requests():
                is_staff = active_staff(getattr(request, "user", None))
        except Exception as exc:
            _errors.report("checking the profiling user", exc)
            is_staff = False
    return profiling.keep(record, stopped, response, is_staff)


async def _aprofiled(request: HttpRequest, record: RequestRecord, response: Any) -> Any:
    stopped = profiling.stop_quietly(record)
    if stopped is None:
        return response
    is_staff = None
    if profiling.needs_staff_check(stopped):
        try:
            with outside_requests():
                is_staff = await is_active_staff(request)
        except Exception as exc:
            _errors.report("checking the profiling user", exc)
            is_staff = False
    return await profiling.akeep(record, stopped, response, is_staff)


# header name -> its META key ("X-Request-ID" -> "HTTP_X_REQUEST_ID"), or None
# for headers never read as an id. request.META, not request.headers: the
# latter builds a dict of every header on first use, per request. Read in
# _begin; _new_meta_key fills it.
_meta_keys: dict[str, str | None] = {}


def _new_meta_key(header: str) -> str | None:
    """The META key of a request-id header not seen yet, remembered for the next
    requests: None for one never read as an id (a credential, a header Django's error
    reports hide, such as PROFILE_HEADER, or no HTTP token), as the settings check
    judges it (``conf.request_id_meta_key``)."""
    key = request_id_meta_key(header)
    if len(_meta_keys) < 64:
        _meta_keys[header] = key
    return key


def _begin(
    request: HttpRequest, settings: dict[str, Any], async_mode: bool
) -> tuple[RequestRecord | None, bool]:
    try:
        # Method, path and request id, on the record the handler opened
        # (_hotpath.begin_request: in C when it is built).
        header = settings["REQUEST_ID_HEADER"]
        key = _meta_keys.get(header, "") if header else None
        if key == "":
            key = _new_meta_key(header)
        record = _begin_request(current_scope, RequestRecord, request, key, request_ids)
        own = False
        if record is None:
            if not is_installed():
                # hopwatch.uninstall() with the middleware left in MIDDLEWARE: off
                # (no record, no line, no profile) until hopwatch.install().
                return None, False
            # No handler of hopwatch's opened one (hopwatch installed after the
            # handler was called, a custom handler): the middleware's own scope.
            interface = INTERFACE_ASGI if hasattr(request, "scope") else INTERFACE_WSGI
            open_request(interface)
            record = _begin_request(current_scope, RequestRecord, request, key, request_ids)
            record.notes()["scope"] = "middleware"
            own = True
        for hook in begin_hooks:
            try:
                hook(record)
            except Exception as exc:
                _errors.report(f"request hook {hook!r}", exc)
        if settings["PROFILE_DIR"]:  # profiling is configured (the check every request pays)
            profiling.start(request, record, async_mode)
        return record, own
    except Exception as exc:
        _errors.report("HopwatchMiddleware (request)", exc)
        return None, False


#: Route, view and status (before a profile is written, which is named after
#: them), and the request for the extra-fields hook: ``_name(record, request,
#: response)``, response None if the chain raised; an error is reported, never
#: raised (``_hotpath.name_request``, in C when it is built).
_name = functools.partial(name_request, _named, names_of)


def _ended(
    record: RequestRecord,
    request: HttpRequest,
    response: HttpResponseBase | None,
    own: bool = False,
) -> None:
    """The async chain's response (None if it raised): named, and the record
    finished if the middleware opened it."""
    _name(record, request, response)
    _end(record, own)


def _ended_own(
    record: RequestRecord, request: HttpRequest, response: HttpResponseBase | None
) -> None:
    _ended(record, request, response, own=True)


def _end(record: RequestRecord | None, own: bool) -> None:
    if record is not None and own:
        try:
            finish_request(record)
        except Exception as exc:
            _errors.report("HopwatchMiddleware (response)", exc)
