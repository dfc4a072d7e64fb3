"""``hopwatch.uninstall()`` with its patch wrapped by other code since (an agent that
wrapped ``SyncToAsync.__call__`` after hopwatch installed): the wrapper, and hopwatch's
layer under it, are left in place, and that layer records nothing until ``install()``
makes it work again (docs: tests/test_agents.py, tests/test_lifecycle.py)."""

from __future__ import annotations

import asyncio

from asgiref.sync import SyncToAsync, sync_to_async

import hopwatch
from hopwatch import _patch
from hopwatch._recorder import unscoped


def _noop():
    return None


async def _three_crossings():
    for _ in range(3):
        await sync_to_async(_noop)()


def test_the_layer_left_under_a_wrapper_records_nothing_once_uninstalled():
    hopwatch.install()
    ours = SyncToAsync.__dict__["__call__"]
    calls: list[int] = []

    def agents_wrapper(self, *args, **kwargs):
        calls.append(1)
        return ours(self, *args, **kwargs)

    SyncToAsync.__call__ = agents_wrapper
    try:
        before = unscoped.count
        asyncio.run(_three_crossings())
        assert unscoped.count == before + 3 and len(calls) == 3  # installed: recorded

        hopwatch.uninstall()  # says so on hopwatch's logger: left in place, now inert
        assert not _patch.is_installed()
        assert SyncToAsync.__dict__["__call__"] is agents_wrapper  # left in place
        before = unscoped.count
        asyncio.run(_three_crossings())
        assert len(calls) == 6  # the crossings went through the wrapper and our layer
        assert unscoped.count == before  # which recorded nothing

        hopwatch.install()  # the layer works again, not a second one over the wrapper
        assert SyncToAsync.__dict__["__call__"] is agents_wrapper
        before = unscoped.count
        asyncio.run(_three_crossings())
        assert unscoped.count == before + 3 and len(calls) == 9
    finally:
        hopwatch.uninstall()
        SyncToAsync.__call__ = ours  # the agent goes; our layer is where it was
        hopwatch.install()
    assert SyncToAsync.__dict__["__call__"] is ours
    before = unscoped.count
    asyncio.run(_three_crossings())
    assert unscoped.count == before + 3
