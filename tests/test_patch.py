"""The asgiref instrumentation on its own: install/uninstall, transparency, what a hop records.

Transparency tests run each scenario twice, with hopwatch and without it, and
require the same observable outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.local import Local
from asgiref.sync import (
    AsyncToSync,
    SyncToAsync,
    ThreadSensitiveContext,
    async_to_sync,
    markcoroutinefunction,
    sync_to_async,
)
from django.dispatch import Signal

import hopwatch
from hopwatch import _hotpath, _patch
from hopwatch._recorder import (
    Ledger,
    current_ledger,
    current_scope,
    enter_scope,
    late,
    unscoped,
    value_outside,
)
from hopwatch.apps import activate, deactivate
from hopwatch.testing import count_hops
from tests.helpers import STEPS, delegated, stepped_by_hand, stop_of, wait_until


@contextlib.contextmanager
def without_hopwatch() -> Iterator[None]:
    deactivate()
    try:
        assert not hopwatch.is_installed()
        yield
    finally:
        activate()
        assert hopwatch.is_installed()


@contextlib.contextmanager
def ledger() -> Iterator[Ledger]:
    scope = Ledger()
    token = current_scope.set(scope)
    try:
        yield scope
    finally:
        current_scope.reset(token)


def both(scenario: Callable[[], Any]) -> tuple[Any, Any]:
    with_ = scenario()
    with without_hopwatch():
        without = scenario()
    return with_, without


def _class_state(cls: type) -> dict[str, Any]:
    return dict(vars(cls))


# --- install / uninstall ---------------------------------------------------------


def test_installed_by_the_app():
    assert hopwatch.is_installed()
    assert SyncToAsync.__dict__["__call__"] is _patch.patched(SyncToAsync)
    assert AsyncToSync.__dict__["__call__"] is _patch.patched(AsyncToSync)


def test_uninstall_restores_asgiref_exactly_and_install_is_idempotent():
    with without_hopwatch():
        pristine_s2a = _class_state(SyncToAsync)
        pristine_a2s = _class_state(AsyncToSync)
        hopwatch.install()
        hopwatch.install()  # installing twice is installing once
        assert SyncToAsync.__dict__["__call__"] is _patch.patched(SyncToAsync)
        assert SyncToAsync.__call__.__wrapped__ is pristine_s2a["__call__"]
        hopwatch.uninstall()
        hopwatch.uninstall()  # and uninstalling twice is harmless
        assert _class_state(SyncToAsync) == pristine_s2a
        assert _class_state(AsyncToSync) == pristine_a2s
        for name, value in pristine_s2a.items():
            assert SyncToAsync.__dict__[name] is value, name
        for name, value in pristine_a2s.items():
            assert AsyncToSync.__dict__[name] is value, name


def test_concurrent_install_and_uninstall_leave_a_consistent_state():
    with without_hopwatch():
        original = SyncToAsync.__dict__["__call__"]
        barrier = threading.Barrier(8)

        def flip(i: int) -> None:
            barrier.wait()
            for _ in range(200):
                hopwatch.install()
                hopwatch.uninstall()

        threads = [threading.Thread(target=flip, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not hopwatch.is_installed()
        assert SyncToAsync.__dict__["__call__"] is original


def test_instances_made_before_install_are_seen():
    with without_hopwatch():
        early = sync_to_async(lambda: 7)  # created while uninstalled

    async def main() -> int:
        with ledger() as scope:
            value = await early()
        assert len(scope) == 1
        return value

    assert asyncio.run(main()) == 7


def _managed_dict_slot(obj: object) -> int | None:
    """CPython 3.11 to 3.13: the word three before an object with a managed dict:
    empty (3.11, 3.13) or tagged (3.12) while it has no dict of its own."""
    import ctypes

    return ctypes.c_void_p.from_address(id(obj) - 3 * ctypes.sizeof(ctypes.c_void_p)).value


def _attributes_inline(obj: object) -> bool:
    """Whether obj's attributes are in its inline values and it has no dict."""
    import ctypes

    slot = _managed_dict_slot(obj)
    if sys.version_info >= (3, 13):
        # the values follow the object's header; their fourth byte says they are valid
        valid = ctypes.c_uint8.from_address(id(obj) + object.__basicsize__ + 3).value
        return slot is None and valid == 1
    return slot is None or (sys.version_info >= (3, 12) and slot & 1 == 1)


#: The CPython versions whose inline values the C hop path reads.
_INLINE_VALUES = sys.implementation.name == "cpython" and (3, 11) <= sys.version_info < (3, 14)


@pytest.mark.skipif(not _INLINE_VALUES, reason="inline values: CPython 3.11 to 3.13")
def test_an_adapters_attributes_stay_where_python_keeps_them():
    """CPython 3.11 to 3.13 keep a new instance's attributes in inline values, which
    the interpreter's fast attribute reads depend on; on 3.11 and 3.12 reading
    ``__dict__`` (or asking for its pointer) turns them into a dict for good, and on
    3.13 it makes a dict that shares them (an allocation per adapter). hopwatch
    reads an adapter's attributes, and tags it with its cause, without doing that:
    asgiref's own reads of ``self.awaitable`` and the rest stay on the fast path."""
    from hopwatch import _causes

    async def noop() -> None:
        return None

    plain = AsyncToSync(noop)
    tagged = AsyncToSync(noop)
    if not (_attributes_inline(plain) and _attributes_inline(tagged)):
        pytest.skip("this asgiref gives AsyncToSync a __dict__ itself")
    _causes.tag(tagged, _causes.Cause("other", "tests.noop", None))

    def in_thread() -> None:
        plain()
        tagged()

    async def main() -> None:
        with ledger() as scope:
            await sync_to_async(in_thread)()
        assert len(scope) == 3

    asyncio.run(main())
    assert _attributes_inline(plain), "hopwatch made the adapter a __dict__"
    assert _attributes_inline(tagged), "tagging made the adapter a __dict__"
    assert vars(tagged)[_causes.TAG_ATTR].site == "tests.noop"  # the tag is an attribute


