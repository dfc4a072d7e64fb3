"""A function Django calls through ``sync_to_async`` that an agent wrapped after hopwatch
installed is named as without the agent.

Sentry's ``DjangoIntegration`` replaces ``django.core.handlers.exception
.response_for_exception`` with a ``functools.wraps`` wrapper when ``sentry_sdk.init``
runs, and Django's ``convert_exception_to_response`` looks that name up at each call:
initialised after hopwatch installed (in ``asgi.py`` after ``django.setup()``, in a later
app's ``ready()``), it put its wrapper's code where hopwatch's rule for Django's
function is keyed, and every 500's line named
``{"kind":"other","site":"django.core.handlers.exception.response_for_exception"}``
where it named ``{"kind":"exception","site":"response_for_exception"}``. The rules for
what Django calls (``response_for_exception``, ``log_response``,
``process_exception_by_middleware``, ``Signal.send``) now apply to a wrapper of it too,
down its ``__wrapped__`` chain: a ``functools.wraps`` wrapper (Sentry's), wrapt's
FunctionWrapper (New Relic's shape), a wrapper that names itself and only says what it
wraps. Here the agents are written in those shapes (sentry-sdk is not a test
dependency), put on after hopwatch installed, and taken off after each test.

Before, a ``process_exception_by_middleware`` wrapped on ``BaseHandler`` was named as
the view (its caller's rule), and a ``signal.send`` wrapped on ``Signal`` by its dotted
name, kind ``other``. An agent's wrapper put on before hopwatch installed gave hopwatch
the wrapper to register: one wrapper code for everything that agent wrapped, all named
``response_for_exception``.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, markcoroutinefunction, sync_to_async
from django.core.handlers import base as handlers_base
from django.core.handlers import exception as handlers_exception
from django.dispatch import Signal
from django.http import HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from django.utils.log import log_response

from tests.helpers import asgi_request, capture, sites
from tests.test_lifecycle import _lines, _python

pinged = Signal()


def _other(*args: Any, **kwargs: Any) -> str:
    return "other"


async def _through(function: Any, *args: Any, **kwargs: Any) -> Any:
    # one call site for whatever it is given
    return await sync_to_async(function)(*args, **kwargs)


async def failing(request):
    await sync_to_async(pinged.send)(sender=None)
    raise ValueError("boom")


#: What ``two_through_one_line`` passes to its one call site (set by the test).
AT_ONE_LINE: list[Any] = []


async def two_through_one_line(request):
    response = HttpResponse(status=500)
    for function in AT_ONE_LINE:
        await _through(function, "%s", "logged", response=response)
    return HttpResponse("ok")


#: What ``through_one_line`` calls through its one call site, each with its arguments
#: (set by the test).
THROUGH_ONE_LINE: list[tuple[Any, tuple[Any, ...]]] = []


async def through_one_line(request):
    for function, args in THROUGH_ONE_LINE:
        await _through(function, *args)
    return HttpResponse("ok")


class First:
    """A class an agent's wrapper or proxy is put around."""


class Second:
    pass


def _first() -> str:
    return "first"


def _second() -> str:
    return "second"


class _Traced:
    """A class-based wrapper given its function's names (``functools.update_wrapper``)."""

    def __init__(self, wrapped: Any) -> None:
        functools.update_wrapper(self, wrapped)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)  # type: ignore[attr-defined]


