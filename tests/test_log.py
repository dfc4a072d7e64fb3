"""The hopwatch.request log line: golden output, the documented schema, options, privacy."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from django.conf import settings
from django.test import override_settings

from hopwatch import _emit, _errors
from tests.helpers import asgi_request, asgi_scope, capture, wsgi_request

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]
TIMING = {"timestamp", "duration_ms", "hop_ms", "wait_ms", "overhead_ms", "work_ms", "ms", "run_ms", "resume_ms", "thread"}


def normalise(value):
    """Replace the values that differ run to run (times, thread ids) with their type."""
    if isinstance(value, dict):
        return {
            k: (type(v).__name__ if k in TIMING else normalise(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def settings_with(**options):
    return override_settings(HOPWATCH={"OUTPUT": "logging", **options})


# --- golden -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "middleware", "path"),
    [
        ("async_no_middleware", HOPWATCH_ONLY, "/async/"),
        ("sync_no_middleware", HOPWATCH_ONLY, "/sync/"),
        ("error_no_middleware", HOPWATCH_ONLY, "/error/"),
        ("async_default_middleware", None, "/async/"),
    ],
)
def test_golden_lines(name, middleware, path, log_lines):
    overrides = {"MIDDLEWARE": middleware} if middleware else {}
    with override_settings(**overrides), settings_with(SITES_LIMIT=20):
        asgi_request(path, headers=[(b"x-request-id", b"golden-" + name.encode())])
    (line,) = log_lines.parsed()
    # The sites' order among equal times is by time, which varies: sort for the golden.
    line["sites"] = sorted(line["sites"], key=lambda s: (s["kind"], s["site"], s["direction"]))
    if name.startswith("error"):
        # response_for_exception and log_response run in the default thread
        # pool (thread_sensitive=False): one or two pool threads.
        assert line["threads"] in (3, 4)
        line["threads"] = "3 or 4"
    got = normalise(line)
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("HOPWATCH_UPDATE_GOLDEN"):  # then review the diff and commit
        golden.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(golden.read_text())


def test_line_is_compact_json_with_event_first_and_sites_largest_first(log_lines):
    with override_settings(MIDDLEWARE=None or HOPWATCH_ONLY):
        asgi_request("/sync/")
    (raw,) = log_lines.raw
    assert raw.startswith('{"event":"hopwatch.request","schema":1,"timestamp":"')
    assert ", " not in raw.split('"sites"')[0]  # compact separators
    line = json.loads(raw)
    assert line["timestamp"].endswith("Z")
    ms = [site["ms"] for site in line["sites"]]
    assert ms == sorted(ms, reverse=True)
    assert list(line)[-2:] == ["level", "logger"]


# --- the documented schema -------------------------------------------------------------

_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "array": list,
    "boolean": bool,
    "object": dict,
}


def documented_fields() -> dict[str, tuple[tuple[type, ...], bool, bool]]:
    """{field: (types, nullable, optional)} from docs/log-schema.md's tables."""
    fields = {}
    text = (ROOT / "docs" / "log-schema.md").read_text()
    text = text.split("## The `hopwatch.process` line")[0]  # another event's table
    optional_from = text.index("## Optional fields")
    for match in re.finditer(r"^\| `([a-z_\[\].]+)`(?:, `[a-z_]+`)? \| ([^|]+) \|", text, re.M):
        name, kind = match.group(1), match.group(2).strip()
        nullable = "or null" in kind
        optional = "optional" in kind or match.start() > optional_from
        base = kind.split(" or ")[0].split(",")[0].strip()
        if base not in _TYPES:  # a row of another table (site names by kind)
            continue
        types = _TYPES[base]
        fields[name] = (types if isinstance(types, tuple) else (types,), nullable, optional)
    return fields


def check_against_schema(line: dict) -> None:
    fields = documented_fields()
    for name, value in line.items():
        assert name in fields or name in {"level", "logger"}, f"undocumented field {name}"
        if name in fields:
            types, nullable, _optional = fields[name]
            assert (value is None and nullable) or (
                isinstance(value, types) and not isinstance(value, bool)
            ), (name, value)
    required = [n for n, (_, _, optional) in fields.items() if "." not in n and not optional]
    for name in required:
        if "[" not in name:
            assert name in line, f"missing {name}"
    for site in line["sites"]:
        for key, value in site.items():
            types, nullable, _ = fields[f"sites[].{key}"]
            assert isinstance(value, types) or (value is None and nullable), (key, value)


def test_every_field_has_its_documented_type(log_lines, db):
    with settings_with(DETAIL=True):
        asgi_request("/nested/")
        asgi_request("/nope/")
        wsgi_request("/async/")
    lines = log_lines.parsed()
    assert len(lines) == 3
    for line in lines:
        check_against_schema(line)
    assert documented_fields()["status"][1]  # status is documented nullable


def test_the_report_reads_only_documented_fields():
    """The report must not depend on anything outside the contract."""
    documented = set(documented_fields()) | {"level", "logger", "pinned_ms", "profile"}
    source = "\n".join(p.read_text() for p in (ROOT / "src/hopwatch/report").glob("*.py"))
    used = set(re.findall(r'\[\s*"([a-z_]+)"\s*\]|\.get\(\s*"([a-z_]+)"', source))
    names = {a or b for a, b in used}
    field_like = {n for n in names if n in {f.split(".")[-1].strip("[]") for f in documented}}
    assert field_like  # the report does read the line
    site_fields = {f.split(".")[-1] for f in documented if f.startswith("sites[]")}
    for name in field_like:
        assert name in documented or name in site_fields, name


# --- options ---------------------------------------------------------------------------


def test_thresholds(log_lines):
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY):
        with settings_with(MIN_HOPS=3):
            asgi_request("/async/")  # 2 hops: not logged
            asgi_request("/sync/")  # 3 hops: logged
        with settings_with(MIN_HOP_MS=10_000):
            asgi_request("/sync/")  # never that slow
    assert [line["route"] for line in log_lines.parsed()] == ["/sync/"]


def test_sampling(log_lines):
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY):
        with settings_with(SAMPLE_RATE=0.0):
            for _ in range(5):
                asgi_request("/async/")
        assert log_lines.parsed() == []
        with settings_with(SAMPLE_RATE=0.5):
            for _ in range(60):
                asgi_request("/async/")
    lines = log_lines.parsed()
    assert 10 < len(lines) < 50  # p(outside) < 1e-5
    assert all(line["sample_rate"] == 0.5 for line in lines)
    assert all(line["hops"] == 2 for line in lines)  # counting is never sampled


