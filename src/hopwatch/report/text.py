"""Making log content safe to print, and formatting numbers for people.

Everything the report prints that came from a log line (routes, views, site
names, request ids, file names) goes through :func:`clean` first: control
characters (C0, DEL, C1, so every ANSI escape sequence), Unicode format characters
(bidi controls, zero-width ones, tags...), line and paragraph separators, lone
surrogates, private-use and unassigned code points, and the few letters that draw
nothing are replaced by visible escapes such as ``\\x1b`` (``hopwatch._cli.escaped``).
Markdown and CSV add their own escaping on top.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

from hopwatch._cli import escaped

#: Code points whose answer is remembered (the rest are looked up each time they come).
_REMEMBERED: Final = 1 << 16


class _EscapeTable(dict[int, int | str]):
    """``str.translate``'s table: each character's escape, or its own code point when it
    is printed as it is; filled in as characters are met, from their Unicode category
    (a table of all 1,114,112 code points would cost a second and 100 MB to build)."""

    def __missing__(self, code: int) -> int | str:
        escape = escaped(chr(code))  # the rule (hopwatch._cli.escaped)
        value: int | str = code if len(escape) == 1 else escape
        if len(self) < _REMEMBERED:
            self[code] = value
        return value


_ESCAPES: Final = _EscapeTable()
ELLIPSIS: Final = "…"


#: The encoding of the stream (not UTF-8) a table for people is being written to, if any
#: (see :func:`escaped_for`).
_NARROW: Final[ContextVar[str | None]] = ContextVar("hopwatch_report_narrow", default=None)


@contextmanager
def escaped_for(encoding: str | None) -> Iterator[None]:
    """While the report draws a table for a stream of ``encoding`` (None: UTF-8, which
    writes every character), :func:`clean` also escapes what the stream cannot encode,
    as its ``backslashreplace`` would (``\\xe9``, ``\\u65e5``): the table then measures
    and pads the text the stream writes, and its columns stay aligned."""
    token = _NARROW.set(encoding)
    try:
        yield
    finally:
        _NARROW.reset(token)


def drawable(text: str, fallback: str) -> str:
    """``text`` (a mark the report draws: "…", "─"), or ``fallback`` of the same width
    when the stream of :func:`escaped_for` cannot encode it (its escape would be wider)."""
    narrow = _NARROW.get()
    if narrow is None:
        return text
    try:
        text.encode(narrow)
    except UnicodeEncodeError:
        return fallback
    return text


def ellipsis() -> str:
    """Where a name is cut: "…", or "~" on a stream that cannot encode it."""
    return drawable(ELLIPSIS, "~")


#: The escapes :func:`clean` writes (and a stream's ``backslashreplace``): a cut
#: keeps each whole or leaves it out (half of ``\\xe9`` reads as another text).
_ESCAPE: Final = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def _escape_around(text: str, at: int) -> tuple[int, int] | None:
    """The escape of ``text`` that a cut at ``at`` would split: its start and end."""
    start = text.rfind("\\", max(at - 9, 0), at)
    if start < 0:
        return None
    found = _ESCAPE.match(text, start)
    return (start, found.end()) if found is not None and found.end() > at else None


def cut_before(text: str, at: int) -> str:
    """``text[:at]``, less the start of an escape the cut would split."""
    split = _escape_around(text, at)
    return text[: split[0] if split else at]


def cut_after(text: str, at: int) -> str:
    """``text[at:]``, less the end of an escape the cut would split."""
    split = _escape_around(text, at)
    return text[split[1] if split else at :]


def clean(value: Any, limit: int | None = None) -> str:
    """``value`` as text that cannot drive a terminal; cut to ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    text = text.translate(_ESCAPES)
    narrow = _NARROW.get()
    if narrow is not None and not text.isascii():
        text = text.encode(narrow, "backslashreplace").decode(narrow)
    if limit is not None and len(text) > limit:
        text = cut_before(text, max(limit - 1, 0)) + ellipsis()
    return text


# Backslash-escaping any ASCII punctuation is literal in CommonMark and GFM;
# these are the characters that could start markup inside a table cell.
_MARKDOWN: Final = {ord(c): "\\" + c for c in "\\`*_[]<>|~#!&$"}


def markdown_cell(value: Any, limit: int | None = None) -> str:
    # GFM's extended autolinks ("https://...", "www....") are found in text, after the
    # escapes are read: one more escaped character in them keeps them text. (E-mail
    # addresses GFM links whatever their escapes: docs/report.md.)
    text = clean(value, limit).translate(_MARKDOWN).replace("://", "\\://")
    return _WWW.sub(r"\g<1>\\.", text)


#: "www." as GFM's autolink extension finds it: its dot escaped keeps it text.
_WWW: Final = re.compile(r"(www)\.", re.IGNORECASE)


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


