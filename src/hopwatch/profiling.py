"""pyinstrument profiles of chosen requests, across the threads their hops run in.

Off unless ``HOPWATCH["PROFILE_DIR"]`` is set. A request is profiled when:

* it carries ``PROFILE_HEADER`` (default ``X-Hopwatch-Profile-Token``) whose value
  equals ``PROFILE_TOKEN`` (compared in constant time); or
* it carries the ``PROFILE_STAFF_PARAM`` query parameter and, once the request
  is done, ``request.user`` is active staff (the profile is captured
  tentatively and discarded for anyone else, so an anonymous request can never
  get one written or shown); or
* ``PROFILE_AUTO_SAMPLE`` picked it and it turned out slow: hop time at least
  ``PROFILE_AUTO_MIN_HOP_MS`` or duration at least
  ``PROFILE_AUTO_MIN_DURATION_MS``.

Each trigger has its own ``PROFILE_RATE_LIMIT`` profiles per minute (tentative
captures included, so a flood of requests with the parameter cannot make the
server profile them all; and samples cannot use up what a token or staff user
asks for). A profile asked for and refused by the limit is said, once a minute.

pyinstrument samples one thread. The main profiler runs in the request's async
context (or thread, under WSGI); each ``sync_to_async`` hop the request makes
while profiled is profiled in its worker thread too (``ActiveProfile.wrap_sync``,
called by the asgiref patch), and the sessions are combined, so a sync view's
frames and its ORM calls appear under ASGI, below a frame named
``sync_to_async_hop`` that marks the hop boundary.

Output: pyinstrument's HTML and speedscope JSON in ``PROFILE_DIR``, under names
built only from a timestamp, the request id and the route (sanitised), created
exclusively (never overwriting, never following a link), readable by this
process's user only (0600; a directory hopwatch makes is 0700). A directory that
another user owns, or that others may write to, or one inside a directory others
may write to (not sticky), is refused: nothing is written there, and a warning
says so once (:func:`_unsafe_directory`). The files are created in the directory
opened and checked, by its descriptor (a directory swapped in at its path receives
none). The request's log line names the HTML file in ``profile``. The response is
unchanged unless the authorised request asked for the profile inline
(``PROFILE_INLINE_PARAM``).

An app that profiles with pyinstrument itself comes first: pyinstrument runs one
async-aware profiler per async context, and under ASGI hopwatch's main profiler
holds the request's; when the app's starts there, hopwatch hands it over and
gives that request's profile up (:func:`_yield_to_the_app`; docs/profiling.md).

The profile stops as the request's own work ends, before the staff check, whose
hops (``request.auser()`` can query) are hopwatch's, not the request's
(``_recorder.outside_requests``).
"""

from __future__ import annotations

import hmac
import os
import random
import re
import stat
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from django.core.exceptions import SuspiciousOperation

from hopwatch import _errors, _hotpath
from hopwatch._recorder import Hop, RequestRecord
from hopwatch.conf import hopwatch_settings

__all__ = ["ActiveProfile", "active", "akeep", "keep", "start", "stop_quietly"]

_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


