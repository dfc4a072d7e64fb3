"""Log content made safe for HTML: text, attribute values and JSON inside ``<script>``.

Every string that came from a log goes through :func:`esc` before it is part of
the page: :func:`hopwatch.report.text.clean` first (control, bidi and invisible
characters become visible escapes), then HTML escaping of ``& < > " '``, which
is safe in element text and in quoted attribute values alike.
"""

from __future__ import annotations

import html
import json
from typing import Any

from hopwatch.report import text as fmt


def esc(value: Any, limit: int | None = None) -> str:
    """``value`` as HTML text or a quoted attribute value, cut to ``limit`` characters."""
    return html.escape(fmt.clean(value, limit), quote=True)


def script_json(value: Any) -> str:
    """JSON that can sit inside ``<script>``: ``<``, ``>`` and ``&`` escaped, so no
    ``</script>`` or ``<!--`` can appear, and ASCII only (U+2028 and U+2029 too)."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
