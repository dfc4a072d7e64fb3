"""Attribution: why did this crossing happen?

One mechanism, four sources, tried in order for every hop:

1. a **tag** on the adapter instance (``SyncToAsync``/``AsyncToSync``) set when
   it was created, for adapters whose cause is only known at creation time
   (Django's middleware adaptation);
2. a **target rule**, keyed by the code object of the wrapped callable
   (``Signal.send``, ``response_for_exception``), or of what it wraps, down its
   ``__wrapped__`` chain (an agent's wrapper: see :func:`_by_target`); target
   rules can also be derived from a code object on first sight by a
   *classifier* (every response's ``close`` and template response's ``render``,
   an override's too);
3. a **caller rule**, keyed by the code object of the frame that made the call
   (``BaseHandler._get_response_async`` calls views, ``QuerySet.aget`` calls
   ``QuerySet.get``); caller rules can also be derived from a code object on
   first sight by a *classifier* (all async ORM methods);
4. the **fallback**: the wrapped callable's dotted name plus the user's call
   site (the first frame outside Django, asgiref, hopwatch and the stdlib,
   looked for no further than where the application was entered: see
   :func:`user_frame`).

Rules are registered by the integration layer (``hopwatch._django_causes``); this
module knows nothing about Django. Every lookup is a dict lookup keyed by
``id()`` of a code object (CPython does not cache a code object's hash, and
hashing a module-sized one costs microseconds), with the object kept in the
entry so an id can never be reused while cached.

:func:`resolve` is what the hop path asks on a cache miss (``_hotpath``
caches its answers by raw facts: the target's code and names, the caller's
code and bytecode offset, and, for causes that name the user's call site, the
user frame's). So it also says what its answer depends on: only the key
(``MODE_FINAL``), the user's call site as well (``MODE_USER``, detected by the
rule having walked the frames), or the objects themselves (``MODE_ASK``: a rule
marked with :func:`per_instance`, such as "which Signal"). Nothing here keeps a
call's objects (the callable, its instance, a partial) after the call.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
import weakref
from collections.abc import Callable
from types import CodeType, FrameType, FunctionType, MethodType
from typing import Any, Final

from hopwatch import _hotpath
from hopwatch._hotpath import MODE_ASK, MODE_FINAL, MODE_USER
from hopwatch._hotpath_py import AWAITING_FLAGS, AWAITING_OR_GENERATOR
from hopwatch._recorder import Cause, intern_cause

#: Attribute set on adapter instances whose cause is known when they are made.
TAG_ATTR: Final = "_hopwatch_cause"

Rule = Callable[[object, "FrameType | None"], "Cause | None"]
CallerClassifier = Callable[[CodeType], "Rule | None"]
TargetClassifier = Callable[[CodeType], "Rule | None"]
BoundaryClassifier = Callable[[CodeType], bool]

# id(code) -> (code, rule): see the module docstring for why ids.
_target_rules: dict[int, tuple[CodeType, Rule]] = {}
_caller_rules: dict[int, tuple[CodeType, Rule]] = {}
_caller_classifiers: list[CallerClassifier] = []
# Registered caller rules plus the classifiers' answers (None included).
_caller_cache: dict[int, tuple[weakref.ref[CodeType], Rule | None]] = {}
_target_classifiers: list[TargetClassifier] = []
# The target classifiers' answers (None included), for codes without a registered rule.
_target_cache: dict[int, tuple[weakref.ref[CodeType], Rule | None]] = {}

_MISSING: Final = object()
#: The caches below key on a code object's id and keep a weak reference to it, to
#: tell it from a later one with the same id: code compiled for one request (exec,
#: a template engine's) is never kept alive by them.
_ref: Final = weakref.ref
_CACHE_LIMIT: Final = 20_000


def _code_of(obj: object) -> CodeType:
    if isinstance(obj, CodeType):
        return obj
    code = getattr(obj, "__code__", None)
    if not isinstance(code, CodeType):
        raise TypeError(f"{obj!r} has no code object")
    return code


def per_instance(rule: Rule) -> Rule:
    """Mark ``rule`` as reading the hop's objects beyond its code and names (never cached)."""
    rule.hopwatch_per_instance = True  # type: ignore[attr-defined]
    return rule