class RateLimiter:
    """At most ``limit`` events in any 60-second window (thread-safe)."""

    def __init__(self) -> None:
        self._events: deque[float] = deque()
        self._lock = threading.Lock()
        self._said_at: float | None = None

    def allow(self, limit: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._events and now - self._events[0] >= 60.0:
                self._events.popleft()
            if len(self._events) >= limit:
                return False
            self._events.append(now)
            return True

    def first_refusal_this_minute(self, now: float | None = None) -> bool:
        """True at most once a minute: whether to say that an event was refused."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._said_at is not None and now - self._said_at < 60.0:
                return False
            self._said_at = now
            return True


#: One limiter per trigger ("token", "staff", "auto"): sampled captures never use
#: up what a token holder or a staff user asks for, nor a flood of the staff
#: parameter what the token asks for.
rate_limiters: dict[str, RateLimiter] = {}


def _limiter(reason: str) -> RateLimiter:
    limiter = rate_limiters.get(reason)
    if limiter is None:
        limiter = rate_limiters.setdefault(reason, RateLimiter())
    return limiter


_active_lock = threading.Lock()
_active_count = 0


# The requests being profiled: id(record) -> (record, its profile). The record is
# kept alive while it is here; every profile started is stopped (and removed) by
# the middleware at the end of its request.
_profiles: dict[int, tuple[RequestRecord, ActiveProfile]] = {}

#: The profiles being captured (empty, hence false, while none is): the one check
#: an unprofiled request pays on its way out.
running: Final = _profiles


def active(record: RequestRecord) -> bool:
    """Whether a profile is being captured for this request."""
    entry = _profiles.get(id(record))
    return entry is not None and entry[0] is record


def _profile_of(scope: Any) -> ActiveProfile | None:
    entry = _profiles.get(id(scope))
    return entry[1] if entry is not None and entry[0] is scope else None


def _run_hop(hop: Hop, handler: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """The hop path's per-hop hook while requests are profiled: a hop of a
    profiled request runs under the profile, any other is only timed."""
    profile = _profile_of(hop.scope)
    if profile is not None and not profile.given_up:
        return profile.wrap_sync(handler, hop)(*args, **kwargs)
    hop.thread_id = threading.get_ident()
    hop.started_ns = time.perf_counter_ns()
    try:
        return handler(*args, **kwargs)
    finally:
        hop.ended_ns = time.perf_counter_ns()


def _count_active(delta: int) -> None:
    # The hook is registered only while some request is profiled, so the hop
    # path pays nothing for profiling otherwise.
    global _active_count
    with _active_lock:
        _active_count += delta
        _hotpath.set_thread_hook(_run_hop if _active_count > 0 else None)


# pyinstrument runs one async-aware profiler per async context: it keeps it in a
# context variable (``stack_sampler.active_profiler_context_var``), and refuses to
# start another while it is set. Under ASGI hopwatch's main profiler is that one,
# in the request's context, which the app's code runs in and its hops copy: an
# app profiling with pyinstrument itself (its ProfilerMiddleware, a
# ``with Profiler():`` block; async-aware by default) would be refused, and its
# request would fail. So the app comes first: an app's async-aware profiler that
# finds the slot held by a hopwatch profile takes it, and hopwatch gives that
# request's profile up (the app's profiler sets the slot for itself from then on,
# and hopwatch's would record the rest of the request as out of its context).
# Only ``StackSampler.subscribe`` is wrapped, once, when a request is first
# profiled under ASGI: a profiler starting pays one dict lookup; hops pay nothing.

#: The slots hopwatch's main profilers hold: id(pyinstrument's target) -> (the
#: target, its profile), while each profile runs.
_slot_holders: dict[int, tuple[Any, ActiveProfile]] = {}
#: Every target hopwatch's profiles put in the slot, weakly: a stopped profile's
#: stays in the contexts copied from its request while they live (a task the
#: request started), where it is recognised as no profiler's (it runs no more),
#: and emptied for the app's profiler or the next request's profile.
_ours: weakref.WeakSet[Any] = weakref.WeakSet()
_yielding = False
#: The wrapper hopwatch set as ``StackSampler.subscribe`` (None: none set). Known by
#: identity: ``functools.wraps`` copies its name and ``__dict__`` onto another
#: package's wrapper of it.
_installed: Callable[..., Any] | None = None
#: ``hopwatch.uninstall()`` came while profiles held the slot: pyinstrument's own
#: ``subscribe`` is put back when the last of them stops.
_put_back_pending = False


def _finished_ours(held: Any) -> bool:
    """Whether ``held`` (the slot's value) is the target of a hopwatch profile that
    has stopped: left in a context copied from its request, held by no profiler."""
    if held is None or held not in _ours:
        return False
    entry = _slot_holders.get(id(held))
    return entry is None or entry[0] is not held


class SlotTaken(Exception):
    """An async-aware pyinstrument profiler of the app's was running in the request
    already: hopwatch takes no profile of it."""


def _yield_to_the_app(subscribe: Callable[..., Any]) -> Callable[..., Any]:
    """pyinstrument's ``StackSampler.subscribe``, handing the app's async-aware
    profiler the slot a hopwatch profile holds in this context (that profile is
    given up)."""

    def subscribe_yielding(self: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        # pyinstrument 5 passes use_async_context by keyword, 4.6 second after target.
        wants_slot = kwargs.get("use_async_context", args[1] if len(args) > 1 else False)
        if wants_slot and (_slot_holders or _ours):
            try:
                from pyinstrument.stack_sampler import active_profiler_context_var as slot

                held = slot.get()
                entry = _slot_holders.get(id(held))
                if entry is not None and entry[0] is held:
                    entry[1].given_up = True
                    slot.set(None)
                elif _finished_ours(held):
                    slot.set(None)  # a stopped profile's, in a copied context: no one's
            except Exception as exc:
                _errors.report("yielding a profile to the app's", exc)
        return subscribe(self, target, *args, **kwargs)

    subscribe_yielding.__wrapped__ = subscribe  # type: ignore[attr-defined]
    return subscribe_yielding


def _wraps_ours(subscribe: Any) -> bool:
    """Whether ``subscribe`` is the wrapper hopwatch installed, or wraps it."""
    layer = subscribe
    for _ in range(100):  # (a __wrapped__ chain that loops: ends)
        if layer is None or _installed is None:
            return False
        if layer is _installed:
            return True
        layer = getattr(layer, "__wrapped__", None)
    return False


def _install_yielding() -> None:
    global _yielding, _put_back_pending, _installed
    with _active_lock:
        _put_back_pending = False
        if _yielding:
            return
        from pyinstrument.stack_sampler import StackSampler

        # (ours may be there still, under another package's wrapper: not wrapped twice)
        if not _wraps_ours(StackSampler.subscribe):
            _installed = _yield_to_the_app(StackSampler.subscribe)
            StackSampler.subscribe = _installed  # type: ignore[method-assign]
        _yielding = True


def uninstall_yielding() -> None:
    """Put pyinstrument's own ``StackSampler.subscribe`` back (``hopwatch.uninstall``;
    the next request profiled under ASGI wraps it again). While profiles hold the
    slot (requests in flight), when the last of them stops: until then an app's
    profiler started in one of them still takes the slot over."""
    global _yielding, _put_back_pending, _installed
    with _active_lock:
        if not _yielding:
            return
        if _slot_holders:
            _put_back_pending = True
            return
        _put_back_pending = False
        from pyinstrument.stack_sampler import StackSampler

        if _installed is not None and StackSampler.subscribe is _installed:
            StackSampler.subscribe = _installed.__wrapped__  # type: ignore[attr-defined,method-assign]
            _installed = None
            _yielding = False
        # else: wrapped again since, by another package (functools.wraps copies our
        # wrapper's name and __wrapped__): left as it is, and ours stays under it


_names_targets: bool | None = None


def _start(profiler: Any, caller_frame: Any, description: str) -> None:
    """``profiler.start``, from ``caller_frame`` (pyinstrument trims the stack down
    to it), naming the profile where pyinstrument can: 4.6, the oldest supported,
    takes no ``target_description``."""
    global _names_targets
    if _names_targets is None:
        import inspect

        _names_targets = "target_description" in inspect.signature(profiler.start).parameters
    if _names_targets:
        profiler.start(caller_frame=caller_frame, target_description=description)
    else:
        profiler.start(caller_frame=caller_frame)


class ActiveProfile:
    """A profile being captured for one request (main thread plus hop threads)."""

    def __init__(self, reason: str, inline: bool, interval: float, async_mode: bool) -> None:
        from pyinstrument import Profiler

        self.reason = reason  # "token", "staff" (tentative until checked) or "auto"
        self.inline = inline
        self.interval = interval
        #: The app started an async-aware pyinstrument profiler of its own in the
        #: request, and took the slot this profile held: it is not kept.
        self.given_up = False
        self._target: Any = None  # the slot's value while this profile holds it
        # "strict": while the request is switched out, what the event loop runs
        # (other requests' code) is an [out-of-context] frame, or [await] where
        # pyinstrument sees what the request awaits. "enabled" recorded it as the
        # request's own frames wherever pyinstrument could not tell the await.
        self._profiler = Profiler(
            interval=interval, async_mode="strict" if async_mode else "disabled"
        )
        self._hop_sessions: list[Any] = []  # list.append is atomic: worker threads add here
        if async_mode:
            from pyinstrument.stack_sampler import active_profiler_context_var as slot

            held = slot.get()
            if _finished_ours(held):
                slot.set(None)  # a stopped profile's, in a copied context: no one's
            elif held is not None:
                raise SlotTaken(held)
            _install_yielding()
            _start(self._profiler, sys._getframe(), "hopwatch request profile")
            self._target = slot.get()
            _slot_holders[id(self._target)] = (self._target, self)
            _ours.add(self._target)
        else:
            _start(self._profiler, sys._getframe(), "hopwatch request profile")

    def wrap_sync(self, func: Callable[..., Any], hop: Hop) -> Callable[..., Any]:
        """The wrapped callable of a sync_to_async hop: timed, and profiled in its thread."""
        interval = self.interval
        sessions = self._hop_sessions

        def sync_to_async_hop(*args: Any, **kwargs: Any) -> Any:
            # No __tracebackhide__ here: pyinstrument drops frames that set it,
            # and this one marks the hop boundary in the profile.
            __traceback_hide__ = True
            from pyinstrument import Profiler

            hop.thread_id = threading.get_ident()
            profiler: Profiler | None = Profiler(interval=interval, async_mode="disabled")
            try:
                # Start from our caller's frame: pyinstrument trims the stack
                # down to it, so this frame (the hop boundary) stays visible.
                _start(profiler, sys._getframe(1), "hopwatch hop")
            except Exception:  # already profiled in this thread: time only
                profiler = None
            hop.started_ns = time.perf_counter_ns()
            try:
                return func(*args, **kwargs)
            finally:
                hop.ended_ns = time.perf_counter_ns()
                if profiler is not None:
                    try:
                        sessions.append(profiler.stop())
                    except Exception as exc:
                        _errors.report("profiling a hop", exc)

        return sync_to_async_hop

    def stop(self) -> Any:
        """The combined pyinstrument Session; None when the profile was given up."""
        from pyinstrument.session import Session

        # The profiler stays referenced by its target in every context copied from
        # the request (a task it started): it is left holding no session.
        try:
            if self._target is not None:
                from pyinstrument.stack_sampler import active_profiler_context_var as slot

                _slot_holders.pop(id(self._target), None)
                if _put_back_pending and not _slot_holders:
                    uninstall_yielding()
                if self.given_up:
                    # pyinstrument's stop empties the slot: an app's profiler that has
                    # it now (still running) keeps it.
                    held = slot.get()
                    try:
                        self._profiler.stop()
                    finally:
                        if held is not self._target:
                            slot.set(held)
                    return None
            session = self._profiler.stop()
            for hop_session in list(self._hop_sessions):
                session = Session.combine(session, hop_session)
            return session
        finally:
            if not self._profiler.is_running:  # its last session: the caller has it
                self._profiler.reset()  # type: ignore[no-untyped-call]
            self._hop_sessions = []


def start(request: Any, record: RequestRecord, async_mode: bool) -> None:
    """Begin a profile for this request if it is authorised (or auto-sampled)."""
    if not hopwatch_settings.PROFILE_DIR:  # the one check every request pays
        return
    try:
        reason = _trigger(request)
        if reason is None:
            return
        limit = int(hopwatch_settings.PROFILE_RATE_LIMIT)
        limiter = _limiter(reason)
        if not limiter.allow(limit):
            if reason != "auto" and limiter.first_refusal_this_minute():
                import logging

                logging.getLogger("hopwatch").warning(
                    "hopwatch: %s was not taken: PROFILE_RATE_LIMIT (%d a minute"
                    " for each trigger) was reached; said once a minute",
                    _asked(reason),
                    limit,
                )
            return
        inline = reason != "auto" and _asked_inline(request)
        profile = ActiveProfile(
            reason, inline, float(hopwatch_settings.PROFILE_INTERVAL), async_mode
        )
        _profiles[id(record)] = (record, profile)
        _count_active(+1)
    except SlotTaken as taken:
        # (Not said for a request made inside one hopwatch profiles: that one's
        # profile holds the slot, and shows this request.)
        held = taken.args[0]
        if _slot_holders.get(id(held), (None,))[0] is not held:
            _say_given_up(reason, "was already running")
    except Exception as exc:
        _errors.report("starting a profile", exc)


def _trigger(request: Any) -> str | None:
    token = hopwatch_settings.PROFILE_TOKEN
    header = hopwatch_settings.PROFILE_HEADER
    if token and header:
        sent = request.headers.get(header)
        if sent and hmac.compare_digest(sent.encode(), str(token).encode()):
            return "token"
    param = hopwatch_settings.PROFILE_STAFF_PARAM
    if param and _in_query(request, param):
        return "staff"
    sample = float(hopwatch_settings.PROFILE_AUTO_SAMPLE)
    if sample > 0 and random.random() < sample:
        return "auto"
    return None


def _asked_inline(request: Any) -> bool:
    param = hopwatch_settings.PROFILE_INLINE_PARAM
    return bool(param) and _in_query(request, param)


def _in_query(request: Any, param: str) -> bool:
    """Whether the request's query string carries ``param``. A query string Django
    refuses to read (more fields than ``DATA_UPLOAD_MAX_NUMBER_FIELDS``: a
    ``SuspiciousOperation``) asks for nothing: it is the client's doing, not an
    internal error. The app sees what it would without hopwatch: Django keeps no
    ``request.GET`` that failed, so the view's own read is refused the same way."""
    try:
        return param in request.GET
    except SuspiciousOperation:
        return False


def _asked(reason: str | None) -> str:
    """The profile asked for, as said on the logger. The staff parameter's is
    tentative until the request is done (whoever sent it: the staff check comes
    after the profile stops), so it is not called a staff profile."""
    if reason == "staff":
        return "a profile asked for with the staff parameter (kept for active staff only)"
    return f"a {reason} profile"


#: Says, once a minute at most, that a profile asked for (token, staff parameter)
#: was given up.
_given_up_said = RateLimiter()


def _say_given_up(reason: str | None, when: str) -> None:
    if reason == "auto" or not _given_up_said.first_refusal_this_minute():
        return
    import logging

    logging.getLogger("hopwatch").warning(
        "hopwatch: %s was given up: a pyinstrument profiler of the app's %s in"
        " the request, and pyinstrument runs one async-aware profiler per async context"
        " (the app's ran as without hopwatch); said once a minute",
        _asked(reason),
        when,
    )


def stop(record: RequestRecord) -> tuple[ActiveProfile, Any, float] | None:
    """Stop this request's profile: (the profile, pyinstrument's Session, the request's
    duration so far in ms), or None if none was captured (or it was given up to the
    app's own pyinstrument profiler). Cheap; call it where the profile started
    (pyinstrument stops the thread or task it runs in)."""
    entry = _profiles.pop(id(record), None)
    if entry is None or entry[0] is not record:
        return None
    _count_active(-1)
    profile = entry[1]
    duration_ms = (time.perf_counter_ns() - record.started_ns) / 1e6
    session = profile.stop()
    if session is None:
        _say_given_up(profile.reason, "started")
        return None
    return profile, session, duration_ms


def keep(
    record: RequestRecord,
    stopped: tuple[ActiveProfile, Any, float],
    response: Any,
    is_staff: bool | None,
) -> Any:
    """Keep, write and maybe show a stopped profile; the response to send.

    The slow part is rendering pyinstrument's HTML and speedscope JSON: tens of
    milliseconds of CPU. A profile kept is rendered and written after the
    request, in hopwatch's writer thread (:func:`write_later`): neither the
    response nor the request's ``duration_ms`` waits for it. Only a profile
    shown inline is rendered in the request, since it is the response."""
    try:
        profile, session, duration_ms = stopped
        if profile.reason == "staff" and not is_staff:
            return response  # not staff (or anonymous): discarded, never written
        if profile.reason == "auto" and not _slow_enough(record, duration_ms):
            return response
        if profile.inline and response is not None:
            html = render_html(session)
            record.notes()["profile"] = write(session, record, html)
            return _shown(html, response)
        record.notes()["profile"] = write_later(session, record)
    except UnsafeDirectory:
        pass  # said once, by _checked_directory: a setting's problem, not an internal error
    except Exception as exc:
        _errors.report("writing a profile", exc)
    return response


#: The app's security headers, kept on a profile shown in place of its response
#: (those of Django's SecurityMiddleware and XFrameOptionsMiddleware; not a
#: Content-Security-Policy, which would stop pyinstrument's page from running).
_KEPT_HEADERS: Final = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
    "X-Frame-Options",
)


