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
module knows nothing about Django. Every lookup is a dict lookup keyed by an
object identity (a code object, a type) and cached, so attribution costs a few
hundred nanoseconds per hop; frame walks happen only for causes that need a
call site, and the per-code "is this library code?" answer is cached.
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

_target_rules: dict[CodeType, Rule] = {}
_caller_rules: dict[CodeType, Rule] = {}
_caller_classifiers: list[CallerClassifier] = []
# Registered caller rules plus the classifiers' answers (None included), by code.
_caller_cache: dict[CodeType, Rule | None] = {}

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
    _target_rules[_code_of(func)] = rule


def register_caller(func: object, rule: Rule) -> None:
    """Use ``rule`` for hops made directly from ``func``'s code."""
    _caller_rules[_code_of(func)] = rule
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
    rule = _caller_rules.get(code)
    if rule is None:
        for classifier in _caller_classifiers:
            rule = classifier(code)
            if rule is not None:
                break
    if len(_caller_cache) >= _CACHE_LIMIT:
        _caller_cache.clear()
    _caller_cache[code] = rule
    return rule


def attribute(adapter: object, target: object, frame: FrameType | None) -> Cause:
    """The cause of a hop through ``adapter`` running ``target``, called from ``frame``."""
    tagged = adapter.__dict__.get(TAG_ATTR)
    if tagged is not None:
        return tagged  # type: ignore[no-any-return]
    func = target.__func__ if type(target) is MethodType else target
    code = getattr(func, "__code__", None)
    if code is not None:
        rule = _target_rules.get(code)
        if rule is not None:
            cause = rule(target, frame)
            if cause is not None:
                return cause
    if frame is not None:
        caller_code = frame.f_code
        caller = _caller_cache.get(caller_code, _MISSING)
        if caller is _MISSING:
            caller = _caller_rule(caller_code)
        if caller is not None:
            cause = caller(target, frame)  # type: ignore[operator]
            if cause is not None:
                return cause  # type: ignore[no-any-return]
    return intern_cause("other", dotted_name(target), call_site(frame))


# --- names ------------------------------------------------------------------

_names: dict[object, str] = {}


def dotted_name(target: object) -> str:
    """``module.Qualified.name`` of a callable; bound methods use the instance's class."""
    while isinstance(target, functools.partial):
        target = target.func
    if type(target) is MethodType:
        owner = type(target.__self__)
        if isinstance(target.__self__, type):  # a classmethod
            owner = target.__self__
        key: object = (owner, target.__func__)
        name = _names.get(key)
        if name is None:
            name = f"{owner.__module__}.{owner.__qualname__}.{target.__func__.__name__}"
            _remember(key, name)
        return name
    code = getattr(target, "__code__", None)
    key = code if code is not None else type(target)
    name = _names.get(key)
    if name is None:
        if code is not None:
            module = getattr(target, "__module__", None) or "?"
            qualname = getattr(target, "__qualname__", None) or code.co_qualname
            name = f"{module}.{qualname}"
        else:
            cls = type(target)
            name = f"{cls.__module__}.{cls.__qualname__}"
        _remember(key, name)
    return name


def _remember(key: object, name: str) -> None:
    if len(_names) >= _CACHE_LIMIT:
        _names.clear()
    _names[key] = name


# --- call sites -------------------------------------------------------------

_library_roots: list[str] = []
_non_library_roots: list[str] = []
_is_library: dict[CodeType, bool] = {}


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
    known = _is_library.get(code)
    if known is not None:
        return known
    filename = code.co_filename
    if filename.startswith("<"):
        result = True  # frozen modules, exec'd strings
    else:
        path = os.path.normcase(os.path.abspath(filename))
        result = any(path.startswith(root) for root in _library_roots) and not any(
            path.startswith(root) for root in _non_library_roots
        )
    if len(_is_library) >= _CACHE_LIMIT:
        _is_library.clear()
    _is_library[code] = result
    return result


def user_frame(frame: FrameType | None) -> FrameType | None:
    """The first frame at or above ``frame`` outside library code."""
    while frame is not None and _library(frame.f_code):
        frame = frame.f_back
    return frame


_sites: dict[tuple[CodeType, int], str] = {}
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
    key = (code, frame.f_lineno)
    site = _sites.get(key)
    if site is None:
        site = f"{short_path(code.co_filename)}:{frame.f_lineno} in {code.co_name}"
        if len(_sites) >= _CACHE_LIMIT:
            _sites.clear()
        _sites[key] = site
    return site


_init_roots()
