"""A ``SyncToAsync`` subclass with a ``thread_handler`` of its own, one adapter shared
by overlapping calls (channels' ``@database_sync_to_async`` on a module-level
function): each crossing keeps its own thread and timings.

asgiref binds the subclass's ``thread_handler`` in the caller's thread; it calls
asgiref's through ``super()`` in the worker thread. hopwatch adopts the subclass on
its first crossing (its function gets hopwatch's thread_handler around it, as
``SyncToAsync``'s has), so the binding carries the hop. Before, the hop waited for
the ``super()`` binding in a store keyed by the adapter: two overlapping calls of
one adapter got each other's figures (one with no run and no thread, the other with
the first's run and thread and a resume as long as a run), and concurrent requests
one another's threads.

Real requests through Django's ``ASGIHandler`` and ``WSGIHandler`` (the view is
tests/testapp/views_threads.py's ``own_handler_gather_view``). The sleeps give each
figure a floor; the ceilings are generous (a loaded machine), the counts exact.
``uninstall()`` and ``install()`` run in a child process of their own, so the
subclass is fresh there (never adopted before its first request).
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
import types
from pathlib import Path

import pytest
from asgiref.sync import SyncToAsync
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from hopwatch import _hotpath
from hopwatch.testing import count_hops
from tests.helpers import asgi_call, asgi_request, wsgi_request
from tests.test_lifecycle import _lines, _python
from tests.testapp.views_threads import NAP, OWN_NAPS

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]
PATH = "/threads/own-handler-gather/"
#: the crossings Django's ASGIHandler makes itself around a request (none under WSGI)
HANDLER_S2A = {"asgi": 2, "wsgi": 0}

pytestmark = pytest.mark.django_db(transaction=True)


def assert_each_crossing_its_own(line: dict, threads: dict, interface: str) -> None:
    """The line of one request to PATH, whose view answered ``threads``: each of the
    four calls is one crossing with the thread it ran on and its own figures."""
    assert line["sync_to_async"] == len(OWN_NAPS) * 2 + HANDLER_S2A[interface]
    assert line["async_to_sync"] == (1 if interface == "wsgi" else 0)
    (site,) = [site for site in line["sites"] if site["site"].endswith("._own_nap")]
    assert site["count"] == len(OWN_NAPS) * 2
    naps = [entry for entry in line["detail"] if entry["site"].endswith("._own_nap")]
    assert len(naps) == len(OWN_NAPS) * 2
    for entry in naps:
        assert entry["outcome"] == "ok"
        assert entry["wait_ms"] + entry["run_ms"] + entry["resume_ms"] <= line["duration_ms"]

    # On the pool, side by side: a thread each, the one that call answered.
    pool = [entry for entry in naps if entry["thread_sensitive"] is False]
    assert len(set(threads["pool"])) == len(OWN_NAPS)
    assert sorted(entry["thread"] for entry in pool) == sorted(threads["pool"])
    for seconds, thread in zip(OWN_NAPS, threads["pool"], strict=True):
        (entry,) = [entry for entry in pool if entry["thread"] == thread]
        assert entry["run_ms"] >= seconds * 1000
        # queued and handed back in far less than the sleep (before: the other call's
        # run, or no run at all)
        assert entry["wait_ms"] < seconds * 1000
        assert entry["resume_ms"] < seconds * 1000

    # Thread-sensitive: one after the other on the request's thread, in call order.
    sensitive = sorted(
        (entry for entry in naps if entry["thread_sensitive"] is True),
        key=lambda entry: entry["at_ms"],
    )
    (request_thread,) = set(threads["sensitive"])
    assert [entry["thread"] for entry in sensitive] == [request_thread] * len(OWN_NAPS)
    for seconds, entry in zip(OWN_NAPS, sensitive, strict=True):
        assert entry["run_ms"] >= seconds * 1000
        assert entry["resume_ms"] < seconds * 1000
    first, second = sensitive
    assert first["wait_ms"] < OWN_NAPS[0] * 1000
    # the second started once the first had ended (the thread ran one at a time)
    first_end = first["at_ms"] + first["wait_ms"] + first["run_ms"]
    assert second["at_ms"] + second["wait_ms"] >= first_end - 0.01


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_one_adapter_awaited_twice_at_once_times_each_crossing(log_lines, interface):
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"DETAIL": True}):
        body = asgi_request(PATH).body if interface == "asgi" else wsgi_request(PATH)[1]
    (line,) = log_lines.parsed()
    assert_each_crossing_its_own(line, json.loads(body), interface)


def test_concurrent_requests_through_one_adapter_keep_their_own_crossings(log_lines):
    # Three requests at once, each gathering two calls of each shared adapter: every
    # request's line counts its own calls, on the threads its own calls ran on.
    ids = [f"own-handler-{n}" for n in range(3)]

    async def main() -> list:
        app = ASGIHandler()
        calls = (asgi_call(app, PATH, headers=[(b"x-request-id", rid.encode())]) for rid in ids)
        return await asyncio.gather(*calls)

    with override_settings(MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"DETAIL": True}):
        results = asyncio.run(main())
    lines = {line["request_id"]: line for line in log_lines.parsed()}
    assert sorted(lines) == ids
    for rid, result in zip(ids, results, strict=True):
        assert_each_crossing_its_own(lines[rid], json.loads(result.body), "asgi")


class _Forwarding:
    """A thread_handler that is not a function: binds one that calls asgiref's."""

    def __get__(self, adapter, owner=None):
        return types.MethodType(_forward, adapter)


