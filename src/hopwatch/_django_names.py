"""How the line names a request's route and view: as the people who wrote them know them.

* **route**: the URL pattern, ``/items/<int:pk>/``. A ``re_path`` pattern is
  written the same way: ``^static/(?P<path>.*)$`` becomes ``/static/<path>``
  (anchors dropped, each group a ``<name>``), so regex routes read like the
  others and never carry a regex's escapes into a report.
* **view**: the dotted path of the code that handled the request. Django's own
  ``ResolverMatch._func_path`` names the callable the URLconf holds, which for a
  framework is its dispatcher: every django-ninja operation is
  ``ninja.operation.async_view_wrapper`` (or ``_async_view``, ``_sync_view``,
  ``functools.partial`` in older releases). hopwatch names the operation's own
  function instead (``myapi.views.get_datasets``), picked by the request's method;
  a ``functools.partial`` by the function it wraps; a class-based view by its
  class (as Django does).

Both are cached per pattern and per view callable (long-lived URLconf objects),
so naming costs a dict lookup per request. The view's own crossing (a sync view's
under ASGI, an async one's under WSGI) is named by the same ``names_of``, with the
same request (``_django_causes``): its site is the line's ``view``.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
from typing import Any, Final

#: Entries kept per cache; past this, names are computed every time (still correct).
_CACHE_LIMIT: Final = 4096

_routes: dict[str, str] = {}
# (id(view callable), method) -> (the callable, kept so the id is never reused, its name)
_views: dict[tuple[int, str], tuple[Any, str | None]] = {}


def route_of(match: Any) -> str | None:
    """``/`` + the resolved pattern, a regex one written as a path pattern."""
    route = getattr(match, "route", None)
    if route is None:
        return None
    named = _routes.get(route)
    if named is None:
        named = "/" + regex_as_pattern(route) if _is_regex(route) else "/" + route
        if len(_routes) < _CACHE_LIMIT:
            _routes[route] = named
    return named


_REGEX_HINTS: Final = re.compile(r"[\^$\\(\[|?*+{]")


def _is_regex(route: str) -> bool:
    return _REGEX_HINTS.search(route) is not None


def regex_as_pattern(regex: str) -> str:
    """``^api/(?P<pk>[0-9]+)/$`` -> ``api/<pk>/``: anchors out, each group a ``<name>``.

    Unnamed groups become ``<arg>``, ``<arg2>``, ...; non-capturing groups are kept
    as their content; escaped characters lose their backslash; other regex
    syntax outside groups is left as it is (it is rare in URL patterns). A
    repeated or optional group is shown once, without its quantifier. A ``/`` at
    either end of a capturing group's own pattern (read as here, with no ``|``) is
    a path separator, shown outside its placeholder:
    ``^files/(?P<part>[^/]+/)*(?P<name>[^/]+)$`` is ``files/<part>/<name>``, not
    ``files/<part><name>``.
    """
    out: list[str] = []
    unnamed = 0
    i = 0
    n = len(regex)
    while i < n:
        ch = regex[i]
        if ch == "\\" and i + 1 < n:
            nxt = regex[i + 1]
            if nxt in "AZz":  # \A, \Z, \z: anchors
                i += 2
                continue
            out.append(nxt)
            i += 2
            continue
        if ch in "^$":
            i += 1
            continue
        if ch == "(":
            end = _group_end(regex, i)
            inner = regex[i + 1 : end]
            found = re.match(r"\?P<(\w+)>", inner)
            if found:
                out.append(_placeholder(found.group(1), inner[found.end() :]))
            elif inner.startswith("?:"):
                out.append(regex_as_pattern(inner[2:]))
            elif inner.startswith("?"):
                pass  # a lookaround or flag group: matches no characters of the path
            else:
                unnamed += 1
                out.append(_placeholder("arg" if unnamed == 1 else f"arg{unnamed}", inner))
            i = end + 1
            if i < n and regex[i] in "?*+":  # an optional group: the pattern shows it once
                i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _placeholder(name: str, content: str) -> str:
    """``<name>`` for a capturing group whose regex is ``content``, with the ``/`` its
    pattern starts or ends with outside (unless it has alternatives, ``|``: one may
    have no ``/`` there), as the path's separator."""
    shown = regex_as_pattern(content)
    if "|" in shown:
        return f"<{name}>"
    head = "/" if shown.startswith("/") and len(shown) > 1 else ""  # "/" alone: its tail
    tail = "/" if shown.endswith("/") else ""
    return f"{head}<{name}>{tail}"


