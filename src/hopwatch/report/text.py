"""Making log content safe to print, and formatting numbers for people.

Everything the report prints that came from a log line (routes, views, site
names, request ids, file names) goes through :func:`clean` first: control
characters (C0, DEL, C1, so every ANSI escape sequence), Unicode format characters
(bidi controls, zero-width ones, tags...), line and paragraph separators, lone
surrogates, private-use and unassigned code points, and the few letters that draw
nothing are replaced by visible escapes such as ``\\x1b`` (_ESCAPED_CATEGORIES).
Markdown and CSV add their own escaping on top.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Final

#: Escaped, by Unicode general category: controls (Cc: C0, DEL, C1, so every ANSI escape
#: sequence), format characters (Cf: bidi controls, zero-width characters and joiners,
#: the soft hyphen, Arabic number signs, interlinear annotation, tag characters...), the
#: line and paragraph separators (Zl, Zp), surrogates (Cs), private use (Co), and
#: unassigned code points (Cn: this Python's Unicode knows neither whether they show nor
#: how wide they are; an older Python escapes the few a newer one knows, never fewer).
_ESCAPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
#: ... and the letters and marks of other categories that draw nothing (Unicode's
#: default-ignorable code points outside Cf, but for the variation selectors that
#: emoji need): the combining grapheme joiner, the Khmer inherent vowels, the Hangul
#: fillers.
_BLANK: Final = frozenset({0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0})
#: Code points whose answer is remembered (the rest are looked up each time they come).
_REMEMBERED: Final = 1 << 16


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class _EscapeTable(dict[int, int | str]):
    """``str.translate``'s table: each character's escape, or its own code point when it
    is printed as it is; filled in as characters are met, from their Unicode category
    (a table of all 1,114,112 code points would cost a second and 100 MB to build)."""

    def __missing__(self, code: int) -> int | str:
        escaped = code in _BLANK or unicodedata.category(chr(code)) in _ESCAPED_CATEGORIES
        value: int | str = _escape(code) if escaped else code
        if len(self) < _REMEMBERED:
            self[code] = value
        return value


_ESCAPES: Final = _EscapeTable()
ELLIPSIS: Final = "…"


def clean(value: Any, limit: int | None = None) -> str:
    """``value`` as text that cannot drive a terminal; cut to ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    text = text.translate(_ESCAPES)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + ELLIPSIS
    return text


# Backslash-escaping any ASCII punctuation is literal in CommonMark and GFM;
# these are the characters that could start markup inside a table cell.
_MARKDOWN: Final = {ord(c): "\\" + c for c in "\\`*_[]<>|~#!&$"}


def markdown_cell(value: Any, limit: int | None = None) -> str:
    return clean(value, limit).translate(_MARKDOWN)


_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """Numbers as they are; text cleaned and kept from being read as a spreadsheet formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return value
    text = clean(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


# --- numbers -----------------------------------------------------------------------------
def settled(value: float) -> float:
    """``value`` without the last bits that the order of a float sum leaves, for
    showing: a total summed by several reader processes, in whatever order they
    finish, is 700.4499999999999 in one run and 700.4500000000001 in the next, and
    both show as 700.5. (A value the document already rounded, to 3 or 4 decimals,
    is left as it is, and shows as before.)"""
    return round(value, 6)


def count(value: float | None) -> str:
    if value is None:
        return "-"
    value = settled(float(value))
    if value.is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    value = settled(value)
    if value < 10:
        return f"{value:.3f}"
    if value < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def us(value: float | None) -> str:
    """Microseconds (a hop's price)."""
    if value is None:
        return "-"
    value = settled(value)
    return f"{value:,.1f} µs" if value < 100 else f"{value:,.0f} µs"


def duration(value_ms: float | None) -> str:
    """A total of milliseconds in the unit that reads best."""
    if value_ms is None:
        return "-"
    value_ms = settled(value_ms)
    if value_ms < 1000:
        return f"{value_ms:.1f} ms"
    seconds = value_ms / 1000
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h"


def percent(share: float | None) -> str:
    """A share in percent. Above 100% it reads ``>100%``: such a ratio is no share of
    anything (crossings that overlapped each count their own overhead, or lines whose
    fields disagree; see docs/report.md), and --format json keeps it exact."""
    if share is None:
        return "-"
    shown = f"{settled(share) * 100:.1f}"
    return ABOVE_FULL if float(shown) > 100 else f"{shown}%"


#: A share above 100%, as printed.
ABOVE_FULL: Final = ">100%"


def mean(value: float | None) -> str:
    return "-" if value is None else f"{settled(value):,.1f}"


def size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def short_site(site: str, call_site: str | None) -> str:
    """``SessionMiddleware.process_request`` for the long dotted path, plus ``(file:line)``."""
    parts = site.split(".")
    name = ".".join(parts[-2:]) if len(parts) > 2 else site
    if call_site:
        where = call_site.split(" in ", 1)[0]
        name += f" ({where.rsplit('/', 1)[-1]})"
    return name


_REASONS: Final = {
    "malformed_json": "malformed JSON",
    "truncated": "truncated",
    "invalid_utf8": "invalid UTF-8",
    "line_too_long": "too long",
}


def reason(name: str) -> str:
    if name in _REASONS:
        return _REASONS[name]
    problem, _, field = name.partition(":")
    return f"{problem} {field}" if field else name


# --- terminal cells: a wide (CJK) character takes two columns, a combining mark none ---
# (rich.cells measures the same, but rich is imported only to draw the terminal table:
# the other formats and the reading processes start without it; tests/report/test_boundaries.py)


def _char_cells(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def cells(value: str) -> int:
    """How many terminal columns ``value`` takes."""
    if value.isascii():
        return len(value)
    return sum(map(_char_cells, value))


def ljust_cells(value: str, width: int) -> str:
    return value + " " * (width - cells(value))


def rjust_cells(value: str, width: int) -> str:
    return " " * (width - cells(value)) + value


def head_cells(value: str, width: int) -> str:
    """The longest start of ``value`` that takes at most ``width`` columns."""
    used = 0
    for index, char in enumerate(value):
        used += _char_cells(char)
        if used > width:
            return value[:index]
    return value


def tail_cells(value: str, width: int) -> str:
    """The longest end of ``value`` that takes at most ``width`` columns."""
    used = 0
    for index in range(len(value) - 1, -1, -1):
        used += _char_cells(value[index])
        if used > width:
            return value[index + 1 :]
    return value