def _passed_on(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return wrapped(*args, **kwargs)


class RaisingAsyncMiddleware:
    """Async only: under WSGI its exception is answered by ``response_for_exception``
    through ``sync_to_async`` (its ``convert_exception_to_response`` is async)."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        raise ValueError("the middleware's own")


urlpatterns = [
    path("failing/", failing),
    path("two/", two_through_one_line),
    path("one-line/", through_one_line),
]

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]

#: What Django calls through sync_to_async that hopwatch has a target rule for, where
#: Django looks it up at each call (an agent replaces it there).
PLACES = [
    (handlers_exception, "response_for_exception"),
    (handlers_base, "log_response"),
    (handlers_base.BaseHandler, "process_exception_by_middleware"),
    (Signal, "send"),
]

SHAPES = ["functools.wraps", "wrapt", "__wrapped__"]


def _wrapper(shape: str, original: Any) -> Any:
    """An agent's wrapper of ``original``, in ``shape``."""
    if shape == "functools.wraps":  # Sentry's response_for_exception

        @functools.wraps(original)
        def agent(*args: Any, **kwargs: Any) -> Any:
            return original(*args, **kwargs)

        return agent
    if shape == "wrapt":  # New Relic's
        wrapt = pytest.importorskip("wrapt")
        return wrapt.FunctionWrapper(original, lambda wrapped, instance, a, kw: wrapped(*a, **kw))

    def named_its_own(*args: Any, **kwargs: Any) -> Any:  # says what it wraps, no more
        return original(*args, **kwargs)

    named_its_own.__wrapped__ = original  # type: ignore[attr-defined]
    return named_its_own


@contextlib.contextmanager
def agent(shape: str | None, places: list[tuple[Any, str]] = PLACES) -> Iterator[None]:
    """Every place in ``places`` replaced by ``shape``'s wrapper (None: none), put back
    after."""
    originals = [(owner, name, vars(owner)[name]) for owner, name in places]
    try:
        if shape is not None:
            for owner, name, original in originals:
                setattr(owner, name, _wrapper(shape, original))
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _line_sites(log_lines: Any) -> list[dict[tuple[str, str, str], int]]:
    return [
        {(s["kind"], s["site"], s["direction"]): s["count"] for s in line["sites"]}
        for line in log_lines.parsed()
    ]


FAILING_ASGI = {
    ("signal", "request_started"): 1,
    ("signal", "tests.test_wrapped_targets.pinged"): 1,
    ("exception", "process_exception_by_middleware"): 1,
    ("exception", "response_for_exception"): 1,
    ("exception", "log_response"): 1,
    ("response", "HttpResponseServerError.close"): 1,
}


def _serve_failing() -> list[tuple[Any, dict[tuple[str, str], int]]]:
    """/failing/ through ASGIHandler and AsyncClient: each one's (status, sites)."""
    with capture() as records:
        statuses = [
            asgi_request("/failing/").status,
            async_to_sync(AsyncClient(raise_request_exception=False).get)("/failing/").status_code,
        ]
    assert len(records) == 2
    return [(status, sites(record)) for status, record in zip(statuses, records, strict=True)]


@pytest.mark.parametrize("shape", SHAPES)
def test_a_500_under_asgi_through_wrapped_targets(shape, log_lines):
    """Every target rule of a 500 under ASGI holds through the agent's wrappers:
    ``response_for_exception``, ``log_response``, ``process_exception_by_middleware``
    and the view's ``sync_to_async(signal.send)``."""
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=HOPWATCH_ONLY):
        with agent(None):
            unwrapped = _serve_failing()
        with agent(shape):
            wrapped = _serve_failing()
    assert unwrapped[0] == (500, FAILING_ASGI)
    assert wrapped == unwrapped
    # the lines (kind, site, direction, count) too: each wrapped one as its unwrapped one
    lines = _line_sites(log_lines)
    assert len(lines) == 4
    assert lines[2:] == lines[:2]
    assert lines[0] == {
        (kind, site, "sync_to_async"): n for (kind, site), n in FAILING_ASGI.items()
    }


RAISING_MIDDLEWARE = [*HOPWATCH_ONLY, f"{__name__}.RaisingAsyncMiddleware"]
FAILING_UNDER_WSGI = {
    ("middleware", "tests.test_wrapped_targets.RaisingAsyncMiddleware"): 1,
    ("exception", "response_for_exception"): 1,
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_500_under_the_sync_client_through_a_wrapped_response_for_exception(shape, log_lines):
    """Under WSGI, an async-only middleware's exception is answered through
    ``sync_to_async(response_for_exception)``: named so under the agent's wrapper."""

    def serve() -> list[tuple[int, dict[tuple[str, str], int]]]:
        with capture() as records:
            status = Client(raise_request_exception=False).get("/failing/").status_code
        return [(status, sites(record)) for record in records]

    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=RAISING_MIDDLEWARE):
        with agent(None):
            unwrapped = serve()
        with agent(shape):
            wrapped = serve()
    assert unwrapped == [(500, FAILING_UNDER_WSGI)]
    assert wrapped == unwrapped
    lines = _line_sites(log_lines)
    assert len(lines) == 2 and lines[1] == lines[0]
    assert sorted(lines[0]) == [
        ("exception", "response_for_exception", "sync_to_async"),
        ("middleware", "tests.test_wrapped_targets.RaisingAsyncMiddleware", "async_to_sync"),
    ]


