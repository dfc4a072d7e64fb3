"""No secret reaches the log line, under any combination of settings, interfaces and requests.

``tests/test_log.py`` checks three fixed settings through the ASGI handler;
this explores the space (hypothesis): every output, detail on or off, every
sites limit, the request-id header pointed at a header that carries a secret,
sampling, thresholds; the ASGI and WSGI handlers and both test clients; views
that succeed, fail, stream, redirect, 404, or create a session (whose new id
goes out in ``Set-Cookie``). The secrets travel in the query string, cookies
(``sessionid`` included), ``Authorization`` and ``Proxy-Authorization``, and
custom headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test import AsyncClient, Client, override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import asgi_call, wsgi_environ

SECRETS = {
    "query": "SECRETQUERY9d1e",
    "cookie": "SECRETCOOKIE4b7a",
    "session": "SECRETSESSION2c8f",
    "authorization": "SECRETAUTH6e0d",
    "proxy": "SECRETPROXY1a3b",
    "custom": "SECRETCUSTOM7f2c",
}
PATHS = [
    "/async/",
    "/sync/",
    "/hops/2/",
    "/error/",
    "/stream/async/",
    "/stress/stream/",
    "/stress/session/",
    "/async",  # redirected by APPEND_SLASH, with the query string
    "/no/such/page/",
]
HOPWATCH_MIDDLEWARE = "hopwatch.middleware.HopwatchMiddleware"


def request_headers(placement: frozenset[str]) -> dict[str, str]:
    s = SECRETS
    headers = {}
    if "cookie" in placement:
        headers["Cookie"] = f"sessionid={s['session']}; csrftoken={s['cookie']}; x={s['cookie']}"
    if "cookie-single" in placement:  # one cookie: no space, no ';'
        headers["Cookie"] = f"sessionid={s['session']}"
    if "authorization" in placement:
        headers["Authorization"] = f"Bearer {s['authorization']}"
    if "authorization-bare" in placement:  # a bare API token, as some APIs send it
        headers["Authorization"] = s["authorization"]
    if "proxy" in placement:
        headers["Proxy-Authorization"] = f"Basic {s['proxy']}"
    if "custom" in placement:
        headers["X-Api-Key"] = s["custom"]
    return headers


PLACEMENTS = ["query", "cookie", "cookie-single", "authorization", "authorization-bare", "proxy",
              "custom"]  # fmt: skip


def serve(interface: str, path: str, query: str, headers: dict[str, str]) -> list[str]:
    """One request; returns the secrets the app itself sent back (new session ids)."""
    returned: list[str] = []
    if interface == "asgi":
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        result = asyncio.run(asgi_call(ASGIHandler(), path, query=query, headers=raw))
        cookies = [v.decode() for k, v in result.headers if k.lower() == b"set-cookie"]
    elif interface == "wsgi":
        environ = wsgi_environ(path, query=query, headers=headers)
        seen: dict[str, Any] = {}

        def start_response(status: str, response_headers: Any, exc_info: Any = None) -> Any:
            seen["headers"] = response_headers
            return lambda data: None

        response = WSGIHandler()(environ, start_response)
        try:
            b"".join(response)
        finally:
            response.close()
        cookies = [v for k, v in seen["headers"] if k.lower() == "set-cookie"]
    else:
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        url = f"{path}?{query}" if query else path
        if interface == "test-client":
            response = Client(raise_request_exception=False).get(url, **extra)
            if response.streaming and response.is_async:
                response.close()  # here: consuming it would close it in another context
            elif response.streaming:
                b"".join(response.streaming_content)  # closes it at the end
        else:
            response = asyncio.run(AsyncClient(raise_request_exception=False).get(url, **extra))
        cookies = [morsel.OutputString() for morsel in response.cookies.values()]
    for cookie in cookies:
        match = re.search(r"sessionid=([^;]+)", cookie)
        if match:
            returned.append(match.group(1))
    return returned


hopwatch_options = st.fixed_dictionaries(
    {},
    optional={
        "DETAIL": st.booleans(),
        "DETAIL_LIMIT": st.sampled_from([0, 1, 5, 1000]),
        "SITES_LIMIT": st.sampled_from([1, 10, 1000]),
        # Pointed at a header that carries a secret, the request id must not take it.
        "REQUEST_ID_HEADER": st.sampled_from(
            ["X-Request-ID", "Authorization", "Proxy-Authorization", "Cookie", "", None]
        ),
        "PATH_MAX_LENGTH": st.sampled_from([1, 20, 10_000]),
    },
)


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
@settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    options=hopwatch_options,
    output=st.sampled_from(["logging", "file", "stdout"]),
    interface=st.sampled_from(["asgi", "wsgi", "test-client", "test-async-client"]),
    path=st.sampled_from(PATHS),
    placement=st.frozensets(st.sampled_from(PLACEMENTS), min_size=1),
    full_middleware=st.booleans(),
)
@example(  # an unmatched path is logged as the path: without its query string
    options={},
    output="logging",
    interface="asgi",
    path="/no/such/page/",
    placement=frozenset(["query"]),
    full_middleware=False,
)
@example(  # an unmatched path is logged as the path: without its query string
    options={},
    output="logging",
    interface="wsgi",
    path="/no/such/page/",
    placement=frozenset(["query"]),
    full_middleware=False,
)
@example(  # an unmatched path is logged as the path: without its query string
    options={},
    output="logging",
    interface="test-client",
    path="/no/such/page/",
    placement=frozenset(["query"]),
    full_middleware=False,
)
@example(  # an unmatched path is logged as the path: without its query string
    options={},
    output="logging",
    interface="test-async-client",
    path="/no/such/page/",
    placement=frozenset(["query"]),
    full_middleware=False,
)
def test_no_secret_reaches_the_line(
    options, output, interface, path, placement, full_middleware, tmp_path, capsys, db
):
    query = f"token={SECRETS['query']}&next=/x?{SECRETS['query']}" if "query" in placement else ""
    target = tmp_path / f"hops-{uuid.uuid4().hex}.log"  # a new file: the output keeps the old open
    written: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: written.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("hopwatch")
    logger.addHandler(handler)
    middleware = django_settings.MIDDLEWARE if full_middleware else [HOPWATCH_MIDDLEWARE]
    hopwatch = {
        **options,
        "OUTPUT": {"logging": "logging", "stdout": "stdout", "file": str(target)}[output],
    }
    capsys.readouterr()
    try:
        with override_settings(
            ROOT_URLCONF="tests.stress.urls", MIDDLEWARE=middleware, HOPWATCH=hopwatch
        ):
            new_session_ids = serve(interface, path, query, request_headers(placement))
    finally:
        logger.removeHandler(handler)
    if output == "file":
        lines = target.read_text().splitlines() if target.exists() else []
    elif output == "stdout":
        lines = [
            line for line in capsys.readouterr().out.splitlines() if "hopwatch.request" in line
        ]
    else:
        lines = [m for m in written if m.startswith('{"event":"hopwatch.request"')]
    assert len(lines) == 1, (output, lines)  # the line was written: the check is not vacuous
    json.loads(lines[0])
    for secret in [*SECRETS.values(), *new_session_ids]:
        assert secret not in lines[0], (secret, lines[0])


@pytest.mark.parametrize(
    ("header", "placement"),
    [
        ("Authorization", "authorization-bare"),
        ("Proxy-Authorization", "proxy"),
        ("Cookie", "cookie-single"),
    ],
)
def test_the_request_id_never_takes_a_credential_header(header, placement, db):
    """``REQUEST_ID_HEADER`` pointed at Authorization, Proxy-Authorization or Cookie
    must not log their value as ``request_id``: a bare token, a single
    ``sessionid=...`` cookie, or a Basic credential looks like a request id."""
    written: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: written.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("hopwatch").addHandler(handler)
    headers = request_headers(frozenset([placement]))
    if placement == "proxy":
        headers["Proxy-Authorization"] = SECRETS["proxy"]  # a bare credential
    try:
        with override_settings(
            MIDDLEWARE=[HOPWATCH_MIDDLEWARE], HOPWATCH={"REQUEST_ID_HEADER": header}
        ):
            serve("asgi", "/async/", "", headers)
    finally:
        logging.getLogger("hopwatch").removeHandler(handler)
    (line,) = [json.loads(m) for m in written if m.startswith('{"event":"hopwatch.request"')]
    for secret in SECRETS.values():
        assert secret not in line["request_id"], (header, line["request_id"])


def test_a_session_created_by_the_view_is_seen_by_the_secrets_test(db):
    """The session view really creates a session (else the check above checks nothing)."""
    with override_settings(ROOT_URLCONF="tests.stress.urls"):
        assert serve("asgi", "/stress/session/", "", {})
        assert serve("wsgi", "/stress/session/", "", {})