def _shown(html: str, response: Any) -> Any:
    """The profile's page in place of ``response``, with its status when an error:
    the cookies the app set (a rotated session, a CSRF token) and its security
    headers kept, never cached (it is a staff or token holder's page, private to
    them), and the app's response closed with it (its files, its iterator: Django
    closes only the response it sends)."""
    from django.http import HttpResponse
    from django.utils.cache import add_never_cache_headers

    # An error's status is kept (the client, its logs and the line agree); a
    # redirect's, a 204's or a 304's could not carry the page, which is sent as 200.
    status = response.status_code if response.status_code >= 400 else 200
    shown = HttpResponse(html, content_type="text/html; charset=utf-8", status=status)
    if getattr(response, "_has_been_logged", False):
        shown._has_been_logged = True  # logged once, as it was
    shown.cookies = response.cookies
    for header in _KEPT_HEADERS:
        if header in response:
            shown[header] = response[header]
    add_never_cache_headers(shown)  # no-store, private
    # The app's response is not sent: what it would have closed is closed with
    # the page (Django's close() runs each closer, then sends request_finished
    # once, for the response it sent).
    closers = getattr(response, "_resource_closers", None)
    if closers:
        shown._resource_closers.extend(closers)
        closers.clear()
    return shown


def stop_quietly(record: RequestRecord) -> tuple[ActiveProfile, Any, float] | None:
    """:func:`stop`, an error reported (None) and never raised."""
    try:
        return stop(record)
    except Exception as exc:
        _errors.report("stopping a profile", exc)
        return None


