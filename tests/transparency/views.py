"""Probe views: each reports, in its response, what the code around a hop could observe.

The values are relations (same thread or not, same loop or not, what a
context variable held), never raw ids, so two runs can be compared.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading

from asgiref.local import Local
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from django.http import HttpResponse, JsonResponse

var: contextvars.ContextVar[str] = contextvars.ContextVar("probe_var", default="unset")
local = Local()


def _thread() -> int:
    return threading.get_ident()


def _connection_id() -> int:
    return id(connection)


async def async_probe(request):
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    var.set("set by the view")
    local.value = "set by the view"

    def sync_side() -> dict[str, object]:
        seen = {"var": var.get(), "local": getattr(local, "value", None)}
        var.set("set in the thread")
        local.value = "set in the thread"

        async def back_on_the_loop() -> dict[str, object]:
            return {
                "same_loop": asyncio.get_running_loop() is loop,
                "loop_thread": threading.get_ident() == loop_thread,
                "var": var.get(),
            }

        seen["nested"] = async_to_sync(back_on_the_loop)()
        return seen

    first, second = await sync_to_async(_thread)(), await sync_to_async(_thread)()
    pool = await sync_to_async(_thread, thread_sensitive=False)()
    conn_a = await sync_to_async(_connection_id)()
    conn_b = await sync_to_async(_connection_id)()
    seen = await sync_to_async(sync_side)()
    return JsonResponse(
        {
            "thread_sensitive_same_thread": first == second,
            "off_the_loop": first != loop_thread,
            "pool_elsewhere": pool not in (first, loop_thread),
            "same_db_connection": conn_a == conn_b,
            "in_thread": seen,
            "var_after": var.get(),
            "local_after": getattr(local, "value", None),
            "task": asyncio.current_task() is not None,
        }
    )


def sync_probe(request):
    outer = threading.get_ident()

    async def on_a_loop() -> dict[str, object]:
        inner = await sync_to_async(_thread)()
        return {
            "loop_thread_is_caller": threading.get_ident() == outer,
            "back_in_caller": inner == outer,
        }

    var.set("set by the sync view")
    first = async_to_sync(on_a_loop)()
    return HttpResponse(
        json.dumps({"first": first, "var": var.get()}), content_type="application/json"
    )


async def raise_in_thread(request):
    def fails() -> None:
        raise KeyError("raised in a worker thread")

    await sync_to_async(fails)()
    return HttpResponse("unreachable")
