"""What the audit finds by introspection: each ``MIDDLEWARE`` entry's flags and hooks.

:func:`gather` imports each middleware and instantiates it exactly as
``BaseHandler.load_middleware`` would (a ``MiddlewareNotUsed`` leaves it out),
once per mode it runs in under ASGI and WSGI, recording only facts (flags,
hooks, which hooks are async, and the crossings its own code makes where
:data:`OWN_CODE` knows that code). The model
(:mod:`hopwatch.audit.model`) computes from these facts alone. Django is
imported when these functions run, never when this module is imported.
"""

from __future__ import annotations

import inspect
import io
import os
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hopwatch.hop_tax import ASYNC_TO_SYNC, SYNC_TO_ASYNC

ASGI: Final = "asgi"
WSGI: Final = "wsgi"
INTERFACES: Final = (ASGI, WSGI)
SYNC: Final = "sync"
ASYNC: Final = "async"

MIXIN_HOOKS: Final = ("process_request", "process_response")
HANDLER_HOOKS: Final = ("process_view", "process_template_response", "process_exception")


class AuditError(Exception):
    """A problem that stops the audit; its message is one line, shown as is."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: Kinds of note: what the audit could not model about an entry, or a problem with it.
NOTE_NOT_BUILT: Final = "not-built"  # its factory raised: hooks not inspected
NOTE_OWN_CALL: Final = "own-call"  # a mixin (or an OWN_CODE class) overriding __call__/__acall__
NOTE_NOT_USED: Final = "not-used"  # MiddlewareNotUsed under an interface
#: Its own code's crossings (OWN_CODE): counted for one case of a per-request condition
NOTE_OWN_CODE: Final = "own-code"
#: A problem at request time, not a gap in the model: an async hook a mixin cannot call.
NOTE_ASYNC_MIXIN_HOOK: Final = "async-mixin-hook"
PROBLEM_NOTES: Final = frozenset({NOTE_ASYNC_MIXIN_HOOK})


@dataclass(frozen=True)
class Note:
    kind: str
    text: str

    @property
    def is_problem(self) -> bool:
        return self.kind in PROBLEM_NOTES


@dataclass(frozen=True)
class HookFacts:
    name: str
    is_async: bool


@dataclass(frozen=True)
class OwnHop:
    """A crossing a middleware's own code makes on every ordinary request (``OWN_CODE``)."""

    mode: str  # SYNC or ASYNC: the mode the middleware runs in when it makes it
    direction: str  # SYNC_TO_ASYNC or ASYNC_TO_SYNC (the model tells a new event loop)
    kind: str  # the recorder's cause kind
    site: str  # the recorder's site
    what: str  # short description


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
    notes: tuple[Note, ...] = ()
    #: crossings its own code makes per ordinary request, in either mode (``OWN_CODE``)
    own_hops: tuple[OwnHop, ...] = ()

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
            f"middleware {path!r} sets both sync_capable and async_capable to False: Django refuses"
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


# --- what a middleware's own code crosses ---------------------------------------------------
#
# Django's adaptations and MiddlewareMixin's hooks follow from flags and hooks, for
# any middleware. What a middleware's own __call__/__acall__ crosses does not: only
# the code knows. OWN_CODE is the one place the audit keeps that knowledge, per
# class, as a reader that looks at the installed version and this project's
# settings (not at a version number); the crossings of any other middleware's own
# code are not predicted (docs/audit.md).

OwnCodeReader = Callable[[type], tuple[tuple[OwnHop, ...], tuple[Note, ...]]]


