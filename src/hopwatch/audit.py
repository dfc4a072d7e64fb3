"""``hopwatch audit``: what each ``MIDDLEWARE`` entry costs in hops, before any traffic.

For every entry: its ``sync_capable`` / ``async_capable`` flags, the mode
Django runs it in under ASGI and under WSGI, the hops its hooks cost per
request (``MiddlewareMixin`` calls each sync ``process_request`` /
``process_response`` through its own ``sync_to_async`` when it runs async),
the hops it costs by making Django adapt the chain, whether it pins a worker
thread, and what to change. Then the predicted hops per request for an async
and a sync view under ASGI and WSGI, and what a hop costs on this host (the
"hop tax"), so the hops read as time.

The module has three layers:

* **introspection** (:func:`gather`): import each middleware and instantiate it
  exactly as ``BaseHandler.load_middleware`` would (a ``MiddlewareNotUsed``
  leaves it out), recording only facts (flags, hooks, which hooks are async);
* **the model** (:func:`simulate`, :func:`build_audit`): pure computation over
  those facts, mirroring ``load_middleware``, ``adapt_method_mode``,
  ``_get_response(_async)``, ``MiddlewareMixin.__acall__`` and the ASGI
  handler, and naming each hop's site the way hopwatch's recorder does;
* **rendering** (:func:`render`): a rich table on a terminal, plain text
  otherwise, or JSON (documented in ``docs/audit.md``).

Nothing here is imported by hopwatch at request time, and importing this
module imports neither Django nor rich (``hopwatch``'s CLI imports subcommand
modules when it parses its command line).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import io
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Any, Final, NoReturn

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

HELP: Final = "list MIDDLEWARE with the hops each entry costs per request, and what to change"

ASGI: Final = "asgi"
WSGI: Final = "wsgi"
INTERFACES: Final = (ASGI, WSGI)
SYNC: Final = "sync"
ASYNC: Final = "async"
VIEW_KINDS: Final = ("async_view", "sync_view")

# Adapter kinds, for the time estimate.
SYNC_TO_ASYNC: Final = "sync_to_async"
ASYNC_TO_SYNC: Final = "async_to_sync"
NEW_LOOP: Final = "async_to_sync_new_loop"

#: When a hook runs: on every request, on every request that reaches a view,
#: only for a TemplateResponse, only when the view raises.
WHEN_REQUEST: Final = "request"
WHEN_VIEW: Final = "view"
WHEN_TEMPLATE: Final = "template_response"
WHEN_EXCEPTION: Final = "exception"

MIXIN_HOOKS: Final = ("process_request", "process_response")
HANDLER_HOOKS: Final = ("process_view", "process_template_response", "process_exception")
_HOOK_WHEN: Final = {
    "process_request": WHEN_REQUEST,
    "process_response": WHEN_REQUEST,
    "process_view": WHEN_VIEW,
    "process_template_response": WHEN_TEMPLATE,
    "process_exception": WHEN_EXCEPTION,
}

#: The placeholder site for "the view" in predicted sites (the audit knows no view).
VIEW_SITE: Final = "<view>"

FORMAT_VERSION: Final = 1
FORMATS: Final = ("auto", "rich", "text", "json")
DEFAULT_SAMPLES: Final = 50

#: Advice ids (stable: they appear in the JSON).
ADVICE_MIXIN: Final = "mixin-hooks"
ADVICE_SYNC_ONLY: Final = "sync-only"
ADVICE_ASYNC_ONLY: Final = "async-only"
ADVICE_PROCESS_VIEW: Final = "sync-process-view"

CHECK_ID: Final = "hopwatch.W010"


class AuditError(Exception):
    """A problem that stops the audit; its message is one line, shown as is."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- the hop tax ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HopTax:
    """What a no-op hop costs on this host: medians in microseconds."""

    #: a thread-sensitive ``sync_to_async`` of a no-op, from a running loop
    sync_to_async_us: float
    #: an ``async_to_sync`` of a no-op from a worker thread onto the running loop
    async_to_sync_us: float
    #: an ``async_to_sync`` with no loop to go to: a new loop in a new thread
    new_loop_us: float
    samples: int
    #: whether hopwatch's instrumentation was installed while measuring
    instrumented: bool

    def cost_us(self, adapters: Mapping[str, int]) -> float:
        """The predicted time of hops counted by adapter kind."""
        return (
            adapters.get(SYNC_TO_ASYNC, 0) * self.sync_to_async_us
            + adapters.get(ASYNC_TO_SYNC, 0) * self.async_to_sync_us
            + adapters.get(NEW_LOOP, 0) * self.new_loop_us
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "sync_to_async_us": round(self.sync_to_async_us, 1),
            "async_to_sync_us": round(self.async_to_sync_us, 1),
            "async_to_sync_new_loop_us": round(self.new_loop_us, 1),
            "samples": self.samples,
            "instrumented": self.instrumented,
        }


def _noop() -> None:
    return None


async def _anoop() -> None:
    return None


def _median_us(durations_ns: Sequence[int]) -> float:
    return float(statistics.median(durations_ns)) / 1000.0


def _asgiref_sync() -> Any:
    """``asgiref.sync`` (untyped in asgiref 3.6: used through Any)."""
    import asgiref.sync

    return asgiref.sync


def _time_async_to_sync(samples: int, warmup: int) -> list[int]:
    """In a ``sync_to_async`` worker thread: ``async_to_sync`` onto the running loop."""
    async_to_sync = _asgiref_sync().async_to_sync
    call = async_to_sync(_anoop)  # made here: it finds the running loop, as Django's do
    for _ in range(warmup):
        call()
    durations = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        call()
        durations.append(time.perf_counter_ns() - started)
    return durations


async def _time_awaits(call: Callable[[], Any], count: int, durations: list[int]) -> None:
    """Await ``call()`` ``count`` times, appending each wall time in nanoseconds."""
    for _ in range(count):
        started = time.perf_counter_ns()
        await call()
        durations.append(time.perf_counter_ns() - started)


async def _time_on_loop(samples: int, warmup: int) -> tuple[list[int], list[int]]:
    sync = _asgiref_sync()
    sync_to_async = sync.sync_to_async
    # One context, as Django's ASGIHandler makes per request: its own thread.
    async with sync.ThreadSensitiveContext():
        hop = sync_to_async(_noop, thread_sensitive=True)
        await _time_awaits(hop, warmup, [])
        durations: list[int] = []
        await _time_awaits(hop, samples, durations)
        back = await sync_to_async(_time_async_to_sync, thread_sensitive=True)(samples, warmup)
    return durations, back


def _time_new_loop(samples: int, warmup: int) -> list[int]:
    async_to_sync = _asgiref_sync().async_to_sync

    for _ in range(warmup):
        async_to_sync(_anoop)()
    durations = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        async_to_sync(_anoop)()  # no loop in this thread: a new one each time
        durations.append(time.perf_counter_ns() - started)
    return durations


