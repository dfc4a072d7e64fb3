"""``hopwatch audit``: what each ``MIDDLEWARE`` entry costs in hops, before any traffic.

For every entry: its ``sync_capable`` / ``async_capable`` flags, the mode
Django runs it in under ASGI and under WSGI, the hops its hooks cost per
request (``MiddlewareMixin`` calls each sync ``process_request`` /
``process_response`` through its own ``sync_to_async`` when it runs async),
the hops its own code makes where the audit knows that code
(``facts.OWN_CODE``: django-debug-toolbar), the hops it costs by making
Django adapt the chain, whether it pins a worker thread, and what to change.
Then the predicted hops per request for an async and a sync view under ASGI
and WSGI, and what a hop costs on this host.

One module per job:

* :mod:`~hopwatch.audit.facts`: introspection (import and build each middleware
  as ``load_middleware`` would, recording only facts);
* :mod:`~hopwatch.audit.model`: pure computation over those facts (the hops of
  one request, each entry's cost, what each change would do, Django 6.2);
* :mod:`~hopwatch.audit.document`: the JSON document (docs/audit.md);
* :mod:`~hopwatch.audit.render`: the table and text for people;
* :mod:`~hopwatch.audit.command`: the command line and the management command.

What a hop costs on the host is measured by :mod:`hopwatch.hop_tax`, which a
server with ``MEASURE_HOP_TAX`` also runs; system check ``hopwatch.W010`` is
in :mod:`hopwatch.checks`. Importing this package imports neither Django nor
rich.
"""

from __future__ import annotations

from hopwatch.audit.command import (
    HELP,
    audit_settings,
    configure,
    main,
    measure_host,
    run,
    write_audit,
)
from hopwatch.audit.document import FORMAT_VERSION, document
from hopwatch.audit.facts import (
    ASGI,
    INTERFACES,
    WSGI,
    AuditError,
    HookFacts,
    MiddlewareFacts,
    Note,
    OwnHop,
    gather,
)
from hopwatch.audit.model import (
    ADVICE_ASYNC_ONLY,
    ADVICE_MIXIN,
    ADVICE_PROCESS_VIEW,
    ADVICE_SYNC_ONLY,
    VIEW_KINDS,
    Audit,
    EntryAudit,
    Simulation,
    build_audit,
    pinned_section,
    simulate,
)
from hopwatch.audit.render import (
    FORMATS,
    RENDERERS,
    render,
    render_rich,
    render_text,
    render_to_string,
)
from hopwatch.hop_tax import DEFAULT_SAMPLES, HopTax, Overhead, measure_hop_tax, measure_overhead

__all__ = [
    "ADVICE_ASYNC_ONLY",
    "ADVICE_MIXIN",
    "ADVICE_PROCESS_VIEW",
    "ADVICE_SYNC_ONLY",
    "ASGI",
    "DEFAULT_SAMPLES",
    "FORMATS",
    "FORMAT_VERSION",
    "HELP",
    "INTERFACES",
    "RENDERERS",
    "VIEW_KINDS",
    "WSGI",
    "Audit",
    "AuditError",
    "EntryAudit",
    "HookFacts",
    "HopTax",
    "MiddlewareFacts",
    "Note",
    "Overhead",
    "OwnHop",
    "Simulation",
    "audit_settings",
    "build_audit",
    "configure",
    "document",
    "gather",
    "main",
    "measure_hop_tax",
    "measure_host",
    "measure_overhead",
    "pinned_section",
    "render",
    "render_rich",
    "render_text",
    "render_to_string",
    "run",
    "simulate",
    "write_audit",
]