def test_detail_mode_caps_the_list_and_keeps_counts_exact(log_lines):
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with(DETAIL=True, DETAIL_LIMIT=3):
        asgi_request("/hops/7/")
    (line,) = log_lines.parsed()
    assert line["hops"] == 9
    assert len(line["detail"]) == 3 and line["detail_dropped"] == 6
    first = line["detail"][0]
    assert set(first) == {
        "direction", "kind", "site", "call_site", "depth", "thread_sensitive", "new_loop",
        "thread", "wait_ms", "run_ms", "resume_ms", "outcome", "at_ms", "parent", "caller_thread",
        "executor", "thread_started",
    }  # fmt: skip


def test_detail_lists_up_to_a_detail_limit_above_the_thousand_hops_a_record_keeps(log_lines):
    """A record keeps 1000 hops as objects unless told otherwise: DETAIL_LIMIT above
    that was accepted, and ``detail`` still listed 1000 (OpenTelemetry's spans alone
    raised it). Back to the default limit, the next request lists 100 again."""
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY):
        with settings_with(DETAIL=True, DETAIL_LIMIT=1100):
            asgi_request("/hops/1200/")
        with settings_with(DETAIL=True):
            asgi_request("/hops/1200/")
    first, second = log_lines.parsed()
    assert (first["hops"], len(first["detail"]), first["detail_dropped"]) == (1202, 1100, 102)
    assert (second["hops"], len(second["detail"]), second["detail_dropped"]) == (1202, 100, 1102)


def test_detail_turned_off_keeps_a_record_to_its_thousand_hops_again(log_lines):
    """DETAIL off (its DETAIL_LIMIT left at 1100) takes back the hook that raised a
    record's kept hops: 1052 crossings are then counted, 1000 kept, and max_in_flight
    (known only when every crossing is kept) is left off the line."""
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        with settings_with(DETAIL=True, DETAIL_LIMIT=1100):
            asgi_request("/hops/1050/")
        with settings_with(DETAIL=False, DETAIL_LIMIT=1100):
            asgi_request("/hops/1050/")
    first, second = log_lines.parsed()
    assert [len(list(record.hops())) for record in records] == [1052, 1000]
    assert (first["hops"], len(first["detail"]), first["max_in_flight"]) == (1052, 1052, 1)
    assert second["hops"] == 1052
    assert "detail" not in second and "max_in_flight" not in second


def test_sites_limit(log_lines):
    with settings_with(SITES_LIMIT=4):
        asgi_request("/async/")
    (line,) = log_lines.parsed()
    assert len(line["sites"]) == 4 and line["sites_dropped"] == 11
    assert sum(site["count"] for site in line["sites"]) <= line["hops"] == 15


def test_a_line_with_exactly_sites_limit_causes_drops_none(log_lines):
    """/async/ behind the test settings' stack crosses for 15 causes: at SITES_LIMIT 15
    all are listed and the line has no sites_dropped (it appears only when one is left
    out), at 14 one is dropped."""
    for limit in (15, 14):
        with settings_with(SITES_LIMIT=limit):
            asgi_request("/async/")
    whole, cut = log_lines.parsed()
    assert (len(whole["sites"]), whole["hops"]) == (15, 15) and "sites_dropped" not in whole
    assert (len(cut["sites"]), cut["sites_dropped"]) == (14, 1)


def test_a_line_of_one_cause_at_sites_limit_one_drops_none(log_lines, db):
    """The edge at the smallest limit: a request whose one cause is the view's crossing
    (an async view under WSGI, behind hopwatch alone) lists it and has no
    sites_dropped, not ``"sites_dropped": 0``."""
    from django.test import Client

    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with(SITES_LIMIT=1):
        wsgi_request("/async/")
        Client().get("/async/")
    lines = log_lines.parsed()
    assert [(line["interface"], line["hops"], len(line["sites"])) for line in lines] == [
        ("wsgi", 1, 1),
        ("test-client", 1, 1),
    ]
    assert [line["sites"][0]["kind"] for line in lines] == ["view", "view"]
    assert not any("sites_dropped" in line for line in lines)


def test_the_views_crossing_is_on_the_line_whatever_the_limit(log_lines, db):
    """A sync view under ASGI behind startproject's stack: many causes, the view's
    crossing about the quickest of them, and still the one site a line of one lists
    (what `hopwatch audit --logs` reads to tell a sync view from an async one)."""
    with settings_with(SITES_LIMIT=1):  # the test settings' MIDDLEWARE: startproject's
        for _ in range(3):
            asgi_request("/sync/")
    lines = log_lines.parsed()
    assert len(lines) == 3
    for line in lines:
        (site,) = line["sites"]
        assert (site["kind"], site["site"], site["direction"]) == (
            "view", "tests.testapp.views.sync_view", "sync_to_async"
        )  # fmt: skip
        assert line["sites_dropped"] >= 10


def extra_fields(request, record):
    return {"pod": "web-7", "user_id": 42, "hops": "not allowed to replace", "event": "nope"}


def test_extra_fields_hook(log_lines):
    with settings_with(EXTRA_FIELDS="tests.test_log.extra_fields"):
        asgi_request("/async/")
    (line,) = log_lines.parsed()
    assert line["pod"] == "web-7" and line["user_id"] == 42
    assert line["hops"] == 15 and line["event"] == "hopwatch.request"


def test_the_extra_fields_path_is_imported_once_per_settings(log_lines, monkeypatch):
    """Not once per line: a line's hook is the one its settings named when they were read."""
    with settings_with(EXTRA_FIELDS="tests.test_log.extra_fields"):
        asgi_request("/async/")
        monkeypatch.setattr(sys.modules[__name__], "extra_fields", lambda r, rec: {"pod": "x"})
        asgi_request("/async/")
    with settings_with(EXTRA_FIELDS="tests.test_log.extra_fields"):  # new settings: read anew
        asgi_request("/async/")
    assert [line["pod"] for line in log_lines.parsed()] == ["web-7", "web-7", "x"]


class _Unprintable:
    def __str__(self):
        raise RuntimeError("no text for this one")


class _Printable:
    def __str__(self):
        return "printable"


def unwritable_extra_fields(request, record):
    return {
        "pod": "web-7",
        "big": 2**70,
        "nested": {"a": [1, _Printable()]},
        "bad": _Unprintable(),
        # read on the event loop: the lazy user queries, and Django refuses it there
        "user": request.user,
    }


@pytest.mark.internal_errors
def test_an_extra_field_that_cannot_be_written_is_left_out_not_the_line(log_lines, db):
    """The hook's values are encoded as the line is built: one that cannot be
    written is left out and counted. Encoded when the line was rendered, such a
    value lost the whole line, every time, and its errors were never reported."""
    cookie = [(b"cookie", b"sessionid=abcdefghijklmnopqrstuvwxyz123456")]
    with settings_with(EXTRA_FIELDS="tests.test_log.unwritable_extra_fields"):
        for _ in range(2):
            assert asgi_request("/async/", headers=cookie).status == 200
    lines = log_lines.parsed()
    assert len(lines) == 2
    for line in lines:
        assert line["hops"] == 15
        assert (line["pod"], line["big"], line["nested"]) == ("web-7", str(2**70), {"a": [1, "printable"]})
        assert "bad" not in line and "user" not in line
        assert line["hopwatch_errors"] == 2  # each line's two fields left out