@pytest.mark.skipif(not _INLINE_VALUES, reason="inline values: CPython 3.11 to 3.13")
def test_an_attribute_read_from_inline_values_is_getattrs_answer():
    """The C hop path reads an adapter's attributes (its tag here) straight from
    its inline values, by the name's place among the class's shared keys. The
    answer is getattr's: for a name set on the instance, one never set on it, one
    deleted, and one whose key among the shared keys is an equal string that is
    not the name's own object (put there through another instance's dict)."""
    from hopwatch import _causes

    async def noop() -> None:
        return None

    class Adapter:  # made fresh: its shared keys hold only what this test puts there
        def __init__(self) -> None:
            self.awaitable = noop

    tag = _causes.Cause("other", "tests.tagged", None)
    other_tag = _causes.Cause("other", "tests.through_a_dict", None)
    first, plain, tagged, deleted = Adapter(), Adapter(), Adapter(), Adapter()
    untagged_cause = _hotpath.attribute(plain, noop, None)
    assert untagged_cause is not tag
    # an equal name, not the interned one, becomes a shared key through first's dict
    equal_name = "".join(["_hopwatch", "_cause"])
    assert equal_name == _causes.TAG_ATTR and equal_name is not _causes.TAG_ATTR
    vars(first)[equal_name] = other_tag
    _causes.tag(tagged, tag)
    _causes.tag(deleted, tag)
    delattr(deleted, _causes.TAG_ATTR)
    for adapter in (plain, tagged, deleted):
        assert _attributes_inline(adapter)
    assert _hotpath.attribute(tagged, noop, None) is tag
    assert _hotpath.attribute(plain, noop, None) is untagged_cause
    assert _hotpath.attribute(deleted, noop, None) is untagged_cause
    assert _hotpath.attribute(first, noop, None) is other_tag  # from its dict
    for adapter in (plain, tagged, deleted):
        assert _attributes_inline(adapter), "reading the tag made the adapter a __dict__"


@pytest.mark.skipif(not _INLINE_VALUES, reason="inline values: CPython 3.11 to 3.13")
def test_an_attribute_read_from_inline_values_follows_the_keys_as_they_grow():
    """The C hop path remembers, per class and name, where it found the name among
    the class's shared keys, or that they lacked it. Each answer stays getattr's
    while the keys gain the name, other instances set and delete it, and two
    classes keep it at different places."""
    from hopwatch import _causes

    async def noop() -> None:
        return None

    class Adapter:  # made fresh: the tag is not among its shared keys yet
        def __init__(self) -> None:
            self.awaitable = noop

    class Wider:  # the tag comes third among its keys
        def __init__(self) -> None:
            self.awaitable = noop
            self.extra = None

    tag = _causes.Cause("other", "tests.tagged", None)
    later_tag = _causes.Cause("other", "tests.tagged_later", None)
    wide_tag = _causes.Cause("other", "tests.wide", None)
    first = Adapter()
    untagged = _hotpath.attribute(first, noop, None)
    assert untagged not in (tag, later_tag, wide_tag)

    def read(adapter: object) -> object:
        assert _attributes_inline(adapter)
        return _hotpath.attribute(adapter, noop, None)

    def causes_of(*adapters: object) -> list[object]:
        # each read twice: the second one goes by what the first remembered
        return [cause for adapter in adapters for cause in (read(adapter), read(adapter))]

    assert causes_of(first) == [untagged] * 2  # the keys lack the tag
    second = Adapter()
    _causes.tag(second, tag)  # the keys gain it
    assert causes_of(first, second) == [untagged, untagged, tag, tag]
    _causes.tag(first, later_tag)
    wide, wide_untagged = Wider(), Wider()
    assert causes_of(wide_untagged) == [untagged] * 2
    _causes.tag(wide, wide_tag)
    assert causes_of(first, wide, second, wide_untagged) == [
        *[later_tag] * 2,
        *[wide_tag] * 2,
        *[tag] * 2,
        *[untagged] * 2,
    ]
    delattr(first, _causes.TAG_ATTR)
    third = Adapter()
    assert causes_of(first, third, second) == [untagged] * 4 + [tag] * 2
    _causes.tag(third, later_tag)
    assert causes_of(third, first, wide) == [*[later_tag] * 2, *[untagged] * 2, *[wide_tag] * 2]

    # More classes than the table has entries: each class's answer survives the
    # others evicting and moving its entry.
    classes = [type(f"Adapter{i}", (Adapter,), {}) for i in range(300)]
    adapters = [cls() for cls in classes]
    for i, adapter in enumerate(adapters):
        if i % 3:
            _causes.tag(adapter, tag if i % 3 == 1 else later_tag)
    expected = [(untagged, tag, later_tag)[i % 3] for i in range(len(adapters))]
    for _ in range(2):
        assert [read(adapter) for adapter in adapters] == expected
        assert [read(adapter) for adapter in reversed(adapters)] == expected[::-1]


def test_an_attribute_read_follows_a_change_to_its_class():
    """The C hop path remembers, per class and name, that the class defines nothing
    of that name, for as long as the class is unchanged (its version tag, which
    Python 3.13 keeps valid without the flag 3.11 and 3.12 set). A property of that
    name added to the class afterwards wins over the instance's value, as getattr
    says, and once it is removed the instance's value is read again."""
    from hopwatch import _causes

    async def noop() -> None:
        return None

    class Adapter:
        def __init__(self) -> None:
            self.awaitable = noop

    tag = _causes.Cause("other", "tests.tagged", None)
    class_tag = _causes.Cause("other", "tests.from_the_class", None)
    adapter = Adapter()
    _causes.tag(adapter, tag)
    for _ in range(3):  # read, and remembered
        assert _hotpath.attribute(adapter, noop, None) is tag
    setattr(Adapter, _causes.TAG_ATTR, property(lambda self: class_tag))
    assert getattr(adapter, _causes.TAG_ATTR) is class_tag
    for _ in range(3):
        assert _hotpath.attribute(adapter, noop, None) is class_tag
    delattr(Adapter, _causes.TAG_ATTR)
    for _ in range(3):
        assert _hotpath.attribute(adapter, noop, None) is tag


# --- transparency -------------------------------------------------------------------


def test_return_values():
    def scenario() -> tuple[Any, Any]:
        async def double(x: int) -> int:
            return x * 2

        def sync_side() -> Any:
            return async_to_sync(double)(21)

        async def main() -> Any:
            return await sync_to_async(sync_side)(), await sync_to_async(
                dict, thread_sensitive=False
            )(a=1)

        return asyncio.run(main())

    with_, without = both(scenario)
    assert with_ == without == (42, {"a": 1})


def test_a_sync_to_async_stepped_every_way_ends_as_asgirefs_own():
    """What ``sync_to_async(f)()`` gives back is stepped by ``await``, by ``yield
    from`` (both step it through ``__next__`` from Python 3.12 on, where it is not
    a coroutine) and by hand with ``__next__()``, ``next()`` and ``send(None)``.
    Every way it ends in StopIteration with the function's value, None and a tuple
    included, as asgiref's own coroutine ends; with hopwatch, one hop each."""

    def returning(value: Any) -> Callable[[], Any]:
        return lambda: value

    def scenario() -> tuple[list[Any], int]:
        async def main() -> tuple[list[Any], int]:
            ended = []
            with ledger() as scope:
                for value in (None, 7, (1, 2)):
                    ended.append(await sync_to_async(returning(value))())
                    ended.append(await delegated(sync_to_async(returning(value))()))
                    for step in STEPS:
                        awaitable = sync_to_async(returning(value))()
                        ended.append(await stepped_by_hand(awaitable, step))
            return ended, len(scope)

        return asyncio.run(main())

    (ended, hops), (ended_bare, hops_bare) = both(scenario)
    assert ended == ended_bare
    assert ended[:5] == [None, None, *[("stopped", None, ())] * 3]
    assert ended[10:] == [(1, 2), (1, 2), *[("stopped", (1, 2), ((1, 2),))] * 3]
    assert (hops, hops_bare) == (15, 0)


