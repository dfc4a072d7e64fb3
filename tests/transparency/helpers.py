"""Run a scenario with hopwatch and without it, and compare what the app did."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.core import signals
from django.test import override_settings

import hopwatch
from hopwatch.apps import activate, deactivate

T = TypeVar("T")


@contextlib.contextmanager
def without_hopwatch() -> Iterator[None]:
    """hopwatch uninstalled (asgiref and Django exactly as they were), then reinstalled.

    Its middleware is taken out of ``MIDDLEWARE`` too: a handler made inside
    the block would otherwise load it, and it installs hopwatch when it finds
    it missing (for projects that forgot the app).
    """
    middleware = [m for m in settings.MIDDLEWARE if not m.startswith("hopwatch.")]
    try:
        deactivate()
        assert not hopwatch.is_installed()
        with override_settings(MIDDLEWARE=middleware):
            yield
        assert not hopwatch.is_installed(), "something reinstalled hopwatch inside the block"
    finally:
        activate()
        assert hopwatch.is_installed()


def both(scenario: Callable[[], T]) -> tuple[T, T]:
    """(scenario's result with hopwatch, its result without)."""
    assert hopwatch.is_installed()
    with_ = scenario()
    with without_hopwatch():
        without = scenario()
    return with_, without


@contextlib.contextmanager
def signal_log() -> Iterator[list[str]]:
    """The request_started / request_finished signals sent inside the block, in order.

    The receivers are sync, like Django's own, so they add no hop: Django
    already adapts the sync receivers it has (one hop for all of them).
    """
    sent: list[str] = []

    def started(**_: Any) -> None:
        sent.append("request_started")

    def finished(**_: Any) -> None:
        sent.append("request_finished")

    signals.request_started.connect(started, weak=False)
    signals.request_finished.connect(finished, weak=False)
    try:
        yield sent
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