def surrogate_extra_fields(request, record):
    return {
        "pod": "web-7",
        "lone": "\ud800",  # a lone surrogate: UTF-8 cannot write it
        "escaped": b"caf\xe9".decode("utf-8", "surrogateescape"),
        "nested": {"name": "\udcff"},
        "\udcff": "its name cannot be written",
        "cafe": "caf\u00e9",
    }


@pytest.mark.internal_errors
def test_an_extra_field_with_a_lone_surrogate_is_left_out_not_the_line(log_lines, db):
    """A value or a field name holding a lone surrogate (text decoded with
    ``surrogateescape``) cannot be written as UTF-8: it is left out and counted, and
    the line is written. Passed through as a plain str, it lost the whole line."""
    with settings_with(EXTRA_FIELDS="tests.test_log.surrogate_extra_fields"):
        for _ in range(2):
            assert asgi_request("/async/").status == 200
    lines = log_lines.parsed()
    assert len(lines) == 2
    for line in lines:
        assert line["hops"] == 15
        assert (line["pod"], line["cafe"]) == ("web-7", "caf\u00e9")
        assert not {"lone", "escaped", "nested", "\udcff"} & set(line)
        assert line["hopwatch_errors"] == 4  # each line's four fields left out


def keyed_extra_fields(request, record):
    return {"tenant": "acme", 7: "seven", None: "none", "caf\u00e9": 1, "\u540d\u524d": "name"}


def test_extra_fields_of_non_ascii_names_are_written_and_names_no_str_are_ignored(log_lines, db):
    """A field name is any str UTF-8 can write ("café" too); a key that is no str (an
    int, None) names no field: it is passed over, and the rest of the line is written,
    with no internal error."""
    with settings_with(EXTRA_FIELDS="tests.test_log.keyed_extra_fields"):
        assert asgi_request("/async/").status == 200
        assert wsgi_request("/sync/")[0] == "200 OK"
    lines = log_lines.parsed()
    assert [line["route"] for line in lines] == ["/async/", "/sync/"]
    for line in lines:
        added = {k: v for k, v in line.items() if k not in _emit.RESERVED}
        assert added == {"tenant": "acme", "caf\u00e9": 1, "\u540d\u524d": "name"}
        assert "hopwatch_errors" not in line


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"x-request-id", b"abc-123")], "abc-123"),
        ([(b"X-Request-Id", b"abc-123")], "abc-123"),
        ([(b"x-request-id", b"bad id\x1b[31m")], None),
        ([(b"x-request-id", b"a"), (b"x-request-id", b"b")], None),  # Django's META: "a,b"
        ([], None),
    ],
)
def test_a_request_the_middleware_never_saw_has_an_id(log_lines, headers, expected):
    """A client that goes away while sending the body: Django stops before the
    middleware chain (RequestAborted in read_body), and the line still names the
    request: with its X-Request-ID when that is a usable id, as the middleware
    would have read it (it was always generated), else an id of 16 hex digits
    (it was "")."""
    import asyncio

    from django.core.handlers.asgi import ASGIHandler

    messages = [{"type": "http.request", "body": b"x" * 1000, "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else await asyncio.Future()

    async def send(message):
        sent.append(message)

    scope = asgi_scope("/async/", "POST", "", headers)
    asyncio.run(ASGIHandler()(scope, receive, send))
    assert sent == []
    (line,) = log_lines.parsed()
    assert (line["method"], line["status"], line["route"]) == ("POST", None, "(unresolved)")
    if expected is None:
        assert re.fullmatch(r"[0-9a-f]{16}", line["request_id"])
    else:
        assert line["request_id"] == expected


def test_a_request_the_middleware_never_saw_reads_no_credential_header(log_lines):
    """REQUEST_ID_HEADER naming a credential is never read, here either."""
    import asyncio

    from django.core.handlers.asgi import ASGIHandler

    messages = [{"type": "http.request", "body": b"x", "more_body": True}, {"type": "http.disconnect"}]

    async def receive():
        return messages.pop(0) if messages else await asyncio.Future()

    async def send(message):
        raise AssertionError(message)

    scope = asgi_scope("/async/", "POST", "", [(b"x-api-key", b"secret-value")])
    with settings_with(REQUEST_ID_HEADER="X-Api-Key"):
        asyncio.run(ASGIHandler()(scope, receive, send))
    (line,) = log_lines.parsed()
    assert "secret-value" not in json.dumps(line)
    assert re.fullmatch(r"[0-9a-f]{16}", line["request_id"])


@pytest.mark.parametrize(
    ("setting", "headers"),
    [
        ("X-Request-ID", [(b"x_request_id", b"under-score")]),  # ignored (CVE-2026-3902)
        ("Content-Length", [(b"content-length", b"1")]),  # filed as CONTENT_LENGTH: never read
        ("X-Requesst-Id", [(b"x-reque\xdft-id", b"sharp-s")]),  # latin-1 "\xdf" upper()s to "SS"
    ],
)
def test_a_request_the_middleware_never_saw_reads_the_header_the_middleware_reads(log_lines, setting, headers):
    """One rule for both: the id of a request Django stopped before the middleware
    chain comes from the header the middleware would have read (the request.META
    key Django files it under), or is generated where the middleware's would be."""
    import asyncio

    from django.core.handlers.asgi import ASGIHandler

    messages = [{"type": "http.request", "body": b"x", "more_body": True}, {"type": "http.disconnect"}]

    async def receive():
        return messages.pop(0) if messages else await asyncio.Future()

    async def send(message):
        raise AssertionError(message)

    with settings_with(REQUEST_ID_HEADER=setting), override_settings(MIDDLEWARE=HOPWATCH_ONLY):
        asgi_request("/async/", headers=headers)
        asyncio.run(ASGIHandler()(asgi_scope("/async/", "POST", "", headers), receive, send))
    seen, never_seen = log_lines.parsed()
    assert never_seen["route"] == "(unresolved)"
    generated = re.compile(r"[0-9a-f]{16}")
    if generated.fullmatch(seen["request_id"]):
        assert generated.fullmatch(never_seen["request_id"])
    else:
        assert never_seen["request_id"] == seen["request_id"]


#: (method as the server passes it, as logged): upper case, at most 16 characters, with no
#: control character or Unicode line break (a terminal would act on one, a reader
#: splitting on Unicode breaks would cut the line there).
UNUSUAL_METHODS = [
    ("get", "GET"),  # a server passes the method as the client sent it
    ("get\u2028x", "GETX"),
    ("prop\x85find", "PROPFIND"),  # NEL, a C1 control
    ("del\x7fete", "DELETE"),
    ("a" * 17, "A" * 16),
]


@pytest.mark.parametrize("middleware", [HOPWATCH_ONLY, []], ids=["middleware", "no-middleware"])
def test_an_unusual_method_is_logged_upper_case_and_without_controls(log_lines, middleware, db):
    """With the middleware, the method is Django's ``request.method`` (upper case);
    without it (the app alone: Django's handlers open the record), the server's value
    as it came: both logged upper case, cut to 16 characters, without controls."""
    expected = []
    with override_settings(MIDDLEWARE=middleware), settings_with():
        for method, logged in UNUSUAL_METHODS:
            asgi_request("/async/", method=method)
            expected.append((logged, "asgi"))
            if max(method) <= "\xff":  # a WSGI environ's strings are latin-1 (PEP 3333)
                wsgi_request("/sync/", method=method)
                expected.append((logged, "wsgi"))
    assert [(line["method"], line["interface"]) for line in log_lines.parsed()] == expected
    for raw in log_lines.raw:
        assert raw.splitlines() == [raw]
        assert not any(c in raw for c in "\u2028\x85\x7f")
        assert not any(e in raw for e in ("\\u2028", "\\u0085", "\\u007f"))


def test_a_static_file_served_by_runserver_has_its_status(log_lines, tmp_path, db):
    """runserver serves static files with StaticFilesHandler, before the middleware
    chain: the line said ``status: null`` (the report's "none", a client gone away)."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.handlers.wsgi import WSGIHandler

    from tests.helpers import wsgi_environ

    (tmp_path / "site.css").write_text("body {}")
    apps = [*settings.INSTALLED_APPS, "django.contrib.staticfiles"]
    with override_settings(INSTALLED_APPS=apps, STATICFILES_DIRS=[str(tmp_path)]):
        handler = StaticFilesHandler(WSGIHandler())
        for path in ("/static/site.css", "/static/missing.css"):
            body = handler(wsgi_environ(path), lambda status, headers, exc_info=None: None)
            b"".join(body)
            body.close()
    assert [(line["route"], line["view"], line["status"]) for line in log_lines.parsed()] == [
        ("(unresolved)", None, 200),
        ("(unresolved)", None, 404),
    ]


def test_a_static_file_served_by_runserver_has_its_raw_path_when_asked(log_lines, tmp_path, db):
    """With ``LOG_RAW_PATHS`` its line carries its path (docs/settings.md), as the
    middleware's lines do; and its generated id is 16 hex digits, leading zeros kept
    (docs/log-schema.md: the generator is seeded so that this id has one)."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.handlers.wsgi import WSGIHandler

    from hopwatch._recorder import request_ids
    from tests.helpers import wsgi_environ

    (tmp_path / "site.css").write_text("body {}")
    apps = [*settings.INSTALLED_APPS, "django.contrib.staticfiles"]
    with (
        override_settings(INSTALLED_APPS=apps, STATICFILES_DIRS=[str(tmp_path)]),
        settings_with(LOG_RAW_PATHS=True),
    ):
        handler = StaticFilesHandler(WSGIHandler())
        request_ids.seed(10)  # its first 64 bits: 0x08577eb1924770d3
        try:
            for path in ("/static/site.css", "/static/missing.css"):
                body = handler(wsgi_environ(path), lambda status, headers, exc_info=None: None)
                b"".join(body)
                body.close()
        finally:
            request_ids.seed()
    lines = log_lines.parsed()
    assert [(line["route"], line["view"], line["status"]) for line in lines] == [
        ("/static/site.css", None, 200),
        ("/static/missing.css", None, 404),
    ]
    assert lines[0]["request_id"] == "08577eb1924770d3"


def test_request_id_from_header_or_generated(log_lines):
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY):
        asgi_request("/async/", headers=[(b"x-request-id", b"abc-123")])
        asgi_request("/async/", headers=[(b"x-request-id", b"bad id\x1b[31m")])
        asgi_request("/async/")
    first, hostile, generated = log_lines.parsed()
    assert first["request_id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{16}", hostile["request_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", generated["request_id"])


_ISO_MICROSECONDS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})Z")