def _in_helper_thread(func: Callable[[], Any]) -> Any:
    """Run ``func`` in a new thread (a fresh context: never inside a request)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = func()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="hopwatch-hop-tax", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def measure_hop_tax(samples: int = DEFAULT_SAMPLES) -> HopTax:
    """Measure what a no-op hop costs on this host, now.

    ``samples`` timed calls of each kind (after a short warm-up): a
    thread-sensitive ``sync_to_async`` from a running loop, an
    ``async_to_sync`` from its worker thread back onto that loop, and an
    ``async_to_sync`` with no loop to go to (a new loop in a new thread: an
    async view under WSGI). All of it runs in a fresh event loop in a helper
    thread, so it never runs inside a request, and it blocks the caller for
    about ``samples`` x 1-2 ms. Medians, in microseconds.
    """
    if samples < 1:
        raise ValueError("samples must be 1 or more")
    from hopwatch._patch import is_installed

    warmup = min(5, samples)
    on_loop, back = _in_helper_thread(lambda: asyncio.run(_time_on_loop(samples, warmup)))
    new_loop = _in_helper_thread(lambda: _time_new_loop(samples, min(2, samples)))
    return HopTax(
        sync_to_async_us=_median_us(on_loop),
        async_to_sync_us=_median_us(back),
        new_loop_us=_median_us(new_loop),
        samples=samples,
        instrumented=is_installed(),
    )


@dataclass(frozen=True)
class Overhead:
    """What hopwatch's instrumentation adds to one hop on this host: medians in microseconds."""

    #: a thread-sensitive ``sync_to_async`` of a no-op, asgiref as it ships
    bare_us: float
    #: the same hop with hopwatch's instrumentation installed
    instrumented_us: float
    samples: int

    @property
    def added_us(self) -> float:
        return self.instrumented_us - self.bare_us

    def as_dict(self) -> dict[str, Any]:
        return {
            "bare_us": round(self.bare_us, 1),
            "instrumented_us": round(self.instrumented_us, 1),
            "added_us": round(self.added_us, 1),
            "samples": self.samples,
        }


#: Hops timed per turn while measuring the overhead: the two variants take turns, so
#: that a machine busy for a moment slows both alike.
_OVERHEAD_TURN: Final = 5


async def _time_with_and_without(samples: int, warmup: int) -> tuple[list[int], list[int]]:
    from hopwatch import _patch

    sync = _asgiref_sync()
    bare: list[int] = []
    instrumented: list[int] = []
    async with sync.ThreadSensitiveContext():
        hop = sync.sync_to_async(_noop, thread_sensitive=True)
        await _time_awaits(hop, warmup, [])
        while len(bare) < samples:
            for durations, switch in ((instrumented, _patch.install), (bare, _patch.uninstall)):
                switch()  # between hops: none is in flight
                await _time_awaits(hop, min(_OVERHEAD_TURN, samples - len(durations)), durations)
    return bare, instrumented


def measure_overhead(samples: int = DEFAULT_SAMPLES) -> Overhead | None:
    """Measure what hopwatch adds to a no-op ``sync_to_async`` on this host, now.

    ``samples`` hops with the instrumentation and as many without, taking turns.
    It installs and removes the instrumentation while it measures, so it is only
    for a process that serves no requests (``hopwatch audit``, the management
    command); the instrumentation is left as it was found. None when other code
    has wrapped asgiref over hopwatch's patch (removing ours would remove theirs).
    """
    if samples < 1:
        raise ValueError("samples must be 1 or more")
    from asgiref.sync import SyncToAsync

    from hopwatch import _patch

    was_installed = _patch.is_installed()
    if was_installed and not _patch.owns_call(SyncToAsync):
        return None
    try:
        bare, instrumented = _in_helper_thread(
            lambda: asyncio.run(_time_with_and_without(samples, min(5, samples)))
        )
    finally:
        (_patch.install if was_installed else _patch.uninstall)()
    return Overhead(_median_us(bare), _median_us(instrumented), samples)


# --- facts: what introspection finds ------------------------------------------------------


@dataclass(frozen=True)
class HookFacts:
    name: str
    is_async: bool


@dataclass(frozen=True)
class MiddlewareFacts:
    """What the model needs to know about one ``MIDDLEWARE`` entry."""

    path: str
    sync_capable: bool = True
    async_capable: bool = False
    #: "mixin" (MiddlewareMixin), "class", "function" or "callable"
    kind: str = "class"
    #: hooks Django or MiddlewareMixin call (process_request/response only for a mixin)
    hooks: tuple[HookFacts, ...] = ()
    #: MiddlewareMixin's own __call__/__acall__ call process_request/response
    mixin_calls_hooks: bool = False
    #: False where the factory raised MiddlewareNotUsed, per interface
    used_asgi: bool = True
    used_wsgi: bool = True
    #: ``module.Qualname`` of the instance's type: how hopwatch's recorder names it
    site: str = ""
    #: ``async_capable`` of the instance's type (what the recorder's blame walk reads)
    instance_async_capable: bool | None = None
    #: the module is outside the project (site-packages, Django itself)
    third_party: bool = False
    notes: tuple[str, ...] = ()

    def used(self, interface: str) -> bool:
        return self.used_asgi if interface == ASGI else self.used_wsgi

    def hook(self, name: str) -> HookFacts | None:
        return next((hook for hook in self.hooks if hook.name == name), None)

    @property
    def site_name(self) -> str:
        return self.site or self.path

    @property
    def blame_async_capable(self) -> bool:
        if self.instance_async_capable is None:
            return self.async_capable
        return self.instance_async_capable


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_third_party(obj: Any) -> bool:
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    filename = getattr(module, "__file__", None) or ""
    parts = os.path.normcase(os.path.abspath(filename)).split(os.sep) if filename else []
    return "site-packages" in parts or "dist-packages" in parts


def _import(path: str) -> Any:
    from django.utils.module_loading import import_string

    try:
        return import_string(path)
    except Exception as exc:
        raise AuditError(f"cannot import middleware {path!r}: {_one_line(exc)}") from None


def _flags(path: str, factory: Any) -> tuple[bool, bool]:
    can_sync = bool(getattr(factory, "sync_capable", True))
    can_async = bool(getattr(factory, "async_capable", False))
    if not can_sync and not can_async:
        raise AuditError(
            f"middleware {path!r} sets neither sync_capable nor async_capable: Django refuses"
            " to load it"
        )
    return can_sync, can_async


def _dummy_get_response(is_async: bool) -> Callable[[Any], Any]:
    if is_async:

        async def get_response_async(request: Any) -> Any:
            raise AssertionError("hopwatch audit never calls the middleware")

        return get_response_async

    def get_response(request: Any) -> Any:
        raise AssertionError("hopwatch audit never calls the middleware")

    return get_response