def test_the_stopiteration_a_hop_ends_with_is_the_one_asgirefs_coroutine_ends_with():
    """Stepped by hand, a hop ends in a StopIteration whose every part is what
    asgiref's own coroutine gives: its type, args, value, cause, the context it
    is chained to when it is raised while an exception is being handled (and
    none when not), and no notes or attributes. (From Python 3.12 on hopwatch
    makes this exception itself at every hop returning a value, since `await`
    takes the value out of it.)"""

    class Handled(Exception):
        pass

    def parts(stop: StopIteration, handled: BaseException | None) -> tuple[Any, ...]:
        return (
            type(stop),
            stop.args,
            stop.value,
            stop.__cause__,
            stop.__context__ is handled,
            type(stop.__context__),
            stop.__suppress_context__,
            getattr(stop, "__notes__", None),
            vars(stop),
            [frame.f_code.co_name for frame, _ in traceback.walk_tb(stop.__traceback__)],
        )

    async def ended(value: Any, step: Callable[[Any], Any], handle: bool) -> tuple[Any, ...]:
        handled = Handled("being handled")

        def while_handled(iterator: Any) -> Any:  # each step while `handled` is handled
            try:
                raise handled
            except Handled:
                return step(iterator)

        stop = await stop_of(sync_to_async(lambda: value)(), while_handled if handle else step)
        return parts(stop, handled if handle else None)

    def scenario() -> tuple[list[tuple[Any, ...]], int]:
        async def main() -> tuple[list[tuple[Any, ...]], int]:
            seen = []
            with ledger() as scope:
                for value in (7, (1, 2), None):
                    for step in STEPS:
                        seen.append(await ended(value, step, False))
                        seen.append(await ended(value, step, True))
            return seen, len(scope)

        return asyncio.run(main())

    (seen, hops), (seen_bare, hops_bare) = both(scenario)
    assert seen == seen_bare
    assert seen[0][:9] == (StopIteration, (7,), 7, None, True, type(None), False, None, {})
    assert seen[1][:9] == (StopIteration, (7,), 7, None, True, Handled, False, None, {})
    assert seen[6][1:3] == (((1, 2),), (1, 2))
    assert (hops, hops_bare) == (18, 0)


def _user_frames(exc: BaseException) -> list[tuple[str, str]]:
    """(file, function) of each traceback frame, hopwatch's own hidden frames left out."""
    frames = []
    for frame, _lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename.startswith(str(_patch.__file__).rsplit("/", 1)[0]):
            assert frame.f_locals.get("__traceback_hide__") is True
            continue
        frames.append((frame.f_code.co_filename, frame.f_code.co_name))
    return frames


def test_exceptions_and_their_tracebacks():
    class Boom(Exception):
        pass

    def scenario() -> tuple[type, tuple[Any, ...], list[tuple[str, str]], list[tuple[str, str]]]:
        def fails() -> None:
            raise Boom("sync side", 1)

        async def afails() -> None:
            raise Boom("async side", 2)

        async def main() -> Any:
            try:
                await sync_to_async(fails)()
            except Boom as exc:
                first = exc
            try:
                await sync_to_async(async_to_sync(afails))()
            except Boom as exc:
                second = exc
            return first, second

        first, second = asyncio.run(main())
        return (
            type(first),
            first.args + second.args,
            _user_frames(first),
            _user_frames(second),
        )

    with_, without = both(scenario)
    assert with_ == without
    assert with_[1] == ("sync side", 1, "async side", 2)


def test_contextvars_flow_both_ways():
    var: contextvars.ContextVar[str] = contextvars.ContextVar("hopwatch_test_var")

    def scenario() -> tuple[str, str, str]:
        async def async_reader() -> str:
            seen = var.get()
            var.set("set on the loop")
            return seen

        def sync_side() -> str:
            seen = var.get()
            inner = async_to_sync(async_reader)()
            var.set(f"set in the thread after {inner!r}, seen {var.get()!r}")
            return seen

        async def main() -> tuple[str, str, str]:
            var.set("set by the caller")
            seen_in_thread = await sync_to_async(sync_side)()
            return seen_in_thread, var.get(), "done"

        return asyncio.run(main())

    with_, without = both(scenario)
    assert with_ == without
    assert with_[0] == "set by the caller"
    assert "set on the loop" in with_[1]


def test_what_an_async_to_syncs_code_sets_reaches_its_caller_as_the_same_objects():
    """On the loop, an async_to_sync's code runs in a context hopwatch made for it
    (a copy of its task's, with the hop as the scope); what the code sets there
    reaches the caller as it would without hopwatch (the very objects asgiref
    carries back: an equal value is not the same value), after several steps,
    with a token made in one step reset in a later one, and when the code
    raises."""
    names = ("same", "reset", "late", "raised")
    same, reset, late_, raised = (contextvars.ContextVar(f"hopwatch_test_{n}") for n in names)
    default = object()
    defaulted = contextvars.ContextVar("hopwatch_test_defaulted", default=default)

    def scenario() -> tuple[Any, ...]:
        async def code() -> list[int]:
            made = [1]
            same.set(made)  # equal to the caller's value, not the same object
            token = reset.set("for one step")
            await asyncio.sleep(0)
            reset.reset(token)
            await asyncio.sleep(0)
            late_.set("after two steps")
            defaulted.set(default)  # the variable's own default, set explicitly
            return made

        async def failing() -> None:
            try:
                await asyncio.sleep(0)
                raise ValueError("from the code")
            finally:
                raised.set("set as it raised")

        def sync_side() -> tuple[Any, ...]:
            before = [1]
            same.set(before)
            defaulted.set("the caller's")
            made = async_to_sync(code)()
            with contextlib.suppress(ValueError):
                async_to_sync(failing)()
            now = same.get()
            return (
                now is made,
                now is not before,
                defaulted.get() is default,
                reset.get("unset"),
                late_.get(),
                raised.get(),
            )

        async def main() -> tuple[Any, ...]:
            return await sync_to_async(sync_side)()

        return asyncio.run(main())

    with_, without = both(scenario)
    assert with_ == without  # asgiref 3.8 compares with ==, later ones with `is`
    assert with_[2:] == (True, "unset", "after two steps", "set as it raised")