def _early_in_a_second(write):
    """Call ``write`` inside the first 100 ms of a wall-clock second (its microseconds
    below 100000, where a fraction unpadded would have fewer than 6 digits): the
    (second, first microsecond, last microsecond) it ran between."""
    for _ in range(20):
        while time.time_ns() // 1000 % 1_000_000 >= 20_000:
            time.sleep(0.001)
        before = time.time_ns() // 1000
        write()
        after = time.time_ns() // 1000
        if before // 1_000_000 == after // 1_000_000 and after % 1_000_000 < 100_000:
            return before // 1_000_000, before % 1_000_000, after % 1_000_000
    raise AssertionError("no write finished within the first 100 ms of a second in 20 tries")


def _assert_written_at(timestamp, moment):
    second, first, last = moment
    found = _ISO_MICROSECONDS.fullmatch(timestamp)
    assert found, timestamp
    assert found[1] == datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert first <= int(found[2]) <= last < 100_000 and found[2].startswith("0")


def test_a_timestamp_early_in_a_second_has_six_fraction_digits(db):
    """The timestamp's microseconds are zero-padded to 6 digits (docs/log-schema.md's
    ``...T23:59:01.123456Z``): at .017291 a request line and a hopwatch.process line
    both read ``.017291Z``, never ``.17291Z`` (which is 0.17291 s to a reader)."""
    from hopwatch import _process, apps

    kept: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: kept.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("hopwatch")
    logger.addHandler(handler)
    assert apps._emitter is not None
    process = _process.ProcessLines(3600, apps._emitter.write_event)
    try:
        with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with():
            request_moment = _early_in_a_second(lambda: wsgi_request("/sync/"))
            process_moment = _early_in_a_second(process.write_line)
    finally:
        logger.removeHandler(handler)
    request_line, process_line = [json.loads(m) for m in kept if m.startswith('{"event":')]
    assert (request_line["event"], process_line["event"]) == ("hopwatch.request", "hopwatch.process")
    _assert_written_at(request_line["timestamp"], request_moment)
    _assert_written_at(process_line["timestamp"], process_moment)


