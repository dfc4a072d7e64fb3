"""The changes worth making, ranked by what each would save for this project's traffic.

Each candidate is the same ``MIDDLEWARE`` with one change, simulated by the
model for both interfaces and both kinds of view (:func:`candidates`, pure):

* **the whole chain sync**: a subclass of the last middleware with
  ``async_capable = False`` listed in its place (for a function middleware, a
  plain function that calls it). Django then runs every middleware sync under
  ASGI: one crossing in and one out instead of a hop per ``MiddlewareMixin``
  hook (startproject's stack: 15 -> 5 per async-view request), but each request
  holds a worker thread. Where the last ones are async only, the last one that
  can run sync is the one: every middleware down to it then runs sync;
* **sync views under WSGI**: the requests to sync views served by a WSGI
  server (none under a sync-capable stack; an async-only middleware keeps
  crossings there, and a new event loop per request: then it is a trade);
* per entry, when it is the project's own: rewrite it natively async (sync and
  async capable), make an async-only one sync capable, make a sync
  ``process_view`` async. A third-party entry gets "upgrade or replace it";
  Django's own middleware gets no row of its own (nobody rewrites it; the
  chain-wide change above is what removes its hops).

:func:`rank` weighs each change's saving per request by the traffic's mix
(``hopwatch audit --logs``: measured; without logs: an even split of async and
sync views) and prices a crossing as the report does: the overhead per
crossing measured in the logs, else this host's hop tax per adapter kind.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from hopwatch.audit.facts import ASGI, INTERFACES, WSGI, MiddlewareFacts
from hopwatch.audit.model import (
    ADVICE_ASYNC_ONLY,
    ADVICE_MIXIN,
    ADVICE_PROCESS_VIEW,
    ADVICE_SYNC_ONLY,
    VIEW_KINDS,
    Audit,
    EntryAudit,
    async_process_view,
    native_async,
    simulate,
    sync_only,
)
from hopwatch.audit.traffic import Traffic, assumed
from hopwatch.hop_tax import NEW_LOOP, HopTax

Cell = tuple[str, str]  # (interface, view kind)
Simulated = dict[Cell, tuple[int, dict[str, int], bool]]  # crossings, by adapter, pins a thread
CELLS: Final = tuple((interface, kind) for interface in INTERFACES for kind in VIEW_KINDS)

SYNC_CHAIN: Final = "sync-chain"
WSGI_SYNC_VIEWS: Final = "wsgi-for-sync-views"
NATIVE_ASYNC: Final = "native-async"
UPGRADE: Final = "upgrade"
SYNC_CAPABLE: Final = "sync-capable"
ASYNC_PROCESS_VIEW: Final = "async-process-view"
#: Changes shown first; the rest are listed after them.
LEADING: Final = 2


@dataclass(frozen=True)
class Change:
    key: str
    #: What to do, in one line.
    what: str
    #: The MIDDLEWARE entry it changes (1-based), or None for the whole stack.
    position: int | None
    #: Per (interface, view kind): predicted crossings per request before and after.
    hops: dict[Cell, tuple[int, int]]
    #: ... and the crossings by adapter kind, before and after (to price them).
    adapters: dict[Cell, tuple[dict[str, int], dict[str, int]]]
    #: After it, an ASGI request holds a worker thread while the chain runs.
    pins_thread: bool
    #: ... and before it.
    pinned_before: bool = False

    @property
    def frees_thread(self) -> bool:
        return self.pinned_before and not self.pins_thread


@dataclass(frozen=True)
class Ranked:
    change: Change
    #: Crossings saved per request, over the traffic's mix.
    hops: float
    #: Time saved per request in µs, at the price of a crossing (None: no price).
    us: float | None
    #: Time saved over the logged requests in ms (None: no logs or no price).
    total_ms: float | None

    @property
    def trade(self) -> bool:
        """Not a plain saving: it saves no crossing, or its crossings saved cost more time
        than they save (the new event loop of an async-only middleware under WSGI); it is
        offered for the worker thread it frees, or as the trade it is."""
        return self.hops <= 0 or (self.us is not None and self.us < 0)


def _is_django(fact: MiddlewareFacts) -> bool:
    return fact.path.split(".", 1)[0] == "django"


def _name(fact: MiddlewareFacts) -> str:
    return fact.path.rsplit(".", 1)[-1]


def _simulated(facts: Sequence[MiddlewareFacts], request_started: int) -> Simulated:
    found = {}
    for interface, kind in CELLS:
        sim = simulate(
            facts, interface, view_is_async=kind == "async_view", request_started=request_started
        )
        pins = any(reason is not None for reason in sim.pinned_by)
        found[(interface, kind)] = (sim.count, sim.adapters(), pins)
    return found


def _change(
    key: str,
    what: str,
    position: int | None,
    before: Simulated,
    after: Simulated,
) -> Change:
    return Change(
        key,
        what,
        position,
        {cell: (before[cell][0], after[cell][0]) for cell in CELLS},
        {cell: (before[cell][1], after[cell][1]) for cell in CELLS},
        after[(ASGI, "async_view")][2] or after[(ASGI, "sync_view")][2],
        before[(ASGI, "async_view")][2] or before[(ASGI, "sync_view")][2],
    )


def _under_wsgi(sync_view: tuple[int, dict[str, int], bool]) -> str:
    """What a sync view costs under WSGI with this stack, as the model predicts it: none
    under a sync-capable stack, but an async-only middleware keeps crossings there (and
    enters the chain on a new event loop each request)."""
    count, adapters, _pins = sync_view
    if not count:
        return "a sync view needs no crossing there"
    words = f"a sync view still makes {count} crossing{'' if count == 1 else 's'} there"
    new_loops = adapters.get(NEW_LOOP, 0)
    if new_loops:
        words += (
            f", {'a new event loop' if new_loops == 1 else f'{new_loops} new event loops'}"
            " per request among them"
        )
    return words


def _chain_sync(
    facts: Sequence[MiddlewareFacts], entries: Sequence[EntryAudit]
) -> tuple[int, str] | None:
    """The entry to make sync-only for the chain-wide change, and the line saying how:
    the lowest entry Django uses that can run sync with only async-only ones below it
    (sync-only, it makes Django run every middleware down to it sync under ASGI). None
    when there is none, or it already is sync-only (the chain is sync down to it)."""
    used = [i for i, entry in enumerate(entries) if entry.modes[ASGI] is not None]
    below = list(itertools.takewhile(lambda i: not facts[i].sync_capable, reversed(used)))
    rest = used[: len(used) - len(below)]
    if not rest or not facts[rest[-1]].async_capable:
        return None
    index = rest[-1]
    fact = facts[index]
    name = _name(fact)
    if below:
        async_only = ", ".join(f"#{i + 1} {_name(facts[i])}" for i in reversed(below))
        where = f"#{index + 1}, the last in MIDDLEWARE that can run sync; {async_only} below it"
        where += " is async only" if len(below) == 1 else " are async only"
        effect = "every middleware down to it"
    else:
        where = f"#{index + 1}, the last in MIDDLEWARE"
        effect = "the whole chain"
    if fact.kind in ("mixin", "class"):
        how = f"list a subclass of {name} ({where}) with async_capable = False in its place"
    else:  # a function (or callable) cannot be subclassed: a sync-only one that calls it
        how = (
            f"list in place of {name} ({where}) a plain function that returns"
            f" {name}(get_response) (Django runs a function without flags sync only)"
        )
    return index, (
        f"{how}: Django then runs {effect} sync under ASGI, one crossing in and one out"
        " instead of a hop per hook"
    )


def candidates(
    facts: Sequence[MiddlewareFacts], entries: Sequence[EntryAudit], request_started: int
) -> list[Change]:
    """Every change the audit can suggest for this stack, each simulated (pure)."""
    before = _simulated(facts, request_started)
    found: list[Change] = []

    def variant(index: int, changed: MiddlewareFacts) -> Simulated:
        return _simulated([*facts[:index], changed, *facts[index + 1 :]], request_started)

    chain_sync = _chain_sync(facts, entries)
    if chain_sync is not None:
        index, what = chain_sync
        found.append(
            _change(SYNC_CHAIN, what, index + 1, before, variant(index, sync_only(facts[index])))
        )
    wsgi_sync = dict(before)
    wsgi_sync[(ASGI, "sync_view")] = before[(WSGI, "sync_view")]
    found.append(
        _change(
            WSGI_SYNC_VIEWS,
            "serve the sync-view endpoints under WSGI (a WSGI server for their routes): "
            + _under_wsgi(before[(WSGI, "sync_view")]),
            None,
            before,
            wsgi_sync,
        )
    )
    for index, entry in enumerate(entries):
        fact = entry.facts
        if _is_django(fact):
            continue  # nobody rewrites Django's own middleware: SYNC_CHAIN covers its hops
        own = not fact.third_party
        name = f"#{entry.position} {_name(fact)}"
        advice = entry.advice
        if ADVICE_MIXIN in advice or ADVICE_SYNC_ONLY in advice:
            native = native_async(fact)
            found.append(
                _change(
                    NATIVE_ASYNC if own else UPGRADE,
                    f"rewrite {name} natively async (sync and async capable, no"
                    " MiddlewareMixin hooks; docs/audit.md in hopwatch's source distribution has"
                    " the pattern)"
                    if own
                    else f"upgrade or replace {name} (third-party) with a sync and async"
                    " capable version",
                    entry.position,
                    before,
                    variant(index, native),
                )
            )
        if ADVICE_ASYNC_ONLY in advice:
            found.append(
                _change(
                    SYNC_CAPABLE if own else UPGRADE,
                    f"make {name} sync capable too" if own else f"upgrade or replace {name}",
                    entry.position,
                    before,
                    variant(index, replace(fact, sync_capable=True)),
                )
            )
        if ADVICE_PROCESS_VIEW in advice and own:
            found.append(
                _change(
                    ASYNC_PROCESS_VIEW,
                    f"make {name}'s process_view async def",
                    entry.position,
                    before,
                    variant(index, async_process_view(fact)),
                )
            )
    return found


def rank(changes: Sequence[Change], traffic: Traffic, hop_tax: HopTax | None) -> list[Ranked]:
    """The changes that save crossings for ``traffic``, most saved first; then the trades:
    those that cost crossings but free the worker thread each ASGI request holds (fewer
    crossings is not always better: docs/audit.md, "Pinned threads"), and those that save
    crossings but cost more time (:attr:`Ranked.trade`). A change that makes each ASGI
    request hold a thread is offered only when it saves crossings (not for a few µs of
    cheaper ones)."""
    ranked = []
    for change in changes:
        hops = 0.0
        us: float | None = 0.0
        for cell, (before, after) in change.hops.items():
            share = traffic.share(*cell)
            if not share:
                continue
            hops += share * (before - after)
            if traffic.price_us is not None:
                continue  # priced below, at the measured price
            if hop_tax is None:
                us = None
            elif us is not None:
                was, becomes = change.adapters[cell]
                us += share * (hop_tax.cost_us(was) - hop_tax.cost_us(becomes))
        if traffic.price_us is not None:
            us = hops * traffic.price_us
        saves = hops > 0 or (us is not None and us > 0)
        asgi = traffic.share(ASGI, "async_view") + traffic.share(ASGI, "sync_view")
        if not saves and not (change.frees_thread and asgi):
            continue
        if change.pins_thread and not change.pinned_before and asgi and hops <= 0:
            # no crossing saved, only cheaper ones: not worth a worker thread per request
            continue
        total = us * traffic.requests / 1000 if us is not None and traffic.requests else None
        ranked.append(Ranked(change, hops, us, total))
    ranked.sort(
        key=lambda r: (
            r.trade,  # the savers first, then the trades (a thread freed, or dearer crossings)
            -(r.us if r.us is not None else 0.0),
            -r.hops,
            r.change.what,
        )
    )
    return ranked


def for_audit(audit: Audit) -> tuple[Traffic, list[Ranked]]:
    """The traffic the audit ranks for (its logs', else ASGI with an even split of views),
    and the changes that save something there, most first."""
    traffic = audit.traffic if audit.traffic is not None else assumed(ASGI)
    facts = [entry.facts for entry in audit.entries]
    found = candidates(facts, audit.entries, audit.request_started)
    return traffic, rank(found, traffic, audit.hop_tax)


def needs_nothing(entries: Sequence[EntryAudit]) -> list[EntryAudit]:
    """Entries that cost no crossing and hold no thread, under either interface."""
    return [
        entry
        for entry in entries
        if not entry.hops[ASGI] and not entry.hops[WSGI] and not entry.pins_thread
    ]


def django_with_hops(entries: Sequence[EntryAudit]) -> list[EntryAudit]:
    """Django's own middleware that costs crossings: nothing to change in them."""
    return [entry for entry in entries if _is_django(entry.facts) and entry.hops[ASGI]]


__all__ = [
    "ASYNC_PROCESS_VIEW",
    "LEADING",
    "NATIVE_ASYNC",
    "SYNC_CAPABLE",
    "SYNC_CHAIN",
    "UPGRADE",
    "WSGI_SYNC_VIEWS",
    "Change",
    "Ranked",
    "candidates",
    "django_with_hops",
    "for_audit",
    "needs_nothing",
    "rank",
]