async def akeep(
    record: RequestRecord,
    stopped: tuple[ActiveProfile, Any, float],
    response: Any,
    is_staff: bool | None,
) -> Any:
    """:func:`keep` for an async request: a profile shown inline is rendered in a
    thread (on the event loop it would stall every other request of the worker;
    ``run_in_executor`` is not an asgiref crossing, nor a hop of the request).
    """
    if not stopped[0].inline:  # rendered later, in the writer thread
        return keep(record, stopped, response, is_staff)
    import asyncio

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, keep, record, stopped, response, is_staff)


def needs_staff_check(stopped: tuple[ActiveProfile, Any, float]) -> bool:
    """Whether a stopped profile is kept only for active staff (the staff parameter)."""
    return stopped[0].reason == "staff"


def _slow_enough(record: RequestRecord, duration_ms: float) -> bool:
    hop_ms = record.wall_ns / 1e6
    min_hop = float(hopwatch_settings.PROFILE_AUTO_MIN_HOP_MS)
    min_duration = float(hopwatch_settings.PROFILE_AUTO_MIN_DURATION_MS)
    return (min_hop > 0 and hop_ms >= min_hop) or (min_duration > 0 and duration_ms >= min_duration)


def safe_stem(record: RequestRecord, now: datetime | None = None) -> str:
    """A file name stem from sanitised parts only: nothing from the request can add a path."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    route = _SAFE.sub("_", (record.route or "unmatched").strip("/"))[:60].strip("_") or "root"
    method = _SAFE.sub("", record.method or "")[:10] or "X"
    request_id = _SAFE.sub("", record.request_id or "")[:32]
    return "-".join(part for part in (stamp, method, route, request_id) if part)


def _open_exclusive(directory: Path, name: str, dir_fd: int | None = None) -> int:
    """Create ``name`` in the directory (the one open as ``dir_fd`` when given: what
    its path names by now does not matter), exclusively, never through a link."""
    # Belt and braces: the name has no separators, so it is in the directory.
    if os.sep in name or (os.altsep and os.altsep in name) or name.startswith("."):
        raise ValueError(f"unsafe profile file name {name!r}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    # This user's only: a profile shows the code, its arguments' names and the
    # request's route, and a group (a setgid directory's) is not an audience.
    return os.open(name if dir_fd is not None else directory / name, flags, 0o600, dir_fd=dir_fd)


class UnsafeDirectory(Exception):
    """PROFILE_DIR is a directory other local users could read profiles from or
    replace them in: nothing is written there."""


def _unsafe_directory(directory: Path) -> str | None:
    """Why ``directory`` (made by now) is no place for this process's profiles, or None.

    It must be this process's user's own (its effective uid; a link to it, too, unless
    root's), and no one else may write to it: another user who owns it, or may write to
    it, can read the profiles, or swap one for a page of theirs that whoever opens it
    runs. Nor to a directory above it (:func:`_unsafe_ancestor`). Not checked where
    there are no POSIX owners (Windows)."""
    if not hasattr(os, "geteuid"):
        return None
    uid = os.geteuid()
    link = os.lstat(directory)
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (uid, 0):
        return f"is a link owned by uid {link.st_uid}, not by this process's user (uid {uid})"
    return _unsafe_found(os.stat(directory)) or _unsafe_ancestor(directory)


def _unsafe_found(found: os.stat_result) -> str | None:
    """Why a directory of this ``stat`` (its own, not above it) is unsafe, or None."""
    uid = os.geteuid()
    if not stat.S_ISDIR(found.st_mode):
        return "is not a directory"
    if found.st_uid != uid:
        return f"is owned by uid {found.st_uid}, not by this process's user (uid {uid})"
    if _writable_by_others(found):
        mode = stat.S_IMODE(found.st_mode)
        return f"may be written to by its group or by others (mode {mode:04o})"
    return None


#: Whether a group is this process's user's private group, by gid (asked once per
#: process: a group's members rarely change while a server runs).
_private_groups: dict[int, bool] = {}


def _writable_by_others(found: os.stat_result) -> bool:
    """Whether someone other than this process's user may write to a directory of this
    ``stat`` by its mode: others may, or its group may and the group is not this user's
    private group (:func:`_private_group`)."""
    if found.st_mode & stat.S_IWOTH:
        return True
    return bool(found.st_mode & stat.S_IWGRP) and not _private_group(found.st_gid)


def _private_group(gid: int) -> bool:
    """Whether group ``gid`` has this process's user as its only member: the user's own
    group (a user private group, as Debian's and Ubuntu's ``useradd`` make, whose logins
    have umask 002). It must be the process's effective gid or the user's primary group,
    list no other user as a member, and be no other user's primary group (as Debian's
    OpenSSH accepts a group-writable ``~/.ssh`` whose group has the user as its only
    member). Asked once per gid and process."""
    known = _private_groups.get(gid)
    if known is None:
        known = _private_groups[gid] = _only_this_user_in(gid)
    return known


def _only_this_user_in(gid: int) -> bool:
    try:
        import grp
        import pwd

        uid = os.geteuid()
        user = pwd.getpwuid(uid)
        if gid not in (os.getegid(), user.pw_gid):
            return False
        if any(member != user.pw_name for member in grp.getgrgid(gid).gr_mem):
            return False
        return not any(other.pw_gid == gid and other.pw_uid != uid for other in pwd.getpwall())
    except (ImportError, KeyError, OSError):  # no such group, user or database: not private
        return False


def _unsafe_ancestor(directory: Path) -> str | None:
    """Why a directory above ``directory`` lets another user replace it, or None.

    Whoever may write to a directory above PROFILE_DIR can rename it away and put a
    directory of theirs in its place, where a profile named in a log line is then
    theirs to choose. As OpenSSH's ``StrictModes`` asks of a home directory, each one
    above it, on its path as written and as resolved (links followed), must be this
    user's or root's, and writable by no one else unless sticky (``/tmp``: there only
    an entry's owner may rename it); writable by its group is fine when the group is
    this user's private one (:func:`_private_group`). Ones missing yet are skipped:
    hopwatch makes them, this user's and 0700 (:func:`_made`)."""
    if not hasattr(os, "geteuid"):
        return None
    uid = os.geteuid()
    seen: set[Path] = set()
    for path in (Path(os.path.abspath(directory)), Path(os.path.realpath(directory))):
        for above in path.parents:
            if above in seen:
                continue
            seen.add(above)
            try:
                found = os.stat(above)
            except FileNotFoundError:
                continue
            if found.st_uid not in (uid, 0):
                return (
                    f"is inside {str(above)!r}, owned by uid {found.st_uid}, neither this"
                    f" process's user (uid {uid}) nor root"
                )
            if not found.st_mode & stat.S_ISVTX and _writable_by_others(found):
                mode = stat.S_IMODE(found.st_mode)
                return (
                    f"is inside {str(above)!r}, which its group or others may write to"
                    f" (mode {mode:04o}, not sticky)"
                )
    return None


#: The directories refused so far (each is said once per process).
_refused: set[str] = set()

#: Whether files are made relative to the directory's descriptor (POSIX): then a
#: directory swapped in at its path once it was checked receives none.
_BY_DESCRIPTOR: Final = (
    hasattr(os, "geteuid") and hasattr(os, "O_DIRECTORY") and os.open in os.supports_dir_fd
)


def _checked_directory() -> tuple[Path, int | None]:
    """PROFILE_DIR, made (0700) when missing, and the descriptor it is open as (None
    where files are made by path: Windows); :class:`UnsafeDirectory` when it is not
    this user's own, said once on the ``hopwatch`` logger.

    The directory is checked by its path, then opened, and what was opened checked
    again (``fstat``): the files are made in that one, whatever its path names by
    the time they are."""
    directory = Path(hopwatch_settings.PROFILE_DIR)
    _made(directory)
    why = _unsafe_directory(directory)
    if why is None and not _BY_DESCRIPTOR:
        return directory, None
    if why is None:
        # Following a link: one of this user's or root's, checked above.
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        try:
            why = _unsafe_found(os.fstat(dir_fd))
        except BaseException:
            os.close(dir_fd)
            raise
        if why is None:
            return directory, dir_fd
        os.close(dir_fd)
    message = (
        f"hopwatch: no profile is written to PROFILE_DIR {str(directory)!r}: it {why}, so"
        " other local users could read the profiles or replace them. Use a directory of"
        " this user's that only it may write to (a missing one is made with mode 0700);"
        " said once"
    )
    if str(directory) not in _refused and len(_refused) < 100:
        _refused.add(str(directory))
        import logging

        logging.getLogger("hopwatch").warning("%s", message)
    raise UnsafeDirectory(message)


def _made(directory: Path) -> None:
    """Make ``directory`` and each directory above it that is missing, every one with
    mode 0700 (``Path.mkdir(parents=True)`` gives the ones above it the umask's mode,
    0775 under umask 002, which :func:`_unsafe_ancestor` then refuses, though W008,
    judging before they existed, passed)."""
    missing = []
    path = Path(os.path.abspath(directory))
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # made meanwhile, by another process: checked as found
            pass
    if not missing:
        directory.mkdir(mode=0o700, exist_ok=True)  # (a link to nowhere: FileExistsError)


class _Reserved:
    """A profile's two files, created empty and exclusively, and the directory they
    are in (its descriptor, closed with :meth:`done`)."""

    def __init__(
        self, directory: Path, dir_fd: int | None, name: str, html_fd: int, speedscope_fd: int
    ) -> None:
        self.directory, self.dir_fd, self.name = directory, dir_fd, name
        self.html_fd, self.speedscope_fd = html_fd, speedscope_fd

    def remove(self) -> None:
        _remove(self.directory, self.name, self.dir_fd)

    def done(self) -> None:
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None


def _reserve(record: RequestRecord) -> _Reserved:
    """The profile's two files, created empty and exclusively."""
    directory, dir_fd = _checked_directory()
    try:
        stem = safe_stem(record)
        for attempt in range(100):
            name = stem if attempt == 0 else f"{stem}-{attempt}"
            try:
                html_fd = _open_exclusive(directory, f"{name}.html", dir_fd)
            except FileExistsError:
                continue
            try:
                speedscope_fd = _open_exclusive(directory, f"{name}.speedscope.json", dir_fd)
            except BaseException:
                os.close(html_fd)
                _remove(directory, name, dir_fd)
                raise
            return _Reserved(directory, dir_fd, name, html_fd, speedscope_fd)
        raise FileExistsError(f"no free profile file name for {stem}")
    except BaseException:
        if dir_fd is not None:
            os.close(dir_fd)
        raise


#: What pyinstrument's page (4.6 to 5.x) ends with, after the profile's JSON:
#: ``const sessionData = {json};`` and the call that shows it.
_PAGE_END: Final = re.compile(
    r"\s*;\s*pyinstrumentHTMLRenderer\.render\(document\.getElementById\('app'\),"
    r" sessionData\);\s*</script>\s*</body>\s*</html>\s*\Z"
)
_SESSION_DATA: Final = "const sessionData = "
#: Inside the JSON, as the same characters' JSON escapes: in a JSON text these
#: appear in strings only, where ``\u003c`` decodes to ``<``; raw, a ``</script>``
#: or ``<!--`` in a frame's name or file path would end the page's script (or
#: change how the browser parses it), and U+2028/U+2029 end a line in older JS.
_IN_A_SCRIPT: Final = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)


