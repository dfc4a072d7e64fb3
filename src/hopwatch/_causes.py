"""Attribution: why did this crossing happen?

One mechanism, four sources, tried in order for every hop:

1. a **tag** on the adapter instance (``SyncToAsync``/``AsyncToSync``) set when
   it was created, for adapters whose cause is only known at creation time
   (Django's middleware adaptation);
2. a **target rule**, keyed by the code object of the wrapped callable
   (``Signal.send``, ``HttpResponseBase.close``, ``response_for_exception``);
3. a **caller rule**, keyed by the code object of the frame that made the call
   (``BaseHandler._get_response_async`` calls views, ``QuerySet.aget`` calls
   ``QuerySet.get``); caller rules can also be derived from a code object on
   first sight by a *classifier* (all async ORM methods);
4. the **fallback**: the wrapped callable's dotted name plus the user's call
   site (the first frame outside Django, asgiref, hopwatch and the stdlib).

Rules are registered by the integration layer (``hopwatch._django``); this
module knows nothing about Django. Every lookup is a dict lookup keyed by
``id()`` of a code object (CPython does not cache a code object's hash, and
hashing a module-sized one costs microseconds), with the object kept in the
entry so an id can never be reused while cached. Frame walks happen only for
causes that need a call site, and the per-code "is this library code?" answer
is cached.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from collections.abc import Callable
from types import CodeType, FrameType, MethodType
from typing import Final

from hopwatch._recorder import Cause, intern_cause

#: Attribute set on adapter instances whose cause is known when they are made.
TAG_ATTR: Final = "_hopwatch_cause"

Rule = Callable[[object, "FrameType | None"], "Cause | None"]
CallerClassifier = Callable[[CodeType], "Rule | None"]

# id(code) -> (code, rule): see the module docstring for why ids.
_target_rules: dict[int, tuple[CodeType, Rule]] = {}
_caller_rules: dict[int, tuple[CodeType, Rule]] = {}
_caller_classifiers: list[CallerClassifier] = []
# Registered caller rules plus the classifiers' answers (None included).
_caller_cache: dict[int, tuple[CodeType, Rule | None]] = {}

_MISSING: Final = object()
_CACHE_LIMIT: Final = 20_000


def _code_of(obj: object) -> CodeType:
    if isinstance(obj, CodeType):
        return obj
    code = getattr(obj, "__code__", None)
    if not isinstance(code, CodeType):
        raise TypeError(f"{obj!r} has no code object")
    return code


def register_target(func: object, rule: Rule) -> None:
    """Use ``rule`` for hops whose wrapped callable runs ``func``'s code."""
    code = _code_of(func)
    _target_rules[id(code)] = (code, rule)


def register_caller(func: object, rule: Rule) -> None:
    """Use ``rule`` for hops made directly from ``func``'s code."""
    code = _code_of(func)
    _caller_rules[id(code)] = (code, rule)
    _caller_cache.clear()


def register_caller_classifier(classifier: CallerClassifier) -> None:
    """Ask ``classifier(code)`` once per unseen caller code object for a rule."""
    if classifier not in _caller_classifiers:
        _caller_classifiers.append(classifier)
    _caller_cache.clear()  # earlier negative answers may change


def tag(adapter: object, cause: Cause) -> None:
    """Attach a known cause to an adapter instance (see module docstring)."""
    try:
        adapter.__dict__[TAG_ATTR] = cause
    except AttributeError:  # an adapter without __dict__: fall back to rules
        pass


def _caller_rule(code: CodeType) -> Rule | None:
    registered = _caller_rules.get(id(code))
    rule = registered[1] if registered is not None and registered[0] is code else None
    if rule is None:
        for classifier in _caller_classifiers:
            rule = classifier(code)
            if rule is not None:
                break
    if len(_caller_cache) >= _CACHE_LIMIT:
        _caller_cache.clear()
    _caller_cache[id(code)] = (code, rule)
    return rule


def attribute(adapter: object, target: object, frame: FrameType | None) -> Cause:
    """The cause of a hop through ``adapter`` running ``target``, called from ``frame``."""
    tagged = adapter.__dict__.get(TAG_ATTR)
    if tagged is not None:
        return tagged  # type: ignore[no-any-return]
    func = target.__func__ if type(target) is MethodType else target
    code = getattr(func, "__code__", None)
    if code is not None:
        entry = _target_rules.get(id(code))
        if entry is not None and entry[0] is code:
            cause = entry[1](target, frame)
            if cause is not None:
                return cause
    if frame is not None:
        caller_code = frame.f_code
        cached = _caller_cache.get(id(caller_code))
        if cached is not None and cached[0] is caller_code:
            caller = cached[1]
        else:
            caller = _caller_rule(caller_code)
        if caller is not None:
            cause = caller(target, frame)
            if cause is not None:
                return cause
    return _fallback(target, frame)


# (id(callable key), id(user code), line) -> (callable key, user code, cause)
_fallbacks: dict[tuple[int, int, int], tuple[object, object, Cause]] = {}


def _fallback(target: object, frame: FrameType | None) -> Cause:
    """``other``: the callable's dotted name plus the user's call site, cached."""
    func = target.__func__ if type(target) is MethodType else target
    key_obj = getattr(func, "__code__", None) or func
    user = user_frame(frame)
    user_code = user.f_code if user is not None else None
    # f_lasti (the bytecode offset) rather than f_lineno: the line number is
    # computed by scanning the code's line table, the offset is free.
    key = (id(key_obj), id(user_code), user.f_lasti if user is not None else -1)
    entry = _fallbacks.get(key)
    if entry is not None and entry[0] is key_obj and entry[1] is user_code:
        if type(target) is not MethodType:
            return entry[2]
        # Bound methods share a function across subclasses: check the name.
        if entry[2].site == dotted_name(target):
            return entry[2]
    cause = intern_cause("other", dotted_name(target), call_site(user))
    if len(_fallbacks) >= _CACHE_LIMIT:
        _fallbacks.clear()
    _fallbacks[key] = (key_obj, user_code, cause)
    return cause


