"""The audit's words say what its JSON says: the crossings a change saves or adds, their
time, the worker thread; and it offers no change that saves no crossing yet makes each
request hold a thread."""

from __future__ import annotations

import json

from django.test import override_settings
from django.utils.deprecation import MiddlewareMixin

from hopwatch import audit
from hopwatch.audit import changes

SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
HERE = "tests.test_audit_render_words"
WSGI_LINE = (
    "  1. serve the sync-view endpoints under WSGI (a WSGI server for their routes): a sync"
    " view needs no crossing there: saves 2.5 crossings per request (~{us} µs)"
)


class OnlyExc(MiddlewareMixin):
    """Only process_exception: no crossing on a request that raises nothing."""

    def process_exception(self, request, exception):
        return None


class SyncOnly(MiddlewareMixin):
    sync_capable = True
    async_capable = False

    def process_request(self, request):
        return None


def audited(stack):
    with override_settings(MIDDLEWARE=stack):
        report = audit.audit_settings()
    report.hop_tax = audit.HopTax(100.0, 50.0, 800.0, samples=3, instrumented=False)
    return report


def lead(report) -> list[str]:
    return audit.render_to_string(report, "text").split("\n\n")[1].splitlines()[1:]


def test_no_change_is_offered_that_saves_no_crossing_and_pins_a_thread():
    """Before: 'list a subclass of OnlyExc ... costs -0.0 more crossings per request
    (~-50 µs), but frees the worker thread each ASGI request holds', then '     ; a
    worker thread is then held for each request', where the JSON said 0 crossings, 50 µs
    saved (cheaper crossings), pins_thread true, frees_thread false."""
    report = audited([SESSION, f"{HERE}.OnlyExc"])
    assert lead(report) == [
        WSGI_LINE.format(us=250),
        "     ASGI sync view 5 -> 0; no thread held",
        "needs nothing: #2 OnlyExc",
        "Django's own middleware (#1): nothing to change in them; a chain-wide change above"
        " is what removes their hops",
    ]
    found = json.loads(audit.render_to_string(report, "json"))["changes"]
    assert [change["change"] for change in found] == [changes.WSGI_SYNC_VIEWS]


def test_a_trade_that_frees_a_thread_says_what_it_costs():
    """Rewriting a sync-only middleware that is last: as many crossings, dearer ones (an
    async_to_sync becomes a sync_to_async), and no thread held any more."""
    report = audited([SESSION, f"{HERE}.SyncOnly"])
    assert lead(report)[:4] == [
        WSGI_LINE.format(us=225),
        "     ASGI sync view 5 -> 0; a worker thread is then held for each request",
        "  2. rewrite #2 SyncOnly natively async (sync and async capable, no MiddlewareMixin"
        " hooks; docs/audit.md in hopwatch's source distribution has the pattern): as many crossings per request (~50 µs more),"
        " but frees the worker thread each ASGI request holds",
        "     no thread held",
    ]
    trade = json.loads(audit.render_to_string(report, "json"))["changes"][1]
    assert trade["saving"]["hops_per_request"] == 0.0
    assert trade["saving"]["us_per_request"] == -50.0
    assert trade["frees_thread"] and not trade["pins_thread"]


def test_a_saving_that_frees_a_thread_says_both():
    report = audited([f"{HERE}.SyncOnly", SESSION])
    assert lead(report)[4] == (
        "  3. rewrite #1 SyncOnly natively async (sync and async capable, no MiddlewareMixin"
        " hooks; docs/audit.md in hopwatch's source distribution has the pattern): saves 2.0 crossings per request (~150 µs),"
        " and frees the worker thread each ASGI request holds"
    )


class Hooked(MiddlewareMixin):
    def process_request(self, request):
        return None



def test_wsgi_for_sync_views_says_what_they_cost_there_and_is_a_trade_when_dearer():
    """An async-only middleware keeps the chain async under WSGI: a sync view there still
    crosses, the first crossing on a new event loop each request (measured: 14 crossings
    under gunicorn behind startproject's stack). Before: 'a sync view needs no crossing
    there', listed first as a saver while priced as a net cost. (The chain-wide change
    leads since it is offered above an async-only middleware listed last: it saves as many
    crossings as the rewrite, cheaper ones, for a thread held.)"""
    report = audited([SESSION, f"{HERE}.Hooked", "tests.testapp.middleware.AsyncOnlyMiddleware"])
    assert report.predicted("wsgi", "sync_view") == 5
    assert lead(report)[:5] == [
        "  1. list a subclass of Hooked (#2, the last in MIDDLEWARE that can run sync;"
        " #3 AsyncOnlyMiddleware below it is async only) with async_capable = False in its"
        " place: Django then runs every middleware down to it sync under ASGI, one crossing in"
        " and one out instead of a hop per hook: saves 1.0 crossings per request (~150 µs)",
        "     ASGI async view 5 -> 4, ASGI sync view 6 -> 5, WSGI async view 6 -> 3, WSGI sync"
        " view 5 -> 2; a worker thread is then held for each request",
        "  2. rewrite #2 Hooked natively async (sync and async capable, no MiddlewareMixin"
        " hooks; docs/audit.md in hopwatch's source distribution has the pattern): saves 1.0 crossings per request (~100 µs)",
        "     ASGI async view 5 -> 4, ASGI sync view 6 -> 5, WSGI async view 6 -> 5, WSGI sync"
        " view 5 -> 4; no thread held",
        "  3. serve the sync-view endpoints under WSGI (a WSGI server for their routes): a sync"
        " view still makes 5 crossings there, a new event loop per request among them: saves"
        " 0.5 crossings per request, but they cost ~300 µs more: a trade, not a saving",
    ]
    found = json.loads(audit.render_to_string(report, "json"))["changes"]
    assert [change["change"] for change in found] == [
        changes.SYNC_CHAIN,
        changes.NATIVE_ASYNC,
        changes.WSGI_SYNC_VIEWS,
    ]
    assert found[2]["saving"] == {
        "hops_per_request": 0.5,
        "us_per_request": -300.0,
        "total_ms": None,
    }
    # what its second line said when it was second ("ASGI sync view 6 -> 5; no thread held")
    assert found[2]["hops"]["asgi"]["sync_view"] == {"before": 6, "after": 5}
    assert not found[2]["pins_thread"]


def test_the_sync_only_explanation_says_making_it_capable_is_a_trade():
    """[B] said "Make it sync and async capable" while the change list above priced that
    very rewrite as costing crossings (startproject's stack with it last: 5 -> 15)."""
    text = audit.render_to_string(audited([SESSION, f"{HERE}.SyncOnly"]), "text")
    (explained,) = [line for line in text.splitlines() if line.startswith("[B] ")]
    assert "Make it sync and async capable" not in explained
    assert "frees the thread" in explained and "a trade, not a saving" in explained


def test_the_how_to_code_fits_80_columns():
    """The pattern the audit prints (indented by four) had an 84-character line, which
    an 80-column terminal wrapped mid-comment."""
    from hopwatch.audit.render import PATTERN

    assert max(len("    " + line) for line in PATTERN.splitlines()) <= 80