@pytest.mark.parametrize("shape", SHAPES)
def test_wrappers_of_different_functions_at_one_call_site(shape):
    """One line calls an agent's wrapper of ``log_response``, then the same agent's
    wrapper of another function: each is named for what it wraps, on the first request
    and from the caches on the second. (The hop path keys a wrapt proxy by its class,
    a wrapper that keeps its own names by those: the same key for both wrappers, so the
    answer found below the first must be asked again for the second.)"""
    functions = (_wrapper(shape, log_response), _wrapper(shape, _other))
    other = {
        "functools.wraps": "tests.test_wrapped_targets._other",
        "wrapt": "tests.test_wrapped_targets._other",
        "__wrapped__": "tests.test_wrapped_targets._wrapper.<locals>.named_its_own",
    }[shape]
    AT_ONE_LINE[:] = functions
    try:
        with (
            override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=HOPWATCH_ONLY),
            capture() as records,
        ):
            for _ in range(2):  # the second from the caches
                assert asgi_request("/two/").status == 200
    finally:
        AT_ONE_LINE.clear()
    assert [sites(record) for record in records] == [
        {
            ("signal", "request_started"): 1,
            ("exception", "log_response"): 1,
            ("other", other): 1,
            ("response", "HttpResponse.close"): 1,
        }
    ] * 2


_BEFORE = """
    import asyncio, functools, json
    from django.core.handlers import exception

    def traced(function):  # one wrapper code for everything this agent wraps
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            return function(*args, **kwargs)
        return wrapper

    exception.response_for_exception = traced(exception.response_for_exception)

    import django
    django.setup()  # hopwatch installs here, the agent's wrapper in place
    from asgiref.sync import sync_to_async
    from django.test import override_settings
    from tests.helpers import asgi_request
    from tests.test_wrapped_targets import _other

    with override_settings(
        ROOT_URLCONF="tests.test_wrapped_targets",
        MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"],
    ):
        statuses = [asgi_request("/failing/").status]

    async def other():
        return await sync_to_async(traced(_other))()

    from hopwatch.testing import count_hops
    with count_hops() as counted:
        assert asyncio.run(other()) == "other"
    print(json.dumps({"statuses": statuses, "other": [
        [hop.cause.kind, hop.cause.site] for hop in counted]}))
"""


def test_an_agents_wrapper_put_on_before_hopwatch_installed(tmp_path):
    """hopwatch registers Django's function, not the wrapper it finds: another function
    the same agent wraps (the same wrapper code) is not named ``response_for_exception``."""
    log = tmp_path / "before.jsonl"
    done = _python(tmp_path, {"OUTPUT": str(log)}, _BEFORE)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {
        "statuses": [500],
        "other": [["other", "tests.test_wrapped_targets._other"]],
    }
    (line,) = _lines(log)
    assert {(s["kind"], s["site"]): s["count"] for s in line["sites"]} == FAILING_ASGI


_BEFORE_A_CALLABLE_INSTANCE = """
    import functools, json
    from django.core.handlers import exception

    class Traced:  # agent A: a callable instance, keeping the function to itself
        def __init__(self, function):
            self._function = function

        def __call__(self, *args, **kwargs):
            return self._function(*args, **kwargs)

    exception.response_for_exception = Traced(exception.response_for_exception)
    current = exception.response_for_exception

    @functools.wraps(current)  # agent B wraps what is there: its __wrapped__ has no code
    def agent_b(*args, **kwargs):
        return current(*args, **kwargs)

    exception.response_for_exception = agent_b

    import django
    django.setup()  # hopwatch installs here, both agents' wrappers in place
    from django.test import override_settings
    from tests.helpers import asgi_request

    with override_settings(
        ROOT_URLCONF="tests.test_wrapped_targets",
        MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"],
    ):
        print(json.dumps({"statuses": [asgi_request("/failing/").status]}))
"""


def test_a_wrapper_chain_ending_in_a_callable_instance_before_hopwatch_installed(tmp_path):
    """A __wrapped__ chain whose end has no code of its own (an agent's callable
    instance under another's functools.wraps): Django starts, and the 500 is served
    and written as ever (the rule is the deepest function's with code: agent B's)."""
    log = tmp_path / "before.jsonl"
    done = _python(tmp_path, {"OUTPUT": str(log)}, _BEFORE_A_CALLABLE_INSTANCE)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"statuses": [500]}
    (line,) = _lines(log)
    assert {(s["kind"], s["site"]): s["count"] for s in line["sites"]} == FAILING_ASGI


