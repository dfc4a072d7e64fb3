"""APM agents that wrap what hopwatch wraps, before it or after it.

New Relic's agent wraps Django's ``ASGIHandler.__call__`` and ``WSGIHandler.__call__``
and asgiref's ``SyncToAsync.__call__``, ``SyncToAsync.thread_handler`` and
``AsyncToSync.main_wrap``, with ``wrapt``'s FunctionWrapper; Sentry replaces
``ASGIHandler.__call__`` and ``BaseHandler.load_middleware``. The agent here is
written the way New Relic's hooks are (``newrelic/hooks/adapter_asgiref.py``, its
ASGI and WSGI application wrappers), with the real ``wrapt`` (installed with
OpenTelemetry's instrumentation); New Relic itself needs a licence or its developer
mode, and is not a test dependency. Each process starts the agent before Django's
set-up (and so before hopwatch installs) or after it.

* The requests are served as without hopwatch, and their lines count what they
  counted without the agent. Before, an agent wrapping first got the handler object
  where it bound the ASGI scope (every request failed), and one wrapping after
  could not bind thread_handler's arguments on hopwatch's bound handler, so its
  keyword reached the app's function (every ``sync_to_async`` failed).
* ``hopwatch.uninstall()`` leaves an agent's later wrappers in place (it removed
  Sentry's), and ``hopwatch.install()`` reuses the layer it left under them rather
  than adding a second one (which counted every crossing twice).
* An agent's wrapper over hopwatch's ``SyncToAsync.__call__`` or
  ``AsyncToSync.__call__`` (put there after hopwatch installed) is not where the
  crossing was made: the lines name the same causes, kinds and call sites as
  without the agent, whatever shape the wrapper has (wrapt's FunctionWrapper,
  with and without its C extension; a plain function over a closure, a global
  or ``functools.wraps``; a ``functools.partialmethod``; a sync wrapper returning
  the coroutine; a wrapper object holding what it replaced in an attribute of its
  own; subclasses put in place of asgiref's ``SyncToAsync`` and ``AsyncToSync``;
  several agents, one over the other). Before, every middleware
  hook and async ORM call under such an agent was kind ``other``, the ORM's API
  name was lost (``QuerySet.acount`` read ``django.db.models.query.QuerySet.count``)
  and every call site was the agent's wrapper's line.
* A crossing such a wrapper makes of its own, with another adapter, before passing
  the call on, is the wrapper's (its line); the one passed on is as without the
  agent. Before, it was read from the wrapper's caller (the user's line seemed to
  make two crossings; on Django 6.1 ``Signal.asend`` became a cause).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.test_lifecycle import _lines, _python

pytest.importorskip("wrapt")

_AGENT = """
    import asyncio, inspect, json, os, sys
    import wrapt

    seen = {"asgi": 0, "wsgi": 0, "thread_handler": 0, "popped": 0, "main_wrap": 0}

    def asgi_application(wrapped, instance, args, kwargs):
        def bind(scope, receive, send):  # as New Relic's ASGI wrapper binds them
            return scope
        assert bind(*args, **kwargs)["type"] == "http"
        seen["asgi"] += 1
        return wrapped(*args, **kwargs)

    def wsgi_application(wrapped, instance, args, kwargs):
        def bind(environ, start_response):
            return environ
        assert "PATH_INFO" in bind(*args, **kwargs)
        seen["wsgi"] += 1
        return wrapped(*args, **kwargs)

    async def s2a_call(wrapped, instance, args, kwargs):
        kwargs["_agent_trace"] = "trace"
        return await wrapped(*args, **kwargs)

    def thread_handler(wrapped, instance, args, kwargs):
        seen["thread_handler"] += 1
        try:  # New Relic's thread_handler_wrapper, word for word
            bound = inspect.signature(wrapped).bind(*args, **kwargs)
            bound.apply_defaults()
            trace = bound.arguments["args"][0].keywords.pop("_agent_trace", None)
        except Exception:
            trace = None
        seen["popped"] += trace is not None
        return wrapped(*args, **kwargs)

    def main_wrap(wrapped, instance, args, kwargs):
        seen["main_wrap"] += 1
        return wrapped(*args, **kwargs)

    def start_agent():
        wrapt.wrap_function_wrapper("django.core.handlers.asgi", "ASGIHandler.__call__", asgi_application)
        wrapt.wrap_function_wrapper("django.core.handlers.wsgi", "WSGIHandler.__call__", wsgi_application)
        wrapt.wrap_function_wrapper("asgiref.sync", "SyncToAsync.__call__", s2a_call)
        wrapt.wrap_function_wrapper("asgiref.sync", "SyncToAsync.thread_handler", thread_handler)
        wrapt.wrap_function_wrapper("asgiref.sync", "AsyncToSync.main_wrap", main_wrap)

    order = os.environ["AGENT_ORDER"]
    if order == "before":
        start_agent()
    import django
    django.setup()  # hopwatch installs here (its app's ready())
    if order == "after":
        start_agent()
    import hopwatch
    from django.core.asgi import get_asgi_application
    from django.core.wsgi import get_wsgi_application
    from tests.helpers import asgi_call, wsgi_environ

    asgi_app, wsgi_app = get_asgi_application(), get_wsgi_application()

    def serve():
        statuses = []
        for path in ("/async/", "/sync/"):
            statuses.append(asyncio.run(asgi_call(asgi_app, path)).status)
            started = []
            body = wsgi_app(wsgi_environ(path), lambda status, headers, exc_info=None: started.append(status))
            b"".join(body)
            body.close()
            statuses.append(started[0])
        return statuses

    result = {"served": serve()}
    if os.environ.get("AGENT_UNINSTALL"):
        hopwatch.uninstall()
        result["uninstalled"] = serve()
        hopwatch.install()
        result["reinstalled"] = serve()
    result["seen"] = seen
    print(json.dumps(result))