def render_html(session: Any) -> str:
    """pyinstrument's HTML page of ``session``, with the profile's JSON made safe
    to embed in its ``<script>``: pyinstrument writes the JSON there as it is, so
    a function or file named with ``</script>`` (code the app runs, a path it
    loads) would end the script and run its own markup in the page (served on
    the app's origin when shown inline). The JSON decodes to the same profile.

    pyinstrument's JSON has no raw line break but a trailing one (its strings'
    are escaped): it is the last line's text after ``const sessionData = ``. A
    page of any other shape is not written (ValueError)."""
    from pyinstrument.renderers.html import HTMLRenderer

    page: str = HTMLRenderer().render(session)
    end = _PAGE_END.search(page)
    line = page.rfind("\n", 0, end.start()) + 1 if end is not None else -1
    start = page.find(_SESSION_DATA, line) if line > 0 else -1
    if end is None or start < 0 or page[line:start].strip():
        raise ValueError("pyinstrument's HTML page is not of the shape hopwatch escapes")
    start += len(_SESSION_DATA)
    return page[:start] + page[start : end.start()].translate(_IN_A_SCRIPT) + page[end.start() :]


def _fill(session: Any, html_fd: int, speedscope_fd: int, html: str | None = None) -> None:
    from pyinstrument.renderers.speedscope import SpeedscopeRenderer

    with (
        os.fdopen(html_fd, "w", encoding="utf-8") as html_file,
        os.fdopen(speedscope_fd, "w", encoding="utf-8") as speedscope_file,
    ):
        html_file.write(render_html(session) if html is None else html)
        speedscope_file.write(SpeedscopeRenderer().render(session))