def test_what_a_cancelled_async_to_syncs_code_sets_reaches_its_caller():
    """Cancelled while it waits (the exception is thrown into it): its ``finally``
    still runs with the hop as the scope, and what it sets there is carried back
    to the caller, as without hopwatch."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("hopwatch_test_cancelled")
    scopes: list[Any] = []

    def scenario() -> list[str]:
        seen: list[str] = []

        async def main() -> None:
            started = asyncio.Event()
            loop = asyncio.get_running_loop()

            async def code() -> None:
                loop.call_soon(started.set)
                try:
                    await asyncio.sleep(30)
                finally:
                    scopes.append(current_scope.get())
                    var.set("set while cancelled")

            def sync_side() -> None:
                try:
                    async_to_sync(code)()
                except asyncio.CancelledError:
                    seen.append(var.get("unset"))
                    raise

            task = asyncio.ensure_future(sync_to_async(sync_side)())
            await started.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        with ledger():
            asyncio.run(main())
        return seen

    with_, without = both(scenario)
    assert with_ == without == ["set while cancelled"]
    hop = scopes[0]
    assert type(hop) is hopwatch.Hop and hop.direction == "async_to_sync"
    assert hop.outcome == "cancelled"


def test_cancellation_propagates():
    def scenario() -> tuple[str, bool]:
        started, finished = threading.Event(), threading.Event()

        def slow() -> None:
            started.set()
            time.sleep(0.2)
            finished.set()

        async def main() -> str:
            task = asyncio.ensure_future(sync_to_async(slow)())
            # cancelled while it runs in its thread (a fixed delay may come
            # before the thread starts on a loaded machine)
            await wait_until(started.is_set)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return "cancelled"
            return "not cancelled"

        outcome = asyncio.run(main())
        finished.wait(2)
        return outcome, finished.is_set()

    with_, without = both(scenario)
    assert with_ == without == ("cancelled", True)


def test_cancelled_hop_is_recorded_as_cancelled():
    async def main() -> Ledger:
        with ledger() as scope:
            started = threading.Event()

            def sleep() -> None:
                started.set()
                time.sleep(0.2)

            task = asyncio.ensure_future(sync_to_async(sleep)())
            await wait_until(started.is_set)  # running in its thread
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return scope

    scope = asyncio.run(main())
    (hop,) = scope.hops()
    assert hop.outcome == "cancelled"
    assert hop.started_ns  # it had started running in its thread


def test_a_hop_dropped_while_it_waits_is_ended_and_counted_once():
    """A sync_to_async's awaitable driven by hand and then dropped, never closed,
    while its code runs in the worker: finalized as a coroutine is (closed), so
    its hop is ended and counted, once; one that finished is counted once too."""

    async def main() -> Ledger:
        with ledger() as scope:
            started, release = threading.Event(), threading.Event()

            def blocks() -> None:
                started.set()
                release.wait(5)

            waiting = sync_to_async(blocks, thread_sensitive=False)()
            waiting.send(None)  # its first step: the hop starts, the worker runs
            await wait_until(started.is_set)
            del waiting
            assert len(scope) == 1
            release.set()
            finished = sync_to_async(lambda: 7, thread_sensitive=False)()
            assert await finished == 7
            del finished
            assert len(scope) == 2
        return scope

    scope = asyncio.run(main())
    assert sorted(hop.outcome for hop in scope.hops()) == ["error", "ok"]


def test_a_hop_collected_in_a_cycle_while_it_waits_leaves_later_ones_finalized_too():
    """The garbage collector finalizes a waiting awaitable caught in a cycle (and marks
    it finalized); the C path reuses freed awaitables, and must not reuse that one:
    a later awaitable dropped while it waits is finalized, its hop counted, as ever."""

    async def main() -> Ledger:
        with ledger() as scope:
            release = threading.Event()

            def blocks() -> None:
                release.wait(5)

            def start_waiting() -> Any:
                started = threading.Event()

                def run() -> None:
                    started.set()
                    blocks()

                waiting = sync_to_async(run, thread_sensitive=False)()
                waiting.send(None)
                return waiting, started

            waiting, started = start_waiting()
            await wait_until(started.is_set)
            cycle: list[Any] = [waiting]
            cycle.append(cycle)
            del waiting, cycle
            gc.collect()
            assert len(scope) == 1  # finalized by the collector: ended and counted
            release.set()
            for _ in range(3):  # finished ones, freed and made again
                assert await sync_to_async(lambda: 7, thread_sensitive=False)() == 7
            assert len(scope) == 4
            release.clear()
            waiting, started = start_waiting()
            await wait_until(started.is_set)
            del waiting  # dropped by its last reference: finalized, counted
            assert len(scope) == 5
            release.set()
        return scope

    scope = asyncio.run(main())
    assert sorted(hop.outcome for hop in scope.hops()) == ["error", "error", "ok", "ok", "ok"]


def test_a_hop_cancelled_before_it_started_ran_on_no_thread():
    # Queued behind a busy thread-sensitive thread, cancelled before it ran: it has
    # no thread, and the ledger counts it (the thread fields' fast path reads that).
    async def main() -> Ledger:
        with ledger() as scope:
            started, release = threading.Event(), threading.Event()

            def busy() -> None:
                started.set()
                release.wait(5)

            first = asyncio.ensure_future(sync_to_async(busy)())
            await wait_until(started.is_set)
            queued = asyncio.ensure_future(sync_to_async(lambda: None)())
            await asyncio.sleep(0.01)  # handed to the executor, behind busy()
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            release.set()
            await first
        return scope

    scope = asyncio.run(main())
    ran, cancelled = sorted(scope.hops(), key=lambda hop: hop.outcome != "ok")
    assert (ran.outcome, cancelled.outcome) == ("ok", "cancelled")
    assert ran.thread_id and not cancelled.thread_id
    assert scope.threadless == 1
    assert len(scope.thread_ids) == 1


def test_thread_sensitive_routing():
    def scenario() -> tuple[bool, bool, bool]:
        main_thread = threading.get_ident()

        def ident() -> int:
            return threading.get_ident()

        async def outer_async() -> tuple[int, int]:
            return await sync_to_async(ident)(), await sync_to_async(ident)()

        # Under async_to_sync, thread-sensitive code runs in the outer sync thread.
        a, b = async_to_sync(outer_async)()

        async def from_loop() -> tuple[int, int, int]:
            return (
                await sync_to_async(ident)(),
                await sync_to_async(ident)(),
                await sync_to_async(ident, thread_sensitive=False)(),
            )

        c, d, e = asyncio.run(from_loop())
        return a == b == main_thread, c == d != main_thread, e != c

    with_, without = both(scenario)
    assert with_ == without == (True, True, True)


def test_thread_sensitive_context():
    def scenario() -> tuple[bool, bool]:
        def ident() -> int:
            return threading.get_ident()

        async def in_context() -> tuple[int, int]:
            async with ThreadSensitiveContext():
                return await sync_to_async(ident)(), await sync_to_async(ident)()

        async def main() -> tuple[bool, bool]:
            (a, b), (c, d) = await asyncio.gather(in_context(), in_context())
            return a == b and c == d, a != c

        return asyncio.run(main())

    with_, without = both(scenario)
    assert with_ == without == (True, True)


def test_async_single_thread_context():
    asgiref_sync = pytest.importorskip("asgiref.sync")
    context_class = getattr(asgiref_sync, "AsyncSingleThreadContext", None)
    if context_class is None:
        pytest.skip("AsyncSingleThreadContext arrived in asgiref 3.10")

    def scenario() -> bool:
        async def ident() -> int:
            return threading.get_ident()

        with context_class():
            first = async_to_sync(ident)()
            second = async_to_sync(ident)()
        return first == second

    with_, without = both(scenario)
    assert with_ == without is True


def test_deadlock_detection():
    def scenario() -> str:
        async def main() -> str:
            SyncToAsync.deadlock_context.set(True)
            try:
                await sync_to_async(lambda: None)()
            except RuntimeError as exc:
                return str(exc)
            return "no error"

        return asyncio.run(main())

    with_, without = both(scenario)
    assert with_ == without
    assert "deadlock" in with_


def test_refused_hop_is_recorded_as_an_error_that_never_ran():
    async def main() -> Ledger:
        with ledger() as scope:
            SyncToAsync.deadlock_context.set(True)
            with pytest.raises(RuntimeError):
                await sync_to_async(lambda: None)()
        return scope

    (hop,) = asyncio.run(main()).hops()
    assert hop.outcome == "error"
    assert hop.started_ns == 0 and hop.run_ns == 0


def test_asgiref_local():
    def scenario() -> tuple[str, str]:
        local = Local()

        def sync_side() -> str:
            seen = local.value
            local.value = "from the thread"
            return seen

        async def main() -> tuple[str, str]:
            local.value = "from the loop"
            seen = await sync_to_async(sync_side)()
            return seen, local.value

        return asyncio.run(main())

    with_, without = both(scenario)
    assert with_ == without == ("from the loop", "from the thread")


def test_adapter_as_method_decorator():
    class Service:
        def __init__(self) -> None:
            self.factor = 3

        @sync_to_async
        def times(self, x: int) -> int:
            return self.factor * x

    async def main() -> tuple[int, int]:
        with ledger() as scope:
            value = await Service().times(5)
        return value, len(scope)

    assert asyncio.run(main()) == (15, 1)


# --- what a hop records ---------------------------------------------------------------


def _noop() -> None:
    return None


def test_hop_fields_for_nested_crossings():
    async def deepest() -> None:
        await sync_to_async(_noop)()

    def middle() -> None:
        async_to_sync(deepest)()

    async def main() -> Ledger:
        with ledger() as scope:
            await sync_to_async(middle)()
        return scope

    scope = asyncio.run(main())
    hops = {hop.depth: hop for hop in scope.hops()}
    assert sorted(hops) == [1, 2, 3]
    outer, bridge, inner = hops[1], hops[2], hops[3]
    assert (outer.direction, bridge.direction, inner.direction) == (
        "sync_to_async",
        "async_to_sync",
        "sync_to_async",
    )
    assert bridge.parent is outer and inner.parent is bridge
    assert outer.thread_sensitive is True and bridge.thread_sensitive is None
    assert not bridge.new_loop  # back onto the running loop
    # the bridge ran on the loop's thread; the inner hop in the outer hop's thread
    assert inner.thread_id == outer.thread_id != bridge.thread_id
    assert scope.max_depth == 3
    for hop in (outer, bridge, inner):
        assert hop.called_ns <= hop.started_ns <= hop.ended_ns <= hop.resumed_ns
        assert hop.wall_ns == hop.wait_ns + hop.run_ns + hop.resume_ns
    assert outer.cause.site.endswith("test_hop_fields_for_nested_crossings.<locals>.middle")
    assert outer.cause.call_site.startswith("tests/test_patch.py:")
    assert outer.cause.call_site.endswith(" in main")


def test_each_user_call_site_is_named_through_a_library_frame_and_directly():
    """A crossing called by library code names the first user frame above it, one
    per user call site (the library frame is the same for both sites); one called
    from user code names that frame. Attribution caches both: repeats name the same."""

    async def anoop() -> None:
        return None

    hop = async_to_sync(anoop)

    def site_a() -> None:
        with contextlib.ExitStack() as stack:
            stack.callback(hop)  # called by contextlib's own frame, at its exit

    def site_b() -> None:
        with contextlib.ExitStack() as stack:
            stack.callback(hop)

    def in_thread() -> None:
        for _ in range(3):
            site_a()
        site_b()
        for _ in range(3):
            hop()

    async def main() -> Ledger:
        with ledger() as scope:
            await sync_to_async(in_thread)()
        return scope

    scope = asyncio.run(main())
    call_sites = [
        hop.cause.call_site or "" for hop in scope.hops() if hop.direction == "async_to_sync"
    ]
    assert len(call_sites) == 7, call_sites
    assert all(site.startswith("tests/test_patch.py:") for site in call_sites), call_sites
    assert [site.rsplit(" in ", 1)[1] for site in call_sites] == (
        ["site_a"] * 3 + ["site_b"] + ["in_thread"] * 3
    ), call_sites
    assert len(set(call_sites[:3])) == len(set(call_sites[4:])) == 1


class _Awaitable:
    """Not a coroutine: awaitable through ``__await__``, which makes a crossing."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __await__(self) -> Any:
        yield from sync_to_async(_noop)().__await__()
        return self.value


