"""What hopwatch's commands share: one-line usage errors, terminal detection, a closed pipe.

Standard library only: ``hopwatch report`` imports it, and the report loads
nothing of hopwatch's core or of Django.
"""

from __future__ import annotations

import argparse
import codecs
import errno
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import IO, Any, Final, NoReturn


class Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, escaped (:func:`printable`), and exit status 2
    (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {printable(message)}\n")


#: A space a wrap keeps: between a number and its unit ("509 µs", "13.23 s").
_UNIT_SPACE = re.compile(r"(?<=\d) (?=(?:µs|ms|s)\b)")
_KEPT = "\0"  # in no text printed; textwrap breaks at ASCII whitespace only


def wrap(text: str, width: int, indent: str = "", *, keep: Sequence[str] = ()) -> list[str]:
    """``text`` wrapped to ``width`` at its spaces, each continuation after ``indent``;
    never at a hyphen, between a number and its unit, nor inside a phrase of ``keep``
    (a command to copy: on a line of its own where it is wider than ``width``). An
    empty text gives no line, as ``textwrap.wrap``."""
    glued = _UNIT_SPACE.sub(_KEPT, text)
    for phrase in keep:
        glued = glued.replace(phrase, phrase.replace(" ", _KEPT))
    lines = textwrap.wrap(
        glued, width, subsequent_indent=indent, break_on_hyphens=False,
        break_long_words=not keep,  # a command longer than the width keeps a line of its own
    )  # fmt: skip
    return [line.replace(_KEPT, " ") for line in lines]


def is_terminal(stream: IO[str] | Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


#: How to get rich, which only the terminal table (``--format rich``) needs.
RICH_EXTRA = "pip install 'hopwatch[rich]'"


def has_rich() -> bool:
    """Whether rich is installed (the ``rich`` extra).

    rich is an extra, not a dependency: an app's environment then carries no rich,
    which ``import structlog`` loads whenever it is installed, into every server
    process (about 6,000 objects for the garbage collector to walk on each full
    collection; see docs/performance.md). Only the terminal table needs it.
    """
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def auto_format(stream: IO[str] | Any) -> str:
    """What ``--format auto`` means on ``stream``: rich on a terminal if installed, else text."""
    return "rich" if is_terminal(stream) and has_rich() else "text"


def rich_missing() -> str | None:
    """The one-line error for ``--format rich`` without rich, or None when it is installed."""
    if has_rich():
        return None
    return f"--format rich needs rich, which is not installed: {RICH_EXTRA}"


def terminal_width() -> int:
    """The terminal's columns (``COLUMNS`` first, as ``shutil`` reads them; 80 when unknown)."""
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


def writes_utf8(stream: IO[str] | Any) -> bool:
    """Whether ``stream`` writes text as UTF-8 (or keeps it as text: no ``encoding``,
    an ``io.StringIO``). A stream of another encoding (a C locale's ASCII,
    ``PYTHONIOENCODING``, Windows' cp1252 for a redirected stdout) cannot write every
    character, or writes some as bytes that are not UTF-8. The CLI's and the request
    lines' (``hopwatch._emit``) one test."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return True
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


#: The report formats that are data (read back by a program, or a page that says
#: it is UTF-8): written to stdout as UTF-8 whatever its encoding, as ``-o FILE`` is.
UTF8_FORMATS: Final = ("csv", "html", "json", "trace")


def tolerate_narrow_encodings(*, utf8_stdout: bool = False) -> None:
    """Standard output and error of an encoding other than UTF-8 (a C locale without
    UTF-8 mode, ``PYTHONIOENCODING=ascii``, Windows' cp1252 when redirected) cannot
    write "µ", "…" or a route's "é", and would raise. Text for people gets a
    backslash escape there instead (``\\xb5``), whatever error handler the stream
    had (a C locale's is ``surrogateescape``, no help for "µ"); with ``utf8_stdout``
    (the formats of :data:`UTF8_FORMATS`), stdout writes UTF-8: a CSV cell or a
    page keeps the very text, an escape would change it."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None or writes_utf8(stream):
            continue
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None:
            continue
        try:
            if utf8_stdout and stream is sys.stdout:
                reconfigure(encoding="utf-8", errors="strict")
            else:
                reconfigure(errors="backslashreplace")
        except (ValueError, OSError):  # closed, or not a text wrapper after all
            pass


def argv_text(word: str) -> str:
    """A command-line argument as the text that was typed: on a C locale without UTF-8
    mode, Python reads the UTF-8 bytes of ``"GET /café/"`` as surrogate escapes
    (``"caf\\udcc3\\udca9"``), which match no route. For the arguments that are text
    to match, not file paths (a path must stay as the system's encoding gives it)."""
    if word.isascii():
        return word
    try:
        return os.fsencode(word).decode("utf-8")
    except UnicodeError:  # not UTF-8 bytes: left as read
        return word


def rich_width(width: int | None) -> int | None:
    """The ``width`` to give rich's ``Console``: rich reads ``COLUMNS`` itself and takes
    ``COLUMNS=0`` literally (a console 0 wide, "invalid width 0" at the first wrap);
    ``shutil``, and so this, reads a ``COLUMNS`` below 1 as unset."""
    if width is None:
        columns = os.environ.get("COLUMNS", "")
        if columns.isdigit() and int(columns) < 1:  # what rich would read as a width
            return terminal_width()
    return width


def to_devnull(fd: int) -> None:
    """The descriptor ``fd`` pointed at /dev/null: what is written there from now on
    (a stream's buffer at exit too) goes nowhere and fails no more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


def silence_stdout() -> None:
    """After the reader of our output went away (``| head``): no error at exit."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):
        return
    to_devnull(fd)


def os_error_reason(exc: OSError) -> str:
    """Why a file could not be read or written, for a one-line message: the system's
    words ("Permission denied"), but "symbolic link loop" for ELOOP."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return exc.strerror or str(exc)


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def convert(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {number}")
        return number

    return convert


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


def escaped(char: str) -> str:
    """``char`` as printed from a log or the project's words: itself, or a visible escape
    (``\\x1b``, ``\\u200b``) when it could drive a terminal or draws nothing. The one
    rule of what hopwatch escapes (``hopwatch.report.text.clean`` and :func:`printable`)."""
    import unicodedata

    code = ord(char)
    if code not in _BLANK and unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(message: str) -> str:
    """``message`` safe for a terminal, as one line: control characters (every ANSI
    escape sequence, a newline), format characters and the rest the report escapes in
    what it prints from a log become visible escapes such as ``\\x1b``. For text that
    may carry the project's words (an exception's message, a path) on its way to stderr."""
    if message.isascii() and message.isprintable():
        return message
    return "".join(escaped(char) for char in message)


def usage_error(command: str, message: str) -> int:
    """One line on stderr, escaped (:func:`printable`); the exit status of a usage error."""
    print(f"hopwatch {command}: error: {printable(message)}", file=sys.stderr)
    return 2


__all__ = [
    "RICH_EXTRA",
    "UTF8_FORMATS",
    "Parser",
    "argv_text",
    "auto_format",
    "escaped",
    "has_rich",
    "is_terminal",
    "os_error_reason",
    "printable",
    "rich_missing",
    "rich_width",
    "silence_stdout",
    "terminal_width",
    "to_devnull",
    "tolerate_narrow_encodings",
    "usage_error",
    "whole_number",
    "writes_utf8",
]