def _remove(directory: Path, name: str, dir_fd: int | None = None) -> None:
    for suffix in (".html", ".speedscope.json"):
        file = f"{name}{suffix}"
        try:
            os.unlink(file if dir_fd is not None else directory / file, dir_fd=dir_fd)
        except OSError:
            pass


def write(session: Any, record: RequestRecord, html: str | None = None) -> str:
    """Write HTML (``html`` if rendered already) and speedscope JSON now; return the
    HTML file's name."""
    reserved = _reserve(record)
    try:
        _fill(session, reserved.html_fd, reserved.speedscope_fd, html)
    except BaseException:
        reserved.remove()
        raise
    finally:
        reserved.done()
    return f"{reserved.name}.html"


# The writer: one thread of hopwatch's, made on the first profile kept. Profiles
# are few (PROFILE_RATE_LIMIT a minute for each trigger): one thread keeps up,
# and at exit Python waits for it to finish the files it was given.
_writer: Any = None
_writer_lock = threading.Lock()
_pending: set[Any] = set()


def _forget_writer() -> None:
    global _writer
    _writer = None  # a forked child has no thread of its parent's
    _pending.clear()


os.register_at_fork(after_in_child=_forget_writer)


def write_later(session: Any, record: RequestRecord) -> str:
    """Create the profile's files now, empty, and write them in the writer thread;
    return the HTML file's name (the request's line names it at once). The job
    holds pyinstrument's session only: nothing of the request."""
    global _writer
    reserved = _reserve(record)

    def job() -> None:
        try:
            _fill(session, reserved.html_fd, reserved.speedscope_fd)
        except Exception as exc:
            reserved.remove()
            _errors.report("writing a profile", exc)
        finally:
            reserved.done()

    try:
        with _writer_lock:
            if _writer is None:
                from concurrent.futures import ThreadPoolExecutor

                _writer = ThreadPoolExecutor(1, thread_name_prefix="hopwatch-profile-writer")
            future = _writer.submit(job)
            _pending.add(future)
        future.add_done_callback(_pending.discard)
    except BaseException:
        os.close(reserved.html_fd)
        os.close(reserved.speedscope_fd)
        reserved.remove()
        reserved.done()
        raise
    return f"{reserved.name}.html"


def written(timeout: float | None = None) -> bool:
    """Wait until every profile given to the writer so far is written (True), or
    ``timeout`` seconds have passed (False)."""
    from concurrent.futures import wait

    with _writer_lock:
        pending = set(_pending)
    return not wait(pending, timeout).not_done
