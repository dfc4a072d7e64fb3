"""Entering a scope and finding the request's: ``_recorder.enter_scope`` and
``find_scope`` (``_hotpath.enter_scope``/``find_scope``: in C when it is built,
the suite runs on both), with real ledgers and a real ``async_to_sync``."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async

import hopwatch
from hopwatch import _hotpath, _hotpath_py
from hopwatch._recorder import (
    Ledger,
    RequestRecord,
    current_scope,
    enter_scope,
    find_scope,
    open_request,
)


def _in_fresh_context(fn):
    return contextvars.copy_context().run(fn)


def test_a_ledger_entered_outside_any_scope_has_no_parent():
    def run():
        ledger = Ledger()
        token = enter_scope(ledger)
        assert current_scope.get() is ledger
        assert ledger.parent is None and ledger.outer_hop is None
        assert find_scope(Ledger) is ledger
        assert find_scope(RequestRecord) is None
        current_scope.reset(token)
        assert current_scope.get() is None

    _in_fresh_context(run)


def test_a_ledger_entered_inside_another_is_its_child_and_finds_the_request_above():
    def run():
        record, record_token = open_request("asgi")
        assert record.scope_token is record_token
        block = Ledger()
        block_token = enter_scope(block)
        assert block.parent is record and block.outer_hop is None
        assert find_scope(RequestRecord) is record
        assert find_scope(Ledger) is block
        current_scope.reset(block_token)
        assert find_scope(Ledger) is record
        current_scope.reset(record_token)

    _in_fresh_context(run)


def test_inside_an_async_to_sync_the_hop_is_the_outer_hop_and_its_scope_the_parent():
    hopwatch.install()
    seen = {}

    async def inner():
        # The value of the scope variable here is the async_to_sync hop.
        hop = current_scope.get()
        seen["hop_type"] = type(hop)
        seen["request"] = find_scope(RequestRecord)
        block = Ledger()
        token = enter_scope(block)
        seen["parent"], seen["outer_hop"], seen["hop"] = block.parent, block.outer_hop, hop
        current_scope.reset(token)

    async def main():
        record, token = open_request("asgi")
        await sync_to_async(async_to_sync(inner))()
        current_scope.reset(token)
        return record

    record = asyncio.run(main())
    assert seen["hop_type"] is _hotpath.Hop
    assert seen["request"] is record
    assert seen["parent"] is record
    assert seen["outer_hop"] is seen["hop"]
    assert seen["hop"].direction == "async_to_sync"


def test_both_implementations_agree_on_every_shape_of_scope():
    impls = [_hotpath_py] + ([_hotpath.impl] if _hotpath.IMPLEMENTATION == "c" else [])
    for impl in impls:
        var: contextvars.ContextVar = contextvars.ContextVar("scope_under_test", default=None)

        class Record(impl.LedgerCore):
            pass

        def run(impl=impl, var=var, Record=Record):
            assert impl.find_scope(var, Record) is None
            outer = Record()
            t1 = impl.enter_scope(var, outer)
            assert (outer.parent, outer.outer_hop) == (None, None)
            inner = impl.LedgerCore()
            t2 = impl.enter_scope(var, inner)
            assert inner.parent is outer and inner.outer_hop is None
            assert impl.find_scope(var, Record) is outer
            assert impl.find_scope(var, impl.LedgerCore) is inner
            assert impl.find_scope(var, threading.Thread) is None
            var.reset(t2)
            var.reset(t1)
            assert var.get() is None

        _in_fresh_context(run)


def test_start_request_opens_the_record_with_the_asgi_scope_method_and_path():
    def run():
        record = _hotpath.start_request(
            current_scope, RequestRecord, "asgi", {"type": "http", "method": "PUT", "path": "/a/"}
        )
        assert current_scope.get() is record
        assert (record.interface, record.method, record.path) == ("asgi", "PUT", "/a/")
        assert record.scope_token is not None
        current_scope.reset(record.scope_token)
        # a scope without them: None, as scope.get() gives
        bare = _hotpath.start_request(current_scope, RequestRecord, "asgi", {"type": "http"})
        assert (bare.method, bare.path) == (None, None)
        current_scope.reset(bare.scope_token)

    _in_fresh_context(run)


@pytest.mark.internal_errors
def test_start_request_reports_an_error_and_gives_none():
    from hopwatch import _errors

    class Broken(RequestRecord):
        __slots__ = ()

        def __init__(self, interface):
            raise RuntimeError("no record today")

    def run():
        before = _errors.total()
        assert _hotpath.start_request(current_scope, Broken, "asgi", {"type": "http"}) is None
        assert _errors.total() == before + 1
        assert current_scope.get() is None
        _errors.take_for_line()

    _in_fresh_context(run)


def test_a_record_type_whose_field_is_its_own_is_written_through_it():
    """The C side writes a RequestRecord's fields in their slots; a subclass that
    makes a field a property of its own gets the property, as an assignment would."""

    class Audited(RequestRecord):
        __slots__ = ("_seen",)

        @property
        def method(self):
            return self._seen

        @method.setter
        def method(self, value):
            self._seen = f"seen {value}"

    def run():
        scope = {"type": "http", "method": "GET", "path": "/p/"}
        audited = _hotpath.start_request(current_scope, Audited, "asgi", scope)
        assert (audited.method, audited.path) == ("seen GET", "/p/")
        current_scope.reset(audited.scope_token)
        plain = _hotpath.start_request(current_scope, RequestRecord, "asgi", scope)
        assert (plain.method, plain.path) == ("GET", "/p/")
        current_scope.reset(plain.scope_token)
        again = _hotpath.start_request(current_scope, Audited, "asgi", scope)
        assert again.method == "seen GET"
        current_scope.reset(again.scope_token)

    _in_fresh_context(run)
