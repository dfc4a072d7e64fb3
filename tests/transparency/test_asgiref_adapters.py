"""What code around asgiref's adapters can observe must not change under hopwatch.

APM agents (New Relic, at least) wrap ``SyncToAsync.thread_handler`` and look
at the ``functools.partial`` of the user's function it is handed; asgiref's
own suite has a canary for it since 3.12
(``test_sync_to_async_thread_handler_child_is_partial``). These tests make the
same check on every asgiref version hopwatch supports, for both ways an agent
hooks in: a subclass, and a wrapper on the class attribute.
"""

from __future__ import annotations

import asyncio
import functools
import types
from importlib.metadata import version
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, sync_to_async

from tests.transparency.helpers import both

#: asgiref 3.12.0 alone hands ``thread_handler`` a closure, not a partial (3.12.1
#: went back to the partial and added its canary): what an override sees there is
#: still the same with hopwatch as without, but it is not the user's function.
CHILD_IS_A_CLOSURE = version("asgiref") == "3.12.0"


def sync_function(value: int) -> int:
    return value * 2


def _child(args: tuple[Any, ...]) -> Any:
    # thread_handler(self, loop, [source_task,] exc_info, [task_context,] func, child):
    # the partial of the user's function is the last positional argument (3.6-3.13).
    return args[-1]


def _describe(child: Any) -> tuple[Any, ...]:
    return (
        type(child),
        getattr(child, "func", None) is sync_function,
        getattr(child, "args", None),
        dict(getattr(child, "keywords", {})),
    )


def test_a_thread_handler_override_sees_the_users_function():
    def scenario() -> tuple[Any, ...]:
        seen: list[Any] = []

        class Instrumented(SyncToAsync):
            def thread_handler(self, *args: Any, **kwargs: Any) -> Any:
                seen.append(_describe(_child(args)))
                return super().thread_handler(*args, **kwargs)

        result = asyncio.run(Instrumented(sync_function)(21))
        return result, seen

    with_, without = both(scenario)
    if CHILD_IS_A_CLOSURE:
        assert without == (42, [(types.FunctionType, False, None, {})])
    else:
        assert without == (42, [(functools.partial, True, (21,), {})])
    assert with_ == without


@pytest.mark.skipif(
    CHILD_IS_A_CLOSURE,
    reason="asgiref 3.12.0 hands thread_handler a closure: this agent's wrapper, which"
    " reads the partial's keywords, fails there without hopwatch too",
)
def test_a_class_level_thread_handler_wrapper_sees_the_users_function():
    def scenario() -> tuple[Any, ...]:
        seen: list[Any] = []
        original = SyncToAsync.__dict__["thread_handler"]

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            child = _child(args)
            seen.append(_describe(child))
            child.keywords.pop("_agent_injected", None)  # what New Relic's wrapper does
            return original(self, *args, **kwargs)

        SyncToAsync.thread_handler = wrapper  # type: ignore[method-assign]
        try:
            result = asyncio.run(sync_to_async(sync_function)(21, _agent_injected=1))
        finally:
            SyncToAsync.thread_handler = original  # type: ignore[method-assign]
        return result, seen

    with_, without = both(scenario)
    assert without == (42, [(functools.partial, True, (21,), {"_agent_injected": 1})])
    assert with_ == without


def test_what_a_crossing_returns_can_be_weakly_referenced_and_awaited_as_before():
    # A coroutine can be weakly referenced (task registries, debuggers do); with the C
    # accelerator sync_to_async's call returns hopwatch's awaitable, not a coroutine
    # (docs/how-it-works.md says what that changes): it must allow the same.
    import weakref

    def scenario() -> tuple[Any, ...]:
        async def main() -> tuple[Any, ...]:
            pending = sync_to_async(sync_function)(21)
            ref = weakref.ref(pending)
            alive = ref() is pending
            result = await pending
            del pending
            return alive, result, ref() is None

        return asyncio.run(main())

    with_, without = both(scenario)
    assert without == (True, 42, True)
    assert with_ == without
