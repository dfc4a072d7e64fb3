"""The audit's model: the hops Django makes for one ordinary request, from facts alone.

Pure computation over :class:`~hopwatch.audit.facts.MiddlewareFacts`, mirroring
``load_middleware``, ``adapt_method_mode``, ``_get_response(_async)``,
``MiddlewareMixin.__acall__`` and the ASGI handler, naming each hop's site the
way hopwatch's recorder does (:func:`simulate`); each entry's cost and what each
change would do (:func:`build_audit`); and what Django 6.2's flag change will do
(:func:`preview_django_6_2`). Nothing here imports Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from hopwatch.audit.facts import (
    ASGI,
    ASYNC,
    INTERFACES,
    MIXIN_HOOKS,
    SYNC,
    WSGI,
    AuditError,
    HookFacts,
    MiddlewareFacts,
)
from hopwatch.hop_tax import ASYNC_TO_SYNC, NEW_LOOP, SYNC_TO_ASYNC, HopTax, Overhead

VIEW_KINDS: Final = ("async_view", "sync_view")

#: When a hook runs: on every request, on every request that reaches a view,
#: only for a TemplateResponse, only when the view raises.
WHEN_REQUEST: Final = "request"
WHEN_VIEW: Final = "view"
WHEN_TEMPLATE: Final = "template_response"
WHEN_EXCEPTION: Final = "exception"
_HOOK_WHEN: Final = {
    "process_request": WHEN_REQUEST,
    "process_response": WHEN_REQUEST,
    "process_view": WHEN_VIEW,
    "process_template_response": WHEN_TEMPLATE,
    "process_exception": WHEN_EXCEPTION,
}

#: The placeholder site for "the view" in predicted sites (the audit knows no view).
VIEW_SITE: Final = "<view>"

#: Advice ids (stable: they appear in the JSON).
ADVICE_MIXIN: Final = "mixin-hooks"
ADVICE_SYNC_ONLY: Final = "sync-only"
ADVICE_ASYNC_ONLY: Final = "async-only"
ADVICE_PROCESS_VIEW: Final = "sync-process-view"


@dataclass(frozen=True)
class PredictedHop:
    kind: str  # the recorder's cause kind: middleware, signal, response, view
    site: str  # the recorder's site
    adapter: str  # SYNC_TO_ASYNC, ASYNC_TO_SYNC or NEW_LOOP
    row: int | None  # index into MIDDLEWARE, or None (outside the chain, the view)
    what: str  # short description (the hook, "adaptation", ...)
    own: bool = False  # made by the middleware's own code (MiddlewareFacts.own_hops)


@dataclass
class Simulation:
    """One interface, one kind of view: modes and the hops of one ordinary request."""

    interface: str
    view_is_async: bool
    modes: list[str | None]  # per MIDDLEWARE entry; None where left out
    hops: list[PredictedHop]
    #: per entry: the entry whose class is the reason it runs sync under ASGI
    pinned_by: list[int | None]

    @property
    def count(self) -> int:
        return len(self.hops)

    def sites(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for hop in self.hops:
            key = (hop.kind, hop.site)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def adapters(self) -> dict[str, int]:
        counts = {SYNC_TO_ASYNC: 0, ASYNC_TO_SYNC: 0, NEW_LOOP: 0}
        for hop in self.hops:
            counts[hop.adapter] += 1
        return counts

    def row_hops(self, row: int) -> list[PredictedHop]:
        return [hop for hop in self.hops if hop.row == row]


def _modes(facts: Sequence[MiddlewareFacts], interface: str) -> list[str | None]:
    """Each entry's mode, as ``load_middleware`` decides it walking ``reversed(MIDDLEWARE)``."""
    handler_is_async = interface == ASGI
    modes: list[str | None] = [None] * len(facts)
    for index in reversed(range(len(facts))):
        fact = facts[index]
        if not fact.sync_capable and not fact.async_capable:
            raise AuditError(
                f"middleware {fact.path!r} sets both sync_capable and async_capable to False"
            )
        # load_middleware: sync where it can be over a sync handler, else async if it can be
        is_async = False if not handler_is_async and fact.sync_capable else fact.async_capable
        if not fact.used(interface):
            continue  # MiddlewareNotUsed: the handler below stays as it was
        modes[index] = ASYNC if is_async else SYNC
        handler_is_async = is_async
    return modes


