"""Log content made safe for HTML: text, attribute values and JSON inside ``<script>``.

Every string that came from a log goes through :func:`esc` before it is part of
the page: :func:`hopwatch.report.text.clean` first (control, bidi and invisible
characters become visible escapes), then HTML escaping of ``& < > " '``, which
is safe in element text and in quoted attribute values alike. In element text,
:func:`bdi` also isolates it: right-to-left letters in a value (a client's
``X-Request-ID``) reorder only the value, not the page's own text around it.
"""

from __future__ import annotations

import html
import json
from typing import Any

from hopwatch.report import text as fmt


def esc(value: Any, limit: int | None = None) -> str:
    """``value`` as HTML text or a quoted attribute value, cut to ``limit`` characters."""
    return html.escape(fmt.clean(value, limit), quote=True)


def bdi(value: Any, limit: int | None = None) -> str:
    """``value`` as element text set apart from the text around it (``<bdi>``): how a
    value from a log joins the page's own words in one line."""
    return f"<bdi>{esc(value, limit)}</bdi>"


def script_json(value: Any) -> str:
    """JSON that can sit inside ``<script>``: ``<``, ``>`` and ``&`` escaped, so no
    ``</script>`` or ``<!--`` can appear, and ASCII only (U+2028 and U+2029 too)."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