def _group_end(regex: str, start: int) -> int:
    """The index of the ``)`` closing the group opened at ``start`` (skipping classes, escapes)."""
    depth = 0
    i = start
    in_class = False
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(regex) - 1


def view_of(match: Any, method: str | None) -> str | None:
    """The view's dotted path, as its author knows it (see the module docstring)."""
    func = getattr(match, "func", None)
    if func is None:
        return getattr(match, "_func_path", None)
    key = (id(func), method or "")
    entry = _views.get(key)
    if entry is not None and entry[0] is func:
        return entry[1]
    name = _name(func, method) or getattr(match, "_func_path", None)
    if len(_views) < _CACHE_LIMIT:
        _views[key] = (func, name)
    return name


# (pattern, id(view callable), method) -> (the callable, the route's name, the view's).
# The C accelerator's name_request (hopwatch._speedups) reads it by this very key.
_named: dict[tuple[Any, int, str], tuple[Any, str | None, str | None]] = {}


def names_of(match: Any, method: str | None) -> tuple[str | None, str | None]:
    """``(route_of(match), view_of(match, method))``, with one lookup per request."""
    func = getattr(match, "func", None)
    key = (getattr(match, "route", None), id(func), method or "")
    entry = _named.get(key)
    if entry is not None and entry[0] is func:
        return entry[1], entry[2]
    route, view = route_of(match), view_of(match, method)
    # Without a callable the view's name is the match's own: not cached under None.
    if func is not None and len(_named) < _CACHE_LIMIT:
        _named[key] = (func, route, view)
    return route, view


def _dotted(func: Any) -> str | None:
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if not module or not name:
        return None
    return f"{module}.{name}"


def view_class_path(cls: type) -> str:
    """A class-based view's dotted path: its qualified name (``Outer.Inner``), or, when
    its ``__name__`` was set to another name (DRF's and adrf's ``@api_view`` make a
    ``WrappedAPIView`` named after the function), that name, as Django's
    ``ResolverMatch._func_path`` has it."""
    qualname = cls.__qualname__
    name = cls.__name__
    if qualname.rsplit(".", 1)[-1] != name:
        qualname = name
    return f"{cls.__module__}.{qualname}"


def _name(func: Any, method: str | None) -> str | None:
    view_class = getattr(func, "view_class", None)
    if view_class is not None:  # as_view(): the class, as Django names it
        return view_class_path(view_class)
    for _ in range(8):  # partial(partial(f)): bounded, never a loop
        if not isinstance(func, functools.partial):
            break
        func = func.func
    operation = _ninja_operation(func, method)
    if operation is not None:
        return _dotted(operation)
    if isinstance(func, functools.partial):
        return None
    return None if _dotted(func) is None else _plain_name(func)


def _plain_name(func: Any) -> str | None:
    # Django's own rule (module + __name__), so that plain views keep their names
    if not hasattr(func, "__name__"):
        cls = type(func)
        return f"{cls.__module__}.{cls.__name__}"
    return f"{func.__module__}.{func.__name__}"


def _ninja_operation(func: Any, method: str | None) -> Any:
    """The function of the django-ninja operation ``func`` dispatches to for ``method``.

    django-ninja mounts one callable per path (its ``PathView``), a bound method
    (``_async_view``, ``_sync_view``) or a closure over the PathView; the
    PathView's ``operations`` each have ``methods`` and ``view_func``.
    Recognised by that shape, without importing ninja. Read statically
    (``inspect.getattr_static``): what a view closes over is the app's, and a
    lookup must not run its code (a ``SimpleLazyObject`` would be evaluated, a
    ``__getattr__`` called).
    """
    operations = _path_operations(func)
    for operation in operations:
        if method in _static(operation, "methods") or len(operations) == 1:
            return _static(operation, "view_func")
    return None