def _first_not_async_capable(
    facts: Sequence[MiddlewareFacts], chain: Sequence[int], start: int, *, as_recorder: bool
) -> int | None:
    for index in chain[start:]:
        capable = facts[index].blame_async_capable if as_recorder else facts[index].async_capable
        if not capable:
            return index
    return None


def _first_async_only(
    facts: Sequence[MiddlewareFacts], chain: Sequence[int], modes: Sequence[str | None]
) -> int | None:
    """The middleware the recorder blames for the top's ``async_to_sync`` under WSGI
    (``_django_causes._async_only_below``): the first one that cannot run sync, a
    function-based one (whose flags are on its factory) only when no other is."""
    first_function = None
    for index in chain:
        fact = facts[index]
        if fact.kind == "function":
            if first_function is None and modes[index] == ASYNC:
                first_function = index
        elif not fact.sync_capable:
            return index
    return first_function


def simulate(
    facts: Sequence[MiddlewareFacts],
    interface: str,
    *,
    view_is_async: bool,
    request_started: int = 1,
) -> Simulation:
    """The hops of one ordinary request (a view resolved, a plain response, no exception)."""
    is_async = interface == ASGI
    modes = _modes(facts, interface)
    chain = [index for index, mode in enumerate(modes) if mode is not None]  # top to bottom
    hops: list[PredictedHop] = []
    # Whether a running loop is reachable from where the request is (asgiref
    # finds it through SyncToAsync's thread-local): under ASGI always; under
    # WSGI once an async_to_sync has made one.
    loop = is_async

    def a2s(*, encloses_the_rest: bool) -> str:
        nonlocal loop
        kind = ASYNC_TO_SYNC if loop else NEW_LOOP
        if encloses_the_rest:  # the rest of the request runs inside that loop
            loop = True
        return kind

    if is_async and request_started:
        hops.append(
            PredictedHop("signal", "request_started", SYNC_TO_ASYNC, None, "request_started")
        )

    # The top of the chain, adapted to the handler's mode.
    top_async = modes[chain[0]] == ASYNC if chain else is_async
    if chain and top_async != is_async:
        top = chain[0]
        if is_async:  # sync_to_async into a sync chain: blame the sync-only entry that made it so
            row = _first_not_async_capable(facts, chain, 0, as_recorder=False)
            blamed = _first_not_async_capable(facts, chain, 0, as_recorder=True)
            site = facts[blamed].site_name if blamed is not None else facts[top].site_name
            hops.append(
                PredictedHop(
                    "middleware",
                    site,
                    SYNC_TO_ASYNC,
                    top if row is None else row,
                    "adaptation (into the chain)",
                )
            )
        else:  # async_to_sync into an async chain: blame the async-only entry that made it so
            adapter = a2s(encloses_the_rest=True)
            blamed = _first_async_only(facts, chain, modes)
            where = top if blamed is None else blamed
            hops.append(
                PredictedHop(
                    "middleware",
                    facts[where].site_name,
                    adapter,
                    where,
                    "adaptation (into the chain)",
                )
            )

    for position, index in enumerate(chain):
        fact = facts[index]
        mode = modes[index]
        if fact.mixin_calls_hooks and mode == ASYNC:
            for name in MIXIN_HOOKS:
                hook = fact.hook(name)
                if hook is not None and not hook.is_async:
                    hops.append(
                        PredictedHop(
                            "middleware", f"{fact.site_name}.{name}", SYNC_TO_ASYNC, index, name
                        )
                    )
        # Its own code, before it calls the handler below (facts.OWN_CODE).
        for own in fact.own_hops:
            if own.mode == mode:
                crosses_in = own.direction == SYNC_TO_ASYNC
                own_adapter = SYNC_TO_ASYNC if crosses_in else a2s(encloses_the_rest=False)
                hops.append(
                    PredictedHop(own.kind, own.site, own_adapter, index, own.what, own=True)
                )
        below_async = modes[chain[position + 1]] == ASYNC if position + 1 < len(chain) else is_async
        if (mode == ASYNC) == below_async:
            continue
        # The recorder blames the middleware out of the handler's mode
        # (_django_causes._adaptation_cause): under ASGI a sync-only one, under WSGI an
        # async-only one; this one when it is, else the first below that is.
        if mode == ASYNC:  # sync_to_async of the sync handler below
            row = blamed = None
            if is_async:
                row = _first_not_async_capable(facts, chain, position + 1, as_recorder=False)
                blamed = _first_not_async_capable(facts, chain, position + 1, as_recorder=True)
            site = facts[blamed].site_name if blamed is not None else fact.path
            hops.append(
                PredictedHop(
                    "middleware",
                    site,
                    SYNC_TO_ASYNC,
                    index if row is None else row,
                    "adaptation (below it)",
                )
            )
        else:  # async_to_sync of the async handler below
            adapter = a2s(encloses_the_rest=True)
            blamed = None if is_async else _first_async_only(facts, chain[position + 1 :], modes)
            site = facts[blamed].site_name if blamed is not None else fact.path
            hops.append(
                PredictedHop(
                    "middleware",
                    site,
                    adapter,
                    index if blamed is None else blamed,
                    "adaptation (below it)",
                )
            )

    # _get_response(_async): process_view hooks, adapted to the handler's mode.
    for index in chain:
        fact = facts[index]
        hook = fact.hook("process_view")
        if hook is not None and hook.is_async != is_async:
            adapter = (
                SYNC_TO_ASYNC if is_async else a2s(encloses_the_rest=False)
            )
            hops.append(
                PredictedHop(
                    "middleware", f"{fact.site_name}.process_view", adapter, index, "process_view"
                )
            )

    if is_async and not view_is_async:
        hops.append(PredictedHop("view", VIEW_SITE, SYNC_TO_ASYNC, None, "the view"))
    elif not is_async and view_is_async:
        hops.append(
            PredictedHop(
                "view",
                VIEW_SITE,
                a2s(encloses_the_rest=False),
                None,
                "the view",
            )
        )

    if is_async:
        hops.append(
            PredictedHop("response", "HttpResponse.close", SYNC_TO_ASYNC, None, "response.close()")
        )

    pinned_by: list[int | None] = [None] * len(facts)
    if is_async:
        for position, index in enumerate(chain):
            if modes[index] == SYNC:
                pinned_by[index] = _first_not_async_capable(
                    facts, chain, position, as_recorder=False
                )
    return Simulation(interface, view_is_async, modes, hops, pinned_by)