#: How deep :func:`unwrapped` and the target rules' search follow a ``__wrapped__``
#: chain (agents' wrappers are one or two deep; a cycle ends there too).
_UNWRAP_LIMIT: Final = 32


def wrapped_by(obj: object) -> object:
    """What ``obj`` says it wraps (``__wrapped__``: ``functools.wraps``, wrapt's
    proxies), or None."""
    try:
        inner = getattr(obj, "__wrapped__", None)
    except Exception:  # a proxy whose attributes raise: nothing under it for us
        return None
    return None if inner is obj else inner


def unwrapped(func: Any) -> Any:
    """The deepest function with code of its own down ``func``'s ``__wrapped__``
    chain, as ``inspect.unwrap`` follows it (bounded): a function an agent wrapped
    before hopwatch installed, as Django defined it. ``func`` itself when nothing
    under it has code (a chain ending at a class-based wrapper)."""
    found = func
    for _ in range(_UNWRAP_LIMIT):
        func = wrapped_by(func)
        if func is None:
            break
        if isinstance(getattr(func, "__code__", None), CodeType):
            found = func
    return found


def register_target(func: object, rule: Rule) -> None:
    """Use ``rule`` for hops whose wrapped callable runs ``func``'s code, or the
    code of a wrapper of it (see :func:`_by_target`). ``func`` is unwrapped first:
    a wrapper an agent put over it before this is not what Django defined, and a
    wrapper's code may be shared by everything that agent wraps."""
    code = _code_of(unwrapped(func))
    _target_rules[id(code)] = (code, rule)
    _hotpath.clear_caches()  # its answers were cached under the old rules


def register_target_classifier(classifier: TargetClassifier) -> None:
    """Ask ``classifier(code)`` once per unseen target code object (one without a
    registered target rule) for a rule."""
    if classifier not in _target_classifiers:
        _target_classifiers.append(classifier)
    _target_cache.clear()  # earlier negative answers may change
    _hotpath.clear_caches()


def register_caller(func: object, rule: Rule) -> None:
    """Use ``rule`` for hops made directly from ``func``'s code."""
    code = _code_of(func)
    _caller_rules[id(code)] = (code, rule)
    _caller_cache.clear()
    _hotpath.clear_caches()


def register_caller_classifier(classifier: CallerClassifier) -> None:
    """Ask ``classifier(code)`` once per unseen caller code object for a rule."""
    if classifier not in _caller_classifiers:
        _caller_classifiers.append(classifier)
    _caller_cache.clear()  # earlier negative answers may change
    _hotpath.clear_caches()


def tag(adapter: object, cause: Cause) -> None:
    """Attach a known cause to an adapter instance (see module docstring)."""
    # An attribute, not an item of adapter.__dict__: reading __dict__ makes one for
    # good (Python 3.11, 3.12), and asgiref's own reads of the adapter's attributes
    # then take the interpreter's slow path.
    try:
        object.__setattr__(adapter, TAG_ATTR, cause)
    except (AttributeError, TypeError):  # an adapter without __dict__: fall back to rules
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
    _caller_cache[id(code)] = (_ref(code), rule)
    return rule


def _target_rule(code: CodeType) -> Rule | None:
    """The rule for hops running ``code``: registered, else a classifier's (cached)."""
    registered = _target_rules.get(id(code))
    if registered is not None and registered[0] is code:
        return registered[1]
    cached = _target_cache.get(id(code))
    if cached is not None and cached[0]() is code:
        return cached[1]
    rule = None
    for classifier in _target_classifiers:
        rule = classifier(code)
        if rule is not None:
            break
    if len(_target_cache) >= _CACHE_LIMIT:
        _target_cache.clear()
    _target_cache[id(code)] = (_ref(code), rule)
    return rule


def reads_instance() -> None:
    """Called by a rule whose answer depends on the hop's objects this time
    (not only on their code and names): the answer is then never cached."""
    global _instance_reads
    _instance_reads += 1


_instance_reads = 0


