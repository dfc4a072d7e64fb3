"""The project's measured traffic, from its hopwatch logs (``hopwatch audit --logs``).

What the audit needs to rank changes by what they would save here: how the
requests split between interfaces and between async and sync views, how many
there were, and what one crossing cost, measured (crossing overhead over
crossings: the same price ``hopwatch report`` shows as ``per_hop_us``). The
logs are read by the report's own reader (:mod:`hopwatch.report`), so every
format it reads works here.

A request's view kind is read from its causes: under ASGI a sync view is called
through ``sync_to_async`` (a ``view`` cause), an async one is not; under WSGI
an async view is called through ``async_to_sync``. Requests no view resolved
are left out, and counted as such (``left_out``). The test clients count as
the interface they stand for (``test-async-client`` as ASGI, ``test-client``
as WSGI).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from hopwatch.audit.facts import ASGI, WSGI, AuditError
from hopwatch.audit.model import VIEW_KINDS

ASYNC_VIEW, SYNC_VIEW = VIEW_KINDS
_INTERFACES: Final = {
    "asgi": ASGI,
    "test-async-client": ASGI,
    "wsgi": WSGI,
    "test-client": WSGI,
}
#: Where the traffic the changes are ranked for comes from.
FROM_LOGS: Final = "logs"
ASSUMED: Final = "assumed"


@dataclass(frozen=True)
class Traffic:
    """Requests by (interface, view kind), and what one crossing cost."""

    source: str  # FROM_LOGS, or ASSUMED (no logs: an even split of views)
    requests: float
    #: (interface, view kind) -> share of the requests
    mix: dict[tuple[str, str], float]
    #: one crossing's overhead measured in the logs, in µs (None: no line carries it)
    price_us: float | None = None
    files: tuple[str, ...] = field(default=())
    #: requests in the logs not in ``requests``: no view resolved (a 404, say), or
    #: their view's kind unknown (past the report's endpoint cap, or served through an
    #: interface that is neither ASGI nor WSGI)
    left_out: float = 0.0
    #: ... of which no view resolved
    no_view: float = 0.0

    def share(self, interface: str, view_kind: str) -> float:
        return self.mix.get((interface, view_kind), 0.0)


def assumed(interface: str) -> Traffic:
    """No logs: requests under ``interface``, half to async views and half to sync ones."""
    return Traffic(ASSUMED, 0.0, {(interface, ASYNC_VIEW): 0.5, (interface, SYNC_VIEW): 0.5})


def from_logs(paths: Sequence[str]) -> Traffic:
    """Read ``paths`` (files, directories, globs, gzip; as ``hopwatch report``)."""
    from hopwatch.report import inputs, parallel
    from hopwatch.report.aggregate import A_OVERHEAD, A_RECORDS, NO_VIEW, OVERFLOW, site_requests
    from hopwatch.report.scan import Filters

    try:
        sources = inputs.resolve(list(paths))
        partial = parallel.read_all(sources, Filters())
    except inputs.InputError as exc:
        raise AuditError(f"--logs: {exc}") from None
    if not sources:  # empty directories (hidden files are not read, as by hopwatch report)
        named = ", ".join(paths)
        holds = "holds" if len(paths) == 1 else "hold"
        raise AuditError(f"--logs: read 0 files: {named} {holds} no file to read")
    counts: dict[tuple[str, str], float] = {}
    overhead = hops = logged = no_view = 0.0
    for (kind, _method, _route, _view), stats in partial.endpoints.items():
        overhead += stats.acc[A_OVERHEAD]
        hops += stats.overhead_hops
        logged += stats.requests
        if kind == NO_VIEW:
            no_view += stats.requests
        if kind in (NO_VIEW, OVERFLOW):
            continue
        if not stats.acc[A_RECORDS]:
            continue
        through = {ASGI: 0.0, WSGI: 0.0}  # requests whose view was called across
        for (_site, cause_kind, direction, _call_site), entry in stats.sites.items():
            if cause_kind != "view":
                continue
            if direction == "sync_to_async":
                through[ASGI] += site_requests(entry)
            else:
                through[WSGI] += site_requests(entry)
        # requests per interface, already weighted: a sampled line stands for
        # 1 / sample_rate requests (aggregate.py), as the site counts above do
        for name, requests in stats.interfaces.items():
            interface = _INTERFACES.get(name)
            if interface is None:
                continue
            crossed = min(through[interface], requests)
            through[interface] -= crossed
            # ASGI: a view called across is sync; WSGI: a view called across is async
            across, direct = (
                (SYNC_VIEW, ASYNC_VIEW) if interface == ASGI else (ASYNC_VIEW, SYNC_VIEW)
            )
            counts[(interface, across)] = counts.get((interface, across), 0.0) + crossed
            counts[(interface, direct)] = counts.get((interface, direct), 0.0) + requests - crossed
    total = sum(counts.values())
    if not total:
        raise AuditError(
            "--logs: no hopwatch request with a resolved view in "
            + ", ".join(source.name for source in sources)
        )
    return Traffic(
        FROM_LOGS,
        total,
        {key: value / total for key, value in sorted(counts.items()) if value},
        overhead / hops * 1000 if hops else None,
        tuple(source.name for source in sources),
        max(logged - total, 0.0),
        no_view,
    )


__all__ = ["ASSUMED", "FROM_LOGS", "Traffic", "assumed", "from_logs"]