def test_the_line_record_has_a_line_number():
    """A formatter's ``%(lineno)d`` (and pytest's log capture) read 0: the record now
    names the line of hopwatch's that writes it, both ways a record is made (a
    handler of the app's own class gets the record; a custom makeRecord too)."""

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)

    keep = Keep()
    logger = logging.getLogger("hopwatch")
    logger.addHandler(keep)
    try:
        with override_settings(MIDDLEWARE=HOPWATCH_ONLY):
            asgi_request("/async/")
            factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(lambda *a, **k: factory(*a, **k))  # the other way
            try:
                asgi_request("/async/")
            finally:
                logging.setLogRecordFactory(factory)
    finally:
        logger.removeHandler(keep)
    lines = [r for r in keep.records if r.getMessage().startswith("{")]
    assert len(lines) == 2
    for record in lines:
        assert record.pathname == _emit.__file__ and record.lineno == _emit._LINE > 0
        assert logging.Formatter("%(filename)s:%(lineno)d").format(record) == f"_emit.py:{_emit._LINE}"


def test_file_and_stdout_outputs(tmp_path, capsys):
    target = tmp_path / "hops.log"
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY):
        with settings_with(OUTPUT=str(target)):
            asgi_request("/async/")
            asgi_request("/sync/")
        with settings_with(OUTPUT="stdout"):
            asgi_request("/async/")
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["route"] for line in lines] == ["/async/", "/sync/"]
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["route"] for line in out] == ["/async/"]


def french_fields(request, record):
    return {"who": "élève"}


def test_stdout_is_sys_stdout_as_it_is_at_each_line_not_at_the_first(capsys, db):
    """``"stdout"`` follows ``sys.stdout``: a capture around the process's first line
    (``redirect_stdout``, pytest's ``capsys``) gets that line, and once it is over
    (and closed, as pytest closes its own) the next lines go to the stdout of then,
    not to the closed capture (each a failed write, said once, then lost). A stream
    of another encoding met on the way gets its line escaped, the next UTF-8 one not."""
    first = io.StringIO()
    narrow = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    errors = _errors.total()
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with(
        OUTPUT="stdout", EXTRA_FIELDS="tests.test_log.french_fields"
    ):
        with contextlib.redirect_stdout(first):
            asgi_request("/async/")  # the first line of these settings
        in_first = first.getvalue()
        first.close()
        asgi_request("/sync/")
        wsgi_request("/sync/")
        with contextlib.redirect_stdout(narrow):
            asgi_request("/async/")
        narrow.flush()
        in_narrow = narrow.buffer.getvalue().decode("ascii")
        asgi_request("/async/")
    assert _errors.total() == errors
    (line,) = [json.loads(text) for text in in_first.splitlines()]
    assert (line["route"], line["interface"], line["who"]) == ("/async/", "asgi", "élève")
    out = capsys.readouterr().out
    lines = [json.loads(text) for text in out.splitlines() if text.startswith("{")]
    assert [(line["route"], line["interface"]) for line in lines] == [
        ("/sync/", "asgi"), ("/sync/", "wsgi"), ("/async/", "asgi")
    ]
    assert out.count('"who":"élève"') == 3  # UTF-8: as it is
    assert in_narrow.count('"who":"\\u00e9l\\u00e8ve"') == 1 and in_narrow.count("\n") == 1
    assert json.loads(in_narrow)["who"] == "élève"


@pytest.mark.parametrize("buffer", [0, 1 << 20])
def test_stdout_keeps_no_capture_alive(buffer, db):
    """``"stdout"`` references no stream it wrote to once its owner drops it: not the
    process's first line's (a test's ``redirect_stdout`` buffer, megabytes of its
    output), not the last line's (held weakly); with ``OUTPUT_BUFFER``, not once the
    held lines are written."""
    import gc
    import weakref

    import hopwatch

    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with(
        OUTPUT="stdout", OUTPUT_BUFFER=buffer
    ):
        gone = []
        for path in ("/async/", "/sync/"):  # the first line of these settings, the next
            capture = io.StringIO()
            with contextlib.redirect_stdout(capture):
                asgi_request(path)
            hopwatch.flush()
            lines = [json.loads(text) for text in capture.getvalue().splitlines()]
            assert [line["route"] for line in lines] == [path]
            gone.append(weakref.ref(capture))
            del capture
            gc.collect()
            assert [ref() is None for ref in gone] == [True] * len(gone)


@pytest.mark.parametrize("output", ["hops.log", Path("hops.log")], ids=["str", "pathlib"])
def test_a_relative_file_output_is_the_directory_s_when_the_settings_are_read(
    output, tmp_path, monkeypatch, db
):
    """A relative ``OUTPUT`` path (a str, or a ``pathlib.Path`` as settings.md allows)
    is taken from the working directory when the settings are read (here, as HOPWATCH
    changes), not at the first line: a test that changes directory before it
    (``monkeypatch.chdir(tmp_path)``) does not take the lines there."""
    from hopwatch.conf import hopwatch_settings

    started, elsewhere = tmp_path / "started", tmp_path / "elsewhere"
    started.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(started)
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with(OUTPUT=output):
        resolved = hopwatch_settings.OUTPUT
        assert resolved == str(started / "hops.log")
        monkeypatch.chdir(elsewhere)
        asgi_request("/async/")
        wsgi_request("/sync/")
        monkeypatch.chdir(started)
        asgi_request("/sync/")
    lines = [json.loads(text) for text in (started / "hops.log").read_text().splitlines()]
    assert [(line["route"], line["interface"]) for line in lines] == [
        ("/async/", "asgi"), ("/sync/", "wsgi"), ("/sync/", "asgi")
    ]
    assert list(elsewhere.iterdir()) == []


def test_a_relative_file_output_is_resolved_as_override_settings_changes_hopwatch(
    tmp_path, monkeypatch, db
):
    """Nothing reads the settings between ``override_settings``' entry and the first
    request: the path is still the directory's of the change (hopwatch follows Django's
    ``setting_changed``), not the request's. The same on the way out: the restored
    settings are read at the exit, in the directory of then."""
    started, elsewhere = tmp_path / "started", tmp_path / "elsewhere"
    started.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(started)
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with(OUTPUT="hops.log"):
        with settings_with(OUTPUT="inner.log"):
            monkeypatch.chdir(elsewhere)  # before any request of these settings
            asgi_request("/async/")
            wsgi_request("/sync/")
        asgi_request("/sync/")  # hops.log, read again at the exit above, in elsewhere
        monkeypatch.chdir(started)
    assert sorted(p.name for p in started.iterdir()) == ["inner.log"]
    lines = [json.loads(text) for text in (started / "inner.log").read_text().splitlines()]
    assert [(line["route"], line["interface"]) for line in lines] == [
        ("/async/", "asgi"), ("/sync/", "wsgi")
    ]
    lines = [json.loads(text) for text in (elsewhere / "hops.log").read_text().splitlines()]
    assert [(line["route"], line["interface"]) for line in lines] == [("/sync/", "asgi")]


# --- privacy ---------------------------------------------------------------------------