#: Two targets of one shape, and the name each is known by.
ONE_KEY_SHAPES = {
    "wrapt FunctionWrapper of a class": (
        lambda wrapt: [wrapt.FunctionWrapper(First, _passed_on), wrapt.FunctionWrapper(Second, _passed_on)],
        ["tests.test_wrapped_targets.First", "tests.test_wrapped_targets.Second"],
    ),
    "wrapt CallableObjectProxy of a class": (
        lambda wrapt: [wrapt.CallableObjectProxy(First), wrapt.CallableObjectProxy(Second)],
        ["tests.test_wrapped_targets.First", "tests.test_wrapped_targets.Second"],
    ),
    "wrapt FunctionWrapper of a function": (
        lambda wrapt: [wrapt.FunctionWrapper(_first, _passed_on), wrapt.FunctionWrapper(_second, _passed_on)],
        ["tests.test_wrapped_targets._first", "tests.test_wrapped_targets._second"],
    ),
    "wrapt CallableObjectProxy of a function": (
        lambda wrapt: [wrapt.CallableObjectProxy(_first), wrapt.CallableObjectProxy(_second)],
        ["tests.test_wrapped_targets._first", "tests.test_wrapped_targets._second"],
    ),
    "a callable instance given its function's names": (
        lambda wrapt: [_Traced(_first), _Traced(_second)],
        ["tests.test_wrapped_targets._first", "tests.test_wrapped_targets._second"],
    ),
}


@pytest.mark.parametrize("shape", ONE_KEY_SHAPES)
def test_wrappers_with_no_rule_below_at_one_call_site(shape):
    """One line calls two wrappers of one shape (one hop path key: a wrapt proxy, a
    callable instance, is keyed by its class) of two functions or classes no rule
    knows: each is named for what it wraps, on the first request and from the caches
    on the second, under the C and the pure-Python hop path alike. Before, the C path
    named the second after the first (both ways, with a function inside); the
    pure-Python path keyed a wrapt proxy of a class as a class (by ``isinstance()``),
    named for itself: the two paths did not agree."""
    make, names = ONE_KEY_SHAPES[shape]
    wrapt = pytest.importorskip("wrapt") if "wrapt" in shape else None
    THROUGH_ONE_LINE[:] = [(target, ()) for target in make(wrapt)]
    try:
        with (
            override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=HOPWATCH_ONLY),
            capture() as records,
        ):
            for _ in range(2):  # the second from the caches
                assert asgi_request("/one-line/").status == 200
    finally:
        THROUGH_ONE_LINE.clear()
    assert [sites(record) for record in records] == [
        {
            ("signal", "request_started"): 1,
            ("other", names[0]): 1,
            ("other", names[1]): 1,
            ("response", "HttpResponse.close"): 1,
        }
    ] * 2


def test_builtins_of_one_name_in_two_modules_at_one_call_site():
    """``math.sqrt`` and ``cmath.sqrt`` from one line are each named for their module,
    on the C and the pure-Python hop path alike. Before, the pure-Python path keyed a
    builtin bound to a module by the module's class (the C path by the module), and
    named ``cmath.sqrt`` ``math.sqrt``."""
    import cmath
    import math

    THROUGH_ONE_LINE[:] = [(math.sqrt, (4,)), (cmath.sqrt, (4,))]
    try:
        with (
            override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=HOPWATCH_ONLY),
            capture() as records,
        ):
            for _ in range(2):
                assert asgi_request("/one-line/").status == 200
    finally:
        THROUGH_ONE_LINE.clear()
    assert [sites(record) for record in records] == [
        {
            ("signal", "request_started"): 1,
            ("other", "math.sqrt"): 1,
            ("other", "cmath.sqrt"): 1,
            ("response", "HttpResponse.close"): 1,
        }
    ] * 2


def test_a_proxy_of_a_class_given_another_is_named_for_it():
    """A wrapt proxy of a class that is given another class between two requests (a
    lazy proxy's, set through ``__wrapped__``) is named for the class it holds at each,
    on the C and the pure-Python hop path alike. Before, both named the second request's
    crossing after the first class: the C path cached it by the proxy's class, the
    pure-Python path by the proxy itself, which ``isinstance()`` took for a class."""
    wrapt = pytest.importorskip("wrapt")
    proxy = wrapt.CallableObjectProxy(First)
    THROUGH_ONE_LINE[:] = [(proxy, ())]
    try:
        with (
            override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=HOPWATCH_ONLY),
            capture() as records,
        ):
            assert asgi_request("/one-line/").status == 200
            proxy.__wrapped__ = Second
            assert asgi_request("/one-line/").status == 200
    finally:
        THROUGH_ONE_LINE.clear()
    assert [sites(record) for record in records] == [
        {
            ("signal", "request_started"): 1,
            ("other", f"tests.test_wrapped_targets.{name}"): 1,
            ("response", "HttpResponse.close"): 1,
        }
        for name in ("First", "Second")
    ]