def _debug_toolbar(cls: type) -> tuple[tuple[OwnHop, ...], tuple[Note, ...]]:
    """django-debug-toolbar's ``DebugToolbarMiddleware`` (5.0+: sync and async capable;
    before 5.0 it is sync-only, and its flags say all there is to say).

    On every request it asks ``SHOW_TOOLBAR_CALLBACK`` whether to show the toolbar.
    From 5.1 ``get_show_toolbar(async_mode)`` adapts the callback to the mode the
    middleware runs in: a sync callback through ``sync_to_async`` when it runs
    async, an async one through ``async_to_sync`` when it runs sync (5.0 calls it
    as is). Where it shows the toolbar and runs async, ``__acall__`` awaits each
    enabled panel's ``aenable_instrumentation``: SQLPanel's is
    ``sync_to_async(self.enable_instrumentation)``. Running sync it calls
    ``enable_instrumentation`` directly; nothing it does after the view crosses,
    whatever the response (rendering the toolbar into HTML included).
    """
    from asgiref.sync import iscoroutinefunction
    from debug_toolbar import middleware as toolbar_middleware
    from debug_toolbar import settings as toolbar_settings
    from debug_toolbar.panels.sql.panel import SQLPanel
    from django.conf import settings
    from django.core.handlers.asgi import ASGIRequest
    from django.utils.module_loading import import_string

    from hopwatch._causes import dotted_name

    config = toolbar_settings.get_config()
    callback = config["SHOW_TOOLBAR_CALLBACK"]
    if isinstance(callback, str):
        callback = import_string(callback)
    hops: list[OwnHop] = []
    notes: list[Note] = []
    get_show_toolbar = toolbar_middleware.get_show_toolbar
    if "async_mode" in inspect.signature(get_show_toolbar).parameters:
        # adapted to the mode it is not: an async callback when it runs sync, and back
        mode, direction = (
            (SYNC, ASYNC_TO_SYNC) if iscoroutinefunction(callback) else (ASYNC, SYNC_TO_ASYNC)
        )
        hops.append(
            OwnHop(mode, direction, "other", dotted_name(callback), "SHOW_TOOLBAR_CALLBACK")
        )

    # Shown: the panels' instrumentation, awaited when the middleware runs async.
    shown_only: list[OwnHop] = []
    acall = inspect.getattr_static(cls, "__acall__", None)
    if "aenable_instrumentation" in getattr(getattr(acall, "__code__", None), "co_names", ()):
        # The panels enabled for a request with no djdt cookies, by their own rule.
        request = ASGIRequest(
            {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []},
            io.BytesIO(),
        )
        stand_in = types.SimpleNamespace(request=request, config=config)
        for panel_path in toolbar_settings.get_panels():
            panel_class = import_string(panel_path)
            hook = getattr(panel_class, "aenable_instrumentation", None)
            if hook is None or not panel_class(stand_in, None).enabled:
                continue
            if hook is SQLPanel.__dict__["aenable_instrumentation"]:
                site = f"{_class_path(panel_class)}.enable_instrumentation"
                shown_only.append(
                    OwnHop(
                        ASYNC,
                        SYNC_TO_ASYNC,
                        "other",
                        site,
                        f"{panel_class.__name__}.aenable_instrumentation",
                    )
                )
            else:
                notes.append(
                    Note(
                        NOTE_OWN_CODE,
                        f"panel {panel_path}'s own aenable_instrumentation: its crossings are"
                        " not predicted",
                    )
                )
    if callback is toolbar_middleware.show_toolbar:
        shown = bool(settings.DEBUG) and bool(settings.INTERNAL_IPS)
        why = (
            "DEBUG on, a client in INTERNAL_IPS"
            if shown
            else ("DEBUG off" if not settings.DEBUG else "INTERNAL_IPS empty")
        )
    elif callback is getattr(toolbar_middleware, "show_toolbar_with_docker", None):
        shown = bool(settings.DEBUG)
        why = "DEBUG on, a client in INTERNAL_IPS or the Docker host" if shown else "DEBUG off"
    else:  # the project's own callback: the audit does not call it
        shown = True
        why = f"as SHOW_TOOLBAR_CALLBACK {dotted_name(callback)} decides, per request"
    if shown_only:
        listed = ", ".join(f"{hop.what} through sync_to_async" for hop in shown_only)
        if shown:
            text = (
                f"its own crossings are counted for a request the toolbar is shown to ({why});"
                f" one it is not shown to makes {len(shown_only)} fewer when it runs async"
                f" ({listed})"
            )
        else:
            text = (
                f"its own crossings are counted for a request the toolbar is not shown to"
                f" ({why}); one it is shown to makes {len(shown_only)} more when it runs async"
                f" ({listed})"
            )
        notes.append(Note(NOTE_OWN_CODE, text))
    if shown:
        hops.extend(shown_only)
    return tuple(hops), tuple(notes)