SECRETS = ["SECRET-QUERY-1", "SECRET-COOKIE-2", "SECRET-AUTH-3", "SECRET-SESSION-4", "SECRET-BODY-5"]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"DETAIL": True},
        # refused at start-up; given at run time, the default is used instead
        {"DETAIL": True, "SITES_LIMIT": 100, "REQUEST_ID_HEADER": "Authorization"},
    ],
)
def test_no_secret_reaches_the_line(options, log_lines):
    headers = [
        (b"cookie", f"sessionid={SECRETS[3]}; other={SECRETS[1]}".encode()),
        (b"authorization", f"Bearer {SECRETS[2]}".encode()),
    ]
    with settings_with(**options):
        for path in ("/async/", "/nope/", "/error/"):
            asgi_request(path, query=f"token={SECRETS[0]}", headers=headers)
    raw = "\n".join(log_lines.raw)
    assert len(log_lines.raw) == 3
    for secret in SECRETS:
        assert secret not in raw


def test_unmatched_paths_are_cleaned_and_truncated(log_lines):
    raw = {"LOG_RAW_PATHS": True, "PATH_MAX_LENGTH": 20}
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with(**raw):
        asgi_request("/nope/\x1b[31mred\x07/" + "x" * 100)
    (line,) = log_lines.parsed()
    assert line["route"] == "/nope/[31mred/xxxxxx..."
    assert line["view"] is None and line["status"] == 404


def test_a_raw_path_with_an_encoded_question_mark_keeps_no_query_tail(log_lines, db):
    """A server decodes ``%3F`` in the path to ``?``: what follows it may be a token the
    client meant as a query, and LOG_RAW_PATHS logs the path up to it, never the tail."""
    from django.test import AsyncClient, Client

    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with(LOG_RAW_PATHS=True):
        asgi_request("/nope?secret=abc/")  # what a server passes for /nope%3Fsecret=abc/
        wsgi_request("/nope?secret=abc/")
        assert Client().get("/nope%3Fsecret=abc/").status_code == 404
        assert asyncio.run(AsyncClient().get("/nope%3Fsecret=abc/")).status_code == 404
    assert [(line["route"], line["interface"]) for line in log_lines.parsed()] == [
        ("/nope", "asgi"),
        ("/nope", "wsgi"),
        ("/nope", "test-client"),
        ("/nope", "test-async-client"),
    ]
    assert not any("secret" in raw for raw in log_lines.raw)


@pytest.mark.parametrize("char", ["\x7f", "\x80", "\x9b", "\x9f"])
def test_a_raw_path_loses_del_and_c1_controls(log_lines, char, db):
    """DEL and every C1 control (U+0080..U+009F; U+009B is a terminal's CSI) are taken
    out of a raw path as the C0 ones are: a terminal showing the log would act on them."""
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with(LOG_RAW_PATHS=True):
        asgi_request(f"/nope/a{char}b/")  # a server's decoded path
        # PATH_INFO carries the UTF-8 bytes as latin-1 (PEP 3333): Django decodes them
        wsgi_request(f"/nope/a{char}b/".encode().decode("latin-1"))
    assert [line["route"] for line in log_lines.parsed()] == ["/nope/ab/"] * 2
    assert not any(char in raw or f"\\u{ord(char):04x}" in raw for raw in log_lines.raw)


@pytest.mark.parametrize(
    ("path", "overrides", "status"),
    [
        ("/api/users/alice@example.com/orders/", {}, 404),  # no pattern matched
        # CommonMiddleware's APPEND_SLASH answers before URL resolution names a route
        ("/async", {"APPEND_SLASH": True}, 301),
        # SecurityMiddleware's HTTPS redirect answers before anything resolves
        ("/api/users/alice@example.com/orders/", {"SECURE_SSL_REDIRECT": True}, 301),
    ],
)
def test_a_request_no_pattern_resolved_is_logged_without_its_path(
    log_lines, path, overrides, status, db
):
    with override_settings(**overrides), settings_with():
        assert asgi_request(path).status == status
        wsgi_request(path)
    lines = log_lines.parsed()
    assert [(line["route"], line["view"], line["status"]) for line in lines] == [
        ("(unresolved)", None, status)
    ] * 2
    assert all("alice" not in raw and path not in raw for raw in log_lines.raw)


def test_raw_paths_are_logged_only_when_asked(log_lines):
    with override_settings(SECURE_SSL_REDIRECT=True), settings_with(LOG_RAW_PATHS=True):
        assert asgi_request("/api/users/alice@example.com/orders/", query="token=x").status == 301
    (line,) = log_lines.parsed()
    assert line["route"] == "/api/users/alice@example.com/orders/"


def test_a_path_cannot_split_the_line_for_readers_that_split_on_unicode_breaks(log_lines):
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with(LOG_RAW_PATHS=True):
        asgi_request("/nope/a\u2028b\u2029c\x85d/")
    (raw,) = log_lines.raw
    assert raw.splitlines() == [raw]
    assert json.loads(raw)["route"] == "/nope/abcd/"


# --- structlog coexistence ----------------------------------------------------------------


def test_project_structlog_configuration_is_left_alone(log_lines):
    seen = []

    def project_processor(logger, method, event_dict):
        seen.append(event_dict)
        return event_dict

    structlog.configure(
        processors=[project_processor, structlog.processors.KeyValueRenderer()],
        logger_factory=structlog.PrintLoggerFactory(io.StringIO()),
        cache_logger_on_first_use=False,
    )
    try:
        before = structlog.get_config()
        asgi_request("/async/")
        assert structlog.get_config() == before
        assert seen == []  # hopwatch's lines did not go through the project's pipeline
        (line,) = log_lines.parsed()  # and are still JSON
        assert line["hops"] == 15
        structlog.get_logger().info("project event")
        assert seen and seen[-1]["event"] == "project event"
    finally:
        structlog.reset_defaults()


def test_works_without_any_structlog_configuration(log_lines):
    structlog.reset_defaults()
    asgi_request("/async/")
    assert log_lines.parsed()[0]["hops"] == 15


# --- never break the app ----------------------------------------------------------------------


class ExplodingHandler(logging.Handler):
    """A handler that raises out of emit() (stdlib handlers catch their own errors)."""

    def emit(self, record):
        raise OSError("disk on fire")