def _mode(rule: Rule, walks_before: int, reads_before: int) -> int:
    if getattr(rule, "hopwatch_per_instance", False) or _instance_reads != reads_before:
        return MODE_ASK
    return MODE_USER if _walks != walks_before else MODE_FINAL


def resolve(
    adapter: object, target: object, frame: FrameType | None
) -> tuple[Cause, int, Rule | None]:
    """The cause of a hop through ``adapter`` running ``target``, called from
    ``frame``, what it depends on (see the module docstring) and, when that is
    the objects themselves (``MODE_ASK``), the rule that answered: the hop
    path asks that rule directly the next time it sees the same key (the same
    code and caller: the same rule applies), and this function only if the
    rule answers None."""
    walks_before, reads_before = _walks, _instance_reads
    tagged = getattr(adapter, TAG_ATTR, None)  # not via __dict__: see tag()
    if tagged is not None:
        return tagged, MODE_ASK, None
    found = _by_target(target, frame)
    if found is not None:
        by_target, target_rule, below = found
        answer = _answer(by_target, target_rule, walks_before, reads_before)
        if below and answer[2] is not None:
            # asked of what the target wraps: the hop path would ask the rule of the
            # target itself, so it asks the whole search again
            return by_target, MODE_ASK, _target_search
        return answer
    if frame is not None:
        caller_code = frame.f_code
        cached = _caller_cache.get(id(caller_code))
        if cached is not None and cached[0]() is caller_code:
            caller = cached[1]
        else:
            caller = _caller_rule(caller_code)
        if caller is not None:
            cause = caller(target, frame)
            if cause is not None:
                return _answer(cause, caller, walks_before, reads_before)
    cause = intern_cause("other", dotted_name(target), call_site(frame))
    if _named_by_key(target):
        return cause, MODE_USER, None
    return cause, MODE_ASK, _fallback


def _named_by_key(target: object) -> bool:
    """Whether :func:`dotted_name` reads of ``target`` only what the hop path's key
    holds (``_hotpath_py._summarize``, C ``summarize_target``), so that one name
    serves every target of the key.

    It does for a function (its code, qualified name and module), a method bound to
    one (its code and qualified name, its instance's class or the class it is bound
    to), a class (itself), a builtin (its name and what it is bound to). The key of
    anything else, past the four ``functools.partial`` layers it looks through, is
    its class: a callable instance, whose name is its class's, unless it has names
    of its own. A wrapt proxy (``FunctionWrapper``, ``CallableObjectProxy``, of a
    function or a class: it is no class to ``type()``, only to ``isinstance()``) and a
    callable instance given its function's names (``functools.update_wrapper``) have
    the names of what they wrap, one key for every function they wrap: such a
    target's name is read at each hop (:func:`_fallback`)."""
    for _ in range(4):  # as the key: through at most four partials
        if type(target) is not functools.partial:
            break
        target = target.func
    kind = type(target)
    if kind is FunctionType or issubclass(kind, type):
        return True
    if kind is MethodType:
        owner = target.__self__  # type: ignore[attr-defined]
        # the key holds the class of a proxy the method is bound to, the name its target's
        return issubclass(type(owner), type) or not isinstance(owner, type)
    if kind.__name__ == "builtin_function_or_method":
        return True
    try:
        return not isinstance(target, functools.partial) and not hasattr(target, "__qualname__")
    except Exception:  # a proxy whose attributes raise: named as it is each time
        return False


@per_instance  # the name is the instance's, not the key's
def _fallback(target: object, frame: FrameType | None) -> Cause | None:
    """The fallback's answer for a target named by its own names, not its key's
    (see :func:`_named_by_key`): its dotted name and the user's call site."""
    return intern_cause("other", dotted_name(target), call_site(frame))