# --- the audit ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HookCost:
    name: str
    is_async: bool
    when: str
    hops: dict[str, int]  # per interface


@dataclass(frozen=True)
class WhatIf:
    """The predicted hops per async-view request after one change to one entry."""

    #: "native-async", "async_capable=False", "sync_capable=True" or "async process_view"
    change: str
    asgi_async_view: int
    wsgi_async_view: int
    #: an ASGI request still holds a worker thread (some middleware runs sync)
    pins_thread: bool


@dataclass
class EntryAudit:
    position: int  # 1-based
    facts: MiddlewareFacts
    modes: dict[str, str | None]
    hooks: list[HookCost]
    hops: dict[str, int]  # per interface, per ordinary request, charged to this entry
    adaptation: dict[str, int]
    #: per interface, the part of ``hops`` its own code makes (facts.OWN_CODE)
    own: dict[str, int]
    pins_thread: bool
    pinned_by: str | None  # the path of the entry that is the reason (None: itself or none)
    advice: list[str]
    what_ifs: list[WhatIf]


@dataclass
class Audit:
    settings_module: str | None
    django_version: str
    asgiref_version: str
    asgi_application: str | None
    entries: list[EntryAudit]
    simulations: dict[tuple[str, str], Simulation]  # (interface, view kind)
    request_started: int
    hop_tax: HopTax | None = None
    problems: list[str] = field(default_factory=list)
    overhead: Overhead | None = None
    #: what Django 6.2's flag change will do to this MIDDLEWARE (None: nothing, or on 6.2+)
    django_6_2: Django62Preview | None = None
    #: the project's measured traffic (hopwatch.audit.traffic.Traffic, from --logs), or None
    traffic: Any = None

    def predicted(self, interface: str, view_kind: str) -> int:
        return self.simulations[(interface, view_kind)].count


def _simulate_all(
    facts: Sequence[MiddlewareFacts], request_started: int
) -> dict[tuple[str, str], Simulation]:
    return {
        (interface, view_kind): simulate(
            facts,
            interface,
            view_is_async=view_kind == "async_view",
            request_started=request_started,
        )
        for interface in INTERFACES
        for view_kind in VIEW_KINDS
    }