#: By class path (a subclass that keeps its ``__call__``/``__acall__`` is read the same).
OWN_CODE: Final[dict[str, OwnCodeReader]] = {
    "debug_toolbar.middleware.DebugToolbarMiddleware": _debug_toolbar,
}


def _own_code(factory: Any) -> tuple[tuple[OwnHop, ...], tuple[Note, ...]]:
    """The crossings ``OWN_CODE`` knows this middleware's own code makes."""
    if not isinstance(factory, type):
        return (), ()
    for cls in factory.__mro__:
        reader = OWN_CODE.get(_class_path(cls))
        if reader is None:
            continue
        if any(
            inspect.getattr_static(factory, name, None) is not cls.__dict__.get(name)
            for name in ("__call__", "__acall__")
        ):
            note = f"overrides {cls.__qualname__}'s __call__/__acall__: hops its own code makes"
            return (), (Note(NOTE_OWN_CALL, note + " are not predicted"),)
        try:
            return reader(cls)
        except Exception as exc:
            text = f"what its own code crosses could not be read ({_one_line(exc)}): not predicted"
            return (), (Note(NOTE_OWN_CODE, text),)
    return (), ()


def _build(
    factory: Any, is_async: bool, not_used: type[Exception]
) -> tuple[Any, bool, Note | None]:
    """``factory`` built with a stand-in ``get_response`` of the mode it runs in: the
    instance (None if not built), whether Django uses it (``not_used`` not raised), and
    the note when it could not be built."""
    try:
        return factory(_dummy_get_response(is_async)), True, None
    except not_used:
        return None, False, None
    except Exception as exc:
        text = f"could not be instantiated here ({_one_line(exc)}): hooks not inspected"
        return None, True, Note(NOTE_NOT_BUILT, text)


def gather(paths: Sequence[str]) -> list[MiddlewareFacts]:
    """Import and instantiate each middleware as ``load_middleware`` would, for both
    interfaces: once per mode it runs in (twice where ASGI runs it async and WSGI sync).

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
    notes: list[list[Note]] = [[] for _ in paths]
    # Each entry built once per mode it runs in (the kind of get_response Django gives
    # it): where both interfaces run it in the same mode, the one build answers for both,
    # as the one load_middleware of a server would.
    built: list[dict[bool, tuple[Any, bool, Note | None]]] = [{} for _ in paths]
    for interface in INTERFACES:
        handler_is_async = interface == ASGI
        for index in reversed(range(len(paths))):
            can_sync, can_async = flags[index]
            is_async = False if (not handler_is_async and can_sync) else can_async
            if is_async not in built[index]:
                built[index][is_async] = _build(factories[index], is_async, MiddlewareNotUsed)
            instance, is_used, note = built[index][is_async]
            if not is_used:
                used[interface][index] = False
                continue
            if note is not None and note not in notes[index]:
                notes[index].append(note)
            if instance is not None and instances[index] is None:
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
                Note(
                    NOTE_OWN_CALL,
                    "overrides MiddlewareMixin's __call__/__acall__: hops its own code makes"
                    " are not predicted",
                )
            )
        for hook in hooks:
            if stock and hook.name in MIXIN_HOOKS and hook.is_async:
                notes[index].append(
                    Note(
                        NOTE_ASYNC_MIXIN_HOOK,
                        f"{hook.name} is async: MiddlewareMixin cannot call it (sync_to_async"
                        " raises TypeError under ASGI; under WSGI it is never awaited); write"
                        " an __acall__ instead",
                    )
                )
        if instance is not None and not isinstance(instance, type):
            from hopwatch._django_causes import middleware_site

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
                    Note(
                        NOTE_NOT_USED,
                        f"raises MiddlewareNotUsed under {interface.upper()}: Django leaves it"
                        " out",
                    )
                )
        own_hops, own_notes = _own_code(factory)
        notes[index].extend(own_notes)
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
                own_hops=own_hops,
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