def _returns_an_awaitable(value: int) -> _Awaitable:
    return _Awaitable(value)


def _returns_a_generator_coroutine(value: int) -> Any:
    @types.coroutine
    def generator() -> Any:
        yield from sync_to_async(_noop)().__await__()
        return value

    return generator()


def _returns_a_sync_to_async(value: int) -> Any:
    return sync_to_async(lambda: value)()


@pytest.mark.parametrize(
    "make",
    [_returns_an_awaitable, _returns_a_generator_coroutine, _returns_a_sync_to_async],
    ids=["__await__", "types.coroutine", "sync_to_async"],
)
@pytest.mark.parametrize("cold", [False, True], ids=["onto-the-loop", "cold"])
def test_an_async_to_sync_of_what_is_not_a_coroutine(make, cold):
    """async_to_sync of a callable marked as a coroutine function that returns another
    awaitable: awaited as asgiref awaits it, timed, and the crossing it makes is the
    async_to_sync's child."""
    function = markcoroutinefunction(make)

    def sync_code() -> int:
        return async_to_sync(function)(7)

    def scenario() -> tuple[int, list[tuple[str, int, str | None]]]:
        with ledger() as scope:
            value = sync_code() if cold else asyncio.run(sync_to_async(sync_code)())
        hops = sorted(
            (hop.direction, hop.depth, hop.parent.direction if hop.parent else None)
            for hop in scope.hops()
        )
        for hop in scope.hops():
            assert hop.called_ns <= hop.started_ns <= hop.ended_ns <= hop.resumed_ns
        return value, hops

    (value, hops), (bare_value, bare_hops) = both(scenario)
    assert value == bare_value == 7 and bare_hops == []
    top = [] if cold else [("sync_to_async", 1, None)]
    depth = 1 if cold else 2
    bridge = ("async_to_sync", depth, None if cold else "sync_to_async")
    assert hops == sorted([*top, bridge, ("sync_to_async", depth + 1, "async_to_sync")])


