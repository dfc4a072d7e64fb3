"""The ``hopwatch.request`` line's schema: every field's name and type, once.

``docs/log-schema.md`` is the contract people read; this module is the same
contract for code, and a test keeps the two identical. The emitter
(``hopwatch._emit``) writes these fields and refuses to let the extra-fields
hook replace one; the report (``hopwatch.report``) reads them. Standard library
only, and nothing of hopwatch's core or of Django: the report imports it.

Adding a field: add it here (in the order the emitter writes it), write it in
``_emit.build_event``, document it in docs/log-schema.md, and if the report
reads it, give ``hopwatch.report.parse.Record`` a field with a default (older
lines lack it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SCHEMA_VERSION: Final = 1
EVENT: Final = "hopwatch.request"

SYNC_TO_ASYNC: Final = "sync_to_async"
ASYNC_TO_SYNC: Final = "async_to_sync"
DIRECTIONS: Final = (SYNC_TO_ASYNC, ASYNC_TO_SYNC)
#: Kinds of cause, in the order the docs list them.
KINDS: Final = ("middleware", "view", "orm", "signal", "response", "stream", "exception", "other")
INTERFACES: Final = ("asgi", "wsgi", "test-client", "test-async-client")
#: The interfaces whose Django handler runs sync, on the request's own thread.
SYNC_INTERFACES: Final = frozenset({"wsgi", "test-client"})
OUTCOMES: Final = ("ok", "error", "cancelled")


@dataclass(frozen=True)
class Field:
    name: str
    #: The type as docs/log-schema.md writes it ("number", "string or null", ...).
    type: str


#: Every line's fields, in the order the emitter writes them (docs: "Fields").
#: ``sites_dropped`` is written only when non-zero; ``level`` and ``logger`` are added
#: by the log pipeline.
LINE: Final = (
    Field("event", "string"),
    Field("schema", "integer"),
    Field("timestamp", "string"),
    Field("request_id", "string"),
    Field("method", "string"),
    Field("route", "string"),
    Field("view", "string or null"),
    Field("status", "integer or null"),
    Field("interface", "string"),
    Field("duration_ms", "number"),
    Field("hops", "integer"),
    Field("hop_ms", "number"),
    Field("wait_ms", "number"),
    Field("overhead_ms", "number"),
    Field("work_ms", "number"),
    Field("sync_to_async", "integer"),
    Field("async_to_sync", "integer"),
    Field("threads", "integer"),
    Field("new_loops", "integer"),
    Field("max_depth", "integer"),
    Field("pinned_ms", "number"),
    Field("pinned_by", "string or null"),
    Field("executors", "object"),
    Field("db_connections", "integer"),
    Field("sites", "array"),
    Field("sites_dropped", "integer, optional"),
    Field("level", "string"),
    Field("logger", "string"),
)

#: One ``sites`` entry's fields (docs: the ``sites[].`` rows).
SITE: Final = (
    Field("site", "string"),
    Field("kind", "string"),
    Field("direction", "string"),
    Field("count", "integer"),
    Field("ms", "number"),
    Field("overhead_ms", "number"),
    Field("call_site", "string, optional"),
)

#: Fields present only when a setting or feature is on (docs: "Optional fields").
OPTIONAL: Final = (
    Field("detail", "array"),
    Field("detail_dropped", "integer"),
    Field("max_in_flight", "integer"),
    Field("concurrent_ms", "number"),
    Field("hopwatch_errors", "integer"),
    Field("sample_rate", "number"),
    Field("hop_tax_us", "number"),
    Field("profile", "string"),
    Field("scope", "string"),
    Field("response_closed", "boolean"),
)

#: One ``detail`` entry's keys, in order.
DETAIL: Final = (
    "direction",
    "kind",
    "site",
    "call_site",
    "depth",
    "thread_sensitive",
    "new_loop",
    "thread",
    "wait_ms",
    "run_ms",
    "resume_ms",
    "outcome",
    "at_ms",
    "parent",
    "caller_thread",
    "executor",
    "thread_started",
)

#: Every documented top-level name: what the extra-fields hook may not replace.
NAMES: Final = frozenset(field.name for field in (*LINE, *OPTIONAL))
SITE_NAMES: Final = frozenset(field.name for field in SITE)

__all__ = [
    "ASYNC_TO_SYNC",
    "DETAIL",
    "DIRECTIONS",
    "EVENT",
    "INTERFACES",
    "KINDS",
    "LINE",
    "NAMES",
    "OPTIONAL",
    "OUTCOMES",
    "SCHEMA_VERSION",
    "SITE",
    "SITE_NAMES",
    "SYNC_INTERFACES",
    "SYNC_TO_ASYNC",
    "Field",
]
