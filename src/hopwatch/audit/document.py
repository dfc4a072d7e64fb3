"""The audit as the JSON document ``--format json`` prints (see docs/audit.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from hopwatch.audit import changes
from hopwatch.audit.facts import ASGI, INTERFACES, WSGI
from hopwatch.audit.model import VIEW_KINDS, Audit, Simulation, pinned_section
from hopwatch.hop_tax import HopTax

FORMAT_VERSION: Final = 1


def _pinned_by(sim: Simulation, facts_paths: Sequence[str]) -> str | None:
    reasons = [reason for reason in sim.pinned_by if reason is not None]
    return facts_paths[reasons[0]] if reasons else None


def _django_6_2_side(
    sim: Simulation, paths: Sequence[str], hop_tax: HopTax | None
) -> dict[str, Any]:
    section = pinned_section(sim)
    pinned_us = None
    if section is not None and hop_tax is not None:
        adapters: dict[str, int] = {}
        for hop in section:
            adapters[hop.adapter] = adapters.get(hop.adapter, 0) + 1
        pinned_us = round(hop_tax.cost_us(adapters), 1)
    return {
        "hops": sim.count,
        "hop_time_us": round(hop_tax.cost_us(sim.adapters()), 1) if hop_tax else None,
        "pinned_by": _pinned_by(sim, paths),
        # the crossing that holds the thread and the hops inside it: pinned_ms is
        # the view's own time plus these
        "pinned_hops": None if section is None else len(section),
        "pinned_hop_time_us": pinned_us,
    }


def django_6_2_document(audit: Audit) -> dict[str, Any] | None:
    """The ``django_6_2`` member of the JSON document."""
    preview = audit.django_6_2
    if preview is None:
        return None
    paths = [entry.facts.path for entry in audit.entries]
    return {
        "affected": list(preview.affected),
        ASGI: {
            kind: {
                "before": _django_6_2_side(preview.before[kind], paths, audit.hop_tax),
                "after": _django_6_2_side(preview.after[kind], paths, audit.hop_tax),
            }
            for kind in VIEW_KINDS
        },
    }


def _sim_dict(sim: Simulation, hop_tax: HopTax | None) -> dict[str, Any]:
    adapters = sim.adapters()
    return {
        "hops": sim.count,
        "adapters": adapters,
        "hop_time_us": round(hop_tax.cost_us(adapters), 1) if hop_tax is not None else None,
        "sites": [
            {"kind": kind, "site": site, "hops": count}
            for (kind, site), count in sim.sites().items()
        ],
    }


def document(audit: Audit) -> dict[str, Any]:
    """The audit as the JSON document ``--format json`` prints (see docs/audit.md)."""
    return {
        "format": "hopwatch.audit",
        "version": FORMAT_VERSION,
        "settings": audit.settings_module,
        "django": audit.django_version,
        "asgiref": audit.asgiref_version,
        "asgi_application": audit.asgi_application,
        "middleware": [
            {
                "position": entry.position,
                "path": entry.facts.path,
                "kind": entry.facts.kind,
                "sync_capable": entry.facts.sync_capable,
                "async_capable": entry.facts.async_capable,
                "third_party": entry.facts.third_party,
                "mode": dict(entry.modes),
                "hooks": [
                    {
                        "name": hook.name,
                        "async": hook.is_async,
                        "when": hook.when,
                        "hops": dict(hook.hops),
                    }
                    for hook in entry.hooks
                ],
                "hops": dict(entry.hops),
                "adaptation_hops": dict(entry.adaptation),
                "own_hops": dict(entry.own),
                "pins_thread": entry.pins_thread,
                "pinned_by": entry.pinned_by,
                "advice": list(entry.advice),
                "what_if": [
                    {
                        "change": w.change,
                        "asgi_async_view": w.asgi_async_view,
                        "wsgi_async_view": w.wsgi_async_view,
                        "pins_thread": w.pins_thread,
                    }
                    for w in entry.what_ifs
                ],
                "notes": [note.text for note in entry.facts.notes],
            }
            for entry in audit.entries
        ],
        "outside_chain": {
            ASGI: {"request_started": audit.request_started, "response_close": 1},
            WSGI: {},
        },
        "predicted": {
            interface: {
                view_kind: _sim_dict(audit.simulations[(interface, view_kind)], audit.hop_tax)
                for view_kind in VIEW_KINDS
            }
            for interface in INTERFACES
        },
        "hop_tax": audit.hop_tax.as_dict() if audit.hop_tax is not None else None,
        "problems": list(audit.problems),
        "hopwatch_overhead": audit.overhead.as_dict() if audit.overhead is not None else None,
        "django_6_2": django_6_2_document(audit),
        **changes_document(audit),
    }


def _cells(values: dict[tuple[str, str], Any]) -> dict[str, dict[str, Any]]:
    return {
        interface: {kind: values[(interface, kind)] for kind in VIEW_KINDS}
        for interface in INTERFACES
    }


def changes_document(audit: Audit) -> dict[str, Any]:
    """``traffic``, ``changes`` (ranked), ``needs_nothing`` and ``django_own``."""
    traffic, ranked = changes.for_audit(audit)
    return {
        "traffic": {
            "source": traffic.source,
            "requests": round(traffic.requests, 3),
            "requests_left_out": round(traffic.left_out, 3),
            "requests_no_view": round(traffic.no_view, 3),
            "mix": _cells({cell: round(traffic.share(*cell), 4) for cell in changes.CELLS}),
            "price_us": None if traffic.price_us is None else round(traffic.price_us, 1),
            "price_source": (
                "logs" if traffic.price_us is not None else "hop_tax" if audit.hop_tax else None
            ),
            "files": list(traffic.files),
        },
        "changes": [
            {
                "rank": number,
                "change": item.change.key,
                "what": item.change.what,
                "position": item.change.position,
                "hops": _cells(
                    {
                        cell: {"before": before, "after": after}
                        for cell, (before, after) in item.change.hops.items()
                    }
                ),
                "pins_thread": item.change.pins_thread,
                "frees_thread": item.change.frees_thread,
                "saving": {
                    "hops_per_request": round(item.hops, 3),
                    "us_per_request": None if item.us is None else round(item.us, 1),
                    "total_ms": None if item.total_ms is None else round(item.total_ms, 3),
                },
            }
            for number, item in enumerate(ranked, 1)
        ],
        "needs_nothing": [entry.position for entry in changes.needs_nothing(audit.entries)],
        "django_own": [entry.position for entry in changes.django_with_hops(audit.entries)],
    }