def gather(paths: Sequence[str]) -> list[MiddlewareFacts]:
    """Import and instantiate each middleware as ``load_middleware`` would, for both modes.

    Raises :class:`AuditError` (one line) for a path that does not import or a
    middleware Django would refuse to load.
    """
    from asgiref.sync import iscoroutinefunction
    from django.core.exceptions import MiddlewareNotUsed
    from django.utils.deprecation import MiddlewareMixin

    factories = [_import(path) for path in paths]
    flags = [_flags(path, factory) for path, factory in zip(paths, factories, strict=True)]
    instances: list[Any] = [None] * len(paths)
    used = {ASGI: [True] * len(paths), WSGI: [True] * len(paths)}
    notes: list[list[str]] = [[] for _ in paths]
    for interface in INTERFACES:
        handler_is_async = interface == ASGI
        for index in reversed(range(len(paths))):
            can_sync, can_async = flags[index]
            is_async = False if (not handler_is_async and can_sync) else can_async
            try:
                instance = factories[index](_dummy_get_response(is_async))
            except MiddlewareNotUsed:
                used[interface][index] = False
                continue
            except Exception as exc:
                note = f"could not be instantiated here ({_one_line(exc)}): hooks not inspected"
                if note not in notes[index]:
                    notes[index].append(note)
            else:
                if instances[index] is None:
                    instances[index] = instance
            handler_is_async = is_async

    facts = []
    for index, path in enumerate(paths):
        factory, instance = factories[index], instances[index]
        can_sync, can_async = flags[index]
        inspected = instance if instance is not None else factory
        is_mixin = isinstance(instance, MiddlewareMixin) or (
            isinstance(factory, type) and issubclass(factory, MiddlewareMixin)
        )
        owner = type(instance) if instance is not None else factory
        # MiddlewareMixin's own __call__/__acall__ (not overridden) call the hooks
        stock = is_mixin and all(
            inspect.getattr_static(owner, name, None) is MiddlewareMixin.__dict__[name]
            for name in ("__call__", "__acall__")
        )
        names = (*MIXIN_HOOKS, *HANDLER_HOOKS) if is_mixin else HANDLER_HOOKS
        hooks = tuple(
            HookFacts(name, iscoroutinefunction(getattr(inspected, name)))
            for name in names
            if hasattr(inspected, name)
        )
        if is_mixin and not stock and any(h.name in MIXIN_HOOKS for h in hooks):
            notes[index].append(
                "overrides MiddlewareMixin's __call__/__acall__: hops its own code makes"
                " are not predicted"
            )
        for hook in hooks:
            if stock and hook.name in MIXIN_HOOKS and hook.is_async:
                notes[index].append(
                    f"{hook.name} is async: MiddlewareMixin cannot call it (sync_to_async"
                    " raises TypeError under ASGI; under WSGI it is never awaited); write an"
                    " __acall__ instead"
                )
        if instance is not None and not isinstance(instance, type):
            from hopwatch._django import middleware_site

            site = middleware_site(instance)
            instance_async_capable: bool | None = bool(
                getattr(type(instance), "async_capable", False)
            )
        else:
            site = _class_path(factory) if isinstance(factory, type) else path
            instance_async_capable = None
        if isinstance(factory, type):
            kind = "mixin" if is_mixin else "class"
        else:
            kind = "function" if callable(factory) and hasattr(factory, "__code__") else "callable"
        for interface in INTERFACES:
            if not used[interface][index]:
                notes[index].append(
                    f"raises MiddlewareNotUsed under {interface.upper()}: Django leaves it out"
                )
        facts.append(
            MiddlewareFacts(
                path=path,
                sync_capable=can_sync,
                async_capable=can_async,
                kind=kind,
                hooks=hooks,
                mixin_calls_hooks=stock,
                used_asgi=used[ASGI][index],
                used_wsgi=used[WSGI][index],
                site=site,
                instance_async_capable=instance_async_capable,
                third_party=_is_third_party(factory),
                notes=tuple(notes[index]),
            )
        )
    return facts


def request_started_hops() -> int:
    """Hops ``ASGIHandler`` spends sending ``request_started`` (its sync receivers)."""
    from django.core.handlers.asgi import ASGIHandler
    from django.core.signals import request_started

    try:
        if not request_started.receivers:
            return 0
        sync_receivers, _async_receivers = request_started._live_receivers(ASGIHandler)
    except Exception:  # a private API: assume Django's own sync receivers
        return 1
    return 1 if sync_receivers else 0


# --- the model (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class PredictedHop:
    kind: str  # the recorder's cause kind: middleware, signal, response, view
    site: str  # the recorder's site
    adapter: str  # SYNC_TO_ASYNC, ASYNC_TO_SYNC or NEW_LOOP
    row: int | None  # index into MIDDLEWARE, or None (outside the chain, the view)
    what: str  # short description (the hook, "adaptation", ...)


