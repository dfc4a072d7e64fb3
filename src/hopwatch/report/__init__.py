"""``hopwatch report``: rank the worst endpoints from captured hopwatch logs.

Reads logs only: this package imports neither Django nor hopwatch's core (only the
standard-library modules ``hopwatch.schema``, ``hopwatch._advice`` and ``hopwatch._cli``).

    from hopwatch.report import make_report
    document = make_report(["logs/"], by="route", top=10)   # the --format json document

Modules: :mod:`~hopwatch.report.parse` (finding and decoding lines),
:mod:`~hopwatch.report.scan` (the hot loop), :mod:`~hopwatch.report.aggregate`
(bounded, mergeable accumulation), :mod:`~hopwatch.report.sketch` (quantiles),
:mod:`~hopwatch.report.inputs` (files, gzip, stdin), :mod:`~hopwatch.report.parallel`
(splitting work across processes), :mod:`~hopwatch.report.rank` (the report
document), :mod:`~hopwatch.report.render` (output formats),
:mod:`~hopwatch.report.table` (the table's columns, their legend, fitting a
width), :mod:`~hopwatch.report.notes` (what is said under the table),
:mod:`~hopwatch.report.command` (the command line), :mod:`~hopwatch.report.output`
(``-o FILE``). The formats that draw (:mod:`~hopwatch.report.visual`): what they
read beyond the document (:mod:`~hopwatch.report.picture`), a request's crossings
laid out (:mod:`~hopwatch.report.timeline`), the page (:mod:`~hopwatch.report.html`,
its charts :mod:`~hopwatch.report.svg`, its escaping :mod:`~hopwatch.report.markup`)
and the Chrome trace (:mod:`~hopwatch.report.trace`).
"""

from __future__ import annotations

from typing import Any


def make_report(
    paths: list[str],
    *,
    by: str = "route",
    sort: str = "overhead",
    top: int = 20,
    min_requests: int = 1,
    filters: Any = None,
    jobs: int | None = None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """The report document for ``paths`` (raises InputError, OptionError, NoSuchEndpoint)."""
    from hopwatch.report import inputs, parallel, rank
    from hopwatch.report.scan import Filters

    options = rank.ReportOptions(
        by=by, sort=sort, top=top, min_requests=min_requests, endpoint=endpoint
    )
    options.check()
    sources = inputs.resolve(paths)
    partial = parallel.read_all(sources, filters if filters is not None else Filters(), jobs)
    return rank.build_document(partial, options, [source.name for source in sources])


__all__ = ["make_report"]