@pytest.mark.parametrize("cold", [False, True], ids=["onto-the-loop", "cold"])
def test_an_async_to_sync_of_what_cannot_be_awaited_raises_as_asgiref_does(cold):
    function = markcoroutinefunction(lambda: 7)

    def sync_code() -> str:
        try:
            async_to_sync(function)()
        except TypeError as exc:
            return str(exc)
        return "no error"

    def scenario() -> str:
        with ledger():
            return sync_code() if cold else asyncio.run(sync_to_async(sync_code)())

    with_, without = both(scenario)
    assert with_ == without and "await" in without


def _hopwatch_variables() -> list[str]:
    return sorted(var.name for var in contextvars.copy_context() if var.name.startswith("hopwatch"))


@pytest.mark.parametrize("cold", [False, True], ids=["onto-the-loop", "cold"])
def test_hopwatch_keeps_one_context_variable_inside_an_async_to_sync(cold):
    """asgiref passes over every variable of the context on both sides of every
    crossing: the scope and the running async_to_sync share one variable."""
    seen: dict[str, Any] = {}

    async def code() -> None:
        seen["inside"] = _hopwatch_variables()
        seen["value"] = current_scope.get()
        seen["ledger"] = current_ledger()
        seen["scope"] = current_scope.get().scope
        await sync_to_async(_noop)()

    def sync_code() -> None:
        async_to_sync(code)()
        seen["after"] = (_hopwatch_variables(), current_scope.get())

    with ledger() as scope:
        if cold:
            sync_code()
        else:
            asyncio.run(sync_to_async(sync_code)())
    assert seen["inside"] == ["hopwatch_scope"]
    bridge = seen["value"]
    assert type(bridge) is hopwatch.Hop and bridge.direction == "async_to_sync"
    assert seen["ledger"] is scope and seen["scope"] is scope
    assert seen["after"] == (["hopwatch_scope"], scope)  # the hop is not left behind
    (inner,) = [h for h in scope.hops() if h.direction == "sync_to_async" and h.parent is bridge]
    assert inner.depth == bridge.depth + 1


def test_whether_the_loop_is_read_from_the_adapter_follows_asgiref():
    """The expected loop of an async_to_sync is read from the adapter only where
    asgiref keeps it there (before 3.12, ``self.main_event_loop``); the flag is read
    from asgiref's own ``__init__``, so it must say what an adapter really holds,
    made with a loop running and without."""
    from asgiref.sync import AsyncToSync

    async def code() -> None:
        return None

    def made() -> AsyncToSync:
        return AsyncToSync(code)

    async def on_a_loop() -> AsyncToSync:
        return made()

    for adapter in (made(), asyncio.run(on_a_loop())):
        held = "main_event_loop" in vars(adapter) or hasattr(adapter, "main_event_loop")
        assert held is _patch._LOOP_ON_ADAPTER


@pytest.mark.skipif(
    _patch._AWAITABLE_INDEX < 0,
    reason="asgiref 3.8's main_wrap makes the awaitable itself: the hop is the variable's"
    " value in the caller around the call there, and asgiref carries it to the loop",
)
@pytest.mark.parametrize("cold", [False, True], ids=["onto-the-loop", "cold"])
def test_an_async_to_sync_puts_nothing_in_the_contexts_asgiref_carries(cold, monkeypatch):
    """asgiref passes over every variable of the context it carries between the two
    sides, on each side: the hop is the scope variable's value only inside its code,
    on the loop, so what asgiref carries is what it carries without hopwatch."""
    import asgiref.sync as asgiref_sync

    passes: list[list[tuple[str, str]]] = []
    restore = asgiref_sync._restore_context

    def recording(context: contextvars.Context) -> None:
        passes.append(
            sorted(
                (var.name, type(value).__name__)
                for var, value in context.items()
                if var.name.startswith("hopwatch")
            )
        )
        restore(context)

    monkeypatch.setattr(asgiref_sync, "_restore_context", recording)
    inside: list[Any] = []

    async def code() -> None:
        inside.append(current_scope.get())

    def sync_code() -> None:
        async_to_sync(code)()

    def scenario() -> list[list[tuple[str, str]]]:
        passes.clear()
        with ledger():
            if cold:
                sync_code()
            else:
                asyncio.run(sync_to_async(sync_code)())
        return list(passes)

    with_, without = both(scenario)
    assert len(with_) >= 2 and with_ == without
    assert all(seen == [("hopwatch_scope", "Ledger")] for seen in with_), with_
    hop, bare = inside
    assert type(hop) is hopwatch.Hop and hop.direction == "async_to_sync"
    assert type(bare) is Ledger


def test_a_scope_entered_inside_an_async_to_sync_keeps_the_hop_as_parent():
    """count_hops() inside an async_to_sync's code: its hops are counted there and
    in the enclosing scope, and their parent is still the async_to_sync."""
    seen: dict[str, Any] = {}

    async def code() -> None:
        bridge = current_scope.get()
        with count_hops() as counted:
            assert current_ledger() is counted.ledger
            await sync_to_async(_noop)()
        seen.update(bridge=bridge, counted=counted, after=current_scope.get())

    with ledger() as scope:
        async_to_sync(code)()
    bridge, counted = seen["bridge"], seen["counted"]
    assert seen["after"] is bridge  # left by its token: the hop is current again
    (inner,) = counted.ledger.hops()
    assert inner.parent is bridge and inner.depth == 2
    assert counted.ledger.parent is scope and counted.ledger.outer_hop is bridge
    assert scope.count == 2 and scope.max_depth == 2