@dataclass
class Simulation:
    """One interface, one kind of view: modes and the hops of one ordinary request."""

    interface: str
    view_is_async: bool
    modes: list[str | None]  # per MIDDLEWARE entry; None where left out
    hops: list[PredictedHop]
    #: per entry: the entry whose class is the reason it runs sync under ASGI
    pinned_by: list[int | None]

    @property
    def count(self) -> int:
        return len(self.hops)

    def sites(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for hop in self.hops:
            key = (hop.kind, hop.site)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def adapters(self) -> dict[str, int]:
        counts = {SYNC_TO_ASYNC: 0, ASYNC_TO_SYNC: 0, NEW_LOOP: 0}
        for hop in self.hops:
            counts[hop.adapter] += 1
        return counts

    def row_hops(self, row: int) -> list[PredictedHop]:
        return [hop for hop in self.hops if hop.row == row]


def _modes(facts: Sequence[MiddlewareFacts], interface: str) -> list[str | None]:
    """Each entry's mode, as ``load_middleware`` decides it walking ``reversed(MIDDLEWARE)``."""
    handler_is_async = interface == ASGI
    modes: list[str | None] = [None] * len(facts)
    for index in reversed(range(len(facts))):
        fact = facts[index]
        if not fact.sync_capable and not fact.async_capable:
            raise AuditError(
                f"middleware {fact.path!r} sets neither sync_capable nor async_capable"
            )
        # load_middleware: sync where it can be over a sync handler, else async if it can be
        is_async = False if not handler_is_async and fact.sync_capable else fact.async_capable
        if not fact.used(interface):
            continue  # MiddlewareNotUsed: the handler below stays as it was
        modes[index] = ASYNC if is_async else SYNC
        handler_is_async = is_async
    return modes


def _first_not_async_capable(
    facts: Sequence[MiddlewareFacts], chain: Sequence[int], start: int, *, as_recorder: bool
) -> int | None:
    for index in chain[start:]:
        capable = facts[index].blame_async_capable if as_recorder else facts[index].async_capable
        if not capable:
            return index
    return None


def simulate(
    facts: Sequence[MiddlewareFacts],
    interface: str,
    *,
    view_is_async: bool,
    request_started: int = 1,
) -> Simulation:
    """The hops of one ordinary request (a view resolved, a plain response, no exception)."""
    is_async = interface == ASGI
    modes = _modes(facts, interface)
    chain = [index for index, mode in enumerate(modes) if mode is not None]  # top to bottom
    hops: list[PredictedHop] = []
    # Whether a running loop is reachable from where the request is (asgiref
    # finds it through SyncToAsync's thread-local): under ASGI always; under
    # WSGI once an async_to_sync has made one.
    loop = is_async

    def a2s(*, encloses_the_rest: bool) -> str:
        nonlocal loop
        kind = ASYNC_TO_SYNC if loop else NEW_LOOP
        if encloses_the_rest:  # the rest of the request runs inside that loop
            loop = True
        return kind

    if is_async and request_started:
        hops.append(
            PredictedHop("signal", "request_started", SYNC_TO_ASYNC, None, "request_started")
        )

    # The top of the chain, adapted to the handler's mode.
    top_async = modes[chain[0]] == ASYNC if chain else is_async
    if chain and top_async != is_async:
        top = chain[0]
        if is_async:  # sync_to_async into a sync chain: blame the sync-only entry that made it so
            row = _first_not_async_capable(facts, chain, 0, as_recorder=False)
            blamed = _first_not_async_capable(facts, chain, 0, as_recorder=True)
            site = facts[blamed].site_name if blamed is not None else facts[top].site_name
            hops.append(
                PredictedHop(
                    "middleware",
                    site,
                    SYNC_TO_ASYNC,
                    top if row is None else row,
                    "adaptation (into the chain)",
                )
            )
        else:
            adapter = a2s(encloses_the_rest=True)
            hops.append(
                PredictedHop(
                    "middleware", facts[top].site_name, adapter, top, "adaptation (into the chain)"
                )
            )

    for position, index in enumerate(chain):
        fact = facts[index]
        mode = modes[index]
        if fact.mixin_calls_hooks and mode == ASYNC:
            for name in MIXIN_HOOKS:
                hook = fact.hook(name)
                if hook is not None and not hook.is_async:
                    hops.append(
                        PredictedHop(
                            "middleware", f"{fact.site_name}.{name}", SYNC_TO_ASYNC, index, name
                        )
                    )
        below_async = modes[chain[position + 1]] == ASYNC if position + 1 < len(chain) else is_async
        if (mode == ASYNC) == below_async:
            continue
        if mode == ASYNC:  # sync_to_async of the sync handler below
            row = _first_not_async_capable(facts, chain, position + 1, as_recorder=False)
            blamed = _first_not_async_capable(facts, chain, position + 1, as_recorder=True)
            site = facts[blamed].site_name if blamed is not None else fact.path
            hops.append(
                PredictedHop(
                    "middleware",
                    site,
                    SYNC_TO_ASYNC,
                    index if row is None else row,
                    "adaptation (below it)",
                )
            )
        else:  # async_to_sync of the async handler below
            adapter = a2s(encloses_the_rest=True)
            hops.append(
                PredictedHop("middleware", fact.path, adapter, index, "adaptation (below it)")
            )

    # _get_response(_async): process_view hooks, adapted to the handler's mode.
    for index in chain:
        fact = facts[index]
        hook = fact.hook("process_view")
        if hook is not None and hook.is_async != is_async:
            adapter = (
                SYNC_TO_ASYNC if is_async else a2s(encloses_the_rest=False)
            )
            hops.append(
                PredictedHop(
                    "middleware", f"{fact.site_name}.process_view", adapter, index, "process_view"
                )
            )

    if is_async and not view_is_async:
        hops.append(PredictedHop("view", VIEW_SITE, SYNC_TO_ASYNC, None, "the view"))
    elif not is_async and view_is_async:
        hops.append(
            PredictedHop(
                "view",
                VIEW_SITE,
                a2s(encloses_the_rest=False),
                None,
                "the view",
            )
        )

    if is_async:
        hops.append(
            PredictedHop("response", "HttpResponse.close", SYNC_TO_ASYNC, None, "response.close()")
        )

    pinned_by: list[int | None] = [None] * len(facts)
    if is_async:
        for position, index in enumerate(chain):
            if modes[index] == SYNC:
                pinned_by[index] = _first_not_async_capable(
                    facts, chain, position, as_recorder=False
                )
    return Simulation(interface, view_is_async, modes, hops, pinned_by)


# --- the audit ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HookCost:
    name: str
    is_async: bool
    when: str
    hops: dict[str, int]  # per interface


@dataclass(frozen=True)
class WhatIf:
    """The predicted hops per async-view request after one change to one entry."""

    #: "native-async", "async_capable=False", "sync_capable=True" or "async process_view"
    change: str
    asgi_async_view: int
    wsgi_async_view: int
    #: an ASGI request still holds a worker thread (some middleware runs sync)
    pins_thread: bool


@dataclass
class EntryAudit:
    position: int  # 1-based
    facts: MiddlewareFacts
    modes: dict[str, str | None]
    hooks: list[HookCost]
    hops: dict[str, int]  # per interface, per ordinary request, charged to this entry
    adaptation: dict[str, int]
    pins_thread: bool
    pinned_by: str | None  # the path of the entry that is the reason (None: itself or none)
    advice: list[str]
    what_ifs: list[WhatIf]


@dataclass
class Audit:
    settings_module: str | None
    django_version: str
    asgiref_version: str
    asgi_application: str | None
    entries: list[EntryAudit]
    simulations: dict[tuple[str, str], Simulation]  # (interface, view kind)
    request_started: int
    hop_tax: HopTax | None = None
    problems: list[str] = field(default_factory=list)
    overhead: Overhead | None = None
    #: what Django 6.2's flag change will do to this MIDDLEWARE (None: nothing, or on 6.2+)
    django_6_2: Django62Preview | None = None

    def predicted(self, interface: str, view_kind: str) -> int:
        return self.simulations[(interface, view_kind)].count


def _simulate_all(
    facts: Sequence[MiddlewareFacts], request_started: int
) -> dict[tuple[str, str], Simulation]:
    return {
        (interface, view_kind): simulate(
            facts,
            interface,
            view_is_async=view_kind == "async_view",
            request_started=request_started,
        )
        for interface in INTERFACES
        for view_kind in VIEW_KINDS
    }


def _hook_hops(fact: MiddlewareFacts, hook: HookFacts, mode: str | None, interface: str) -> int:
    if mode is None:
        return 0
    is_async = interface == ASGI
    if hook.name in MIXIN_HOOKS:
        return int(fact.mixin_calls_hooks and mode == ASYNC and not hook.is_async)
    if hook.name == "process_exception":
        return int(hook.is_async)  # always adapted to sync
    return int(hook.is_async != is_async)  # adapted to the handler's mode


def _what_ifs(
    facts: Sequence[MiddlewareFacts],
    index: int,
    advice: Sequence[str],
    request_started: int,
) -> list[WhatIf]:
    """The same stack with the change each piece of advice suggests, simulated."""
    fact = facts[index]
    changes: list[tuple[str, MiddlewareFacts]] = []
    if ADVICE_MIXIN in advice or ADVICE_SYNC_ONLY in advice:
        changes.append(
            (
                "native-async",
                replace(
                    fact,
                    sync_capable=True,
                    async_capable=True,
                    instance_async_capable=True,
                    mixin_calls_hooks=False,
                    hooks=tuple(h for h in fact.hooks if h.name not in MIXIN_HOOKS),
                ),
            )
        )
    if ADVICE_MIXIN in advice:
        changes.append(
            (
                "async_capable=False",
                replace(
                    fact,
                    async_capable=False,
                    instance_async_capable=False,
                ),
            )
        )
    if ADVICE_ASYNC_ONLY in advice:
        changes.append(("sync_capable=True", replace(fact, sync_capable=True)))
    if ADVICE_PROCESS_VIEW in advice:
        changes.append(
            (
                "async process_view",
                replace(
                    fact,
                    hooks=tuple(
                        HookFacts(h.name, True) if h.name == "process_view" else h
                        for h in fact.hooks
                    ),
                ),
            )
        )
    results = []
    for name, changed in changes:
        variant = [*facts[:index], changed, *facts[index + 1 :]]
        asgi = simulate(
            variant,
            ASGI,
            view_is_async=True,
            request_started=request_started,
        )
        wsgi = simulate(
            variant,
            WSGI,
            view_is_async=True,
            request_started=request_started,
        )
        holds = any(reason is not None for reason in asgi.pinned_by)
        results.append(WhatIf(name, asgi.count, wsgi.count, holds))
    return results


def build_audit(
    facts: Sequence[MiddlewareFacts],
    *,
    settings_module: str | None = None,
    django_version: str = "",
    asgiref_version: str = "",
    asgi_application: str | None = None,
    request_started: int = 1,
    hop_tax: HopTax | None = None,
) -> Audit:
    """The audit of a middleware stack, from facts alone (pure)."""
    simulations = _simulate_all(facts, request_started)
    asgi = simulations[(ASGI, "async_view")]
    wsgi = simulations[(WSGI, "async_view")]
    entries = []
    problems: list[str] = []
    for index, fact in enumerate(facts):
        modes = {ASGI: asgi.modes[index], WSGI: wsgi.modes[index]}
        hooks = [
            HookCost(
                hook.name,
                hook.is_async,
                _HOOK_WHEN[hook.name],
                {iface: _hook_hops(fact, hook, modes[iface], iface) for iface in INTERFACES},
            )
            for hook in fact.hooks
        ]
        hops = {ASGI: len(asgi.row_hops(index)), WSGI: len(wsgi.row_hops(index))}
        adaptation = {
            iface: sum(1 for hop in sim.row_hops(index) if hop.what.startswith("adaptation"))
            for iface, sim in ((ASGI, asgi), (WSGI, wsgi))
        }
        reason = asgi.pinned_by[index]
        advice = []
        if (
            fact.mixin_calls_hooks
            and modes[ASGI] == ASYNC
            and any(h.hops[ASGI] for h in hooks if h.name in MIXIN_HOOKS)
        ):
            advice.append(ADVICE_MIXIN)
        if not fact.async_capable:
            advice.append(ADVICE_SYNC_ONLY)
        if not fact.sync_capable:
            advice.append(ADVICE_ASYNC_ONLY)
        if any(h.name == "process_view" and h.hops[ASGI] for h in hooks) and not advice:
            advice.append(ADVICE_PROCESS_VIEW)
        what_ifs = _what_ifs(facts, index, advice, request_started)
        problems.extend(
            f"{fact.path}: {note}" for note in fact.notes if "MiddlewareMixin cannot" in note
        )
        entries.append(
            EntryAudit(
                position=index + 1,
                facts=fact,
                modes=modes,
                hooks=hooks,
                hops=hops,
                adaptation=adaptation,
                pins_thread=reason is not None,
                pinned_by=facts[reason].path if reason is not None and reason != index else None,
                advice=advice,
                what_ifs=what_ifs,
            )
        )
    return Audit(
        settings_module=settings_module,
        django_version=django_version,
        asgiref_version=asgiref_version,
        asgi_application=asgi_application,
        entries=entries,
        simulations=simulations,
        request_started=request_started,
        hop_tax=hop_tax,
        problems=problems,
    )


def audit_settings(
    middleware: Sequence[str] | None = None, *, hop_tax: HopTax | None = None
) -> Audit:
    """Audit ``settings.MIDDLEWARE`` (or ``middleware``) of the configured project."""
    import asgiref
    import django
    from django.conf import settings

    paths = list(settings.MIDDLEWARE if middleware is None else middleware)
    facts = gather(paths)
    asgi_application = getattr(settings, "ASGI_APPLICATION", None)
    audit = build_audit(
        facts,
        settings_module=getattr(settings, "SETTINGS_MODULE", None)
        or os.environ.get("DJANGO_SETTINGS_MODULE"),
        django_version=django.get_version(),
        asgiref_version=getattr(asgiref, "__version__", "unknown"),
        asgi_application=str(asgi_application) if asgi_application else None,
        request_started=request_started_hops(),
        hop_tax=hop_tax,
    )
    if django.VERSION[:2] < DJANGO_6_2:
        audit.django_6_2 = preview_django_6_2(
            facts, django_6_2_flag_changes(paths), audit.request_started
        )
    return audit


# --- Django 6.2: what ticket #37177 will do to this MIDDLEWARE -------------------------------
#
# Django 6.2 (commit a013c821, "Fixed #37177 -- Reduced per-middleware context
# switching under ASGI") sets async_capable = False on Django's own
# MiddlewareMixin subclasses; MiddlewareMixin's default stays True. Under ASGI
# such a middleware then runs sync: one sync_to_async into the chain and one
# async_to_sync out to the view instead of a hop per hook, but the request holds
# a worker thread while everything below it runs, the view included. The model
# takes the commit message at its word ("only the values on Django's own
# subclasses"): every Django class that inherits MiddlewareMixin's flag.

DJANGO_6_2: Final = (6, 2)


@dataclass(frozen=True)
class Django62Preview:
    """The same MIDDLEWARE under ASGI before and after Django 6.2's flag change."""

    #: the MIDDLEWARE paths whose async_capable 6.2 turns to False
    affected: tuple[str, ...]
    before: dict[str, Simulation]  # ASGI, per view kind
    after: dict[str, Simulation]


def django_6_2_flag_changes(paths: Sequence[str]) -> tuple[bool, ...]:
    """For each path: whether Django 6.2 changes its ``async_capable``.

    A class that inherits ``async_capable`` from ``MiddlewareMixin`` through
    one of Django's own subclasses (a user subclass of ``SessionMiddleware``
    inherits 6.2's value too); not one that sets it itself, nor a function.
    """
    from django.utils.deprecation import MiddlewareMixin

    changes = []
    for path in paths:
        factory = _import(path)
        changed = False
        if isinstance(factory, type) and issubclass(factory, MiddlewareMixin):
            mro = factory.__mro__
            definer = next(cls for cls in mro if "async_capable" in cls.__dict__)
            below_mixin = mro[: mro.index(MiddlewareMixin)]
            changed = definer is MiddlewareMixin and any(
                cls.__module__.split(".", 1)[0] == "django" for cls in below_mixin
            )
        changes.append(changed)
    return tuple(changes)


def preview_django_6_2(
    facts: Sequence[MiddlewareFacts], changes: Sequence[bool], request_started: int = 1
) -> Django62Preview | None:
    """The model before and after the change (pure); None when it changes no entry."""
    if not any(changes):
        return None
    after_facts = [
        replace(fact, async_capable=False, instance_async_capable=False) if changed else fact
        for fact, changed in zip(facts, changes, strict=True)
    ]

    def asgi(variant: Sequence[MiddlewareFacts]) -> dict[str, Simulation]:
        return {
            kind: simulate(
                variant, ASGI, view_is_async=kind == "async_view", request_started=request_started
            )
            for kind in VIEW_KINDS
        }

    affected = tuple(fact.path for fact, changed in zip(facts, changes, strict=True) if changed)
    return Django62Preview(affected, asgi(facts), asgi(after_facts))


def pinned_section(sim: Simulation) -> list[PredictedHop] | None:
    """The crossing that holds a worker thread and the hops made inside it (None: none).

    Under ASGI a sync section of the chain is entered through sync_to_async and
    left through async_to_sync to what runs below it: that async_to_sync, and
    everything until the response goes back up, runs while the thread waits,
    the view included. hopwatch's ``pinned_ms`` is that crossing's wall time.
    """
    for position, hop in enumerate(sim.hops):
        if hop.adapter != SYNC_TO_ASYNC and hop.what.startswith("adaptation"):
            return [hop, *(h for h in sim.hops[position + 1 :] if h.kind != "response")]
    return None


def _pinned_by(sim: Simulation, facts_paths: Sequence[str]) -> str | None:
    reasons = [reason for reason in sim.pinned_by if reason is not None]
    return facts_paths[reasons[0]] if reasons else None


def _django_6_2_side(
    sim: Simulation, paths: Sequence[str], hop_tax: HopTax | None
) -> dict[str, Any]:
    section = pinned_section(sim)
    pinned_us = None
    if section is not None and hop_tax is not None:
        adapters: dict[str, int] = {}
        for hop in section:
            adapters[hop.adapter] = adapters.get(hop.adapter, 0) + 1
        pinned_us = round(hop_tax.cost_us(adapters), 1)
    return {
        "hops": sim.count,
        "hop_time_us": round(hop_tax.cost_us(sim.adapters()), 1) if hop_tax else None,
        "pinned_by": _pinned_by(sim, paths),
        # the crossing that holds the thread and the hops inside it: pinned_ms is
        # the view's own time plus these
        "pinned_hops": None if section is None else len(section),
        "pinned_hop_time_us": pinned_us,
    }


def django_6_2_document(audit: Audit) -> dict[str, Any] | None:
    """The ``django_6_2`` member of the JSON document."""
    preview = audit.django_6_2
    if preview is None:
        return None
    paths = [entry.facts.path for entry in audit.entries]
    return {
        "affected": list(preview.affected),
        ASGI: {
            kind: {
                "before": _django_6_2_side(preview.before[kind], paths, audit.hop_tax),
                "after": _django_6_2_side(preview.after[kind], paths, audit.hop_tax),
            }
            for kind in VIEW_KINDS
        },
    }


def _pinned_words(side: dict[str, Any]) -> str:
    if side["pinned_by"] is None:
        return "nothing pinned"
    hops = side["pinned_hops"]
    timed = f", ~{_us(side['pinned_hop_time_us'])}" if side["pinned_hop_time_us"] else ""
    return (
        f"pinned: the view + {hops} hop{'s' if hops != 1 else ''}{timed}"
        f" (by {side['pinned_by'].rsplit('.', 1)[-1]})"
    )


def django_6_2_lines(audit: Audit) -> list[str]:
    """The text lines of the preview (none when there is nothing to say)."""
    document = django_6_2_document(audit)
    if document is None:
        return []
    affected = document["affected"]
    lines = [
        f"Django 6.2 (ticket #37177) makes Django's own MiddlewareMixin subclasses sync-only"
        f" (async_capable = False): {len(affected)} entr{'ies' if len(affected) != 1 else 'y'}"
        " here. Under ASGI, per request:"
    ]
    for kind in VIEW_KINDS:
        before, after = document[ASGI][kind]["before"], document[ASGI][kind]["after"]
        timed = ""
        if before["hop_time_us"] is not None:
            timed = f" (~{_us(before['hop_time_us'])} -> ~{_us(after['hop_time_us'])})"
        lines.append(
            f"  {kind.replace('_', ' ')}: {before['hops']} -> {after['hops']} hops{timed};"
            f" {_pinned_words(before)} -> {_pinned_words(after)}"
        )
    lines.append(
        "  pinned: a worker thread held for the view's whole duration plus those hops, on every"
        " request (pinned_ms in the request lines), even while the view awaits I/O: one thread"
        " per request in flight. To keep today's behaviour for one, list a subclass of it with"
        " async_capable = True."
    )
    return lines


# --- the JSON document ------------------------------------------------------------------


def _sim_dict(sim: Simulation, hop_tax: HopTax | None) -> dict[str, Any]:
    adapters = sim.adapters()
    return {
        "hops": sim.count,
        "adapters": adapters,
        "hop_time_us": round(hop_tax.cost_us(adapters), 1) if hop_tax is not None else None,
        "sites": [
            {"kind": kind, "site": site, "hops": count}
            for (kind, site), count in sim.sites().items()
        ],
    }


def document(audit: Audit) -> dict[str, Any]:
    """The audit as the JSON document ``--format json`` prints (see docs/audit.md)."""
    return {
        "format": "hopwatch.audit",
        "version": FORMAT_VERSION,
        "settings": audit.settings_module,
        "django": audit.django_version,
        "asgiref": audit.asgiref_version,
        "asgi_application": audit.asgi_application,
        "middleware": [
            {
                "position": entry.position,
                "path": entry.facts.path,
                "kind": entry.facts.kind,
                "sync_capable": entry.facts.sync_capable,
                "async_capable": entry.facts.async_capable,
                "third_party": entry.facts.third_party,
                "mode": dict(entry.modes),
                "hooks": [
                    {
                        "name": hook.name,
                        "async": hook.is_async,
                        "when": hook.when,
                        "hops": dict(hook.hops),
                    }
                    for hook in entry.hooks
                ],
                "hops": dict(entry.hops),
                "adaptation_hops": dict(entry.adaptation),
                "pins_thread": entry.pins_thread,
                "pinned_by": entry.pinned_by,
                "advice": list(entry.advice),
                "what_if": [
                    {
                        "change": w.change,
                        "asgi_async_view": w.asgi_async_view,
                        "wsgi_async_view": w.wsgi_async_view,
                        "pins_thread": w.pins_thread,
                    }
                    for w in entry.what_ifs
                ],
                "notes": list(entry.facts.notes),
            }
            for entry in audit.entries
        ],
        "outside_chain": {
            ASGI: {"request_started": audit.request_started, "response_close": 1},
            WSGI: {},
        },
        "predicted": {
            interface: {
                view_kind: _sim_dict(audit.simulations[(interface, view_kind)], audit.hop_tax)
                for view_kind in VIEW_KINDS
            }
            for interface in INTERFACES
        },
        "hop_tax": audit.hop_tax.as_dict() if audit.hop_tax is not None else None,
        "problems": list(audit.problems),
        "hopwatch_overhead": audit.overhead.as_dict() if audit.overhead is not None else None,
        "django_6_2": django_6_2_document(audit),
    }


# --- rendering ----------------------------------------------------------------------------

HOW_TO: Final[dict[str, str]] = {
    ADVICE_MIXIN: (
        "MiddlewareMixin under ASGI: Django calls each sync process_request and"
        " process_response through its own sync_to_async hop. Either rewrite it natively"
        " async (the pattern below: no hop, no thread held), or set async_capable = False on"
        " it (on a subclass you list in MIDDLEWARE if the class is not yours): Django then runs"
        " it, and every middleware above it, sync - one transition in and out instead of a hop"
        " per hook, but the request holds a worker thread until it ends."
    ),
    ADVICE_SYNC_ONLY: (
        "Sync-only middleware under ASGI: Django runs it, and every middleware above it, in a"
        " worker thread (sync_to_async into the chain, async_to_sync out below it), and the"
        " request holds that thread until it ends, even while the view awaits. Make it sync"
        " and async capable (the pattern below); if it is third-party, upgrade it or ask its"
        " maintainers. A MiddlewareMixin subclass with async_capable = False made that trade"
        " on purpose: fewer hops, one thread held per request."
    ),
    ADVICE_ASYNC_ONLY: (
        "Async-only middleware under WSGI: Django enters it through async_to_sync, a new event"
        " loop in a new thread on every request. Make it sync capable too (the pattern below)."
    ),
    ADVICE_PROCESS_VIEW: (
        "A sync process_view costs one sync_to_async hop per request under ASGI: Django adapts"
        " it to the handler's mode whatever mode the middleware runs in. An async def"
        " process_view costs none under ASGI, but one async_to_sync per request under WSGI."
    ),
}

PATTERN: Final = """\
from asgiref.sync import iscoroutinefunction, markcoroutinefunction

class MyMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)  # Django then awaits this instance

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        # before the view (sync)
        response = self.get_response(request)
        # after the view (sync)
        return response

    async def __acall__(self, request):
        # before the view: no blocking calls here (use the async ORM/cache APIs)
        response = await self.get_response(request)
        # after the view
        return response
"""

_LABELS: Final = {
    ADVICE_MIXIN: "A",
    ADVICE_SYNC_ONLY: "B",
    ADVICE_ASYNC_ONLY: "C",
    ADVICE_PROCESS_VIEW: "D",
}


def _clean(text: str) -> str:
    """Text from settings or code, made safe for a terminal (no control characters)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _capable(fact: MiddlewareFacts) -> str:
    if fact.sync_capable and fact.async_capable:
        return "sync+async"
    return "sync only" if fact.sync_capable else "async only"


def _mode(entry: EntryAudit, interface: str) -> str:
    mode = entry.modes[interface]
    return mode if mode is not None else "not used"


def _hooks_cell(entry: EntryAudit) -> str:
    parts = []
    for hook in entry.hooks:
        name = f"async {hook.name}" if hook.is_async else hook.name
        if hook.when == WHEN_TEMPLATE:
            name += " (TemplateResponse)"
        elif hook.when == WHEN_EXCEPTION:
            name += " (exceptions)"
        parts.append(f"{name} {hook.hops[ASGI]}")
    if entry.adaptation[ASGI]:
        parts.append(f"adapting the chain {entry.adaptation[ASGI]}")
    return ", ".join(parts) if parts else "-"


def _pins_cell(entry: EntryAudit, positions: Mapping[str, int]) -> str:
    if not entry.pins_thread:
        return "no"
    if entry.pinned_by is None:
        return "yes"
    return f"yes (via #{positions[entry.pinned_by]})"


def _change_cell(entry: EntryAudit, baseline: tuple[int, int]) -> str:
    if not entry.advice:
        return "-"
    labels = "".join(f"[{_LABELS[a]}]" for a in entry.advice)
    ifs = []
    for what_if in entry.what_ifs:
        if what_if.change == "sync_capable=True":
            ifs.append(f"{what_if.change}: WSGI {baseline[1]}->{what_if.wsgi_async_view}")
            continue
        text = f"{what_if.change}: {baseline[0]}->{what_if.asgi_async_view}"
        if what_if.change == "async process_view":
            text += f", WSGI {baseline[1]}->{what_if.wsgi_async_view}"
        if what_if.pins_thread:
            text += " (holds a thread)"
        elif entry.pins_thread:
            text += " (no thread held)"
        ifs.append(text)
    return f"{labels} {'; '.join(ifs)}" if ifs else labels


Column = tuple[str, Callable[[EntryAudit], str], bool]


def _columns(audit: Audit) -> list[Column]:
    baseline = (audit.predicted(ASGI, "async_view"), audit.predicted(WSGI, "async_view"))
    positions = {entry.facts.path: entry.position for entry in audit.entries}
    return [
        ("#", lambda e: str(e.position), True),
        ("middleware", lambda e: _clean(e.facts.path), False),
        ("capable", lambda e: _capable(e.facts), False),
        ("mode ASGI/WSGI", lambda e: f"{_mode(e, ASGI)}/{_mode(e, WSGI)}", False),
        ("hops ASGI/WSGI", lambda e: f"{e.hops[ASGI]}/{e.hops[WSGI]}", True),
        ("ASGI hops by hook", _hooks_cell, False),
        ("pins thread", lambda e: _pins_cell(e, positions), False),
        ("change (hops per async-view request)", lambda e: _change_cell(e, baseline), False),
    ]


def _title(audit: Audit) -> str:
    where = _clean(audit.settings_module or "settings")
    asgi = (
        f"ASGI_APPLICATION = {_clean(audit.asgi_application)}"
        if audit.asgi_application
        else "ASGI_APPLICATION not set"
    )
    return (
        f"hopwatch audit: {where} (Django {audit.django_version}, asgiref"
        f" {audit.asgiref_version}; {asgi})"
    )


def _us(value: float) -> str:
    return f"{value:,.0f} µs" if value < 10_000 else f"{value / 1000:,.1f} ms"


def _summary_lines(audit: Audit) -> list[str]:
    lines = ["predicted hops per request (a view that returns a plain response):"]
    for interface in INTERFACES:
        cells = []
        for view_kind in VIEW_KINDS:
            sim = audit.simulations[(interface, view_kind)]
            cell = f"{view_kind.replace('_', ' ')} {sim.count}"
            if audit.hop_tax is not None and sim.count:
                cell += f" (~{_us(audit.hop_tax.cost_us(sim.adapters()))})"
            new_loops = sim.adapters()[NEW_LOOP]
            if new_loops:
                cell += f", {new_loops} new event loop{'s' if new_loops > 1 else ''}"
            cells.append(cell)
        lines.append(f"  {interface.upper()}: " + "; ".join(cells))
    outside = []
    if audit.request_started:
        outside.append("request_started 1")
    outside.append("response.close() 1")
    lines.append(
        f"  outside the chain under ASGI: {', '.join(outside)}; a sync view adds 1 under ASGI,"
        " an async view 1 under WSGI (async_to_sync)"
    )
    tax = audit.hop_tax
    if tax is not None:
        lines.append(
            f"hop tax on this host (median of {tax.samples}"
            f"{', hopwatch instrumentation on' if tax.instrumented else ''}):"
            f" sync_to_async {_us(tax.sync_to_async_us)},"
            f" async_to_sync {_us(tax.async_to_sync_us)} onto a running loop,"
            f" {_us(tax.new_loop_us)} with a new event loop;"
            f" `hopwatch report --hop-tax {tax.sync_to_async_us:.0f}` prices logged hops at it"
        )
    overhead = audit.overhead
    if overhead is not None:
        added = (
            f"+{_us(overhead.added_us)} ({overhead.added_us / overhead.bare_us:+.0%})"
            if overhead.added_us > 0
            else "nothing this measurement can see"
        )
        lines.append(
            f"hopwatch's own cost per hop on this host: {added} on a bare sync_to_async of"
            f" {_us(overhead.bare_us)} (medians of {overhead.samples} with and without, taking"
            " turns)"
        )
    lines.extend(_clean(line) for line in django_6_2_lines(audit))
    for problem in audit.problems:
        lines.append(f"problem: {_clean(problem)}")
    for entry in audit.entries:
        for note in entry.facts.notes:
            if "MiddlewareMixin cannot" not in note:
                lines.append(f"note: {_clean(entry.facts.path)} {_clean(note)}")
    return lines


def _how_to_lines(audit: Audit) -> list[str]:
    used = [a for a in _LABELS if any(a in entry.advice for entry in audit.entries)]
    if not used:
        return ["nothing to change: no entry adds a hop or holds a thread"]
    lines = ["what to change:"]
    for advice in used:
        lines.append(f"[{_LABELS[advice]}] {HOW_TO[advice]}")
    if any(a != ADVICE_PROCESS_VIEW for a in used):
        lines.append("")
        lines.append("A sync and async capable middleware (Django never adapts it):")
        lines.append("")
        lines.extend("    " + line if line else "" for line in PATTERN.splitlines())
    return lines


def render_text(audit: Audit, out: IO[str]) -> None:
    columns = _columns(audit)
    cells = [[header for header, _cell, _right in columns]]
    cells += [[cell(entry) for _header, cell, _right in columns] for entry in audit.entries]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out.write(_title(audit) + "\n\n")
    if not audit.entries:
        out.write("MIDDLEWARE is empty\n")
    else:
        for line in cells:
            parts = []
            for i, (value, (_header, _cell, right)) in enumerate(zip(line, columns, strict=True)):
                last = i == len(columns) - 1
                parts.append(
                    value.rjust(widths[i]) if right else value if last else value.ljust(widths[i])
                )
            out.write("  ".join(parts).rstrip() + "\n")
    out.write("\n" + "\n".join(_summary_lines(audit)) + "\n\n")
    out.write("\n".join(_how_to_lines(audit)).rstrip() + "\n")


def render_rich(audit: Audit, out: IO[str], *, width: int | None = None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, highlight=False, emoji=False, markup=False, width=width)
    columns = _columns(audit)
    table = Table(title=Text(_title(audit)), header_style="bold", box=box.SIMPLE_HEAD)
    # one item per line in the cells that list several
    split = {"ASGI hops by hook": ", ", "change (hops per async-view request)": "; "}
    for header, _cell, right in columns:
        table.add_column(
            Text(header),
            justify="right" if right else "left",
            no_wrap=header == "#",
            overflow="fold",
        )
    for entry in audit.entries:
        table.add_row(
            *(
                Text(cell(entry).replace(split[header], "\n") if header in split else cell(entry))
                for header, cell, _right in columns
            )
        )
    if audit.entries:
        console.print(table)
    else:
        console.print(Text(_title(audit)))
        console.print(Text("MIDDLEWARE is empty"))
    for line in _summary_lines(audit):
        console.print(Text(line))
    console.print(Text(""))
    for line in _how_to_lines(audit):
        console.print(Text(line), soft_wrap=line.startswith("    "))


def render_json(audit: Audit, out: IO[str]) -> None:
    json.dump(document(audit), out, indent=2, ensure_ascii=True, allow_nan=False)
    out.write("\n")


RENDERERS: Final[dict[str, Callable[[Audit, IO[str]], None]]] = {
    "rich": render_rich,
    "text": render_text,
    "json": render_json,
}


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def render(audit: Audit, format_name: str, out: IO[str]) -> None:
    if format_name == "auto":
        format_name = "rich" if _is_terminal(out) else "text"
    RENDERERS[format_name](audit, out)


def render_to_string(audit: Audit, format_name: str) -> str:
    buffer = io.StringIO()
    RENDERERS["text" if format_name == "auto" else format_name](audit, buffer)
    return buffer.getvalue()


# --- the Django system check --------------------------------------------------------------


def check_sync_only_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``hopwatch.W010``: a sync-only middleware in a project served by ASGI.

    Not registered here: ``hopwatch.checks`` registers it.
    """
    from django.conf import settings
    from django.core.checks import Warning
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
            " and add an async __acall__ (see hopwatch's docs/audit.md). If it is third-party,"
            " upgrade it or ask its maintainers."
        )
        if deliberate:
            hint += (
                f" {name} sets async_capable = False itself: if that trade (fewer hops, a thread"
                f" held per request) is deliberate, add {CHECK_ID!r} to SILENCED_SYSTEM_CHECKS."
            )
        hint += " `hopwatch audit` shows what it costs."
        messages.append(
            Warning(
                f"{path} is sync-only and this project is served by ASGI: Django runs it, and"
                " every middleware above it, in a worker thread the request holds until it"
                " ends, and adapts the chain around it (sync_to_async in, async_to_sync out).",
                hint=hint,
                obj=path,
                id=CHECK_ID,
            )
        )
    return messages