def _hook_hops(fact: MiddlewareFacts, hook: HookFacts, mode: str | None, interface: str) -> int:
    if mode is None:
        return 0
    is_async = interface == ASGI
    if hook.name in MIXIN_HOOKS:
        return int(fact.mixin_calls_hooks and mode == ASYNC and not hook.is_async)
    if hook.name == "process_exception":
        return int(hook.is_async)  # always adapted to sync
    return int(hook.is_async != is_async)  # adapted to the handler's mode


# --- one entry changed: the variants the what-ifs and the ranked changes simulate ----


def native_async(fact: MiddlewareFacts) -> MiddlewareFacts:
    """The entry rewritten natively async: sync and async capable, no mixin hooks."""
    return replace(
        fact,
        sync_capable=True,
        async_capable=True,
        instance_async_capable=True,
        mixin_calls_hooks=False,
        hooks=tuple(h for h in fact.hooks if h.name not in MIXIN_HOOKS),
    )


def sync_only(fact: MiddlewareFacts) -> MiddlewareFacts:
    """The entry with ``async_capable = False`` (on a subclass listed in its place)."""
    return replace(fact, async_capable=False, instance_async_capable=False)


def async_process_view(fact: MiddlewareFacts) -> MiddlewareFacts:
    hooks = tuple(HookFacts(h.name, True) if h.name == "process_view" else h for h in fact.hooks)
    return replace(fact, hooks=hooks)


def _what_ifs(
    facts: Sequence[MiddlewareFacts],
    index: int,
    advice: Sequence[str],
    request_started: int,
) -> list[WhatIf]:
    """The same stack with the change each piece of advice suggests, simulated."""
    fact = facts[index]
    changes: list[tuple[str, MiddlewareFacts]] = []
    if ADVICE_MIXIN in advice or ADVICE_SYNC_ONLY in advice:
        changes.append(("native-async", native_async(fact)))
    if ADVICE_MIXIN in advice:
        changes.append(("async_capable=False", sync_only(fact)))
    if ADVICE_ASYNC_ONLY in advice:
        changes.append(("sync_capable=True", replace(fact, sync_capable=True)))
    if ADVICE_PROCESS_VIEW in advice:
        changes.append(("async process_view", async_process_view(fact)))
    results = []
    for name, changed in changes:
        variant = [*facts[:index], changed, *facts[index + 1 :]]
        asgi = simulate(
            variant,
            ASGI,
            view_is_async=True,
            request_started=request_started,
        )
        wsgi = simulate(
            variant,
            WSGI,
            view_is_async=True,
            request_started=request_started,
        )
        holds = any(reason is not None for reason in asgi.pinned_by)
        results.append(WhatIf(name, asgi.count, wsgi.count, holds))
    return results