def _by_target(target: object, frame: FrameType | None) -> tuple[Cause, Rule, bool] | None:
    """A target rule's answer for ``target``, the rule the hop path may cache for its
    key, and whether that rule was asked of something below ``target``.

    The rules are asked of ``target``'s own code first, then of what it wraps, down
    its ``__wrapped__`` chain (bounded, as ``inspect.unwrap`` follows it:
    ``functools.wraps``, wrapt's FunctionWrapper and ObjectProxy): an agent that
    replaced Django's ``response_for_exception`` with a wrapper after hopwatch
    installed (Sentry's, which Django looks up at each call) leaves its hops named
    as without the agent. The first answer wins. Below a bound method of a wrapper,
    a rule is asked of what the wrapper wraps, bound to the same instance.

    The hop path caches the answer by the key's facts: a function's code, qualified
    name and module (a bound method's class for the module), a callable instance's
    class. An answer from a code the key holds, or from one whose function's names
    the key holds (``functools.wraps`` copies them: the same objects), is cached as
    the rule says; any other (a wrapt proxy, keyed by its class; a wrapper that did
    not copy the names) depends on what the wrapper wraps, not on the key: the rule
    given is :func:`_target_search`, which asks again every time."""
    bound_to, outer = (
        (target.__self__, target.__func__) if type(target) is MethodType else (None, target)
    )
    level: object = outer
    for depth in range(_UNWRAP_LIMIT + 1):
        func = level.__func__ if type(level) is MethodType else level
        code = getattr(func, "__code__", None)
        if isinstance(code, CodeType):
            rule = _target_rule(code)
            if rule is not None:
                if depth == 0:
                    asked = target
                elif bound_to is not None and type(level) is FunctionType:
                    asked = MethodType(level, bound_to)
                else:
                    asked = level
                cause = rule(asked, frame)
                if cause is not None:
                    if not _key_holds(outer, func, bound_to):
                        rule = _target_search
                    return cause, rule, depth > 0
        if depth == _UNWRAP_LIMIT:
            break
        inner = wrapped_by(level)
        if inner is None:
            break
        level = inner
    return None


def _key_holds(outer: object, func: object, bound_to: object) -> bool:
    """Whether the hop path's key for a target whose function is ``outer`` (bound
    to ``bound_to``, or not) tells ``func``'s code from another's, as well as it
    does for ``func`` itself: ``outer`` is ``func``, or a function that took its
    qualified name and module (the same objects) from it."""
    if outer is func:
        return type(func) is FunctionType
    return (
        type(outer) is FunctionType
        and type(func) is FunctionType
        and outer.__qualname__ is func.__qualname__
        and (bound_to is not None or outer.__module__ is func.__module__)
    )


@per_instance  # which callable the wrapper wraps: the instance, not the key
def _target_search(target: object, frame: FrameType | None) -> Cause | None:
    """The target rules' answer for a wrapper whose key does not tell what it wraps."""
    found = _by_target(target, frame)
    return None if found is None else found[0]


def _answer(
    cause: Cause, rule: Rule, walks_before: int, reads_before: int
) -> tuple[Cause, int, Rule | None]:
    mode = _mode(rule, walks_before, reads_before)
    return cause, mode, rule if mode == MODE_ASK else None


# --- names ------------------------------------------------------------------


def dotted_name(target: object) -> str:
    """``module.Qualified.name`` of a callable; bound methods use the instance's class."""
    while isinstance(target, functools.partial):
        target = target.func
    if type(target) is MethodType:
        owner = target.__self__ if isinstance(target.__self__, type) else type(target.__self__)
        return f"{owner.__module__}.{owner.__qualname__}.{target.__func__.__name__}"
    # __self__ read of a builtin only: a wrapt proxy's missing attribute costs microseconds
    bound_to: object = (
        getattr(target, "__self__", None)
        if type(target).__name__ == "builtin_function_or_method"
        else None
    )
    if bound_to is not None:
        if not isinstance(bound_to, type) and type(bound_to).__name__ != "module":
            bound_to = type(bound_to)
        if isinstance(bound_to, type):
            name = getattr(target, "__name__", "?")
            return f"{bound_to.__module__}.{bound_to.__qualname__}.{name}"
    named = target if hasattr(target, "__qualname__") else type(target)
    module = getattr(named, "__module__", None) or "builtins"
    return f"{module}.{named.__qualname__}"


# --- call sites -------------------------------------------------------------

_library_roots: list[str] = []
_non_library_roots: list[str] = []
_boundary_classifiers: list[BoundaryClassifier] = []
# id(code) -> (code, classify_code's answer)
_code_kinds: dict[int, tuple[weakref.ref[CodeType], int]] = {}


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(path)).rstrip(os.sep) + os.sep