"""

#: (route, interface) of each request serve() makes, in order.
_SERVED = [("/async/", "asgi"), ("/async/", "wsgi"), ("/sync/", "asgi"), ("/sync/", "wsgi")]
_OK = [200, "200 OK"] * 2


def _run(tmp_path: Path, order: str, uninstall: bool = False) -> tuple[dict, list[dict]]:
    log = tmp_path / f"{order}.jsonl"
    env_script = f"import os\nos.environ['AGENT_ORDER'] = {order!r}\n"
    if uninstall:
        env_script += "os.environ['AGENT_UNINSTALL'] = '1'\n"
    settings = {"OUTPUT": str(log), "SITES_LIMIT": 50}  # every site, however long it took
    done = _python(tmp_path, settings, env_script + _dedented_agent())
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1]), _lines(log)


def _dedented_agent() -> str:
    import textwrap

    return textwrap.dedent(_AGENT)


def _counts(lines: list[dict]) -> list[tuple]:
    return [
        (line["route"], line["interface"], line["status"], line["hops"], line["sync_to_async"])
        for line in lines
    ]


@pytest.fixture(scope="module")
def lines_without_agent(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    tmp_path = tmp_path_factory.mktemp("none")
    result, lines = _run(tmp_path, "none")
    assert result["served"] == _OK
    assert result["seen"]["asgi"] == result["seen"]["thread_handler"] == 0
    return lines


@pytest.fixture(scope="module")
def without_agent(lines_without_agent: list[dict]) -> list[tuple]:
    return _counts(lines_without_agent)


@pytest.mark.parametrize("order", ["before", "after"])
def test_an_agent_wrapping_what_hopwatch_wraps(
    tmp_path, order, without_agent, lines_without_agent
):
    result, lines = _run(tmp_path, order)
    assert result["served"] == _OK
    assert [(line["route"], line["interface"]) for line in lines] == _SERVED
    assert _counts(lines) == without_agent
    # and the same causes: the middleware hooks', not the agent's wrapper's
    assert _causes(lines) == _causes(lines_without_agent)
    hooks = [site for site in lines[0]["sites"] if site["kind"] == "middleware"]
    assert len(hooks) == 13 and not any("call_site" in site for site in hooks)
    assert without_agent[0][3] == 15  # startproject's middleware, an async view under ASGI
    seen = result["seen"]
    assert (seen["asgi"], seen["wsgi"]) == (2, 2)
    # every sync_to_async went through the agent's thread_handler, which found its
    # keyword on the call (and took it off before the app's function saw it)
    crossings = sum(line["sync_to_async"] for line in lines)
    assert seen["thread_handler"] == seen["popped"] >= crossings > 0


def test_uninstall_leaves_an_agents_later_wrappers_and_install_adds_no_second_layer(
    tmp_path, without_agent, lines_without_agent
):
    result, lines = _run(tmp_path, "after", uninstall=True)
    assert result["served"] == result["uninstalled"] == result["reinstalled"] == _OK
    # the agent saw every request, uninstalled too: its wrappers stayed
    assert (result["seen"]["asgi"], result["seen"]["wsgi"]) == (6, 6)
    # no line while uninstalled; after install(), the same counts as before (not twice)
    assert _counts(lines) == without_agent * 2
    assert _causes(lines) == _causes(lines_without_agent) * 2


# --- causes under agents of every shape ---------------------------------------------

#: Agents wrapping asgiref's two ``__call__`` methods, in the shapes real ones use.
#: Written to a file of its own: the wrappers' lines are user code, as an agent's are
#: (a call site would name them).
_SHAPES = """
import functools

