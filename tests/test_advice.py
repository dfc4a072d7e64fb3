"""The short advice per cause (hopwatch._advice) and docs/causes.md say the same thing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hopwatch import ASYNC_TO_SYNC, KINDS, SYNC_TO_ASYNC
from hopwatch._advice import ALL, advice_for, code_spans

CAUSES_MD = Path(__file__).resolve().parent.parent / "docs" / "causes.md"
IN_SHORT = "**In short:** "


def sections() -> dict[str, list[str]]:
    """docs/causes.md's ``## `` sections: heading -> its lines."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in CAUSES_MD.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = found.setdefault(line, [])
        elif current is not None:
            current.append(line)
    return found


@pytest.mark.parametrize("advice", ALL, ids=lambda advice: advice.key)
def test_the_docs_quote_each_piece_of_advice_in_its_section(advice):
    (heading,) = [h for h in sections() if h.startswith(advice.section)]
    assert IN_SHORT + advice.summary in sections()[heading]


def test_every_in_short_line_in_the_docs_is_a_piece_of_advice():
    quoted = [
        line[len(IN_SHORT) :]
        for lines in sections().values()
        for line in lines
        if line.startswith(IN_SHORT)
    ]
    assert sorted(quoted) == sorted(advice.summary for advice in ALL)


def test_every_kind_has_advice_of_its_own_kind():
    for kind in KINDS:
        for direction in (SYNC_TO_ASYNC, ASYNC_TO_SYNC):
            assert advice_for(kind, "some.site", direction).kind == kind
    assert advice_for("a kind from a newer hopwatch", "x", SYNC_TO_ASYNC).key == "other"


def test_keys_are_unique_and_summaries_use_no_markup_but_code():
    """Backticks are the only markup: renderers escape the rest as text."""
    assert len({advice.key for advice in ALL}) == len(ALL)
    for advice in ALL:
        assert advice.summary.count("`") % 2 == 0, advice.key
        prose = "".join(piece for piece, is_code in code_spans(advice.summary) if not is_code)
        assert not re.search(r"[<*_\[\]]", prose), advice.key


@pytest.mark.parametrize(
    ("kind", "site", "direction", "key"),
    [
        (
            "middleware",
            "django.contrib.sessions.middleware.SessionMiddleware.process_request",
            SYNC_TO_ASYNC,
            "middleware-hook",
        ),
        (
            "middleware",
            "django.middleware.csrf.CsrfViewMiddleware.process_view",
            SYNC_TO_ASYNC,
            "middleware-hook",
        ),
        (
            "middleware",
            "shop.middleware.LegacyAuditMiddleware",
            SYNC_TO_ASYNC,
            "middleware-sync-only",
        ),
        (
            "middleware",
            "shop.middleware.LegacyAuditMiddleware",
            ASYNC_TO_SYNC,
            "middleware-sync-only",
        ),
        ("view", "shop.views.hello_sync", SYNC_TO_ASYNC, "view-sync-under-asgi"),
        ("view", "shop.views.hello", ASYNC_TO_SYNC, "view-async-under-wsgi"),
        ("orm", "QuerySet.aget", SYNC_TO_ASYNC, "orm"),
        ("signal", "request_started", SYNC_TO_ASYNC, "signal"),
        ("response", "HttpResponse.close", SYNC_TO_ASYNC, "response"),
        ("stream", "StreamingHttpResponse (sync iterator)", SYNC_TO_ASYNC, "stream"),
        ("exception", "log_response", SYNC_TO_ASYNC, "exception"),
        ("other", "myapp.tasks.refresh", SYNC_TO_ASYNC, "other"),
    ],
)
def test_advice_for_a_cause(kind, site, direction, key):
    assert advice_for(kind, site, direction).key == key


def test_code_spans():
    assert code_spans("Use `async for`, not `aget()` in a loop.") == [
        ("Use ", False),
        ("async for", True),
        (", not ", False),
        ("aget()", True),
        (" in a loop.", False),
    ]
