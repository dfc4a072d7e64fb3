"""Hop budgets in tests: ``assertNumQueries``, for sync/async hops.

Three tools, all usable in sync and async code, in ``django.test`` test cases
(including ``async def`` test methods), around the test ``Client`` /
``AsyncClient``, in pytest (see the ``hops`` and ``hop_budget`` fixtures of
:mod:`hopwatch.pytest_plugin`) and in plain asgiref code:

* :func:`count_hops`: a context manager returning the hops made in the block
  (exact counts, the kept :class:`~hopwatch.Hop` objects with their causes and
  call sites, a summary by site);
* :func:`assert_max_hops` / :func:`assert_hops`: context managers and
  decorators that fail with a listing of every hop (direction, kind, site,
  call site) when the block made more than / other than ``n`` hops;
* :func:`hop_budget`: a snapshot budget kept in a JSON file in the repository;
  fails when a test's hops grow, records new tests, and rewrites the file when
  ``HOPWATCH_UPDATE_BUDGETS=1`` (or pytest's ``--hopwatch-update-budgets``).

How the counting works: a block sets a fresh :class:`~hopwatch._recorder.Ledger` as the
current scope (a contextvar). A hop is added to the scope that was current
where the hop was *made*, and a request opened inside the block (the test
clients' handlers, which hopwatch patches) makes its record a child that
forwards its hops to the block. So the block sees exactly the hops of the code
it wraps, and a hop made around it, such as the ``async_to_sync`` Django uses
to run an ``async def`` test method, is not counted. Nor is a request served in
another thread (a live server's, whose threads start in an empty context): a
block lists those that finished while it was open (:attr:`HopCount.requests_not_seen`),
and a check they could have failed warns.

This module imports neither Django nor pytest. Its frames that raise as a
block starts or ends carry ``__tracebackhide__``, so pytest points at the
test's ``with`` line, not at hopwatch. A decorator checks after the test has
returned: pytest then shows no line of the test, only the frames that called
it (none for a plain test function). See docs/testing.md.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NamedTuple, TypeVar, cast

from asgiref.sync import iscoroutinefunction

from hopwatch import _patch
from hopwatch._recorder import (
    ASYNC_TO_SYNC,
    KINDS,
    SYNC_TO_ASYNC,
    Hop,
    Ledger,
    RequestRecord,
    add_sink,
    current_scope,
    enter_scope,
    remove_sink,
    value_outside,
)

__all__ = [
    "BUDGETS_ENV",
    "HopAssertion",
    "HopBudget",
    "HopCount",
    "HopsFixture",
    "RequestNotSeen",
    "assert_hops",
    "assert_max_hops",
    "budget_path_for",
    "count_hops",
    "hop_budget",
    "update_mode",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Environment variable that switches how :func:`hop_budget` writes its file.
BUDGETS_ENV: Final = "HOPWATCH_UPDATE_BUDGETS"

#: The suffix of a test module's budget file: ``test_views.py`` -> ``test_views.hops.json``.
BUDGETS_SUFFIX: Final = ".hops.json"

# A testing block keeps more detail than a request record: the listing is the
# point. Counts stay exact beyond these limits.
_DETAIL_LIMIT: Final = 10_000
_CAUSE_LIMIT: Final = 10_000

_FORMAT_KEY: Final = "hopwatch_budgets"
_FORMAT_VERSION: Final = 1

_DIRECTIONS: Final = (SYNC_TO_ASYNC, ASYNC_TO_SYNC)

# The ledgers of every count_hops() block open now, in any thread or task: a request
# whose scope chain reaches one of them was counted by a block (its own code's, or
# another thread's or task's), so no block lists it as not seen. Added to and removed
# from only as blocks open and close; read by the blocks' sinks at each request's end.
_open_ledgers: set[Ledger] = set()


# --- installing ---------------------------------------------------------------


def _ensure_installed() -> None:
    """Install hopwatch if needed, with Django's causes and request scopes when Django is up.

    Checks ``sys.modules`` rather than importing Django, so plain asgiref code
    gets only the asgiref patch. Both installs are idempotent.
    """
    django_apps = sys.modules.get("django.apps")
    if django_apps is not None and getattr(django_apps.apps, "ready", False):
        from hopwatch import _django

        _django.install()
    else:
        _patch.install()


# --- counting -----------------------------------------------------------------


def _site_key(kind: str, site: str) -> str:
    """The key a site is counted under: ``"orm QuerySet.aget"`` (no call site: lines move)."""
    return f"{kind} {site}"


def _kinds(kind: str | Iterable[str] | None) -> frozenset[str] | None:
    if kind is None:
        return None
    kinds = frozenset([kind] if isinstance(kind, str) else kind)
    unknown = sorted(kinds.difference(KINDS))
    if unknown or not kinds:
        raise ValueError(f"kind must be some of {list(KINDS)}, not {sorted(kinds)}")
    return kinds


def _direction(direction: str | None) -> str | None:
    if direction is not None and direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {list(_DIRECTIONS)}, not {direction!r}")
    return direction


class RequestNotSeen(NamedTuple):
    """A request that finished while a block was open, outside the block's scope (served
    in another thread or context: a live server's), so its hops are not in the block's
    count: see :attr:`HopCount.requests_not_seen`."""

    method: str | None
    #: The route (``"/items/<int:pk>/"``), else the path hopwatch logs, if any.
    route: str | None
    #: Its hops that match the block's ``kind``/``direction`` filters.
    hops: int

    def __str__(self) -> str:
        what = " ".join(part for part in (self.method, self.route) if part) or "a request"
        return f"{what} ({self.hops} hop{'' if self.hops == 1 else 's'})"


class _NotSeenWarning(UserWarning):
    """A hop check passed while requests it did not see made hops (a live server's)."""


#: How long a block's end waits at most for the requests a server thread of this
#: process is still finishing (:func:`_wait_for_served_requests`), in seconds.
SERVED_WAIT_SECONDS = 1.0


def _wait_for_served_requests() -> None:
    """As a block ends, wait (at most :data:`SERVED_WAIT_SECONDS`) while another thread
    runs a request in ``wsgiref``'s handler (Django's live server, ``runserver``): its
    response is written before its request is closed (by ``response.close()``), so a
    client inside the block can read the whole body and leave the block before the
    request has finished. Waited for, it is among :attr:`HopCount.requests_not_seen`
    every time, not only when the server's thread wins that race. Read from the
    threads' frames, at the block's end only: nothing per request."""
    handlers = sys.modules.get("wsgiref.handlers")
    if handlers is None or threading.active_count() < 2:
        return
    run = handlers.BaseHandler.run.__code__
    me = threading.get_ident()
    deadline = time.monotonic() + SERVED_WAIT_SECONDS
    while True:
        busy = False
        for ident, frame in sys._current_frames().items():
            seen: Any = frame if ident != me else None
            while seen is not None and not busy:
                busy = seen.f_code is run
                seen = seen.f_back
            if busy:
                break
        del frame, seen
        if not busy or time.monotonic() >= deadline:
            return
        time.sleep(0.001)


def _as_logged(record: RequestRecord) -> tuple[str, str]:
    """A request's method and route as its line has them (hopwatch._emit's own
    ``_request_fields``): a method cleaned as the line cleans it; for a request no URL
    pattern resolved (a 404), ``"(unresolved)"``, its raw path only with
    ``LOG_RAW_PATHS`` (cleaned and cut to ``PATH_MAX_LENGTH``): a path may carry a
    token or an e-mail address, a method any text a client sent."""
    from hopwatch._emit import _request_fields
    from hopwatch.conf import hopwatch_settings

    fields = _request_fields(
        record, hopwatch_settings.PATH_MAX_LENGTH, hopwatch_settings.LOG_RAW_PATHS
    )
    return fields[1], fields[2]


def _not_seen_text(counted: HopCount) -> str:
    """The listing's line for the requests a block did not see, or ``""``."""
    unseen = counted.requests_not_seen
    if not unseen:
        return ""
    shown = ", ".join(str(request) for request in unseen[:5])
    more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
    requests = "request" if len(unseen) == 1 else "requests"
    hops = counted.hops_not_seen
    what = counted.describe()[:-1] if hops == 1 else counted.describe()  # "hops" -> "hop"
    return (
        f"Not counted: {len(unseen)} {requests} that finished in another thread or context"
        f" while the block was open, {hops} {what} in all:"
        f" {shown}{more}. A block counts only the requests made from its own code (the"
        " test Client, AsyncClient); a live server (LiveServerTestCase, pytest-django's"
        " live_server) serves each request in a thread of its own (docs/testing.md,"
        ' "What a block cannot see").'
    )


def _passed_unseeing_text(counted: HopCount) -> str:
    return (
        f"a hop check passed counting {len(counted)} {counted.describe()}, but it did not"
        f" see every request that finished while it was open. {_not_seen_text(counted)}"
    )


@dataclass(frozen=True)
class _Tally:
    """What a :class:`HopCount` reports, computed from its ledger at one moment."""

    count: int = 0
    sync_to_async: int = 0
    async_to_sync: int = 0
    hops: list[Hop] = field(default_factory=list)
    sites: dict[str, int] = field(default_factory=dict)


class _AsyncBlock:
    """``async with`` for blocks whose entering and checking are synchronous."""

    def __enter__(self) -> HopCount:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> HopCount:
        __tracebackhide__ = True
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        self.__exit__(exc_type, exc, tb)


class _CheckedBlock(_AsyncBlock):
    """Counts a block's hops, then checks them when the block ends without an exception.

    Re-entrant: each ``with`` gets its own counter and check (a stack), so one
    instance can be nested or reused.
    """

    def __init__(self) -> None:
        self._active: list[tuple[HopCount, Callable[[HopCount], None]]] = []

    def _start(self) -> tuple[HopCount, Callable[[HopCount], None]]:
        """A new counter for this block, and the check to run on it at the end."""
        raise NotImplementedError

    def __enter__(self) -> HopCount:
        __tracebackhide__ = True  # a block refused on entry: pytest shows the `with` line
        counter, check = self._start()
        self._active.append((counter, check))
        return counter.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        counter, check = self._active.pop()
        counter.__exit__(exc_type, exc, tb)
        if exc_type is None:
            check(counter)
            if self._passed_unseeing(counter):
                warnings.warn(_NotSeenWarning(_passed_unseeing_text(counter)), stacklevel=2)

    def _passed_unseeing(self, counted: HopCount) -> bool:
        """Whether the check just passed might have failed with the hops of the requests
        the block did not see counted (:attr:`HopCount.requests_not_seen`)."""
        return counted.hops_not_seen > 0


class HopCount(_AsyncBlock):
    """The hops made in a :func:`count_hops` block; the block's context manager too.

    Inside the block it reads live; from the end of the block on it is frozen,
    so a task the block started and did not wait for cannot change it later.
    ``len()`` and the counts are exact; :meth:`hops` lists the kept
    :class:`~hopwatch.Hop` objects (all of them up to 10,000 per block, see
    :attr:`not_listed`). With ``kind``/``direction`` filters, everything here
    counts only the matching hops.
    """

    def __init__(
        self,
        *,
        kind: str | Iterable[str] | None = None,
        direction: str | None = None,
    ) -> None:
        self.kinds = _kinds(kind)
        self.direction = _direction(direction)
        #: The block's ledger (None before the block starts).
        self.ledger: Ledger | None = None
        self._token: Any = None
        self._frozen: _Tally | None = None
        self._not_seen: list[RequestNotSeen] = []
        self._watch: Callable[[RequestRecord], None] | None = None

    # --- context manager ------------------------------------------------------
    def __enter__(self) -> HopCount:
        if self.ledger is not None:
            raise RuntimeError("a count_hops() block can be entered only once; make a new one")
        _ensure_installed()
        # enter_scope makes the enclosing scope (a request, an outer block) its
        # parent, which still gets every hop.
        self.ledger = ledger = Ledger(detail_limit=_DETAIL_LIMIT, cause_limit=_CAUSE_LIMIT)
        self._token = enter_scope(ledger)
        not_seen = self._not_seen
        matches = self._matches

        def watch(record: RequestRecord) -> None:
            """A request that finished while the block is open, in any thread (a sink:
            one more call per request while a block is open, none otherwise)."""
            scope = record.parent
            while scope is not None:  # this block's, a nested one's, or any open block's
                if scope in _open_ledgers:
                    return
                scope = scope.parent
            hops = sum(
                stats.count
                for cause, stats in record.top_causes()
                if matches(cause.kind, stats.direction)
            )
            not_seen.append(RequestNotSeen(*_as_logged(record), hops))

        self._watch = watch
        _open_ledgers.add(ledger)
        add_sink(watch)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ledger = self.ledger
        if ledger is None:
            raise RuntimeError("count_hops() exited without being entered")
        if self._watch is not None:
            _wait_for_served_requests()
            remove_sink(self._watch)
            self._watch = None
            _open_ledgers.discard(ledger)
        try:
            current_scope.reset(self._token)
        except ValueError:
            # Exited in another context than the one that entered (an async
            # fixture finalised in another task): undo our part only.
            if current_scope.get() is ledger:
                current_scope.set(value_outside(ledger))
        self._token = None
        self._frozen = self._tally()

    # --- reading --------------------------------------------------------------
    def _matches(self, kind: str, direction: str) -> bool:
        if self.kinds is not None and kind not in self.kinds:
            return False
        return self.direction is None or direction == self.direction

    def _tally(self) -> _Tally:
        ledger = self.ledger
        if ledger is None:
            return _Tally()
        counts = {SYNC_TO_ASYNC: 0, ASYNC_TO_SYNC: 0}
        sites: dict[str, int] = {}
        for cause, stats in ledger.top_causes():  # exact up to now
            if self._matches(cause.kind, stats.direction):
                counts[stats.direction] = counts.get(stats.direction, 0) + stats.count
                key = _site_key(cause.kind, cause.site)
                sites[key] = sites.get(key, 0) + stats.count
        hops = [h for h in ledger.hops() if self._matches(h.cause.kind, h.direction)]
        ordered = dict(sorted(sites.items(), key=lambda item: (-item[1], item[0])))
        return _Tally(
            count=sum(counts.values()),
            sync_to_async=counts[SYNC_TO_ASYNC],
            async_to_sync=counts[ASYNC_TO_SYNC],
            hops=hops,
            sites=ordered,
        )

    def _current(self) -> _Tally:
        return self._frozen if self._frozen is not None else self._tally()

    def __len__(self) -> int:
        return self._current().count

    def __iter__(self) -> Iterator[Hop]:
        return iter(self._current().hops)

    @property
    def count(self) -> int:
        """The exact number of (matching) hops; the same as ``len()``."""
        return self._current().count

    @property
    def sync_to_async(self) -> int:
        return self._current().sync_to_async

    @property
    def async_to_sync(self) -> int:
        return self._current().async_to_sync

    def hops(self) -> list[Hop]:
        """The kept hops, in the order they finished."""
        return list(self._current().hops)

    def by_site(self) -> dict[str, int]:
        """``{"<kind> <site>": count}``, exact, largest first (ties by name)."""
        return dict(self._current().sites)

    @property
    def not_listed(self) -> int:
        """Hops counted but not kept (beyond the block's detail limit)."""
        tally = self._current()
        return tally.count - len(tally.hops)

    def describe(self) -> str:
        """``"hops"``, ``"orm hops"``, ``"orm async_to_sync hops"``: what is counted."""
        words = [*sorted(self.kinds or ()), *([self.direction] if self.direction else [])]
        return " ".join([*words, "hops"])

    @property
    def requests_not_seen(self) -> list[RequestNotSeen]:
        """The requests that finished while the block was open without being counted by
        it: served in another thread or context (a live server's, a real server's),
        not from the block's own code, in the order they finished (a server's threads
        may close two requests in either order). Their hops are not in :attr:`count`."""
        return list(self._not_seen)

    @property
    def hops_not_seen(self) -> int:
        """The (matching) hops of :attr:`requests_not_seen`."""
        return sum(request.hops for request in self._not_seen)

    def report(self) -> str:
        """Every hop on one line (direction, kind, site, call site), then counts by site;
        last, the requests the block did not see (:attr:`requests_not_seen`), if any."""
        listing = format_hops(self._current().hops, self.by_site(), self.not_listed)
        notice = _not_seen_text(self)
        return f"{listing}\n{notice}" if listing and notice else listing or notice

    def __repr__(self) -> str:
        state = "frozen" if self._frozen is not None else "live"
        return f"<HopCount {self.describe()}={len(self)} {state}>"


def count_hops(
    *,
    kind: str | Iterable[str] | None = None,
    direction: str | None = None,
) -> HopCount:
    """Count the hops made in a ``with`` (or ``async with``) block.

    ``kind`` (``"orm"``, ``("middleware", "signal")``, ...) and ``direction``
    (``"sync_to_async"`` / ``"async_to_sync"``) restrict what is counted.
    Installs hopwatch if it is not installed yet::

        with count_hops() as hops:
            client.get("/items/1/")
        assert len(hops) == 1, hops.report()
    """
    return HopCount(kind=kind, direction=direction)


# --- the listing --------------------------------------------------------------


def _notes(hop: Hop, parent_number: int | None) -> str:
    notes = []
    if parent_number is not None:
        # Relative to the listing: every hop of an ``async def`` test method is
        # nested in the harness's own hop, which is not listed.
        notes.append(f"inside {parent_number}")
    if hop.new_loop:
        notes.append("new event loop")
    if hop.outcome != "ok":
        notes.append(hop.outcome)
    return f"  [{', '.join(notes)}]" if notes else ""


def format_hop(hop: Hop, parent_number: int | None = None) -> str:
    """``sync_to_async  orm         QuerySet.aget at shop/views.py:12 in detail``.

    Then, in brackets: ``inside N`` when the hop was made from the code of hop
    number ``N`` of the listing, ``new event loop``, and an outcome other than ok.
    """
    cause = hop.cause
    where = f" at {cause.call_site}" if cause.call_site else ""
    notes = _notes(hop, parent_number)
    return f"{hop.direction:<13}  {cause.kind:<10}  {cause.site}{where}{notes}"


def format_hops(hops: list[Hop], sites: dict[str, int], not_listed: int = 0) -> str:
    """The numbered hop lines, a line for hops not kept, and the summary by site.

    The summary is left out when it would repeat the listing (every site made
    one hop and every hop is listed).
    """
    numbers = {id(hop): i for i, hop in enumerate(hops, 1)}
    width = len(str(len(hops)))
    lines = []
    for i, hop in enumerate(hops, 1):
        parent = numbers.get(id(hop.parent)) if hop.parent is not None else None
        lines.append(f"  {i:>{width}}. {format_hop(hop, parent)}")
    if not_listed:
        lines.append(f"  ... and {not_listed} more, not listed (kept: the first {len(hops)})")
    if sites and (not_listed or any(n > 1 for n in sites.values())):
        count_width = max(len(str(n)) for n in sites.values())
        lines.append("By site:")
        for key, n in sites.items():
            kind, _, site = key.partition(" ")
            lines.append(f"  {n:>{count_width}}  {kind:<10}  {site}")
    return "\n".join(lines)


# --- assertions -----------------------------------------------------------------


class HopAssertion(_CheckedBlock):
    """:func:`assert_hops` / :func:`assert_max_hops`: a context manager and a decorator.

    As a context manager it yields the block's :class:`HopCount`. As a
    decorator it counts each call separately; an ``async def`` stays an
    ``async def``. When the block raises, its exception propagates and the
    hops are not checked.
    """

    def __init__(
        self,
        n: int,
        *,
        exact: bool,
        kind: str | Iterable[str] | None = None,
        direction: str | None = None,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"the number of hops must be an int >= 0, not {n!r}")
        self.n = n
        self.exact = exact
        self.kind = _kinds(kind)
        self.direction = _direction(direction)
        super().__init__()

    def _counter(self) -> HopCount:
        return HopCount(kind=self.kind, direction=self.direction)

    def _fresh(self) -> HopAssertion:
        """The same assertion, for one call of a decorated function."""
        return HopAssertion(self.n, exact=self.exact, kind=self.kind, direction=self.direction)

    def _start(self) -> tuple[HopCount, Callable[[HopCount], None]]:
        return self._counter(), self.check

    def check(self, counted: HopCount) -> None:
        """Raise ``AssertionError`` listing every hop unless ``counted`` is within the budget."""
        __tracebackhide__ = True
        made = len(counted)
        if made == self.n or (made < self.n and not self.exact):
            return
        expected = "exactly" if self.exact else "at most"
        what = counted.describe()
        if self.n == 1:
            what = what[:-1]  # "hops" -> "hop"
        verb = "was" if made == 1 else "were"
        head = f"Expected {expected} {self.n} {what}, {made} {verb} made"
        listing = counted.report()
        raise AssertionError(f"{head}:\n{listing}" if listing else f"{head}.")

    def _passed_unseeing(self, counted: HopCount) -> bool:
        # with the hops of the requests it did not see, the check would have failed
        unseen = counted.hops_not_seen
        total = len(counted) + unseen
        return unseen > 0 and (total > self.n or (self.exact and total != self.n))

    def __call__(self, func: F) -> F:
        return _decorate(func, lambda _args: self._fresh())

    def __repr__(self) -> str:
        name = "assert_hops" if self.exact else "assert_max_hops"
        return f"<{name}({self.n}) {self._counter().describe()}>"


def _decorate(
    func: F, make: Callable[[tuple[Any, ...]], contextlib.AbstractContextManager[Any]]
) -> F:
    """Wrap ``func`` so each call runs in a fresh ``make(args)`` block (``args``: the
    call's positional arguments, a method's instance first); keeps it async if it was."""
    if isinstance(func, type):
        raise TypeError("decorate test functions or methods, not classes")
    if iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            with make(args):
                return await func(*args, **kwargs)

        return cast(F, async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        with make(args):
            return func(*args, **kwargs)

    return cast(F, wrapper)


def assert_hops(
    n: int,
    *,
    kind: str | Iterable[str] | None = None,
    direction: str | None = None,
) -> HopAssertion:
    """Fail unless the block (or each call of the decorated function) makes exactly ``n`` hops."""
    return HopAssertion(n, exact=True, kind=kind, direction=direction)


def assert_max_hops(
    n: int,
    *,
    kind: str | Iterable[str] | None = None,
    direction: str | None = None,
) -> HopAssertion:
    """Fail if the block (or each call of the decorated function) makes more than ``n`` hops."""
    return HopAssertion(n, exact=False, kind=kind, direction=direction)


# --- snapshot budgets ------------------------------------------------------------

#: How budget files are written: "new" records missing entries only (default),
#: "all" rewrites every entry a test reaches, "none" never writes.
UPDATE_MODES: Final = ("new", "all", "none")
_TRUE: Final = ("1", "true", "yes", "all")
_FALSE: Final = ("0", "false", "no", "none")

# Set by the pytest plugin for ``--hopwatch-update-budgets``; wins over the env.
_mode_override: str | None = None


def update_mode() -> str:
    """The budget write mode: pytest's flag, else ``HOPWATCH_UPDATE_BUDGETS``, else ``"new"``."""
    if _mode_override is not None:
        return _mode_override
    value = os.environ.get(BUDGETS_ENV, "").strip().lower()
    if not value or value == "new":
        return "new"
    if value in _TRUE:
        return "all"
    if value in _FALSE:
        return "none"
    raise ValueError(f"{BUDGETS_ENV}={value!r}: use 1 (rewrite), 0 (never write) or leave unset")


def _set_mode_override(mode: str | None) -> str | None:
    """Set the mode the pytest flag asks for; returns the previous override."""
    global _mode_override
    if mode is not None and mode not in UPDATE_MODES:
        raise ValueError(f"mode must be one of {UPDATE_MODES}")
    previous, _mode_override = _mode_override, mode
    return previous


def budget_path_for(test_file: str | os.PathLike[str]) -> Path:
    """The budget file kept next to a test module: ``tests/test_views.hops.json``."""
    path = Path(test_file)
    return path.with_name(path.name.removesuffix(".py") + BUDGETS_SUFFIX)


# Parsed files by path, with the (inode, mtime_ns, size) they were read at; a
# write replaces the file (a new inode), so a rewrite is never mistaken for it.
_cache: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}
_write_lock = threading.Lock()


def _read_budgets(path: Path) -> dict[str, Any]:
    """The ``tests`` mapping of a budget file ({} if the file does not exist)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"hopwatch budget file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("tests"), dict):
        raise ValueError(f"hopwatch budget file {path} has no 'tests' mapping")
    if data.get(_FORMAT_KEY) != _FORMAT_VERSION:
        raise ValueError(
            f"hopwatch budget file {path}: unsupported format {data.get(_FORMAT_KEY)!r}"
            f" (this hopwatch writes {_FORMAT_KEY}: {_FORMAT_VERSION})"
        )
    tests: dict[str, Any] = data["tests"]
    _cache[path] = (stamp, tests)
    return tests


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock for read-modify-write of the budget files in ``directory``.

    A thread lock within the process, plus ``flock`` on the directory itself
    across processes (pytest-xdist workers) where available (POSIX), so no
    lock file is left in the repository.
    """
    with _write_lock:
        try:
            import fcntl
        except ImportError:  # Windows: threads only (see docs/testing.md)
            yield
            return
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def _write_budget(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Set one test's entry, keeping every other entry as it is on disk now."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        _cache.pop(path, None)
        tests = dict(_read_budgets(path))
        tests[name] = entry
        text = json.dumps({_FORMAT_KEY: _FORMAT_VERSION, "tests": tests}, indent=2, sort_keys=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_text(text + "\n", encoding="utf-8")
        os.replace(temporary, path)  # readers see the old or the new file, never half


def _pytest_node_id() -> str | None:
    """The running pytest test's id (``tests/test_x.py::TestX::test_y[1]``), if any."""
    current = os.environ.get("PYTEST_CURRENT_TEST")
    if not current:
        return None
    return current.rsplit(" (", 1)[0]  # " (setup)", " (call)", " (teardown)"


def _pytest_test_name() -> str | None:
    """The running pytest test's id without its file (``TestX::test_y[1]``), if any."""
    node_id = _pytest_node_id()
    if not node_id:
        return None
    return node_id.split("::", 1)[1] if "::" in node_id else node_id


def _pytest_parameters() -> str:
    """The parameters part of the running pytest test's id (``[1-de]``), or ``""``."""
    name = _pytest_test_name() or ""
    # A class or function name has no "[": the first one opens the parameters.
    return name[name.index("[") :] if "[" in name and name.endswith("]") else ""


# The entries named after the running pytest test that its blocks have used,
# by budget file, and that test's node id. A second block named after the test
# would share the entry: it would be compared with what the first one recorded.
_test_entries: set[tuple[str, str]] = set()
_test_entries_of: str | None = None
_test_entries_lock = threading.Lock()


def _new_test() -> None:
    """Forget the entries used so far: a test starts (the pytest plugin calls this)."""
    global _test_entries_of
    with _test_entries_lock:
        _test_entries.clear()
        _test_entries_of = None


def _claim_test_entry(name: str, path: Path) -> None:
    """Refuse a second block of the running pytest test on the entry named after the test."""
    __tracebackhide__ = True
    global _test_entries_of
    node_id = _pytest_node_id()
    key = (os.path.abspath(path), name)
    with _test_entries_lock:
        if node_id != _test_entries_of:  # another test (the plugin may be disabled)
            _test_entries.clear()
            _test_entries_of = node_id
        used = key in _test_entries
        _test_entries.add(key)
    if used:
        raise ValueError(
            f"hop_budget() is used twice in {name}: both blocks would share the entry"
            f" {name!r} in {path}, and the second would be compared with what the first"
            f" recorded. Give each further block its own name:"
            f" hop_budget({name + '::second'!r}) (the hop_budget fixture's"
            f" hop_budget('second') is named so)"
        )


class HopBudget(_CheckedBlock):
    """:func:`hop_budget`: compare a block's hops with the budget recorded for its test.

    A context manager (yielding the block's :class:`HopCount`) and a decorator.
    """

    def __init__(self, name: str | None, path: str | os.PathLike[str] | None, caller: str) -> None:
        self.name = name
        self.path = Path(path) if path is not None else None
        self._caller = caller
        super().__init__()

    def _resolved(self) -> tuple[str, Path]:
        __tracebackhide__ = True
        test_name = _pytest_test_name()
        name = self.name or test_name
        if not name:
            raise RuntimeError(
                "hop_budget() needs a name outside pytest, e.g. hop_budget(self.id()),"
                " or use it as a decorator"
            )
        path = self.path or budget_path_for(self._caller)
        if name == test_name:
            _claim_test_entry(name, path)
        return name, path

    def _start(self) -> tuple[HopCount, Callable[[HopCount], None]]:
        __tracebackhide__ = True
        name, path = self._resolved()  # before the code under test runs: fail early

        def check(counted: HopCount) -> None:
            __tracebackhide__ = True
            check_budget(counted, name, path)

        return HopCount(), check

    def __call__(self, func: F) -> F:
        # The test itself, under any decorators that wrap it with functools.wraps
        # (override_settings, mock.patch, assert_max_hops): the file must be the
        # test module's, not the decorator's module's.
        test = inspect.unwrap(func)
        code = getattr(test, "__code__", None)
        path = self.path or budget_path_for(code.co_filename if code else self._caller)
        if self.name:
            name = self.name
            return _decorate(func, lambda _args: HopBudget(name, path, self._caller))
        qualname = getattr(test, "__qualname__", None) or repr(func)

        def make(args: tuple[Any, ...]) -> HopBudget:
            # Each parameter of a parametrized pytest test has its own entry, read
            # as the test is called: ``test_list[de]``. Without parameters (Django
            # test cases, plain tests) the entry is the qualified name alone: the
            # class the test runs in, not the one that defines it, so that each
            # subclass of a mixin has its own entry, in the file beside its module.
            owner = _running_class(args, test)
            if owner is None:
                return HopBudget(qualname + _pytest_parameters(), path, self._caller)
            where = self.path or _module_budget_path(owner) or path
            name = f"{owner.__qualname__}.{test.__name__}{_pytest_parameters()}"
            return HopBudget(name, where, self._caller)

        return _decorate(func, make)

    def __repr__(self) -> str:
        return f"<hop_budget {self.name or '(test name)'} in {self.path or '(default file)'}>"


def _running_class(args: tuple[Any, ...], test: Any) -> type | None:
    """The class of the instance a test method runs on (``args[0]``), when that
    instance's class resolves the test's name to this very test (defined there or
    inherited from a mixin or base class); else None (a plain function)."""
    if not args or "." not in getattr(test, "__qualname__", ""):
        return None
    owner = type(args[0])
    found = getattr(owner, getattr(test, "__name__", ""), None)
    return owner if found is not None and inspect.unwrap(found) is test else None


def _module_budget_path(owner: type) -> Path | None:
    """The budget file beside the module that defines ``owner``."""
    module = sys.modules.get(owner.__module__)
    file = getattr(module, "__file__", None)
    return budget_path_for(file) if file else None


def hop_budget(name: str | None = None, *, path: str | os.PathLike[str] | None = None) -> HopBudget:
    """A snapshot hop budget: fail when the block makes more hops than recorded for ``name``.

    The budget lives in ``path`` (default: next to the calling test module,
    ``test_views.py`` -> ``test_views.hops.json``), one entry per test: the
    hop count and the count per site. A missing entry is recorded and passes;
    fewer hops pass; more hops in total or at any site fail.
    ``HOPWATCH_UPDATE_BUDGETS=1`` rewrites entries instead of comparing,
    ``HOPWATCH_UPDATE_BUDGETS=0`` never writes (a missing entry fails: for CI).

    ``name`` defaults to the pytest test id without its file
    (``TestViews::test_detail[1]``; one such block per test, a second raises
    ``ValueError``), or, as a decorator, to the function's qualified name
    (``TestViews.test_detail``, with pytest's parameters: ``test_detail[1]``).
    """
    return HopBudget(name, path, sys._getframe(1).f_code.co_filename)


def budget_entry(counted: HopCount) -> dict[str, Any]:
    """The file entry for a block: ``{"hops": 3, "sites": {"orm QuerySet.aget": 3}}``."""
    return {"hops": len(counted), "sites": counted.by_site()}


def check_budget(counted: HopCount, name: str, path: str | os.PathLike[str]) -> None:
    """Compare ``counted`` with the entry ``name`` in ``path``; record or fail per the mode."""
    __tracebackhide__ = True
    path = Path(path)
    mode = update_mode()
    entry = budget_entry(counted)
    recorded = _read_budgets(path).get(name)
    if mode == "all" or (recorded is None and mode == "new"):
        if recorded != entry:
            _write_budget(path, name, entry)
        return
    if recorded is None:
        raise AssertionError(
            f"No hop budget recorded for {name} in {path} ({BUDGETS_ENV}=0 forbids writing"
            f" it); {_hops_made(len(counted), 'was made', 'were made')}. Run once without"
            f" {BUDGETS_ENV}=0 (or with {BUDGETS_ENV}=1) and commit the file."
            f"\n{counted.report()}".rstrip()
        )
    failure = _budget_failure(counted, name, path, recorded)
    if failure:
        raise AssertionError(failure)


def _is_count(value: object) -> bool:
    """A hop count as the file holds it: an int >= 0 (JSON's ``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry_fault(recorded: object) -> str | None:
    """What is wrong with an entry's shape; None when it is what :func:`budget_entry` writes."""
    if not isinstance(recorded, dict):
        return "not a mapping"
    if set(recorded) != {"hops", "sites"}:
        return f"its keys must be 'hops' and 'sites', not {sorted(recorded)}"
    if not _is_count(recorded["hops"]):
        return f"'hops' must be a whole number >= 0, not {recorded['hops']!r}"
    sites = recorded["sites"]
    if not isinstance(sites, dict):
        return f"'sites' must map each site to its count, not {sites!r}"
    for site, n in sites.items():
        if not _is_count(n):
            return f"the count of {site!r} must be a whole number >= 0, not {n!r}"
    return None


def _hops_made(n: int, singular: str = "made", plural: str = "made") -> str:
    """``1 hop was made`` / ``2 hops were made`` (with both verbs given), ``1 hop made``."""
    return f"{n} hop {singular}" if n == 1 else f"{n} hops {plural}"


def _budget_failure(counted: HopCount, name: str, path: Path, recorded: Any) -> str | None:
    """The failure message when ``counted`` grew past ``recorded``, else None."""
    fault = _entry_fault(recorded)
    if fault is not None:
        return (
            f"hop budget entry {name!r} in {path} is malformed ({fault}): {recorded!r}."
            f" Correct or delete it, or rewrite it with {BUDGETS_ENV}=1."
        )
    old_sites: dict[str, int] = recorded["sites"]
    made = len(counted)
    grew = [
        (site, old_sites.get(site, 0), n)
        for site, n in counted.by_site().items()
        if n > old_sites.get(site, 0)
    ]
    if made <= recorded["hops"] and not grew:
        return None
    head = f"Hop budget exceeded for {name}: {_hops_made(made)}, {recorded['hops']} recorded"
    lines = [f"{head} in {path}."]
    if grew:
        lines.append("Grew:")
        lines.extend(f"  {site}: {old} -> {new}" for site, old, new in grew)
    lines.append("Hops made:")
    lines.append(counted.report())
    lines.append(
        f"If the new hops are intended, run with {BUDGETS_ENV}=1 (pytest:"
        " --hopwatch-update-budgets) and commit the file."
    )
    return "\n".join(lines)


# --- pytest fixture object ---------------------------------------------------------


class HopsFixture:
    """The pytest ``hops`` fixture: ``hops()`` counts, ``hops.at_most(n)`` / ``hops.exactly(n)``.

    The same as :func:`count_hops`, :func:`assert_max_hops` and
    :func:`assert_hops`, without an import in the test module.
    """

    def __call__(
        self, *, kind: str | Iterable[str] | None = None, direction: str | None = None
    ) -> HopCount:
        return count_hops(kind=kind, direction=direction)

    def at_most(
        self, n: int, *, kind: str | Iterable[str] | None = None, direction: str | None = None
    ) -> HopAssertion:
        return assert_max_hops(n, kind=kind, direction=direction)

    def exactly(
        self, n: int, *, kind: str | Iterable[str] | None = None, direction: str | None = None
    ) -> HopAssertion:
        return assert_hops(n, kind=kind, direction=direction)