def _forward(adapter, *args, **kwargs):
    return SyncToAsync.thread_handler(adapter, *args, **kwargs)


def test_a_thread_handler_that_is_not_a_function_is_left_alone():
    # Not adopted: the class keeps its attribute, and its crossings are counted, each
    # its own, with no run figures (nothing of hopwatch's is bound for them).
    class Forwarding(SyncToAsync):
        thread_handler = _Forwarding()

    before = dict(vars(Forwarding))
    adapter = Forwarding(time.sleep, thread_sensitive=False)

    async def twice() -> None:
        await asyncio.gather(adapter(NAP), adapter(NAP))

    with count_hops() as hops:
        asyncio.run(twice())
        asyncio.run(twice())
    after = dict(vars(Forwarding))
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)
    assert len(hops) == 4
    assert [(hop.started_ns, hop.thread_id) for hop in hops.hops()] == [(0, 0)] * 4
    assert all(hop.resumed_ns > hop.called_ns > 0 for hop in hops.hops())


# --- uninstall() and install(), in a process of its own ------------------------------------

_LIFECYCLE = """
    import asyncio, json, logging, os, types
    import django
    django.setup()  # hopwatch installs here (its app's ready())
    import hopwatch
    from hopwatch import _hotpath
    from django.conf import settings
    from django.core.asgi import get_asgi_application
    from tests.helpers import asgi_call
    from tests.testapp.views_threads import OwnHandlerSyncToAsync as Own

    settings.MIDDLEWARE = ["hopwatch.middleware.HopwatchMiddleware"]
    app = get_asgi_application()
    warned = []

    class Warnings(logging.Handler):
        def emit(self, record):
            warned.append(record.getMessage())

    logging.getLogger("hopwatch").addHandler(Warnings(logging.WARNING))

    def serve():
        return json.loads(asyncio.run(asgi_call(app, "/threads/own-handler-gather/")).body)

    def state():
        return dict(vars(Own))

    def identical(one, other):
        return one.keys() == other.keys() and all(one[k] is other[k] for k in one)

    result = {"implementation": _hotpath.IMPLEMENTATION}
    pristine = state()
    function = pristine["thread_handler"]
    result["function_at_start"] = type(function) is types.FunctionType
    answers = [serve()]  # the first crossing adopts the class, before asgiref's first step
    adopted = Own.__dict__["thread_handler"]
    result["adopted"] = adopted is not function and adopted.__wrapped__ is function
    result["only_thread_handler_changed"] = identical(
        {k: v for k, v in state().items() if k != "thread_handler"},
        {k: v for k, v in pristine.items() if k != "thread_handler"},
    )
    if os.environ.get("WRAP_AFTER"):
        import wrapt
        calls = []

        def agent(wrapped, instance, args, kwargs):
            calls.append(1)
            return wrapped(*args, **kwargs)

        wrapt.wrap_function_wrapper(Own, "thread_handler", agent)
        theirs = Own.__dict__["thread_handler"]
        answers.append(serve())
        hopwatch.uninstall()
        result["left_in_place"] = Own.__dict__["thread_handler"] is theirs
        answers.append(serve())  # no line
        hopwatch.install()
        result["no_second_layer"] = (
            Own.__dict__["thread_handler"] is theirs and theirs.__wrapped__ is adopted
        )
        answers.append(serve())
        result["agent_calls"] = len(calls)
    elif os.environ.get("DELETE_AFTER"):
        hopwatch.uninstall()
        del Own.thread_handler  # the subclass drops its override while uninstalled
        hopwatch.install()  # nothing of Own's to adopt: asgiref's, patched, serves it
        result["nothing_adopted"] = "thread_handler" not in vars(Own)
        answers.append(serve())
    else:
        hopwatch.uninstall()
        result["restored"] = identical(state(), pristine)
        answers.append(serve())  # no line, and nothing adopted while uninstalled
        result["still_restored"] = identical(state(), pristine)
        hopwatch.install()  # adopts it again, before any crossing
        result["adopted_again"] = Own.__dict__["thread_handler"] is adopted
        answers.append(serve())
        hopwatch.uninstall()
        result["restored_again"] = identical(state(), pristine)
    result["answers"] = answers
    result["warned"] = warned
    print(json.dumps(result))
"""