@pytest.mark.internal_errors
def test_a_failing_hook_or_handler_never_fails_the_request(log_lines):
    logger = logging.getLogger("hopwatch")
    warnings_seen: list[logging.LogRecord] = []
    collector = logging.Handler(logging.WARNING)
    collector.emit = warnings_seen.append  # type: ignore[method-assign]
    logger.addHandler(collector)
    exploding = ExplodingHandler()
    logger.addHandler(exploding)
    old_raise = logging.raiseExceptions
    logging.raiseExceptions = False  # as in production: handler errors are swallowed
    try:
        with settings_with(EXTRA_FIELDS=lambda request, record: 1 / 0):
            for _ in range(3):
                assert asgi_request("/async/").status == 200
    finally:
        logger.removeHandler(exploding)
        logger.removeHandler(collector)
        logging.raiseExceptions = old_raise
    # per request: the hook failed, then the handler raised while writing the line
    assert _errors.total() == 6
    warnings = [r for r in warnings_seen if "internal error" in r.getMessage()]
    assert len(warnings) == 1  # logged once, then counted
    lines = log_lines.parsed()
    assert len(lines) == 3
    # Each line reports the errors not yet reported by a line that was written.
    # A line a handler wrote before another raised (log_lines' handler, then the
    # exploding one) keeps its count: each error is reported once. Line 1: the
    # hook's error; line 2: line 1's write failure and its own hook error; line 3
    # the same; the next line (no hook): line 3's write failure.
    assert [line.get("hopwatch_errors") for line in lines] == [1, 2, 2]
    asgi_request("/async/")
    assert log_lines.parsed()[-1]["hopwatch_errors"] == 1
    assert sum(line.get("hopwatch_errors", 0) for line in log_lines.parsed()) == 6
    asgi_request("/async/")
    assert "hopwatch_errors" not in log_lines.parsed()[-1]


@pytest.mark.internal_errors
def test_an_unwritable_file_output_never_fails_the_request(tmp_path, db):
    with settings_with(OUTPUT=str(tmp_path / "missing-dir" / "hops.log")):
        assert asgi_request("/async/").status == 200
        assert wsgi_request("/sync/")[0].startswith("200")
    assert _errors.total() == 2


def test_lines_a_logger_would_drop_are_said_once_as_the_first_goes_out(db):
    """A server runs no system checks, so W004 alone never reached it: with LOGGING left
    without a handler for the logger, every line was dropped without a word."""
    said = []
    collector = logging.Handler(logging.WARNING)
    collector.emit = said.append  # type: ignore[method-assign]
    logging.getLogger("hopwatch").addHandler(collector)
    try:
        with settings_with(LOGGER_NAME="hopwatch-nowhere"):
            for _ in range(3):
                assert asgi_request("/async/").status == 200
        with settings_with():  # the configured logger: nothing to say
            asgi_request("/async/")
        with settings_with(LOGGER_NAME="hopwatch-silenced"), override_settings(
            SILENCED_SYSTEM_CHECKS=["hopwatch.W004"]
        ):  # silenced as the system check is
            asgi_request("/async/")
    finally:
        logging.getLogger("hopwatch").removeHandler(collector)
    (record,) = said
    assert record.getMessage().startswith(
        "hopwatch writes request lines to the logger 'hopwatch-nowhere' at INFO, but that"
        " logger is disabled or its level is above INFO: the lines are lost."
    )
    assert record.getMessage().endswith("(hopwatch.W004).")


def test_hop_tax_is_measured_once_in_the_background_and_logged(log_lines):
    from hopwatch import apps

    try:
        with settings_with(MEASURE_HOP_TAX=True):
            apps.activate()
            apps.wait_for_hop_tax_measurement()  # it runs in its own thread
            assert apps.hop_tax is not None and apps.hop_tax.sync_to_async_us > 0
            measured = apps.hop_tax.sync_to_async_us
            asgi_request("/async/")
    finally:
        apps.hop_tax = None  # later tests' lines stay without it
    (line,) = log_lines.parsed()
    assert line["hop_tax_us"] == round(measured, 1) and line["hops"] == 15

    # the report prices the line's hops at it, read by its fast path
    from hopwatch.report import rank
    from hopwatch.report.aggregate import Partial
    from hopwatch.report.scan import Scanner

    scanner = Scanner(Partial())
    scanner.feed_lines([raw.encode() for raw in log_lines.raw])
    partial = scanner.finish()
    assert scanner.slow_lines == 0 and partial.records == 1
    (row,) = rank.build_document(partial, rank.ReportOptions(), ["-"])["rows"]
    assert row["hop_tax_ms"]["mean"] == round(15 * line["hop_tax_us"] / 1000, 3)
    assert row["hop_tax_ms"]["per_hop_us"] == line["hop_tax_us"]


def test_overhead_and_work_split_the_outermost_crossings_without_double_counting(log_lines):
    """overhead_ms + work_ms is the outermost crossings' wall; hop_ms also sums nested ones."""
    with settings_with(DETAIL=True, DETAIL_LIMIT=100):
        asgi_request("/nested/")
    (line,) = log_lines.parsed()
    hops = line["detail"]
    assert line["max_depth"] == 3  # sync_to_async > async_to_sync > sync_to_async
    outer = [h for h in hops if h["depth"] == 1]
    outer_wall = sum(h["wait_ms"] + h["run_ms"] + h["resume_ms"] for h in outer)
    overhead = sum(h["wait_ms"] + h["resume_ms"] for h in hops)
    # every figure in the line is rounded to the microsecond on its own
    slack = 0.001 * (len(hops) + 2)
    assert abs(line["overhead_ms"] - overhead) <= slack
    assert abs(line["overhead_ms"] + line["work_ms"] - outer_wall) <= slack
    assert line["hop_ms"] > line["overhead_ms"] + line["work_ms"] - slack
    for site in line["sites"]:
        assert 0 <= site["overhead_ms"] <= site["ms"]


def test_detail_places_each_crossing_in_the_request_for_a_timeline(log_lines):
    """at_ms, parent and caller_thread: when each crossing was called, inside which one,
    from which thread; nested crossings lie inside their parent's run."""
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), settings_with(DETAIL=True):
        asgi_request("/nested/")  # sync_to_async > async_to_sync > sync_to_async
    (line,) = log_lines.parsed()
    hops = line["detail"]
    by_depth = {hop["depth"]: hop for hop in hops if hop["site"] != "HttpResponse.close"}
    outer, middle, inner = by_depth[1], by_depth[2], by_depth[3]
    assert outer["parent"] is None
    assert hops[middle["parent"]] is outer and hops[inner["parent"]] is middle
    assert middle["caller_thread"] == outer["thread"]  # called from the outer crossing's code
    assert inner["caller_thread"] == middle["thread"]  # ... and from the event loop's coroutine
    # the outermost crossings were called by the thread that opened the request: the loop,
    # which also ran the async_to_sync's coroutine (no new loop under ASGI)
    loop = outer["caller_thread"]
    assert middle["thread"] == loop and not middle["new_loop"]
    assert all(hop["caller_thread"] == loop for hop in hops if hop["depth"] == 1)
    slack = 0.003  # every figure is rounded to the microsecond on its own
    for child, parent in ((middle, outer), (inner, middle)):
        parent_start = parent["at_ms"] + parent["wait_ms"]
        child_end = child["at_ms"] + child["wait_ms"] + child["run_ms"] + child["resume_ms"]
        assert parent_start - slack <= child["at_ms"]
        assert child_end <= parent_start + parent["run_ms"] + slack
    for hop in hops:
        end = hop["at_ms"] + hop["wait_ms"] + hop["run_ms"] + hop["resume_ms"]
        assert hop["at_ms"] >= 0 and end <= line["duration_ms"] + slack


