"""The asgiref instrumentation: the only module that touches asgiref's classes.

``install()`` replaces four methods at class level, so every instance is seen,
including instances Django and third-party code created at import time:
``SyncToAsync.__call__`` and ``SyncToAsync.thread_handler`` (the worker-thread
side), ``AsyncToSync.__call__`` and ``AsyncToSync.main_wrap`` (the event-loop
side). Each replacement calls the original it replaced, so asgiref does all its
own work unchanged (executor choice, thread-sensitivity, deadlock detection,
context copying both ways, cancellation), and an agent that wraps these
methods too (APMs do) sees what it would see without hopwatch. How a crossing
is measured is in ``_hotpath_py``'s docstring; the C accelerator
(``_speedups``) does the same thing cheaply.

A ``SyncToAsync`` subclass with a ``thread_handler`` of its own (channels'
``DatabaseSyncToAsync``, which calls asgiref's through ``super()``) is
*adopted* on the first crossing the hop path sees of it (:func:`_adopt`,
before asgiref's coroutine takes its first step): the class in its MRO that
defines that function gets hopwatch's thread_handler around it, as
``SyncToAsync`` has, recorded with the four above. asgiref binds it in the
caller's thread, where it takes the hop as ``SyncToAsync``'s would; the
subclass's function then runs inside the hop's run, and its ``super()`` call
reaches asgiref's through hopwatch's ``SyncToAsync.thread_handler``, which
finds no hop in the worker thread and passes straight through. Only a plain
function is adopted; any other ``thread_handler`` is left alone (its hops
have no run figures).

``uninstall()`` puts the originals back, leaving the classes' dicts (the
adopted subclasses' too) exactly as they were. When someone wrapped over
hopwatch's methods after install, those are left in place and hopwatch's
layer becomes inert (it passes through); a later ``install()`` makes that
same layer work again rather than wrap theirs.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from types import CodeType, FrameType, FunctionType, MethodType
from typing import Any, Final, TypeVar

import asgiref.sync

from hopwatch import _causes, _errors, _hotpath, _hotpath_py
from hopwatch._recorder import OVERFLOW_CAUSE, RequestContext, current_scope, late, unscoped
from hopwatch._recorder import _get_ident as _recorder_get_ident

__all__ = ["install", "is_installed", "uninstall"]


_Adapter = TypeVar("_Adapter", bound=type)


def _asgirefs_own(adapter_class: _Adapter, method: str) -> _Adapter:
    """asgiref's own adapter class: ``adapter_class`` (what ``asgiref.sync`` holds),
    or the class above it that asgiref defined ``method`` on, when an agent put a
    subclass of its own in its place before hopwatch was imported (a subclass whose
    ``__call__`` passes the call on through ``super()``: see _super_links)."""
    for klass in adapter_class.__mro__:
        if klass.__module__ == "asgiref.sync" and method in vars(klass):
            return klass  # type: ignore[return-value]  # a class above it
    return adapter_class


SyncToAsync: Final = _asgirefs_own(asgiref.sync.SyncToAsync, "thread_handler")
AsyncToSync: Final = _asgirefs_own(asgiref.sync.AsyncToSync, "main_wrap")

_lock = threading.Lock()
_installed = False

# (class, attribute, which) for the four methods hopwatch replaces.
_TARGETS: tuple[tuple[type, str, int], ...] = (
    (SyncToAsync, "__call__", _hotpath.S2A_CALL),
    (SyncToAsync, "thread_handler", _hotpath.THREAD_HANDLER),
    (AsyncToSync, "__call__", _hotpath.A2S_CALL),
    (AsyncToSync, "main_wrap", _hotpath.MAIN_WRAP),
)
# (class, attribute) -> (original, hopwatch's replacement), kept across
# install/uninstall so the same replacement objects are reinstalled.
_patches: dict[tuple[type, str], tuple[Any, Any]] = {}
#: The methods uninstall() left in place because other code had wrapped them
#: since (install() then reuses them, under that code's wrapper).
_left: set[tuple[type, str]] = set()
#: The SyncToAsync subclasses whose own thread_handler hopwatch adopted (see
#: _adopt), as (class, attribute, which): restored and reinstalled with _TARGETS.
_adopted: list[tuple[type, str, int]] = []
_THREAD_HANDLER = "thread_handler"


def _main_wrap_awaitable_index(main_wrap: Any) -> int:
    """Where asgiref's ``main_wrap`` takes the awaitable it runs, counting self
    (asgiref 3.9 and later: ``main_wrap(self, call_result, exc_info,
    task_context, context, awaitable)``), or -1 (3.8: ``*args, **kwargs``, and
    it makes the awaitable itself)."""
    try:
        parameters = list(inspect.signature(main_wrap).parameters.values())
    except (TypeError, ValueError):
        return -1
    for index, parameter in enumerate(parameters):
        if parameter.name == "awaitable":
            return index if parameter.kind is parameter.POSITIONAL_OR_KEYWORD else -1
    return -1


# Read from asgiref's own method, before hopwatch replaces it.
_AWAITABLE_INDEX = _main_wrap_awaitable_index(AsyncToSync.__dict__["main_wrap"])
#: Whether AsyncToSync keeps the loop it schedules onto on the adapter
#: (``self.main_event_loop``, set in ``__init__`` before asgiref 3.12; from 3.12
#: ``__call__`` works it out each call and no adapter has the attribute).
_LOOP_ON_ADAPTER = "main_event_loop" in AsyncToSync.__init__.__code__.co_names


def configure_hot_path(resolve: Any = _causes.resolve) -> None:
    """Hand the hop path its collaborators (``resolve``: a test may count its calls)."""
    _hotpath.configure(
        current_scope=current_scope,
        resolve=resolve,
        classify_code=_causes.classify_code,
        unscoped=unscoped,
        late=late,
        overflow_cause=OVERFLOW_CAUSE,
        report=_errors.report,
        cancelled=asyncio.CancelledError,
        get_running_loop=asyncio.events._get_running_loop,
        threadlocal=SyncToAsync.threadlocal,
        partial=functools.partial,
        thread_sensitive_context=SyncToAsync.thread_sensitive_context,
        request_context=RequestContext,
        awaitable_index=_AWAITABLE_INDEX,
        awaiting=_hotpath_py._awaiting,
        loop_on_adapter=_LOOP_ON_ADAPTER,
        get_ident=_recorder_get_ident,
        adopt=_adopt,
        layer=_layer,
    )


def _adopt(adapter_class: type) -> bool | None:
    """Called by the hop path, before asgiref's coroutine takes its first step, the
    first time it meets an adapter class whose ``thread_handler`` (along the MRO) is
    not hopwatch's: the class that defines it gets hopwatch's thread_handler around
    its own function, so asgiref's binding in the caller's thread takes the hop (see
    the module docstring). True: the adapter class's thread_handler is hopwatch's
    now; False: left alone for as long as that attribute stays (not a plain
    function, ``SyncToAsync``'s own, or other code's over hopwatch's); None:
    hopwatch is not installed (ask again later)."""
    with _lock:
        if not _installed:
            return None
        owner = next((k for k in adapter_class.__mro__ if _THREAD_HANDLER in k.__dict__), None)
        if owner is None or owner is SyncToAsync:  # SyncToAsync's is install()'s
            return False
        own = owner.__dict__[_THREAD_HANDLER]
        known = _patches.get((owner, _THREAD_HANDLER))
        if known is not None and own is known[1]:
            return True  # adopted already (the first crossing of another thread)
        if known is not None and own is not known[0]:
            # Other code's, put over hopwatch's since (uninstall() left it: _left):
            # as for the four targets, a second layer over theirs is not added.
            return False
        if type(own) is not FunctionType:
            return False
        _original, patched = _patch_for(owner, _THREAD_HANDLER, _hotpath.THREAD_HANDLER)
        setattr(owner, _THREAD_HANDLER, patched)
        _left.discard((owner, _THREAD_HANDLER))
        target = (owner, _THREAD_HANDLER, _hotpath.THREAD_HANDLER)
        if target not in _adopted:
            _adopted.append(target)
        return True


#: The ``__call__`` other code put over hopwatch's (an APM agent's wrapper), by its
#: id: (that object, the code objects of its layers: see _layer_codes).
_layers: dict[int, tuple[Any, frozenset[CodeType]]] = {}
_CALL = "__call__"
_CALLS = ((SyncToAsync, _CALL), (AsyncToSync, _CALL))
#: The types of the bound wrappers (wrapt's BoundFunctionWrapper) found among the
#: layers: their ``_self_instance`` is the adapter they pass on (see _holds)
_binders: set[type] = set()


def _layer(adapter: Any, frame: FrameType) -> bool:
    """Called by the hop path when it has no cached answer for a crossing's caller:
    whether ``frame``, which called hopwatch's ``__call__`` for ``adapter``, runs a
    layer other code wrapped over it since install (an APM agent's wrapper, which calls
    what it wrapped) and is passing on this adapter's call: it holds ``adapter`` (see
    _holds). The crossing is then attributed from the frame that called that layer:
    Django's middleware, the ORM's async method, the user's line, never the agent's
    wrapper. A crossing the wrapper makes of its own, with another adapter, is the
    wrapper's. Cold: once per cache key (the layers of one class attribute are found
    once; the key holds the caller's instruction, so a wrapper's own crossing and
    the one it passes on have keys of their own)."""
    code = frame.f_code
    top = _class_attribute(type(adapter), _CALL)
    ours = [_patches[key][1] for key in _CALLS if key in _patches]
    if top is None or any(top is patched for patched in ours):
        return False  # hopwatch's own, nothing over it
    seen = _layers.get(id(top))
    if seen is None or seen[0] is not top:
        try:
            codes = _layer_codes(top, ours, adapter)
        except Exception as exc:  # attributed from the wrapper's frame, as before
            _errors.report("SyncToAsync.__call__ (layers)", exc)
            codes = frozenset()
        if len(_layers) >= 16:
            _layers.clear()
        seen = _layers[id(top)] = (top, codes)
    return code in seen[1] and _holds(frame, adapter)


def _holds(frame: FrameType, adapter: Any) -> bool:
    """Whether a layer's ``frame`` holds ``adapter`` among its arguments and locals:
    itself (``self``, a wrapt wrapper's ``instance``), in a tuple (``*args``), as a
    bound method's ``__self__``, or as the instance of a wrapt bound wrapper (its
    pure-Python ``__call__``'s ``self``)."""
    try:
        values = list(frame.f_locals.values())
    except Exception:  # a frame whose locals cannot be read: not passing it on
        return False
    for value in values:
        if value is adapter:
            return True
        kind = type(value)
        if kind is tuple:
            if any(item is adapter for item in value):
                return True
        elif kind is MethodType:
            if value.__self__ is adapter:
                return True
        elif kind in _binders:
            try:
                if getattr(value, "_self_instance", None) is adapter:
                    return True
            except Exception:
                pass
    return False


def _class_attribute(klass: type, name: str) -> Any:
    for owner in klass.__mro__:
        found = vars(owner).get(name)
        if found is not None:
            return found
    return None


def _layer_codes(top: Any, ours: list[Any], adapter: Any) -> frozenset[CodeType]:
    """The code objects of the Python functions through which a call of ``top`` (a
    class's ``__call__``) reaches hopwatch's: each layer's own function, whatever
    the shape it was wrapped in (a plain function over a closure, a global, a
    default or ``__wrapped__``; a ``functools.partial``/``partialmethod`` given
    hopwatch's; a wrapt ``FunctionWrapper``'s wrapper function, and its own
    ``__call__`` when wrapt runs without its C extension). A function that only
    lies next to the way (a helper a wrapper calls) is not one: only those that
    call what reaches hopwatch's (``ours``)."""
    codes: set[CodeType] = set()
    known: dict[int, bool] = {}
    budget = [400]

    def code_of(obj: Any) -> CodeType | None:
        obj = getattr(obj, "__func__", obj)
        code = getattr(obj, "__code__", None) if type(obj) is FunctionType else None
        return code if isinstance(code, CodeType) else None

    def add(obj: Any) -> None:
        code = code_of(obj)
        if code is not None:
            codes.add(code)

    def reaches(obj: Any) -> bool:
        if any(obj is patched for patched in ours):
            return True
        if obj is None or id(obj) in known or budget[0] <= 0:
            return known.get(id(obj), False)
        budget[0] -= 1
        known[id(obj)] = False  # (a cycle ends here)
        found = False
        if type(obj) is FunctionType:
            links = [*(cell.cell_contents for cell in obj.__closure__ or () if _filled(cell))]
            links += [obj.__globals__[n] for n in obj.__code__.co_names if n in obj.__globals__]
            links += [*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
            links.append(vars(obj).get("__wrapped__"))
            links += _super_links(obj)
            if any([reaches(link) for link in links]):
                codes.add(obj.__code__)
                found = True
        elif issubclass(type(obj), (functools.partial, functools.partialmethod)):
            if any([reaches(a) for a in (*obj.args, *obj.keywords.values())]):
                add(obj.func)  # called with what reaches hopwatch's
                found = True
            found = reaches(obj.func) or found
        elif issubclass(type(obj), (MethodType, staticmethod, classmethod)):
            found = reaches(obj.__func__)
        elif not issubclass(type(obj), (type, CodeType, str, bytes, int, float, tuple, dict)):
            found = _reaches_through_wrapper(obj, adapter, reaches, add)
        known[id(obj)] = found
        return found

    reaches(top)
    return frozenset(codes)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # an empty cell
        return False
    return True


def _super_links(func: FunctionType) -> list[Any]:
    """What ``super().name`` finds in ``func`` for each attribute name its code reads,
    where ``func`` is a method that calls ``super()`` (a subclass's ``__call__`` an
    agent put in place of ``SyncToAsync``, which passes the call on to hopwatch's):
    the attribute of that name along its class's MRO, past the class."""
    code = func.__code__
    if "__class__" not in code.co_freevars or not func.__closure__:
        return []
    cell = func.__closure__[code.co_freevars.index("__class__")]
    owner = cell.cell_contents if _filled(cell) else None
    if not isinstance(owner, type):
        return []
    links = []
    for name in code.co_names:
        for base in owner.__mro__[1:]:
            found = vars(base).get(name)
            if found is not None:
                links.append(found)
                break
    return links


def _reaches_through_wrapper(obj: Any, adapter: Any, reaches: Any, add: Any) -> bool:
    """An object with ``__wrapped__`` (a wrapt FunctionWrapper, a proxy), or a callable
    instance holding what it wraps in an attribute of its own (an agent's class-based
    wrapper): its wrapper function is a layer, and so is its type's ``__call__`` and
    that of what it binds to (wrapt's BoundFunctionWrapper) where those are Python
    code."""
    try:
        wrapped = getattr(obj, "__wrapped__", None)
    except Exception:
        return False
    if wrapped is obj:
        wrapped = None
    if wrapped is not None:
        found = reaches(wrapped)
    elif callable(obj):  # not a module, nor data: a class-based wrapper's attributes
        try:
            held = list(vars(obj).values())
        except TypeError:  # no __dict__
            held = []
        found = any([reaches(value) for value in held])
    else:
        found = False
    if not found:
        return False
    try:
        add(getattr(obj, "_self_wrapper", None))
        add(getattr(type(obj), _CALL, None))
        bind = getattr(type(obj), "__get__", None)
        if bind is not None:
            bound = bind(obj, adapter, type(adapter))
            if bound is not obj:
                _binders.add(type(bound))
                add(getattr(bound, "_self_wrapper", None))
                add(getattr(type(bound), _CALL, None))
    except Exception:  # an object whose attributes fail: what was found stands
        pass
    return True


configure_hot_path()


def _patch_for(cls: type, name: str, which: int) -> tuple[Any, Any]:
    original = cls.__dict__[name]
    known = _patches.get((cls, name))
    if known is not None and known[0] is original:
        return known
    patched = _hotpath.make_patch(original, which)
    try:
        patched.__doc__ = original.__doc__
    except AttributeError:
        pass
    _patches[(cls, name)] = (original, patched)
    return original, patched


def install() -> None:
    """Instrument asgiref. Idempotent and thread-safe."""
    global _installed
    with _lock:
        if _installed:
            return
        for cls, name, which in (*_TARGETS, *_adopted):
            if (cls, name) in _left and cls.__dict__.get(name) is not _patches[(cls, name)][0]:
                # Our layer, left under another's wrapper by uninstall(), is still
                # there (nobody put the original back): it works again once active.
                # A second layer over theirs would count every crossing twice.
                continue
            _left.discard((cls, name))
            if (cls, name, which) in _adopted and type(cls.__dict__.get(name)) is not FunctionType:
                # The adopted function was taken away while uninstalled (deleted,
                # or replaced by what is not a function): nothing to adopt there.
                _adopted.remove((cls, name, which))
                continue
            _original, patched = _patch_for(cls, name, which)
            setattr(cls, name, patched)
        _hotpath.set_active(True)
        _installed = True


def uninstall() -> None:
    """Put asgiref back exactly as it was. Idempotent and thread-safe."""
    global _installed
    with _lock:
        if not _installed:
            return
        _hotpath.set_active(False)
        for cls, name, _which in (*_TARGETS, *_adopted):
            original, patched = _patches[(cls, name)]
            if cls.__dict__.get(name) is patched:
                setattr(cls, name, original)
                _left.discard((cls, name))
            elif (cls, name) not in _left:
                _left.add((cls, name))
                # Someone wrapped our patch since; removing it would remove
                # theirs. Our method now passes through (recording is off).
                _errors.logger.warning(
                    "hopwatch.uninstall(): %s.%s was replaced by other code after"
                    " hopwatch installed; left in place, hopwatch's layer is now inert.",
                    cls.__name__,
                    name,
                )
        _installed = False


def is_installed() -> bool:
    return _installed


def owns_call(cls: type) -> bool:
    """Whether ``cls.__call__`` is hopwatch's patch itself (nothing wrapped over it)."""
    known = _patches.get((cls, "__call__"))
    return known is not None and cls.__dict__.get("__call__") is known[1]


def patched(cls: type, name: str = "__call__") -> Any:
    """hopwatch's replacement for ``cls.name`` (installed or not), for tests."""
    return _patches[(cls, name)][1]