import wrapt
from asgiref import sync

calls = {"s2a": 0, "a2s": 0, "flush": 0}


async def wrapt_s2a(wrapped, instance, args, kwargs):  # awaits what it wrapped
    calls["s2a"] += 1
    return await wrapped(*args, **kwargs)


def wrapt_a2s(wrapped, instance, args, kwargs):
    calls["a2s"] += 1
    return wrapped(*args, **kwargs)


def wrapt_agent():
    wrapt.wrap_function_wrapper(sync, "SyncToAsync.__call__", wrapt_s2a)
    wrapt.wrap_function_wrapper(sync, "AsyncToSync.__call__", wrapt_a2s)


def functions_agent():  # hand-written monkeypatches, over closures
    s2a = sync.SyncToAsync.__call__
    a2s = sync.AsyncToSync.__call__

    async def patched_s2a(self, *args, **kwargs):
        calls["s2a"] += 1
        return await s2a(self, *args, **kwargs)

    @functools.wraps(a2s)  # as Sentry's
    def patched_a2s(*args, **kwargs):
        calls["a2s"] += 1
        return a2s(*args, **kwargs)

    sync.SyncToAsync.__call__ = patched_s2a
    sync.AsyncToSync.__call__ = patched_a2s


async def partial_s2a(self, original, *args, **kwargs):
    calls["s2a"] += 1
    return await original(self, *args, **kwargs)


A2S = None


def global_a2s(self, *args, **kwargs):  # calls what a module global holds
    calls["a2s"] += 1
    return A2S(self, *args, **kwargs)


def coroutine_returning(original):
    def s2a(self, *args, **kwargs):  # a sync wrapper: returns the coroutine
        calls["s2a"] += 1
        return original(self, *args, **kwargs)

    return s2a


def stacked_agent():  # four agents, each over the one before
    global A2S
    sync.SyncToAsync.__call__ = functools.partialmethod(partial_s2a, sync.SyncToAsync.__call__)
    A2S = sync.AsyncToSync.__call__
    sync.AsyncToSync.__call__ = global_a2s
    sync.SyncToAsync.__call__ = coroutine_returning(sync.SyncToAsync.__call__)
    functions_agent()
    wrapt_agent()


def flush():  # what an agent sends on its own
    calls["flush"] += 1


def own_crossing_agent():  # makes a crossing of its own, then passes the call on
    s2a = sync.SyncToAsync.__call__

    async def flushing_s2a(self, *args, **kwargs):
        calls["s2a"] += 1
        await s2a(sync.SyncToAsync(flush))  # the agent's own crossing: this line
        return await s2a(self, *args, **kwargs)

    sync.SyncToAsync.__call__ = flushing_s2a


S2A = None


async def wrapt_flushing_s2a(wrapped, instance, args, kwargs):
    calls["s2a"] += 1
    await S2A(sync.SyncToAsync(flush))  # the agent's own crossing: this line
    return await wrapped(*args, **kwargs)


def wrapt_own_crossing_agent():
    global S2A
    S2A = sync.SyncToAsync.__call__
    wrapt.wrap_function_wrapper(sync, "SyncToAsync.__call__", wrapt_flushing_s2a)


