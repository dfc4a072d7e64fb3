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
"""

from __future__ import annotations

import json
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
    done = _python(tmp_path, {"OUTPUT": str(log)}, env_script + _dedented_agent())
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
def without_agent(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    tmp_path = tmp_path_factory.mktemp("none")
    result, lines = _run(tmp_path, "none")
    assert result["served"] == _OK
    assert result["seen"]["asgi"] == result["seen"]["thread_handler"] == 0
    return _counts(lines)


@pytest.mark.parametrize("order", ["before", "after"])
def test_an_agent_wrapping_what_hopwatch_wraps(tmp_path, order, without_agent):
    result, lines = _run(tmp_path, order)
    assert result["served"] == _OK
    assert [(line["route"], line["interface"]) for line in lines] == _SERVED
    assert _counts(lines) == without_agent
    assert without_agent[0][3] == 15  # startproject's middleware, an async view under ASGI
    seen = result["seen"]
    assert (seen["asgi"], seen["wsgi"]) == (2, 2)
    # every sync_to_async went through the agent's thread_handler, which found its
    # keyword on the call (and took it off before the app's function saw it)
    crossings = sum(line["sync_to_async"] for line in lines)
    assert seen["thread_handler"] == seen["popped"] >= crossings > 0


def test_uninstall_leaves_an_agents_later_wrappers_and_install_adds_no_second_layer(
    tmp_path, without_agent
):
    result, lines = _run(tmp_path, "after", uninstall=True)
    assert result["served"] == result["uninstalled"] == result["reinstalled"] == _OK
    # the agent saw every request, uninstalled too: its wrappers stayed
    assert (result["seen"]["asgi"], result["seen"]["wsgi"]) == (6, 6)
    # no line while uninstalled; after install(), the same counts as before (not twice)
    assert _counts(lines) == without_agent * 2
