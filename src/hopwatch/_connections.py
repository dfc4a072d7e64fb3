"""Database connections a request opened: Django's ``connection_created`` signal, per request.

Django's connections are per thread, so code that runs on a thread which has
none opens one: every ``thread_sensitive=False`` crossing that touches the
ORM on a fresh pool thread, and, under ASGI, the request's own
thread-sensitive thread (a new thread per request, whatever ``CONN_MAX_AGE``
says). The signal is sent in the thread that connects, in the context asgiref
copied from the request, so the receiver finds the request's record there.

A connection pool (Django 5.1+'s PostgreSQL ``OPTIONS["pool"]``) sends the same
signal on every checkout: ``connect()`` takes a connection from the pool
(``get_new_connection`` -> ``pool.getconn()``) and sends ``connection_created``
as for a new one. So a connection counts once, the first time its DB-API
connection object (``connection.connection``, psycopg's ``Connection``) is
seen: a checkout of a physical connection already used counts 0. Without a
pool each connect makes a new object, so each counts, as before. The objects
seen are held weakly (a ``WeakSet``: at most the connections alive, a pool's
while it keeps them); one that cannot be weakly referenced (``sqlite3``'s) is
new at each connect, and counts.

A pool may hand Django a proxy of its own around the DB-API connection instead
of the connection itself: SQLAlchemy's pool (behind django-db-connection-pool's
``dj_db_conn_pool.backends.*``, the usual pool for MySQL) gives a new
``_ConnectionFairy`` at every checkout, the same DB-API connection inside as its
``dbapi_connection`` (SQLAlchemy 1.4.24+). The object counted is the one inside
such a proxy; a proxy without one (a connection the pool dropped) counts.

Runs per connection opened, never per hop. The thread ids go into the record
with one ``list.append`` (atomic under the GIL, so several pool threads of one
request need no lock).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Final, cast

from hopwatch import _errors

#: ``record.extra`` key: the ids of the threads that opened a connection, one per connection.
EXTRA_KEY: Final = "db_connection_threads"
_UID: Final = "hopwatch.db_connections"

#: The DB-API connection objects a ``connection_created`` was sent for, process-wide.
_seen: weakref.WeakSet[Any] = weakref.WeakSet()
_seen_lock = threading.Lock()


def _first_use(connection: Any) -> bool:
    """Whether ``connection`` (Django's wrapper) holds a physical connection used for the
    first time: False for one a pool handed out before."""
    dbapi = getattr(connection, "connection", None)
    # A pool's proxy (SQLAlchemy's, new at each checkout): the DB-API connection inside.
    dbapi = getattr(dbapi, "dbapi_connection", dbapi)
    if dbapi is None:
        return True
    try:
        with _seen_lock:
            if dbapi in _seen:
                return False
            _seen.add(dbapi)
    except TypeError:  # no weak reference to it (sqlite3), or unhashable: new at each connect
        pass
    return True


def _created(sender: Any, connection: Any = None, **kwargs: Any) -> None:
    try:
        from hopwatch._django import current_request

        # Before looking for a record: a connection first used outside any request (a
        # management command, start-up) is not opened by the request that reuses it.
        if not _first_use(connection):
            return
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
    """The threads that opened the record's connections, one entry per connection (a
    pooled connection counts for the request that first used it only)."""
    threads: list[int] = record.extra.get(EXTRA_KEY, []) if record.extra else []
    return threads
