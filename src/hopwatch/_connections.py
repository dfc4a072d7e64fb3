"""Database connections a request opened: Django's ``connection_created`` signal, per request.

Django's connections are per thread, so code that runs on a thread which has
none opens one: every ``thread_sensitive=False`` crossing that touches the
ORM on a fresh pool thread, and, under ASGI, the request's own
thread-sensitive thread (a new thread per request, whatever ``CONN_MAX_AGE``
says). The signal is sent in the thread that connects, in the context asgiref
copied from the request, so the receiver finds the request's record there.

Runs per connection opened, never per hop. The thread ids go into the record
with one ``list.append`` (atomic under the GIL, so several pool threads of one
request need no lock).
"""

from __future__ import annotations

import threading
from typing import Any, Final, cast

from hopwatch import _errors

#: ``record.extra`` key: the ids of the threads that opened a connection, one per connection.
EXTRA_KEY: Final = "db_connection_threads"
_UID: Final = "hopwatch.db_connections"


def _created(sender: Any, connection: Any = None, **kwargs: Any) -> None:
    try:
        from hopwatch._django import current_request

        record = current_request()
        if record is None or record.closed:
            return
        threads = cast("list[int]", record.notes().setdefault(EXTRA_KEY, []))
        threads.append(threading.get_ident())
    except Exception as exc:  # never fail the app's connection
        _errors.report("counting a database connection", exc)


def install() -> None:
    from django.db.backends.signals import connection_created

    connection_created.connect(_created, weak=False, dispatch_uid=_UID)


def uninstall() -> None:
    from django.db.backends.signals import connection_created

    connection_created.disconnect(dispatch_uid=_UID)


def opened(record: Any) -> list[int]:
    """The threads that opened the record's connections, one entry per connection."""
    threads: list[int] = record.extra.get(EXTRA_KEY, []) if record.extra else []
    return threads
