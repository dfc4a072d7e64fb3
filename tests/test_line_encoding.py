"""The request line written in C (``encode_head``) is byte for byte the reference's.

The emitter writes a line's head (up to ``sites``) with the C accelerator's
``encode_line`` when it is built, and ``build_event`` + orjson otherwise. The
two must agree on every byte but the timestamp's: key order, number formats,
string escapes, optional fields. These tests hold the C path to the reference
on real requests and on records with hostile values; on the pure-Python run
there is no C path, which the first test checks.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import override_settings

from hopwatch import _emit, _hotpath
from hopwatch._recorder import RequestRecord, intern_cause
from hopwatch.conf import hopwatch_settings
from tests.helpers import asgi_request, capture, wsgi_request

C_PATH = _hotpath.IMPLEMENTATION == "c"
HOPWATCH_MIDDLEWARE = "hopwatch.middleware.HopwatchMiddleware"
needs_c = pytest.mark.skipif(not C_PATH, reason="the C line encoder is part of the accelerator")

_TIMESTAMP = re.compile(r'"timestamp":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)"')


def _render(line: Any) -> str:
    return str(_emit._renderer("hopwatch")(None, "info", {_emit._WHOLE_LINE: line}))


def _both(record: RequestRecord, **options: Any) -> tuple[str, str]:
    """(the C line, the reference line), timestamps blanked."""
    encoded = _emit.encode_head(record, **options)
    assert encoded is not None
    fast = _render(encoded)
    reference = _render(_emit.build_event(record, **options))
    return _TIMESTAMP.sub('"timestamp":"T"', fast), _TIMESTAMP.sub('"timestamp":"T"', reference)


def test_the_c_encoder_is_there_exactly_when_the_accelerator_is():
    record = RequestRecord("asgi")
    assert (_emit.encode_head(record) is not None) is C_PATH


@needs_c
@pytest.mark.parametrize(
    "path",
    ["/async/", "/sync/", "/hops/7/", "/nested/", "/orm/batch/", "/threads/gather-pool/", "/nope/"],
)
def test_real_asgi_requests_encode_as_the_reference(path, db):
    with capture() as records:
        asgi_request(path)
    assert records
    for record in records:
        fast, reference = _both(record)
        assert fast == reference
        assert json.loads(fast)["hops"] == record.count


@needs_c
def test_a_wsgi_request_with_detail_and_few_sites_encodes_as_the_reference(db):
    with capture() as records:
        wsgi_request("/hops/12/")
    (record,) = records
    fast, reference = _both(record, sites_limit=1, detail_limit=5)
    assert fast == reference
    line = json.loads(fast)
    assert line["sites_dropped"] >= 1 and len(line["detail"]) == 5


def _record_with(site: str, route: str, view: Any, method: str = "GET") -> RequestRecord:
    record = RequestRecord("asgi")
    record.method, record.route, record.view, record.status = method, route, view, None
    record.request_id = 'id"\\\n'
    record.ended_ns = record.started_ns + 1_234_567_891
    cause = intern_cause("middleware", site, 'views.py:3 in "quoted"\t')
    for wall in (0, 499, 500, 1_000_000, 987_654_321_987):
        hop = _hotpath.Hop("sync_to_async", cause, True, None, record, threading.get_ident())
        hop.resumed_ns = hop.called_ns + wall
        _hotpath.finish_hop(hop)
    return record


HOSTILE = [
    'a"b\\c',
    "tab\there\nnewline\r\x00\x01\x1f\x7f",
    "\b\f back and form feed",
    "ünïcödé ✓ \u2028\u2029 \U0001f600",
    "</script><script>alert(1)</script>",
    "",
    # long runs: escapes at every offset within and across 8-byte words
    "".join(f"{'x' * n}{c}" for n in range(17) for c in '"\\\x01\x1f '),
    "é" * 9 + "\x00" + "✓" * 5 + '"' + "\U0001f600" * 3 + "\\",
]


@needs_c
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_are_escaped_as_the_reference_escapes_them(text):
    record = _record_with(site=text, route=text, view=text, method=text)
    fast, reference = _both(record)
    assert fast == reference
    line = json.loads(fast)
    assert line["route"] == (text or _emit.UNRESOLVED) and line["sites"][0]["site"] == text
    assert "\n" not in fast  # one line, whatever the values


@needs_c
def test_missing_values_and_milliseconds_are_formatted_as_the_reference():
    record = _record_with(site="s", route="/r/", view=None)
    fast, reference = _both(record)
    assert fast == reference
    line = json.loads(fast)
    assert line["view"] is None and line["status"] is None
    assert line["duration_ms"] == 1234.568
    assert line["sites"][0]["ms"] == 987655.323  # 0 + 0.0 + 0.001 + 1.0 + 987654.322
    assert '"pinned_ms":0.0,' in fast


@needs_c
@pytest.mark.parametrize("ns", [0, 1, 499, 500, 1_499, 1_500, 10_000, 123_456_789, 10**15 + 7])
def test_every_millisecond_value_is_pythons_repr_of_the_rounded_value(ns):
    record = RequestRecord("asgi")
    record.ended_ns = record.started_ns + ns
    line = _render(_emit.encode_head(record))
    assert f'"duration_ms":{((ns + 500) // 1000) / 1000!r},' in line


@pytest.mark.parametrize(
    ("ns", "ms"), [(499, 0.0), (500, 0.001), (1_500, 0.002), (2_500, 0.003), (2_499, 0.002)]
)
def test_the_reference_rounds_a_half_microsecond_up_as_the_c_encoder_does(ns, ms):
    """The pure-Python line (build_event, all a pure-Python run writes) rounds a tie of
    half a microsecond up, (ns + 500) // 1000 as the C encoder does: not to even as
    round() would (2.5 µs -> 0.003, not 0.002), nor down."""
    record = RequestRecord("asgi")
    record.ended_ns = record.started_ns + ns
    assert _emit.build_event(record)["duration_ms"] == ms
    if C_PATH:
        fast, reference = _both(record)
        assert fast == reference


@needs_c
def test_the_timestamp_is_now_in_utc_to_the_microsecond():
    record = RequestRecord("asgi")
    before = datetime.now(UTC).replace(microsecond=0)
    line = _render(_emit.encode_head(record))
    after = datetime.now(UTC)
    (text,) = _TIMESTAMP.findall(line)
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert before <= stamp <= after


@needs_c
def test_a_value_the_c_encoder_does_not_write_falls_back_to_the_reference(tmp_path):
    """A view name that is not a str (a project's odd resolver) is written as the
    reference writes it, through the emitter, not dropped."""
    record = _record_with(site="s", route="/r/", view=None)
    record.view = 42  # type: ignore[assignment]
    with pytest.raises(TypeError):
        _emit.encode_head(record)
    log = tmp_path / "line.log"
    with override_settings(HOPWATCH={"OUTPUT": str(log)}):
        emitter = _emit.Emitter(hopwatch_settings, lambda: None)
        emitter(record)
        emitter.close()
    line = json.loads(log.read_text())
    assert line["view"] == 42 and line["route"] == "/r/"


def _usual(record: RequestRecord) -> str | None:
    from hopwatch import _executors

    head = record.encode_usual(
        _emit._HEAD_PREFIX, _emit._USUAL, _executors.single_thread_ids(), 10
    )
    return None if head is None else _TIMESTAMP.sub('"timestamp":"T"', head)


def _general(record: RequestRecord) -> str:
    """encode_line with every argument worked out in Python (encode_head's other path)."""
    from hopwatch import _executors

    facts = _executors.thread_facts(record)
    head = record.encode_line(
        _emit._HEAD_PREFIX,
        *_emit._request_fields(record, 200, False),
        record.thread_count,
        _emit._pinned_site(record),
        facts.executors,
        facts.max_in_flight,
        facts.concurrent_ns,
        facts.db_connections,
        10,
    )
    return _TIMESTAMP.sub('"timestamp":"T"', head)


@needs_c
@pytest.mark.parametrize(
    ("path", "middleware", "usual"),
    [
        # one thread, no crossing inside another, a resolved route: the usual request
        ("/async/", None, True),
        ("/hops/7/", None, True),
        ("/orm/batch/", None, True),
        # async_to_sync crossings (a sync-only middleware pins a thread), nesting,
        # crossings on several threads, no route: worked out in Python
        ("/async/", [HOPWATCH_MIDDLEWARE, "tests.testapp.middleware.SyncOnlyMiddleware"], False),
        ("/nested/", None, False),
        ("/threads/gather-pool/", None, False),
        ("/nope/", None, False),
    ],
)
def test_the_usual_request_is_worked_out_in_one_c_call(path, middleware, usual, db):
    """The usual request's line is written by one C call (encode_usual); it must
    be the general path's text, and every other request must go that path."""
    overrides = {"MIDDLEWARE": middleware} if middleware else {}
    with override_settings(**overrides), capture() as records:
        asgi_request(path)
    record = records[-1]
    head = _usual(record)
    assert (head is not None) is usual
    if usual:
        assert head == _general(record)
        assert _TIMESTAMP.sub('"timestamp":"T"', _emit.encode_head(record)[0]) == head


@needs_c
@pytest.mark.parametrize(
    ("path", "usual"),
    [
        # a sync view under WSGI behind sync-capable middleware: no hop at all
        ("/sync/", True),
        ("/nope/", False),  # no route: worked out in Python
    ],
)
def test_a_wsgi_request_without_hops_is_worked_out_in_one_c_call(path, usual, db):
    """A WSGI request whose sync view makes no hop (the usual one under WSGI) is
    written by encode_usual too, with the general path's text: no executor, the
    handler's thread alone, none in flight."""
    with capture() as records:
        wsgi_request(path)
    (record,) = records
    assert record.count == 0 and record.interface == "wsgi"
    head = _usual(record)
    assert (head is not None) is usual
    if usual:
        assert head == _general(record)
        fields = json.loads(head + "}")
        assert (fields["executors"], fields["threads"], fields["max_in_flight"]) == ({}, 1, 0)
        assert (fields["concurrent_ms"], fields["pinned_by"], fields["db_connections"]) == (
            0.0,
            None,
            0,
        )
        assert _TIMESTAMP.sub('"timestamp":"T"', _emit.encode_head(record)[0]) == head


def _single_thread() -> int:
    """The id of asgiref's single sync thread (thread-sensitive work outside any
    ThreadSensitiveContext runs there), started if it was not."""
    import asyncio

    from asgiref.sync import sync_to_async

    return int(asyncio.run(sync_to_async(threading.get_ident)()))


@needs_c
@pytest.mark.parametrize(
    ("interface", "sensitive", "own", "thread", "kind"),
    [
        ("asgi", True, False, "another", "context_thread"),
        ("asgi", True, False, "single", "single_thread"),
        ("wsgi", True, False, "handler", "caller_thread"),
        ("wsgi", True, False, "another", "context_thread"),
        ("asgi", False, False, "another", "default_pool"),
        ("asgi", False, True, "another", "own_executor"),
    ],
)
def test_the_usual_request_names_its_thread_as_the_classifier_does(
    interface, sensitive, own, thread, kind
):
    record = RequestRecord(interface)
    record.method, record.route, record.view, record.status = "GET", "/r/", "v.w", 200
    record.request_id = "0123456789abcdef"  # as the middleware names it
    record.ended_ns = record.started_ns + 5_000_000
    ident = {
        "handler": record.handler_thread_id,
        "single": _single_thread(),
        "another": record.handler_thread_id + 1,
    }[thread]
    cause = intern_cause("orm", "QuerySet.aget")
    for wall in (1_000, 2_000, 3_000):
        hop = _hotpath.Hop("sync_to_async", cause, sensitive, None, record)
        hop.thread_id, hop.own_executor = ident, own
        hop.resumed_ns = hop.called_ns + wall
        _hotpath.finish_hop(hop)
    head = _usual(record)
    assert head is not None
    assert head == _general(record)
    assert json.loads(head + "}")["executors"] == {kind: 3}