# --- the command line -------------------------------------------------------------------

DESCRIPTION: Final = """\
List each MIDDLEWARE entry of a Django project: its sync_capable/async_capable
flags, the mode Django runs it in under ASGI and under WSGI, the hops it costs
per request, whether it holds a worker thread, and what to change. Then the
predicted hops per request for an async and a sync view, and what a hop costs
on this host (measured now, in a helper thread)."""


def _samples(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {number}")
    return number


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--settings",
        metavar="DOTTED.PATH",
        help="the Django settings module (default: $DJANGO_SETTINGS_MODULE)",
    )
    parser.add_argument(
        "--pythonpath",
        metavar="DIR",
        action="append",
        default=[],
        help="a directory to add to sys.path first (repeatable; the current"
        " directory is always added)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="output format (default: rich on a terminal, else text)",
    )
    parser.add_argument(
        "--samples",
        type=_samples,
        default=DEFAULT_SAMPLES,
        metavar="N",
        help=f"hops timed per kind for the hop tax and hopwatch's own cost"
        f" (default {DEFAULT_SAMPLES})",
    )


def _error(message: str) -> int:
    print(f"hopwatch audit: error: {message}", file=sys.stderr)
    return 2


def _setup_django(module: str, pythonpath: Sequence[str]) -> None:
    """Configure Django with ``module``, or check it already is. AuditError if not."""
    for entry in [os.getcwd(), *reversed(pythonpath)]:
        entry = os.path.abspath(entry)
        if entry not in sys.path:
            sys.path.insert(0, entry)
    from django.conf import settings

    if settings.configured:
        current = getattr(settings, "SETTINGS_MODULE", None)
        if current is not None and current != module:
            raise AuditError(f"Django is already configured with {current!r}, not {module!r}")
        return
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    try:
        import django

        django.setup()
    except Exception as exc:
        raise AuditError(f"cannot load the settings {module!r}: {_one_line(exc)}") from None