def noun(value: float | str, singular: str, plural: str | None = None) -> str:
    """``singular`` for one, else ``plural`` (``singular`` + "s"). ``value``: a count, or
    a count as text (a histogram bin's label: ``1``, ``17-24``)."""
    one = value == "1" if isinstance(value, str) else settled(float(value)) == 1
    return singular if one else (plural if plural is not None else singular + "s")


def counted(value: float, singular: str, plural: str | None = None) -> str:
    """``1 request``, ``2,000 requests``: ``value`` as :func:`count` shows it, and its noun."""
    return f"{count(value)} {noun(value, singular, plural)}"


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
    """``SessionMiddleware.process_request`` for the long dotted path, plus ``(file:line)``.

    The last two parts, not counting ``<locals>``, and back to a part that is a name: a
    function defined in another is ``login_required.<locals>.<lambda>`` (not
    ``<locals>.<lambda>``), ``make_view.<locals>.view``. A call site's file is its last
    path part, written with ``/`` or (on Windows) ``\\``."""
    parts = site.split(".")
    start = len(parts)
    kept = 0
    while start > 0 and (kept < 2 or parts[start].startswith("<")):
        start -= 1
        if parts[start] != "<locals>":
            kept += 1
    name = ".".join(parts[start:])
    if call_site:
        where = call_site.split(" in ", 1)[0]
        separator = _LAST_SEPARATOR.match(where)
        name += f" ({where[separator.end() :] if separator else where})"
    return name


#: Up to a call site's last path separator: ``/``, or ``\\`` (a site written on Windows)
#: that does not start a lone surrogate's escape as :func:`clean` writes it (``\\ud800``
#: to ``\\udfff``: a request's crossings whose names hold one reach short_site escaped,
#: picture._encoded). Any other backslash is a separator: ``app\\xadmin.py`` is
#: ``xadmin.py``.
_LAST_SEPARATOR: Final = re.compile(r".*(?:/|\\(?!ud[89a-f][0-9a-f]{2}))", re.DOTALL)


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
# An emoji and what follows it to change how it is drawn take the columns a terminal
# draws them in: a variation selector 16 (U+FE0F) makes a text-style emoji two columns
# wide (U+2764 U+FE0F, a red heart), a skin-tone modifier tints the emoji before it in its
# two columns (U+1F44D U+1F3FD, a thumbs up in a medium tone).
# (A zero-width joiner (U+200D) between two emoji is escaped by clean(), as every format
# character is: the two emoji and the six letters of its escape are drawn, and measured.)

#: The emoji that are drawn one column wide, as text, unless a variation selector 16
#: asks for them as emoji (then two): the bases of Unicode's emoji-variation-sequences.txt
#: that are not East Asian wide (the wide ones take two columns either way).
_TEXT_EMOJI_RANGES: Final = (
    (0x0023, 0x0023), (0x002A, 0x002A), (0x0030, 0x0039), (0x00A9, 0x00A9),
    (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122),
    (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA), (0x2328, 0x2328),
    (0x23CF, 0x23CF), (0x23ED, 0x23EF), (0x23F1, 0x23F2), (0x23F8, 0x23FA),
    (0x24C2, 0x24C2), (0x25AA, 0x25AB), (0x25B6, 0x25B6), (0x25C0, 0x25C0),
    (0x25FB, 0x25FC), (0x2600, 0x2604), (0x260E, 0x260E), (0x2611, 0x2611),
    (0x2618, 0x2618), (0x261D, 0x261D), (0x2620, 0x2620), (0x2622, 0x2623),
    (0x2626, 0x2626), (0x262A, 0x262A), (0x262E, 0x262F), (0x2638, 0x263A),
    (0x2640, 0x2640), (0x2642, 0x2642), (0x265F, 0x2660), (0x2663, 0x2663),
    (0x2665, 0x2666), (0x2668, 0x2668), (0x267B, 0x267B), (0x267E, 0x267E),
    (0x2692, 0x2692), (0x2694, 0x2697), (0x2699, 0x2699), (0x269B, 0x269C),
    (0x26A0, 0x26A0), (0x26A7, 0x26A7), (0x26B0, 0x26B1), (0x26C8, 0x26C8),
    (0x26CF, 0x26CF), (0x26D1, 0x26D1), (0x26D3, 0x26D3), (0x26E9, 0x26E9),
    (0x26F0, 0x26F1), (0x26F4, 0x26F4), (0x26F7, 0x26F9), (0x2702, 0x2702),
    (0x2708, 0x2709), (0x270C, 0x270D), (0x270F, 0x270F), (0x2712, 0x2712),
    (0x2714, 0x2714), (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721),
    (0x2733, 0x2734), (0x2744, 0x2744), (0x2747, 0x2747), (0x2763, 0x2764),
    (0x27A1, 0x27A1), (0x2934, 0x2935), (0x2B05, 0x2B07), (0x1F170, 0x1F171),
    (0x1F17E, 0x1F17F), (0x1F321, 0x1F321), (0x1F324, 0x1F32C), (0x1F336, 0x1F336),
    (0x1F37D, 0x1F37D), (0x1F396, 0x1F397), (0x1F399, 0x1F39B), (0x1F39E, 0x1F39F),
    (0x1F3CB, 0x1F3CE), (0x1F3D4, 0x1F3DF), (0x1F3F3, 0x1F3F3), (0x1F3F5, 0x1F3F5),
    (0x1F3F7, 0x1F3F7), (0x1F43F, 0x1F43F), (0x1F441, 0x1F441), (0x1F4FD, 0x1F4FD),
    (0x1F549, 0x1F54A), (0x1F56F, 0x1F570), (0x1F573, 0x1F579), (0x1F587, 0x1F587),
    (0x1F58A, 0x1F58D), (0x1F590, 0x1F590), (0x1F5A5, 0x1F5A5), (0x1F5A8, 0x1F5A8),
    (0x1F5B1, 0x1F5B2), (0x1F5BC, 0x1F5BC), (0x1F5C2, 0x1F5C4), (0x1F5D1, 0x1F5D3),
    (0x1F5DC, 0x1F5DE), (0x1F5E1, 0x1F5E1), (0x1F5E3, 0x1F5E3), (0x1F5E8, 0x1F5E8),
    (0x1F5EF, 0x1F5EF), (0x1F5F3, 0x1F5F3), (0x1F5FA, 0x1F5FA), (0x1F6CB, 0x1F6CB),
    (0x1F6CD, 0x1F6CF), (0x1F6E0, 0x1F6E5), (0x1F6E9, 0x1F6E9), (0x1F6F0, 0x1F6F0),
    (0x1F6F3, 0x1F6F3),
)  # fmt: skip
_TEXT_EMOJI: Final = frozenset(
    chr(code) for start, end in _TEXT_EMOJI_RANGES for code in range(start, end + 1)
)
_EMOJI_STYLE: Final = "\ufe0f"
#: The skin-tone modifiers (U+1F3FB..U+1F3FF): after an emoji they are drawn into it;
#: after anything else, as a swatch of their own, two columns wide.
_SKIN_TONES: Final = frozenset(map(chr, range(0x1F3FB, 0x1F400)))
#: What changes the columns of the character before it beyond its own: a string without
#: any is measured one character at a time.
_SEQUENCE: Final = re.compile("[\ufe0f\U0001f3fb-\U0001f3ff]")