# --- the stdlib record ---------------------------------------------------------------


class _FixedClock:
    """time.time() and time.time_ns() at one instant (logging's and the emitter's)."""

    def __init__(self, ns):
        self.ns = ns

    def time(self):
        return self.ns / 1e9

    def time_ns(self):
        return self.ns


@pytest.fixture(params=["accelerated", "reference"], autouse=False)
def fill(request, monkeypatch):
    """Each record test on the path in use (C when built) and on the pure-Python reference."""
    from hopwatch import _emit, _hotpath_py

    if request.param == "reference":
        monkeypatch.setattr(_emit, "_fill_record", _hotpath_py.fill_log_record)
    return request.param


def _both_records(monkeypatch, ns, logger_name="hopwatch.record_test", line=None):
    from hopwatch import _emit

    clock = _FixedClock(ns)
    monkeypatch.setattr(logging, "time", clock)
    monkeypatch.setattr(_emit, "_time", clock.time)
    monkeypatch.setattr(_emit, "_time_ns", clock.time_ns)
    if line is None:
        line = _emit._StdlibLine(logging.getLogger(logger_name))
    logger = logging.getLogger(logger_name)
    made = logger.makeRecord(
        logger.name, logging.INFO, _emit.__file__, _emit._LINE, "the line", (), None, "emit"
    )
    return line._record("the line"), made, line


# the instants: any, a whole second, and the last nanoseconds of a second (3.13's
# msecs rounding case)
INSTANTS = [1_764_500_000_123_456_789, 1_764_500_000_000_000_000, 1_764_500_000_999_999_900]


@pytest.mark.parametrize("ns", INSTANTS)
def test_the_line_record_is_the_one_logging_makes(monkeypatch, ns, fill):
    fast, made, _ = _both_records(monkeypatch, ns)
    assert type(fast) is logging.LogRecord
    # every field, its value and its place (a JSON formatter walks __dict__ in order)
    assert list(fast.__dict__.items()) == list(made.__dict__.items())


@pytest.mark.parametrize("flags", [(0, 0, 0, 0), (1, 0, 1, 0), (0, 1, 0, 1)])
def test_the_line_record_follows_logging_s_switches(monkeypatch, flags, fill):
    threads, processes, multiprocessing, tasks = flags
    monkeypatch.setattr(logging, "logThreads", threads)
    monkeypatch.setattr(logging, "logProcesses", processes)
    monkeypatch.setattr(logging, "logMultiprocessing", multiprocessing)
    monkeypatch.setattr(logging, "logAsyncioTasks", tasks, raising=False)
    fast, made, _ = _both_records(monkeypatch, INSTANTS[0])
    assert list(fast.__dict__.items()) == list(made.__dict__.items())


def test_the_line_record_names_its_task(monkeypatch, fill):
    import asyncio

    async def in_a_task():
        return _both_records(monkeypatch, INSTANTS[0])

    async def main():
        return await asyncio.create_task(in_a_task(), name="the-request-task")

    fast, made, line = asyncio.run(main())
    assert list(fast.__dict__.items()) == list(made.__dict__.items())
    if hasattr(made, "taskName"):  # Python 3.12+
        assert fast.taskName == "the-request-task"
    # the same emitter's record outside any task afterwards, with and without
    # task names: no stale task name
    for tasks in (1, 0):
        monkeypatch.setattr(logging, "logAsyncioTasks", tasks, raising=False)
        fast, made, _ = _both_records(monkeypatch, INSTANTS[0], line=line)
        assert list(fast.__dict__.items()) == list(made.__dict__.items())


def test_a_custom_record_factory_or_logger_class_still_makes_the_record(log_lines):
    made = []
    default = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = default(*args, **kwargs)
        record.tenant = "acme"
        made.append(record)
        return record

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    keep = Keep()
    logging.getLogger("hopwatch").addHandler(keep)
    logging.setLogRecordFactory(factory)
    try:
        with settings_with():
            asgi_request("/async/")
    finally:
        logging.setLogRecordFactory(default)
        logging.getLogger("hopwatch").removeHandler(keep)
    assert len(made) == 1 and seen == made
    assert seen[0].tenant == "acme" and json.loads(seen[0].getMessage())["route"] == "/async/"


@pytest.mark.internal_errors
def test_an_internal_error_whose_warning_failed_is_said_by_the_next():
    # The first error's warning could not be logged (the stack at its limit: here a
    # filter on hopwatch's logger that raises RecursionError once, as a log call deep
    # in a recursion does): the next error says it, rather than none ever being said.
    from hopwatch import _errors

    class FailsOnce(logging.Filter):
        failed = False

        def filter(self, record):
            if not self.failed:
                self.failed = True
                raise RecursionError("maximum recursion depth exceeded")
            return True

    logger = logging.getLogger("hopwatch")
    failing, kept = FailsOnce(), []
    handler = logging.Handler(logging.WARNING)
    handler.emit = kept.append  # type: ignore[method-assign]
    logger.addFilter(failing)
    logger.addHandler(handler)
    _errors.reset_for_tests()
    try:
        _errors.report("first place", ValueError("one"))
        _errors.report("second place", ValueError("two"))
        _errors.report("third place", ValueError("three"))
    finally:
        logger.removeFilter(failing)
        logger.removeHandler(handler)
    said = [r.getMessage() for r in kept if "internal error" in r.getMessage()]
    assert len(said) == 1 and "second place" in said[0]
    assert _errors.total() == 3


@pytest.mark.internal_errors
def test_a_hook_that_returns_no_mapping_is_an_error_counted_not_ignored(log_lines):
    # A hook that returns a list (a tuple of pairs, a string) gives no fields: it is a
    # mistake in the project's hook, said once and counted as the hook's raising is,
    # not a line without its fields and without a word.
    from hopwatch import _errors

    with settings_with(EXTRA_FIELDS=lambda request, record: [("pod", "web-7")]):
        assert asgi_request("/async/").status == 200
    with settings_with(EXTRA_FIELDS=lambda request, record: None):  # no fields: fine
        assert asgi_request("/async/").status == 200
    first, second = log_lines.parsed()
    assert "pod" not in first and first["hopwatch_errors"] == 1
    assert "hopwatch_errors" not in second
    assert _errors.total() == 1