def add_library_package(module_file: str) -> None:
    """Treat the package containing ``module_file`` as library code (not a call site)."""
    root = _norm(os.path.dirname(module_file))
    if root not in _library_roots:
        _library_roots.append(root)
        _code_kinds.clear()
        _hotpath.clear_caches()  # the user frame of a cached call site may change


def register_boundary_classifier(classifier: BoundaryClassifier) -> None:
    """Ask ``classifier(code)`` once per unseen code object whether it is where the
    application is entered (the handler a server or a test client calls): the walk
    for a call site stops there (see :func:`user_frame`)."""
    if classifier not in _boundary_classifiers:
        _boundary_classifiers.append(classifier)
        _code_kinds.clear()
        _hotpath.clear_caches()  # the user frame of a cached call site may change


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
    filename = code.co_filename
    if filename.startswith("<"):
        return True  # frozen modules, exec'd strings
    # The most specific root decides: django/ inside site-packages inside
    # a distro's stdlib directory is library code.
    path = os.path.normcase(os.path.abspath(filename))
    library = max((len(r) for r in _library_roots if path.startswith(r)), default=0)
    other = max((len(r) for r in _non_library_roots if path.startswith(r)), default=0)
    return library > other


#: Times a rule walked the frames (resolve() compares it before and after).
_walks = 0

def classify_code(code: CodeType) -> int:
    """0 user code, 1 library code, 2 where the walk for a call site stops: where
    the application is entered (a boundary classifier's answer). Once per code
    object (cached)."""
    known = _code_kinds.get(id(code))
    if known is not None and known[0]() is code:
        return known[1]
    boundary = any(entry(code) for entry in _boundary_classifiers)
    kind = 2 if boundary else 1 if _library(code) else 0
    if len(_code_kinds) >= _CACHE_LIMIT:
        _code_kinds.clear()
    _code_kinds[id(code)] = (_ref(code), kind)
    return kind


def user_frame(frame: FrameType | None) -> FrameType | None:
    """The first frame at or above ``frame`` outside library code, or None when
    there is none before the walk reaches where it stops (:func:`classify_code`).

    It stops where a coroutine was resumed by a frame that awaits nothing: the
    event loop's dispatch (frames do not link across tasks; asyncio's dispatch is
    a Python frame, uvloop's is C and leaves the frame that started the loop
    above), and at the application's boundary, the handler a server or a test client called
    (Django's ``ASGIHandler.__call__``, ``WSGIHandler.__call__``, the test
    clients' handlers): what is above it is whoever called the application, a
    server, a server's middleware or a test, never the code that made the call.
    A hop made in the handler itself, outside the user's code, has no call site.
    """
    global _walks
    _walks += 1
    while frame is not None:
        code = frame.f_code
        kind = classify_code(code)
        if kind == 0:
            return frame
        if kind == 2:
            return None
        frame = frame.f_back
        if (
            code.co_flags & AWAITING_FLAGS
            and frame is not None
            and not frame.f_code.co_flags & AWAITING_OR_GENERATOR
        ):
            # A coroutine resumed by a frame that awaits nothing: whatever drives
            # the loop (asyncio's dispatch is a Python frame, uvloop's is C, and
            # above it is the code that started the loop). Who awaited is unknown.
            return None
    return None


_sites: dict[tuple[int, int], tuple[weakref.ref[CodeType], str]] = {}
_short_paths: dict[str, str] = {}


def short_path(filename: str) -> str:
    """A file name relative to the ``sys.path`` entry it was imported from."""
    short = _short_paths.get(filename)
    if short is None:
        short = filename
        best = 0
        # Compared as the roots are (normcase: lower-cased on Windows, where a code's
        # file name keeps its case); a path keeps its length, so the cut is the same.
        path = os.path.normcase(filename)
        for entry in sys.path:
            if not entry:
                entry = os.getcwd()
            root = _norm(entry)
            if path.startswith(root) and len(root) > best:
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
    if entry is not None and entry[0]() is code:
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
    _sites[key] = (_ref(code), site)
    return site


_init_roots()