def test_a_request_opened_inside_an_async_to_sync_keeps_the_hop_as_parent():
    from hopwatch._django_scope import current_request
    from hopwatch._recorder import open_request

    seen: dict[str, Any] = {}

    async def code() -> None:
        bridge = current_scope.get()
        record, token = open_request("asgi")
        try:
            seen.update(current=current_request(), ledger=current_ledger())
            await sync_to_async(_noop)()
        finally:
            current_scope.reset(token)
        seen.update(bridge=bridge, record=record, after=current_scope.get())

    with ledger() as scope:
        async_to_sync(code)()
    bridge, record = seen["bridge"], seen["record"]
    assert seen["current"] is record and seen["ledger"] is record
    assert record.parent is scope and record.outer_hop is bridge
    assert seen["after"] is bridge
    (inner,) = record.hops()
    assert inner.parent is bridge and inner.depth == 2


def test_a_scope_left_from_another_context_restores_what_was_there():
    """Where a ledger's token cannot be used (left from another context), the
    variable goes back to what it was where the ledger was entered: the running
    async_to_sync, or the enclosing ledger."""
    seen: dict[str, Any] = {}

    async def code() -> None:
        bridge = current_scope.get()
        inner = Ledger(parent=current_ledger())
        enter_scope(inner)
        nested = Ledger(parent=current_ledger())
        enter_scope(nested)
        seen.update(
            bridge=bridge,
            outside_inner=value_outside(inner),
            outside_nested=value_outside(nested),
            nested_outer_hop=nested.outer_hop,
        )

    with ledger() as scope:
        async_to_sync(code)()
        plain = Ledger(parent=current_ledger())
        contextvars.copy_context().run(enter_scope, plain)
    assert seen["outside_inner"] is seen["bridge"]
    assert seen["outside_nested"] is not seen["bridge"]  # the inner ledger, not the hop
    assert seen["nested_outer_hop"] is seen["bridge"]
    assert value_outside(plain) is scope and plain.outer_hop is None


def test_parents_are_exact_with_one_adapter_shared_by_concurrent_tasks_and_gathers():
    """The hop reaches its worker with the bound thread_handler, not through the
    context: one adapter instance awaited by many tasks at once, gathers inside
    and outside a nested crossing, and each hop still has its own start, end
    and parent."""
    shared = sync_to_async(_noop, thread_sensitive=False)  # one instance, many tasks

    async def gathered_inside() -> None:
        await asyncio.gather(*(shared() for _ in range(4)))

    def middle() -> None:
        async_to_sync(gathered_inside)()

    async def main() -> Ledger:
        with ledger() as scope:
            await asyncio.gather(
                sync_to_async(middle, thread_sensitive=False)(),
                *(shared() for _ in range(6)),
            )
        return scope

    before = time.perf_counter_ns()
    scope = asyncio.run(main())
    after = time.perf_counter_ns()
    hops = scope.hops()
    assert len(hops) == 1 + 1 + 4 + 6
    # The hop path's clock is time.perf_counter_ns()'s own (the request's
    # start and end are read in Python): every stamp falls between two reads.
    assert all(before < h.called_ns and h.resumed_ns < after for h in hops)
    (outer,) = [h for h in hops if h.cause.site.endswith("middle")]
    (bridge,) = [h for h in hops if h.direction == "async_to_sync"]
    noops = [h for h in hops if h.cause.site.endswith("_noop")]
    inside = [h for h in noops if h.parent is bridge]
    outside = [h for h in noops if h.parent is None]
    assert bridge.parent is outer and outer.parent is None
    assert (len(inside), len(outside)) == (4, 6)
    assert {h.depth for h in inside} == {3} and {h.depth for h in outside} == {1}
    for hop in hops:  # every one timed on its own worker, none twice
        assert 0 < hop.called_ns <= hop.started_ns <= hop.ended_ns <= hop.resumed_ns
    assert scope.count == 12 and scope.max_depth == 3


class _Ident(int):
    """A thread ident of a type hopwatch does not read as one."""


class _LoopOfAnotherKind(asyncio.SelectorEventLoop):
    """A loop whose ``_thread_id`` is not a plain int (as a loop of another kind,
    uvloop's, has none): hopwatch asks asyncio for the running loop instead."""

    @property  # type: ignore[override]
    def _thread_id(self) -> Any:
        owner = self.__dict__.get("_owner")
        return None if owner is None else _Ident(owner)

    @_thread_id.setter
    def _thread_id(self, value: Any) -> None:
        self.__dict__["_owner"] = value


@pytest.mark.parametrize("loop_kind", ["asyncio", "another"])
def test_back_onto_the_running_loop_is_no_new_loop(loop_kind):
    """Whether an async_to_sync ran on a new loop: read from the loop's own
    ``_thread_id`` where asyncio keeps it, else from asyncio.get_running_loop()."""

    async def inner() -> int:
        return 1

    def middle() -> int:
        return async_to_sync(inner)()

    async def main() -> Ledger:
        with ledger() as scope:
            assert await sync_to_async(middle)() == 1
        return scope

    loop = asyncio.new_event_loop() if loop_kind == "asyncio" else _LoopOfAnotherKind()
    try:
        scope = loop.run_until_complete(main())
    finally:
        loop.close()
    bridge = next(hop for hop in scope.hops() if hop.direction == "async_to_sync")
    assert not bridge.new_loop and scope.new_loops == 0


def test_cold_path_counts_a_new_loop():
    async def coro() -> int:
        return 1

    with ledger() as scope:
        assert async_to_sync(coro)() == 1
    (hop,) = scope.hops()
    assert hop.new_loop and hop.direction == "async_to_sync"
    assert scope.new_loops == 1


def test_a_thread_that_once_ran_sync_to_async_goes_back_onto_its_loop():
    """asgiref's thread_handler leaves the loop in SyncToAsync.threadlocal: an
    async_to_sync made later in that thread, outside any sync_to_async (plain
    executor work), schedules onto that loop while it runs; in a thread that never
    ran one, it makes a new loop. hopwatch says which, as asgiref decides it."""

    async def coro() -> int:
        return 1

    def later() -> int:
        return async_to_sync(coro)()

    async def main() -> tuple[Ledger, Ledger]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1) as executor:
            with ledger() as fresh:  # the executor's thread has run no sync_to_async
                in_context = contextvars.copy_context().run  # the ledger, over there too
                assert await loop.run_in_executor(executor, in_context, later) == 1
            await sync_to_async(_noop, thread_sensitive=False, executor=executor)()
            with ledger() as reused:
                in_context = contextvars.copy_context().run
                assert await loop.run_in_executor(executor, in_context, later) == 1
        return fresh, reused

    fresh, reused = asyncio.run(main())
    (cold,) = fresh.hops()
    (back,) = reused.hops()
    assert cold.direction == back.direction == "async_to_sync"
    assert cold.new_loop and fresh.new_loops == 1
    assert not back.new_loop and reused.new_loops == 0
    assert back.thread_id == threading.main_thread().ident  # ran on the loop's thread


