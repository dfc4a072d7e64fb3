"""The hop causes Django 6.x added, named like the rest, through Django's real ASGIHandler.

Each test runs on every supported Django: where a version does not make the
hop, the test checks it is absent, so a count is never right by accident.
Views: ``tests/testapp/views_django6.py``. Every request here has hopwatch's
middleware only, so ``request_started`` and the response's ``close`` are the
two hops outside the view.
"""

from __future__ import annotations

import django
import pytest
from django.core.management import call_command
from django.test import override_settings

from hopwatch._django_causes import REQUEST_BODY_TO_DISK
from tests.helpers import asgi_request, capture

DJANGO_6 = django.VERSION >= (6, 0)
DJANGO_6_1 = django.VERSION >= (6, 1)
VIEWS = "tests/testapp/views_django6.py"

#: What every request here costs outside the view.
OUTSIDE = {("signal", "request_started"): 1, ("response", "HttpResponse.close"): 1}

SETTINGS = {
    "MIDDLEWARE": ["hopwatch.middleware.HopwatchMiddleware"],
    # a fast hasher: the tests count hops, they do not time PBKDF2
    "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
    "CACHES": {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "db": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "hopwatch_test_cache",
        },
    },
    "TASKS": {"default": {"BACKEND": "tests.testapp.tasks.ResultKeepingBackend"}},
}


@pytest.fixture(autouse=True)
def _settings():
    with override_settings(**SETTINGS):
        yield


def request(path, **kwargs):
    """One request; its status, body and record (exactly one)."""
    with capture() as records:
        result = asgi_request(path, **kwargs)
    assert len(records) == 1, records
    return result, records[0]


def view_causes(record):
    """{(kind, site, call_site): count} of the view's hops (outside the view left out)."""
    counts = {}
    for cause, stats in record.top_causes():
        if (cause.kind, cause.site) not in OUTSIDE:
            key = (cause.kind, cause.site, cause.call_site)
            counts[key] = counts.get(key, 0) + stats.count
    return counts


def line_of(view, text):
    """``path:line in view`` of the line of ``tests/testapp/views_django6.py`` holding ``text``."""
    from tests.testapp import views_django6

    with open(views_django6.__file__, encoding="utf-8") as source:
        for number, line in enumerate(source, 1):
            if text in line:
                return f"{VIEWS}:{number} in {view}"
    raise AssertionError(text)


# --- 6.0+: the request body, once it spools to disk -------------------------------------


@pytest.mark.parametrize(("limit", "chunks", "to_disk"), [(1000, 10, 7), (1000, 2, 0), (10_000, 10, 0)])
def test_upload_chunks_written_to_disk_are_one_hop_each(limit, chunks, to_disk):
    # 400-byte chunks: the third passes FILE_UPLOAD_MAX_MEMORY_SIZE (1000) and
    # rolls the file over to disk (written on the loop); each chunk after it
    # is written through its own sync_to_async (Django 6.0+).
    with override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=limit):
        result, record = request("/upload/", method="POST", body=[b"x" * 400] * chunks)
    assert (result.status, result.body) == (200, str(400 * chunks).encode())
    expected = to_disk if DJANGO_6 else 0
    assert view_causes(record) == ({("stream", REQUEST_BODY_TO_DISK, None): expected} if expected else {})
    assert len(record) == 2 + expected and record.sync_to_async == 2 + expected


# --- 6.0+: password checks; 6.1: the unknown-user mitigation ---------------------------------


@pytest.mark.parametrize("query", ["ok=1", ""])
def test_acheck_password_is_one_hop(query):
    result, record = request("/check-password/", query=query)
    assert result.body == (b"True" if query else b"False")
    site = line_of("check_password_view", "await user.acheck_password")
    assert view_causes(record) == ({("other", "acheck_password", site): 1} if DJANGO_6 else {})


@pytest.fixture
def alice(transactional_db):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("alice", password="right")


@pytest.mark.parametrize("username", ["alice", "nobody"])
def test_async_login_with_a_wrong_password(alice, username):
    result, record = request("/login/", query=f"username={username}")
    assert result.body == b"None"
    site = line_of("login_view", "await aauthenticate(")
    expected = {("orm", "QuerySet.aget", site): 1}  # aget_by_natural_key
    if username == "alice" and DJANGO_6:
        expected[("other", "acheck_password", site)] = 1
    if username == "nobody" and DJANGO_6_1:
        # the password is hashed anyway, so an unknown user takes as long
        expected[("other", "acheck_password (unknown user)", site)] = 1
    assert view_causes(record) == expected


# --- 6.0+: AsyncPaginator / AsyncPage ----------------------------------------------------------

needs_6 = pytest.mark.skipif(not DJANGO_6, reason="AsyncPaginator and django.tasks are Django 6.0+")


@needs_6
@pytest.mark.parametrize(("of", "hops"), [("tuple", 1), ("list", 0)])
def test_async_page_of_a_sync_iterable_is_one_hop(of, hops):
    # A page of a tuple is a tuple: AsyncPage turns it into a list in a thread.
    # A list is used as it is.
    result, record = request("/paginate/", query=f"of={of}")
    assert result.body == b"3,4,5"
    site = line_of("paginate_view", "await page.aget_object_list()")
    assert view_causes(record) == ({("other", "AsyncPage.aget_object_list", site): 1} if hops else {})