def _lifecycle(
    tmp_path: Path, wrap_after: bool = False, delete_after: bool = False
) -> tuple[dict, list[dict]]:
    log = tmp_path / "lines.jsonl"
    script = "import os\n"
    if wrap_after:
        script += "os.environ['WRAP_AFTER'] = '1'\n"
    if delete_after:
        script += "os.environ['DELETE_AFTER'] = '1'\n"
    script += textwrap.dedent(_LIFECYCLE)
    done = _python(tmp_path, {"OUTPUT": str(log), "DETAIL": True}, script)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["implementation"] == _hotpath.IMPLEMENTATION  # the child's hop path is ours
    return result, _lines(log)


def test_uninstall_gives_the_subclass_its_function_back_and_install_adopts_it_again(tmp_path):
    result, lines = _lifecycle(tmp_path)
    assert result["function_at_start"]
    assert result["adopted"]
    assert result["only_thread_handler_changed"]
    assert result["restored"] and result["still_restored"]
    assert result["adopted_again"]
    assert result["restored_again"]
    assert result["warned"] == []
    first, _uninstalled, reinstalled = result["answers"]
    # no line while uninstalled; the very first request's crossings had their figures
    # (the class was adopted before asgiref's first step), and so had the last's
    assert [line["route"] for line in lines] == [PATH, PATH]
    assert_each_crossing_its_own(lines[0], first, "asgi")
    assert_each_crossing_its_own(lines[1], reinstalled, "asgi")


def test_uninstall_leaves_a_wrapper_put_over_the_adopted_function(tmp_path):
    pytest.importorskip("wrapt")
    # An agent wraps the subclass's thread_handler after hopwatch adopted it (wrapt
    # binds what it wraps: hopwatch's, which takes the hop). uninstall() leaves the
    # agent's wrapper, and hopwatch's layer under it, in place (and says so); install()
    # adds no second layer: each crossing is counted once, with its figures.
    result, lines = _lifecycle(tmp_path, wrap_after=True)
    assert result["adopted"]
    assert result["left_in_place"]
    assert result["no_second_layer"]
    (warning,) = result["warned"]
    assert "OwnHandlerSyncToAsync.thread_handler was replaced by other code" in warning
    first, wrapped, _uninstalled, reinstalled = result["answers"]
    assert result["agent_calls"] == 3 * len(OWN_NAPS) * 2  # it saw every call, uninstalled too
    assert [line["route"] for line in lines] == [PATH, PATH, PATH]
    assert_each_crossing_its_own(lines[0], first, "asgi")
    assert_each_crossing_its_own(lines[1], wrapped, "asgi")
    assert_each_crossing_its_own(lines[2], reinstalled, "asgi")


def test_install_after_the_adopted_function_was_deleted_while_uninstalled(tmp_path):
    """The subclass's own thread_handler deleted while hopwatch was uninstalled:
    install() has nothing of the subclass's to adopt (it raised KeyError, and Django's
    process with it), and its crossings are counted through asgiref's, as any
    SyncToAsync's are."""
    result, lines = _lifecycle(tmp_path, delete_after=True)
    assert result["adopted"]
    assert result["nothing_adopted"]
    assert result["warned"] == []
    first, after = result["answers"]
    assert [line["route"] for line in lines] == [PATH, PATH]
    assert_each_crossing_its_own(lines[0], first, "asgi")
    assert_each_crossing_its_own(lines[1], after, "asgi")