def test_hops_outside_any_scope_are_kept_apart():
    before = len(unscoped)
    asyncio.run(sync_to_async(_noop)())
    assert len(unscoped) == before + 1


def test_hops_finishing_after_their_scope_closed_go_to_late():
    before = len(late)
    release = threading.Event()

    async def main() -> None:
        scope = Ledger()
        token = current_scope.set(scope)
        task = asyncio.ensure_future(sync_to_async(release.wait)(5))
        current_scope.reset(token)
        await asyncio.sleep(0.05)
        scope.closed = True  # the request ended; the task it started did not
        release.set()
        await task
        assert len(scope) == 0

    asyncio.run(main())
    assert len(late) == before + 1


def test_ledger_memory_is_bounded_and_counts_exact():
    async def main() -> Ledger:
        scope = Ledger(detail_limit=50, cause_limit=4)
        token = current_scope.set(scope)
        try:
            for i in range(600):
                await sync_to_async([_noop, time.time, dict, list, set, tuple][i % 6])()
        finally:
            current_scope.reset(token)
        return scope

    scope = asyncio.run(main())
    assert len(scope) == 600
    assert len(scope.details) == 50 and scope.detail_dropped == 550
    assert len(scope.causes) == 5  # 4 causes plus the overflow bucket
    assert sum(stats.count for stats in scope.causes.values()) == 600


# --- call sites across tasks ---------------------------------------------------------


def test_a_hop_awaited_in_a_task_of_its_own_names_no_call_site_rather_than_a_wrong_one():
    # asyncio.gather(cache.aget(...)) runs Django's aget in a task of its own:
    # no frame links it to the code that gathered it. The walk for the user's
    # call site stops at the event loop's dispatch instead of naming whatever
    # started the loop (here asyncio.run's caller; under uvicorn, its
    # asyncio_run), which would merge every such hop of every view into one site.
    from django.core.cache import cache

    async def main() -> Ledger:
        with ledger() as scope:
            await asyncio.gather(cache.aget("a"), cache.aget("b"))
            await cache.aget("c")  # awaited here: this line is the call site
        return scope

    scope = asyncio.run(main())
    sites = sorted((h.cause.site, h.cause.call_site or "") for h in scope.hops())
    assert [site for site, _ in sites] == ["BaseCache.aget"] * 3
    call_sites = sorted(call_site for _, call_site in sites)
    assert call_sites[:2] == ["", ""], call_sites
    assert call_sites[2].startswith("tests/test_patch.py:") and call_sites[2].endswith(" in main")


@pytest.mark.internal_errors
def test_a_cause_rule_that_cannot_be_registered_costs_that_rule_only():
    # What a Django that renamed a private method hopwatch names would do to
    # install(): the rule is reported once and skipped, nothing raises.
    from hopwatch import _django_causes, _errors

    before = _errors.total()

    def renamed() -> None:
        raise AttributeError("type object 'BaseHandler' has no attribute '_get_response_async'")

    _django_causes._register("BaseHandler._get_response_async", renamed)
    assert _errors.total() == before + 1


def test_a_rule_registered_later_applies_to_the_next_hop():
    # The hop path caches attribution by code and call site; registering a
    # rule must not leave the earlier answer cached.
    from hopwatch import _causes, _hotpath
    from hopwatch._recorder import intern_cause

    def work() -> int:
        return 1

    async def caller() -> None:
        await sync_to_async(work)()

    async def main() -> Ledger:
        with ledger() as scope:
            await caller()
            _causes.register_caller(caller, lambda target, frame: intern_cause("other", "ruled"))
            try:
                await caller()
            finally:
                del _causes._caller_rules[id(caller.__code__)]
                _causes._caller_cache.clear()
                _hotpath.clear_caches()
        return scope

    first, second = (hop.cause.site for hop in asyncio.run(main()).hops())
    assert first.endswith(".work") and second == "ruled"


# --- a per-instance rule, asked directly -----------------------------------------------


order_paid = Signal()
order_shipped = Signal()


def _sync_receiver(sender, **kwargs):
    return None


def test_a_per_instance_rule_is_asked_directly_once_it_has_answered_for_its_key():
    # Which Signal a sync receiver's hop is for is read from the instance every
    # time; after the first answer the hop path asks that rule itself, not the
    # whole resolve(): still one answer per instance, resolve() called once.
    import asyncio

    from hopwatch import _causes, _hotpath, _patch
    from hopwatch.testing import count_hops

    calls = []

    def counting(adapter, target, frame):
        calls.append(target)
        return _causes.resolve(adapter, target, frame)

    async def send(rounds):
        for _ in range(rounds):
            await order_paid.asend(sender=None)
            await order_shipped.asend(sender=None)

    order_paid.connect(_sync_receiver, weak=False)
    order_shipped.connect(_sync_receiver, weak=False)
    try:
        with count_hops() as warm_up:
            asyncio.run(send(1))  # hopwatch installed, the signals named
        _patch.configure_hot_path(counting)
        _hotpath.clear_caches()
        with count_hops(kind="signal") as hops:
            asyncio.run(send(5))
    finally:
        _patch.configure_hot_path()
        order_paid.disconnect(_sync_receiver)
        order_shipped.disconnect(_sync_receiver)
    assert len(warm_up) == 2
    assert hops.by_site() == {
        f"signal {__name__}.order_paid": 5,
        f"signal {__name__}.order_shipped": 5,
    }
    assert len(calls) == 1  # the first hop; the nine after it asked the rule


def test_the_overhead_is_not_measured_under_an_apms_wrapper_over_the_patch():
    """An APM that wraps SyncToAsync.__call__ after hopwatch (functools.wraps, as
    wrapt-style patches do): hopwatch's patch is no longer the method, so
    hop_tax.measure_overhead says "not measured" (None) rather than install and
    remove the patch under the wrapper; the wrapper stays, and hops through it count."""
    import functools

    from hopwatch import hop_tax

    ours = SyncToAsync.__dict__["__call__"]
    assert _patch.is_installed() and _patch.owns_call(SyncToAsync)

    @functools.wraps(ours)
    def apm_call(self, *args, **kwargs):
        return ours(self, *args, **kwargs)

    SyncToAsync.__call__ = apm_call  # type: ignore[method-assign]
    try:
        assert not _patch.owns_call(SyncToAsync)
        assert hop_tax.measure_overhead(samples=2) is None
        assert SyncToAsync.__dict__["__call__"] is apm_call and _patch.is_installed()
        with count_hops() as hops:
            asyncio.run(sync_to_async(int)())
        assert hops.sync_to_async == 1
    finally:
        SyncToAsync.__call__ = ours  # type: ignore[method-assign]
    assert _patch.owns_call(SyncToAsync)