@pytest.fixture
def items(transactional_db):
    from tests.testapp.models import Item

    Item.objects.bulk_create([Item(name=name) for name in "abcdefg"])


@needs_6
def test_async_page_of_a_queryset_makes_orm_hops(items):
    result, record = request("/paginate/", query="of=queryset")
    assert result.body == b"d,e,f"
    assert view_causes(record) == {
        ("orm", "QuerySet.acount", line_of("paginate_view", "AsyncPaginator(objects, 3)")): 1,
        ("orm", "QuerySet.__aiter__", line_of("paginate_view", "await page.aget_object_list()")): 1,
    }


# --- 6.0+: the tasks framework -------------------------------------------------------------------


@needs_6
def test_aenqueue_and_aget_result_are_one_hop_each():
    result, record = request("/enqueue/", query="task=sync")
    assert result.body == b"SUCCESSFUL 42"
    assert view_causes(record) == {
        ("other", "BaseTaskBackend.aenqueue", line_of("enqueue_view", "await task.aenqueue(")): 1,
        ("other", "BaseTaskBackend.aget_result", line_of("enqueue_view", "await task.aget_result(")): 1,
    }
    assert record.max_depth == 1 and record.pinned_ns == 0


@needs_6
def test_an_async_task_run_at_enqueue_crosses_back_and_pins_the_thread():
    # ImmediateBackend runs the task inside enqueue(), in aenqueue's thread: an
    # async task function is called through async_to_sync from there.
    result, record = request("/enqueue/", query="task=async")
    assert result.body == b"SUCCESSFUL 42"
    bridge = [hop for hop in record.hops() if hop.direction == "async_to_sync"]
    assert [(hop.cause.kind, hop.cause.site, hop.depth) for hop in bridge] == [
        ("other", "tests.testapp.tasks.async_double", 2)
    ]
    assert len(record) == 2 + 3 and record.pinned_ns == bridge[0].wall_ns > 0
    assert record.top_pinning_cause().site == "BaseTaskBackend.aenqueue"


# --- 6.1: cache bulk methods and aclose() --------------------------------------------------------


@pytest.fixture
def db_cache(transactional_db):
    call_command("createcachetable", verbosity=0)


# (backend, op) -> the view's hops before 6.1 and on 6.1: {site: count}
CACHE = {
    # DatabaseCache has its own get_many, delete_many and has_key: 6.1 calls
    # them in one hop; before, one hop per key through aget/adelete.
    ("db", "get_many"): ({"BaseCache.aget": 3}, {"BaseCache.aget_many": 1}),
    ("db", "delete_many"): ({"BaseCache.adelete": 3}, {"BaseCache.adelete_many": 1}),
    ("db", "has_key"): ({"BaseCache.aget": 1}, {"BaseCache.ahas_key": 1}),
    # ... but no set_many of its own: one hop per key on every version
    ("db", "set_many"): ({"BaseCache.aset": 3}, {"BaseCache.aset": 3}),
    # aclose() was a no-op coroutine; 6.1 calls close() in a thread
    ("db", "close"): ({}, {"BaseCache.aclose": 1}),
    # LocMemCache has no bulk methods of its own: one hop per key everywhere
    ("default", "get_many"): ({"BaseCache.aget": 3}, {"BaseCache.aget": 3}),
    ("default", "close"): ({}, {"BaseCache.aclose": 1}),
}


@pytest.mark.parametrize(("cache", "op"), CACHE, ids=[f"{c}-{o}" for c, o in CACHE])
def test_cache_bulk_methods(db_cache, cache, op):
    result, record = request("/cache/", query=f"cache={cache}&op={op}")
    assert result.status == 200
    before, on_6_1 = CACHE[(cache, op)]
    expected = on_6_1 if DJANGO_6_1 else before
    verb = {"has_key": "ahas_key", "close": "aclose"}.get(op, f"a{op}")
    site = line_of("cache_view", f"await cache.{verb}(")
    assert view_causes(record) == {("other", name, site): n for name, n in expected.items()}


# --- QuerySet.aiterator() is ORM work ---------------------------------------------------------------


@pytest.mark.parametrize(("chunk", "hops"), [(2, 4), (3, 3), (7, 2), (2000, 1)])
def test_aiterator_is_one_orm_hop_per_chunk(items, chunk, hops):
    # 7 rows: chunks of 2 are 2+2+2+1 (the short one ends it), of 3 are
    # 3+3+1, of 7 a full one and an empty one (how it learns the end), of 2000 one.
    result, record = request("/aiterator/", query=f"chunk={chunk}")
    assert result.body == b"a,b,c,d,e,f,g"
    site = line_of("aiterator_view", ".aiterator(chunk_size=chunk)")
    assert view_causes(record) == {("orm", "QuerySet.aiterator", site): hops}
