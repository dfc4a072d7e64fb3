"""The formats that draw: ``html`` (the page) and ``trace`` (Chrome trace events).

Both need the :class:`~hopwatch.report.picture.Picture` read in the same pass as
the report (``Partial.extra``): :func:`extra_for` makes it for the readers,
:func:`nothing_to_draw` says in one line when there is nothing to draw, and
:func:`renderer` gives the format's writer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import IO, Any, Final

from hopwatch.report.aggregate import Partial
from hopwatch.report.picture import Kept, Picture, chosen_timelines, groups_by
from hopwatch.report.text import clean

FORMATS: Final = ("html", "trace")
Renderer = Callable[[dict[str, Any], IO[str]], None]
_DETAIL_HINT: Final = (
    "log with detail mode on (HOPWATCH = {'DETAIL': True}), from a hopwatch whose"
    " detail entries carry at_ms"
)


def extra_for(format_name: str, request_id: str | None) -> Callable[[], Picture] | None:
    """What makes each reader's Picture (None: the format needs none)."""
    if format_name not in FORMATS:
        return None
    return functools.partial(Picture, request_id)


def _picture(partial: Partial) -> Picture:
    picture: Picture = partial.extra
    # endpoints the merged report put in its overflow row go there in the picture too
    picture.reconcile(set(partial.endpoints))
    return picture


def _timelines(document: dict[str, Any], picture: Picture) -> list[Kept]:
    by = document["by"]
    groups = groups_by(picture, by if by != "site" else "route")
    return [kept for _heading, kept, _why in chosen_timelines(document, picture, groups)]


def nothing_to_draw(format_name: str, document: dict[str, Any], partial: Partial) -> str | None:
    """Why the format has nothing to write, in one line; None when it has (or does not draw)."""
    if format_name not in FORMATS:
        return None
    picture = _picture(partial)
    if picture.request_id is not None and picture.chosen is None:
        # what was asked for, escaped as log text is (clean), between single quotes
        request_id = f"'{clean(picture.request_id)}'"
        if not picture.chosen_lines:
            return f"no hopwatch line with request_id {request_id} passed the filters"
        return (
            f"the line with request_id {request_id} has no detail list that can be drawn:"
            f" {_DETAIL_HINT}"
        )
    if format_name == "trace" and not _timelines(document, picture):
        return f"no request in the input has a timeline to export: {_DETAIL_HINT}"
    return None


def renderer(format_name: str, partial: Partial) -> Renderer | None:
    """The writer of a drawing format (None for the others)."""
    if format_name == "html":
        from hopwatch.report.html import render_html
        from hopwatch.report.rank import sync_handler_causes

        return lambda document, out: render_html(
            document, _picture(partial), out, sync_causes=sync_handler_causes(partial)
        )
    if format_name == "trace":
        from hopwatch.report.trace import render_trace

        return lambda document, out: render_trace(_timelines(document, _picture(partial)), out)
    return None