# --- names ------------------------------------------------------------------

# id(key object) -> (key object, name); bound methods by (function, class).
_names: dict[int, tuple[object, str]] = {}
_bound_names: dict[tuple[int, int], tuple[object, type, str]] = {}


def dotted_name(target: object) -> str:
    """``module.Qualified.name`` of a callable; bound methods use the instance's class."""
    while isinstance(target, functools.partial):
        target = target.func
    if type(target) is MethodType:
        owner = target.__self__ if isinstance(target.__self__, type) else type(target.__self__)
        function = target.__func__
        bound_key = (id(function), id(owner))
        bound = _bound_names.get(bound_key)
        if bound is not None and bound[0] is function and bound[1] is owner:
            return bound[2]
        name = f"{owner.__module__}.{owner.__qualname__}.{function.__name__}"
        if len(_bound_names) >= _CACHE_LIMIT:
            _bound_names.clear()
        _bound_names[bound_key] = (function, owner, name)
        return name
    # Functions by their code (closures made per call share it); classes and
    # builtins by themselves (long-lived); callable instances by their class.
    key: object = getattr(target, "__code__", None)
    if key is None:
        key = target if hasattr(target, "__qualname__") else type(target)
    entry = _names.get(id(key))
    if entry is not None and entry[0] is key:
        return entry[1]
    named = target if hasattr(target, "__qualname__") else type(target)
    module = getattr(named, "__module__", None) or "builtins"
    name = f"{module}.{named.__qualname__}"
    if len(_names) >= _CACHE_LIMIT:
        _names.clear()
    _names[id(key)] = (key, name)
    return name


# --- call sites -------------------------------------------------------------

_library_roots: list[str] = []
_non_library_roots: list[str] = []
_is_library: dict[int, tuple[CodeType, bool]] = {}


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(path)).rstrip(os.sep) + os.sep


def add_library_package(module_file: str) -> None:
    """Treat the package containing ``module_file`` as library code (not a call site)."""
    root = _norm(os.path.dirname(module_file))
    if root not in _library_roots:
        _library_roots.append(root)
        _is_library.clear()


def _init_roots() -> None:
    import asyncio

    import asgiref

    import hopwatch

    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib"):
        if paths.get(key):
            root = _norm(paths[key])
            if root not in _library_roots:
                _library_roots.append(root)
    # site-packages may live under the stdlib directory (distro Pythons):
    # third-party code there is user code for our purposes.
    for key in ("purelib", "platlib"):
        if paths.get(key):
            _non_library_roots.append(_norm(paths[key]))
    add_library_package(asyncio.__file__)
    add_library_package(asgiref.__file__ or "")
    add_library_package(hopwatch.__file__ or "")


def _library(code: CodeType) -> bool:
    known = _is_library.get(id(code))
    if known is not None and known[0] is code:
        return known[1]
    filename = code.co_filename
    if filename.startswith("<"):
        result = True  # frozen modules, exec'd strings
    else:
        # The most specific root decides: django/ inside site-packages inside
        # a distro's stdlib directory is library code.
        path = os.path.normcase(os.path.abspath(filename))
        library = max((len(r) for r in _library_roots if path.startswith(r)), default=0)
        other = max((len(r) for r in _non_library_roots if path.startswith(r)), default=0)
        result = library > other
    if len(_is_library) >= _CACHE_LIMIT:
        _is_library.clear()
    _is_library[id(code)] = (code, result)
    return result


def user_frame(frame: FrameType | None) -> FrameType | None:
    """The first frame at or above ``frame`` outside library code."""
    while frame is not None and _library(frame.f_code):
        frame = frame.f_back
    return frame


_sites: dict[tuple[int, int], tuple[CodeType, str]] = {}
_short_paths: dict[str, str] = {}


def short_path(filename: str) -> str:
    """A file name relative to the ``sys.path`` entry it was imported from."""
    short = _short_paths.get(filename)
    if short is None:
        short = filename
        best = 0
        for entry in sys.path:
            if not entry:
                entry = os.getcwd()
            root = _norm(entry)
            if filename.startswith(root) and len(root) > best:
                best = len(root)
                short = filename[len(root) :]
        if len(_short_paths) >= _CACHE_LIMIT:
            _short_paths.clear()
        _short_paths[filename] = short
    return short


def call_site(frame: FrameType | None) -> str | None:
    """``path/to/file.py:42 in func`` of the first user frame, or None."""
    frame = user_frame(frame)
    if frame is None:
        return None
    code = frame.f_code
    key = (id(code), frame.f_lasti)  # see _fallback: the offset is free, the line is not
    entry = _sites.get(key)
    if entry is not None and entry[0] is code:
        return entry[1]
    name = code.co_name
    enclosing = frame.f_back
    # A comprehension or genexpr frame (Python < 3.12): name the function it
    # is written in, whose code it belongs to.
    if (
        name.startswith("<")
        and enclosing is not None
        and enclosing.f_code.co_filename == code.co_filename
    ):
        name = enclosing.f_code.co_name
    site = f"{short_path(code.co_filename)}:{frame.f_lineno} in {name}"
    if len(_sites) >= _CACHE_LIMIT:
        _sites.clear()
    _sites[key] = (code, site)
    return site


_init_roots()