class AsyncCallWrapper:  # an agent's wrapper object, holding what it wraps as its own
    def __init__(self, original):
        self._original = original

    def __get__(self, instance, owner):  # bound as a method is: the adapter first
        return self if instance is None else functools.partial(self, instance)

    async def __call__(self, instance, *args, **kwargs):
        calls["s2a"] += 1
        return await self._original(instance, *args, **kwargs)


class CallWrapper(AsyncCallWrapper):
    def __call__(self, instance, *args, **kwargs):
        calls["a2s"] += 1
        return self._original(instance, *args, **kwargs)


def class_based_agent():
    sync.SyncToAsync.__call__ = AsyncCallWrapper(sync.SyncToAsync.__call__)
    sync.AsyncToSync.__call__ = CallWrapper(sync.AsyncToSync.__call__)


def subclass_agent():  # asgiref's adapters replaced by its own subclasses
    class TracedSyncToAsync(sync.SyncToAsync):
        async def __call__(self, *args, **kwargs):
            calls["s2a"] += 1
            return await super().__call__(*args, **kwargs)

    class TracedAsyncToSync(sync.AsyncToSync):
        def __call__(self, *args, **kwargs):
            calls["a2s"] += 1
            return super().__call__(*args, **kwargs)

    sync.SyncToAsync = TracedSyncToAsync
    sync.AsyncToSync = TracedAsyncToSync


AGENTS = {
    "class-based": class_based_agent,
    "subclass": subclass_agent,
    "wrapt": wrapt_agent,
    "functions": functions_agent,
    "stacked": stacked_agent,
    "own-crossing": own_crossing_agent,
    "wrapt-own-crossing": wrapt_own_crossing_agent,
}
"""

_SHAPES_RUN = """
    import asyncio, json, os
    import django
    import agent_shapes

    style, order = os.environ["AGENT_STYLE"], os.environ["AGENT_ORDER"]
    if order == "before":
        agent_shapes.AGENTS[style]()
    django.setup()  # hopwatch installs here (its app's ready())
    if order == "after":
        agent_shapes.AGENTS[style]()
    from django.core.asgi import get_asgi_application
    from django.core.wsgi import get_wsgi_application
    from django.db import connection
    from tests.helpers import asgi_call, wsgi_environ

    connection.creation.create_test_db(verbosity=0)  # the app's table, for the ORM's view
    asgi_app, wsgi_app = get_asgi_application(), get_wsgi_application()
    statuses = []
    for path in json.loads(os.environ["ROUTES"]):
        statuses.append(asyncio.run(asgi_call(asgi_app, path)).status)
        started = []
        body = wsgi_app(wsgi_environ(path), lambda status, headers, exc_info=None: started.append(status))
        b"".join(body)
        body.close()
        statuses.append(started[0])
    print(json.dumps({"served": statuses, "calls": agent_shapes.calls}))
"""

#: Each served under ASGI, then WSGI: middleware hooks, a view run through either
#: adapter, async_to_sync and sync_to_async made by the user's code, the async ORM.
_ROUTES = ["/async/", "/sync/", "/nested/", "/orm/count/"]


def _run_shapes(tmp_path: Path, style: str, order: str) -> tuple[dict, list[dict]]:
    (tmp_path / "agent_shapes.py").write_text(_SHAPES)
    log = tmp_path / f"{style}-{order}.jsonl"
    env_script = (
        f"import os\nos.environ.update(AGENT_STYLE={style.removesuffix('-pure')!r},"
        f" AGENT_ORDER={order!r}, ROUTES={json.dumps(json.dumps(_ROUTES))})\n"
    )
    if style.endswith("-pure"):  # wrapt's pure-Python wrappers: frames of their own
        env_script += "os.environ['WRAPT_DISABLE_EXTENSIONS'] = '1'\n"
    settings = {"OUTPUT": str(log), "SITES_LIMIT": 50}  # every site, however long it took
    done = _python(tmp_path, settings, env_script + textwrap.dedent(_SHAPES_RUN))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["served"] == [200, "200 OK"] * len(_ROUTES)
    return result, _lines(log)


def _site_order(site: tuple) -> tuple:
    """(site, kind, direction, call site or None, count), in an order that holds
    where a site and kind come with and without a call site."""
    return (*site[:3], site[3] or "", site[4])


def _causes(lines: list[dict]) -> list[tuple]:
    """Each line's route and interface, and its sites: every field but the times."""
    return [
        (
            line["route"],
            line["interface"],
            sorted(
                (
                    (s["site"], s["kind"], s["direction"], s.get("call_site"), s["count"])
                    for s in line["sites"]
                ),
                key=_site_order,
            ),
        )
        for line in lines
    ]