class _CellTable(dict[str, int]):
    """Each character's columns, filled in as characters are met (as _EscapeTable)."""

    def __missing__(self, char: str) -> int:
        # nonspacing and enclosing marks (the variation selectors, the keycap's U+20E3,
        # and the combining marks whose class is 0) draw on the character before them
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me"):
            width = 0
        else:
            width = 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
        if len(self) < _REMEMBERED:
            self[char] = width
        return width


_char_cells: Final = _CellTable().__getitem__


def _is_emoji(char: str) -> bool:
    return char in _TEXT_EMOJI or (
        unicodedata.category(char) == "So" and unicodedata.east_asian_width(char) == "W"
    )


def _clusters(value: str) -> list[list[int]]:
    """``[start, columns]`` of each run of ``value`` that is drawn as one: a character
    and the marks, variation selectors and skin-tone modifiers drawn into it. A string
    is cut between runs only (never between an emoji and its modifier)."""
    runs: list[list[int]] = []
    base = ""
    for index, char in enumerate(value):
        width = _char_cells(char)
        if runs and width == 0:
            if char == _EMOJI_STYLE and base in _TEXT_EMOJI:
                runs[-1][1] = 2
            continue
        if runs and char in _SKIN_TONES and _is_emoji(base):
            runs[-1][1] = 2
            continue
        runs.append([index, width])
        base = char
    return runs


def cells(value: str) -> int:
    """How many terminal columns ``value`` takes."""
    if value.isascii():
        return len(value)
    if _SEQUENCE.search(value) is None:
        return sum(map(_char_cells, value))
    return sum(columns for _start, columns in _clusters(value))


def ljust_cells(value: str, width: int) -> str:
    return value + " " * (width - cells(value))


def rjust_cells(value: str, width: int) -> str:
    return " " * (width - cells(value)) + value


def head_cells(value: str, width: int) -> str:
    """The longest start of ``value`` that takes at most ``width`` columns."""
    if value.isascii():
        return cut_before(value, max(width, 0))
    used = 0
    for start, columns in _clusters(value):
        used += columns
        if used > width:
            return cut_before(value, start)
    return value


def tail_cells(value: str, width: int) -> str:
    """The longest end of ``value`` that takes at most ``width`` columns."""
    if value.isascii():
        return cut_after(value, max(len(value) - width, 0)) if width > 0 else ""
    used = 0
    after = len(value)
    for start, columns in reversed(_clusters(value)):
        used += columns
        if used > width:
            return cut_after(value, after)
        after = start
    return value