def build_audit(
    facts: Sequence[MiddlewareFacts],
    *,
    settings_module: str | None = None,
    django_version: str = "",
    asgiref_version: str = "",
    asgi_application: str | None = None,
    request_started: int = 1,
    hop_tax: HopTax | None = None,
) -> Audit:
    """The audit of a middleware stack, from facts alone (pure)."""
    simulations = _simulate_all(facts, request_started)
    asgi = simulations[(ASGI, "async_view")]
    wsgi = simulations[(WSGI, "async_view")]
    entries = []
    problems: list[str] = []
    for index, fact in enumerate(facts):
        modes = {ASGI: asgi.modes[index], WSGI: wsgi.modes[index]}
        hooks = [
            HookCost(
                hook.name,
                hook.is_async,
                _HOOK_WHEN[hook.name],
                {iface: _hook_hops(fact, hook, modes[iface], iface) for iface in INTERFACES},
            )
            for hook in fact.hooks
        ]
        hops = {ASGI: len(asgi.row_hops(index)), WSGI: len(wsgi.row_hops(index))}
        adaptation = {
            iface: sum(1 for hop in sim.row_hops(index) if hop.what.startswith("adaptation"))
            for iface, sim in ((ASGI, asgi), (WSGI, wsgi))
        }
        own = {
            iface: sum(1 for hop in sim.row_hops(index) if hop.own)
            for iface, sim in ((ASGI, asgi), (WSGI, wsgi))
        }
        reason = asgi.pinned_by[index]
        advice = []
        if (
            fact.mixin_calls_hooks
            and modes[ASGI] == ASYNC
            and any(h.hops[ASGI] for h in hooks if h.name in MIXIN_HOOKS)
        ):
            advice.append(ADVICE_MIXIN)
        # each about one interface, and only where Django uses it there (MiddlewareNotUsed)
        if not fact.async_capable and modes[ASGI] is not None:
            advice.append(ADVICE_SYNC_ONLY)
        if not fact.sync_capable and modes[WSGI] is not None:
            advice.append(ADVICE_ASYNC_ONLY)
        if (
            any(h.name == "process_view" and h.hops[ASGI] for h in hooks)
            and not advice
            and fact.path.split(".", 1)[0] != "django"  # nobody rewrites Django's own (CSRF's)
        ):
            advice.append(ADVICE_PROCESS_VIEW)
        what_ifs = _what_ifs(facts, index, advice, request_started)
        problems.extend(f"{fact.path}: {note.text}" for note in fact.notes if note.is_problem)
        entries.append(
            EntryAudit(
                position=index + 1,
                facts=fact,
                modes=modes,
                hooks=hooks,
                hops=hops,
                adaptation=adaptation,
                own=own,
                pins_thread=reason is not None,
                pinned_by=facts[reason].path if reason is not None and reason != index else None,
                advice=advice,
                what_ifs=what_ifs,
            )
        )
    return Audit(
        settings_module=settings_module,
        django_version=django_version,
        asgiref_version=asgiref_version,
        asgi_application=asgi_application,
        entries=entries,
        simulations=simulations,
        request_started=request_started,
        hop_tax=hop_tax,
        problems=problems,
    )


# --- Django 6.2: what ticket #37177 will do to this MIDDLEWARE -------------------------------
#
# Django 6.2 (commit a013c821, "Fixed #37177 -- Reduced per-middleware context
# switching under ASGI") sets async_capable = False on Django's own
# MiddlewareMixin subclasses; MiddlewareMixin's default stays True. Under ASGI
# such a middleware then runs sync: one sync_to_async into the chain and one
# async_to_sync out to the view instead of a hop per hook, but the request holds
# a worker thread while everything below it runs, the view included. The model
# takes the commit message at its word ("only the values on Django's own
# subclasses"): every Django class that inherits MiddlewareMixin's flag.

DJANGO_6_2: Final = (6, 2)


@dataclass(frozen=True)
class Django62Preview:
    """The same MIDDLEWARE under ASGI before and after Django 6.2's flag change."""

    #: the MIDDLEWARE paths whose async_capable 6.2 turns to False
    affected: tuple[str, ...]
    before: dict[str, Simulation]  # ASGI, per view kind
    after: dict[str, Simulation]


def preview_django_6_2(
    facts: Sequence[MiddlewareFacts], changes: Sequence[bool], request_started: int = 1
) -> Django62Preview | None:
    """The model before and after the change (pure); None when it changes no entry."""
    if not any(changes):
        return None
    after_facts = [
        sync_only(fact) if changed else fact
        for fact, changed in zip(facts, changes, strict=True)
    ]

    def asgi(variant: Sequence[MiddlewareFacts]) -> dict[str, Simulation]:
        return {
            kind: simulate(
                variant, ASGI, view_is_async=kind == "async_view", request_started=request_started
            )
            for kind in VIEW_KINDS
        }

    affected = tuple(fact.path for fact, changed in zip(facts, changes, strict=True) if changed)
    return Django62Preview(affected, asgi(facts), asgi(after_facts))


def pinned_section(sim: Simulation) -> list[PredictedHop] | None:
    """The crossing that holds a worker thread and the hops made inside it (None: none).

    Under ASGI a sync section of the chain is entered through sync_to_async and
    left through async_to_sync to what runs below it: that async_to_sync, and
    everything until the response goes back up, runs while the thread waits,
    the view included. hopwatch's ``pinned_ms`` is that crossing's wall time.
    """
    for position, hop in enumerate(sim.hops):
        if hop.adapter != SYNC_TO_ASYNC and hop.what.startswith("adaptation"):
            return [hop, *(h for h in sim.hops[position + 1 :] if h.kind != "response")]
    return None