@pytest.fixture(scope="module")
def causes_without_agent(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    result, lines = _run_shapes(tmp_path_factory.mktemp("shapes"), "none", "none")
    assert result["calls"] == {"s2a": 0, "a2s": 0, "flush": 0}
    causes = _causes(lines)
    by_request = {(route, interface): sites for route, interface, sites in causes}
    views = "tests/testapp/views.py"
    # what the comparisons below rest on, exactly
    assert [(route, interface) for route, interface, _sites in causes] == [
        (route, interface) for route in _ROUTES for interface in ("asgi", "wsgi")
    ]
    assert ("QuerySet.acount", "orm", "sync_to_async", f"{views}:94 in orm_count_view", 1) in (
        by_request[("/orm/count/", "asgi")]
    )
    nested = by_request[("/nested/", "asgi")]
    assert ("tests.testapp.views._middle", "other", "sync_to_async", f"{views}:77 in nested_view", 1) in nested
    assert ("tests.testapp.views._deepest", "other", "async_to_sync", f"{views}:72 in _middle", 1) in nested
    assert ("tests.testapp.views._noop", "other", "sync_to_async", f"{views}:68 in _deepest", 1) in nested
    hooks = [s for s in by_request[("/async/", "asgi")] if s[1] == "middleware"]
    assert len(hooks) == 13 and all(s[3] is None for s in hooks)  # startproject's stack
    assert ("tests.testapp.views.async_view", "view", "async_to_sync", None, 1) in (
        by_request[("/async/", "wsgi")]
    )
    return causes


@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize(
    "style", ["wrapt", "wrapt-pure", "functions", "stacked", "class-based", "subclass"]
)
def test_an_agents_wrapper_over_the_adapters_call_is_not_the_call_site(
    tmp_path, style, order, causes_without_agent
):
    result, lines = _run_shapes(tmp_path, style, order)
    # each of the agent's layers saw every crossing the lines count, once
    layers = {"s2a": 4, "a2s": 3} if style == "stacked" else {"s2a": 1, "a2s": 1}
    crossings = {
        "s2a": sum(line["sync_to_async"] for line in lines),
        "a2s": sum(line["async_to_sync"] for line in lines),
    }
    assert crossings == {"s2a": 67, "a2s": 5}
    assert result["calls"] == {key: layers[key] * crossings[key] for key in crossings} | {
        "flush": 0
    }
    assert _causes(lines) == causes_without_agent


@pytest.mark.parametrize(
    ("style", "line"), [("own-crossing", 82), ("wrapt-own-crossing", 93)]
)
def test_a_crossing_an_agents_wrapper_makes_of_its_own_is_the_wrappers(
    tmp_path, style, line, causes_without_agent
):
    """An agent's wrapper over hopwatch's ``SyncToAsync.__call__`` that, before
    passing the call on, makes a crossing of its own with another adapter: that one
    is the wrapper's (its line), and the one passed on is as without the agent.
    Before, the wrapper's own crossing was read from the wrapper's caller (the
    user's line seemed to make two crossings, a signal's send became a cause)."""
    result, lines = _run_shapes(tmp_path, style, "after")
    function = "flushing_s2a" if style == "own-crossing" else "wrapt_flushing_s2a"
    own = ("agent_shapes.flush", "other", "sync_to_async", f"agent_shapes.py:{line} in {function}")
    expected = []
    for route, interface, sites in causes_without_agent:
        passed_on = sum(s[4] for s in sites if s[2] == "sync_to_async")
        expected.append(
            (route, interface, sorted([*sites, (*own, passed_on)] if passed_on else sites, key=_site_order))
        )
    assert _causes(lines) == expected
    assert result["calls"] == {"s2a": 67, "a2s": 0, "flush": 67}
