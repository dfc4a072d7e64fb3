"""The staff-only threads page: the process's thread and pool facts, as JSON.

Add it to your URLconf (``path("hopwatch/", include("hopwatch.urls"))``) and open
``/hopwatch/threads/`` logged in as an active staff user; anyone else gets a
404, so the page does not say it exists. It answers for the process that
serves the request (one worker of several): the default pool of the event loop
requests run on (``max_workers`` as configured, whether ``ASGI_THREADS`` was
applied, threads alive and busy, queued), threads alive, open
ThreadSensitiveContexts and, when ``PROCESS_LINE_SECONDS`` is on, the figures
of the current interval so far. See docs/threads.md.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, JsonResponse

from hopwatch import _process
from hopwatch._django import is_active_staff


async def threads(request: HttpRequest) -> JsonResponse:
    if not await is_active_staff(request):
        raise Http404
    from hopwatch import apps

    facts: dict[str, Any] = {"event": "hopwatch.threads", **_process.process_facts()}
    lines = apps.process_lines
    if lines is not None:
        facts["process_line_seconds"] = lines.seconds
        workers = facts["default_pool"]["max_workers"]
        facts["interval_so_far"] = lines.interval.take(reset=False, max_workers=workers)
    return JsonResponse(facts, headers={"Cache-Control": "no-store"})