def _path_operations(func: Any) -> list[Any]:
    """The operations of the django-ninja ``PathView`` ``func`` dispatches for (see
    :func:`_ninja_operation`), each with its ``methods`` and ``view_func``; empty when
    ``func`` is no such dispatcher."""
    candidates = [getattr(func, "__self__", None)]
    for cell in getattr(func, "__closure__", None) or ():
        try:
            candidates.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    for owner in candidates:
        operations = _static(owner, "operations")
        if not isinstance(operations, list) or not operations:
            continue
        if all(
            _static(operation, "view_func") is not None
            and isinstance(_static(operation, "methods"), list | tuple)
            for operation in operations
        ):
            return operations
    return []


def _static(owner: Any, name: str) -> Any:
    """``owner``'s attribute ``name`` as stored (None if none), running none of its code."""
    try:
        value = inspect.getattr_static(owner, name, None)
    except Exception:
        return None
    # A descriptor found on the class (a property, a slot) would need code to read.
    return None if hasattr(type(value), "__get__") and not callable(value) else value


# id(view callable) -> (the callable, kept so the id is never reused, named_by_instance's answer)
_by_instance: dict[int, tuple[Any, bool]] = {}


def named_by_instance(view: Any) -> bool:
    """Whether ``view``'s name (as the line names it) is read from the callable itself,
    not only from what hopwatch's hop path caches a hop's cause by: the code, qualified
    name and module of a function (the class of a bound method's instance, of a
    callable instance). Several views then share one key and each has its own name:

    * ``as_view()``'s closure: one code and qualified name for every class-based view
      (DRF's and adrf's ``@api_view`` too), named by its ``view_class``;
    * a django-ninja path's dispatcher: one closure (or bound method) for every path,
      named by the operation the request's method picks;
    * a function renamed through ``__name__`` alone (a decorator's wrapper given its
      view's name, not its ``__qualname__``), named by that ``__name__``;
    * any view the key does not tell by its code: past the ``functools.partial``
      layers the key looks through, neither a function nor a method bound to one (nor
      a class), so keyed by its class alone. A wrapt ``FunctionWrapper`` (ddtrace's
      Django integration wraps every view in one), a callable instance, a partial of
      either: each named after what it wraps, or itself, while every one of its class
      shares one key.

    A decorator that copies its view's names (``functools.wraps``) makes a function of
    its own key: not one of these. Cached per callable (long-lived URLconf objects).
    """
    entry = _by_instance.get(id(view))
    if entry is not None and entry[0] is view:
        return entry[1]
    func = view
    for _ in range(4):  # as the hop path's key: through at most four partials
        if type(func) is not functools.partial:
            break
        func = func.func
    if type(func) is types.MethodType:
        keyed = type(func.__func__) is types.FunctionType
        renamed = keyed and _renamed(func.__func__)
    else:
        # type(), not isinstance(): a wrapt proxy passes for what it wraps, not to the key
        keyed = type(func) is types.FunctionType or issubclass(type(func), type)
        renamed = _renamed(func)
    answer = (
        not keyed
        or getattr(view, "view_class", None) is not None
        or bool(_path_operations(func))
        or renamed
    )
    if len(_by_instance) < _CACHE_LIMIT:
        _by_instance[id(view)] = (view, answer)
    return answer


def _renamed(func: Any) -> bool:
    """Whether the function ``func``'s ``__name__`` (which names it: ``_plain_name``)
    is not its ``__qualname__``'s last part."""
    if not isinstance(func, types.FunctionType):
        return False
    return func.__qualname__.rpartition(".")[2] != func.__name__


def view_name(view: Any) -> str | None:
    """A view callable's name as the request's line names its view, for a request
    of no particular method (a django-ninja path with several operations: None)."""
    return _name(view, None)


__all__ = ["named_by_instance", "names_of", "regex_as_pattern", "route_of", "view_name", "view_of"]