def write_audit(out: IO[str], format_name: str = "auto", samples: int = DEFAULT_SAMPLES) -> None:
    """Audit the configured project and write it (the CLI and the management command)."""
    audit = audit_settings()
    measure_host(audit, samples)
    render(audit, format_name, out)


def measure_host(audit: Audit, samples: int = DEFAULT_SAMPLES) -> None:
    """Fill in the hop tax and hopwatch's own cost (a process serving no requests only)."""
    if "hopwatch.apps" in sys.modules:  # MEASURE_HOP_TAX may be measuring right now
        sys.modules["hopwatch.apps"].wait_for_hop_tax_measurement()
    audit.hop_tax = measure_hop_tax(samples)
    audit.overhead = measure_overhead(samples)


def run(args: argparse.Namespace, stdout: IO[str] | None = None) -> int:
    out = stdout if stdout is not None else sys.stdout
    module = args.settings or os.environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        return _error(
            "no Django settings: pass --settings dotted.path or set DJANGO_SETTINGS_MODULE"
        )
    try:
        _setup_django(module, args.pythonpath)
        write_audit(out, args.format, args.samples)
        out.flush()
    except AuditError as exc:
        return _error(str(exc))
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """``hopwatch audit ...`` on its own (the ``hopwatch`` command dispatches here too)."""
    parser = _Parser(prog="hopwatch audit")
    configure(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
